// The Kubernetes executor. No API server can run here (docs/executors.md):
// the Job manifests are checked against reviewed golden files and field by
// field, and the executor's kubectl calls against a fake kubectl that
// records its argv and stdin and prints canned JSON.
//
// KERVAN_UPDATE_GOLDEN=1 rewrites the golden files (review the diff).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <stdlib.h>

#include <gtest/gtest.h>

#include "jobs/cluster_tools.h"
#include "jobs/executor.h"

namespace kervan::jobs {
namespace {

using namespace std::chrono_literals;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

LaunchSpec FullSpec() {
  LaunchSpec spec;
  spec.job_id = "job_01HZX3";
  spec.attempt = 2;
  spec.name = "train resnet";
  spec.project = "vision";
  spec.user = "ada@example.com";
  spec.priority_class = "prod";
  spec.command = {"python", "train.py", "--epochs", "10"};
  spec.working_dir = "/workspace";
  spec.env = {{"KERVAN_JOB_ID", "job_01HZX3"},
              {"KERVAN_ATTEMPT", "2"},
              {"MLFLOW_TRACKING_URI", "http://kervan:8080/mlflow"}};
  spec.resources = {.gpus = 2, .gpu_type = "NVIDIA-A100-SXM4-80GB", .cpus = 8, .memory_mb = 32768};
  spec.image = "registry.example.com/vision/train:1.4";
  spec.active_deadline_s = 7200;
  spec.backoff_limit = 0;
  spec.ttl_after_finished_s = 86400;
  spec.log_path = "/var/lib/kervan/logs/job_01HZX3/2.log";
  spec.scratch_dir = "/var/lib/kervan/scratch/job_01HZX3/2";
  return spec;
}

KubernetesOptions Options() {
  KubernetesOptions options;
  options.namespace_name = "ml";
  options.priority_class_names = {{"prod", "kervan-prod"}, {"dev", "kervan-dev"}};
  return options;
}

// Compares with tests/jobs/golden/NAME (or rewrites it).
void ExpectGolden(const Json& manifest, const std::string& name) {
  const std::string path = std::string(KERVAN_GOLDEN_DIR) + "/" + name;
  const std::string text = manifest.dump(2) + "\n";
  const char* update = std::getenv("KERVAN_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::filesystem::create_directories(KERVAN_GOLDEN_DIR);
    WriteFile(path, text);
  }
  ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing (KERVAN_UPDATE_GOLDEN=1)";
  EXPECT_EQ(text, ReadFile(path)) << "rendered manifest differs from " << path;
}

TEST(KubernetesManifest, FullSpecMatchesGolden) {
  ExpectGolden(KubernetesJobManifest(FullSpec(), Options()), "kubernetes_job_full.json");
}

TEST(KubernetesManifest, MinimalSpecMatchesGolden) {
  LaunchSpec spec;
  spec.job_id = "j1";
  spec.command = {"/bin/true"};
  spec.priority_class = "batch";
  KubernetesOptions options;
  options.default_image = "busybox:1.36";
  ExpectGolden(KubernetesJobManifest(spec, options), "kubernetes_job_minimal.json");
}

TEST(KubernetesManifest, MultiNodeMatchesGolden) {
  LaunchSpec spec = FullSpec();
  spec.resources = {.gpus = 16, .cpus = 64, .memory_mb = 100000, .nodes = 2};
  ExpectGolden(KubernetesJobManifest(spec, Options()), "kubernetes_job_multinode.json");
}

TEST(KubernetesManifest, Fields) {
  Json m = KubernetesJobManifest(FullSpec(), Options());
  EXPECT_EQ(m["apiVersion"], "batch/v1");
  EXPECT_EQ(m["kind"], "Job");
  EXPECT_EQ(m["metadata"]["name"], internal::KubernetesJobName("job_01HZX3", 2));
  EXPECT_EQ(m["metadata"]["namespace"], "ml");
  const Json& labels = m["metadata"]["labels"];
  EXPECT_EQ(labels["kervan.dev/job-id"], "job_01HZX3");
  EXPECT_EQ(labels["kervan.dev/attempt"], "2");
  EXPECT_EQ(labels["kervan.dev/project"], "vision");
  EXPECT_EQ(labels["kervan.dev/user"], "ada_example.com");  // '@' is not allowed in labels
  EXPECT_EQ(m["metadata"]["annotations"]["kervan.dev/job-id"], "job_01HZX3");
  const Json& spec = m["spec"];
  EXPECT_EQ(spec["backoffLimit"], 0);
  EXPECT_EQ(spec["activeDeadlineSeconds"], 7200);
  EXPECT_EQ(spec["ttlSecondsAfterFinished"], 86400);
  EXPECT_EQ(spec["template"]["metadata"]["labels"], labels);
  const Json& pod = spec["template"]["spec"];
  EXPECT_EQ(pod["restartPolicy"], "Never");
  EXPECT_EQ(pod["priorityClassName"], "kervan-prod");
  EXPECT_EQ(pod["nodeSelector"]["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-80GB");
  ASSERT_EQ(pod["containers"].size(), 1u);
  const Json& c = pod["containers"][0];
  EXPECT_EQ(c["image"], "registry.example.com/vision/train:1.4");
  EXPECT_EQ(c["command"], Json::array({"python"}));
  EXPECT_EQ(c["args"], Json::array({"train.py", "--epochs", "10"}));
  EXPECT_EQ(c["workingDir"], "/workspace");
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"], "2");
  EXPECT_EQ(c["resources"]["limits"]["cpu"], "8");
  EXPECT_EQ(c["resources"]["limits"]["memory"], "32768Mi");
  EXPECT_EQ(c["env"][0], Json({{"name", "KERVAN_ATTEMPT"}, {"value", "2"}}));

  // A class without a mapping keeps its name; no deadline/TTL: no fields.
  LaunchSpec dev = FullSpec();
  dev.priority_class = "batch";
  dev.active_deadline_s = 0;
  dev.ttl_after_finished_s = 0;
  dev.resources = {};
  Json d = KubernetesJobManifest(dev, Options());
  EXPECT_EQ(d["spec"]["template"]["spec"]["priorityClassName"], "batch");
  EXPECT_FALSE(d["spec"].contains("activeDeadlineSeconds"));
  EXPECT_FALSE(d["spec"].contains("ttlSecondsAfterFinished"));
  EXPECT_FALSE(d["spec"]["template"]["spec"].contains("nodeSelector"));
  EXPECT_FALSE(d["spec"]["template"]["spec"]["containers"][0].contains("resources"));
}

// kubectl itself reads the golden manifests (offline it cannot validate
// them against the schema: that needs an API server).
TEST(KubernetesManifest, KubectlReadsTheGoldenFiles) {
  if (std::system("command -v kubectl >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no kubectl on PATH";
  for (const char* name : {"kubernetes_job_full.json", "kubernetes_job_minimal.json",
                           "kubernetes_job_multinode.json"}) {
    auto out = internal::RunToolChecked(
        {.argv = {"kubectl", "label", "--local", "-f", std::string(KERVAN_GOLDEN_DIR) + "/" + name,
                  "-o", "yaml", "kervan.dev/checked=true"},
         .timeout = 20s});
    ASSERT_TRUE(out) << out.error().ToString();
    EXPECT_NE(out->find("apiVersion: batch/v1\nkind: Job\n"), std::string::npos) << *out;
    EXPECT_NE(out->find("restartPolicy: Never"), std::string::npos) << *out;
  }
}

TEST(KubernetesManifest, JobNamesAreDns1123) {
  // RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?
  auto dns1123 = [](const std::string& n) {
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    return !n.empty() && alnum(n.front()) && alnum(n.back()) &&
           std::all_of(n.begin(), n.end(), [&](char c) { return alnum(c) || c == '-'; });
  };
  EXPECT_EQ(internal::KubernetesJobName("j1", 1), "kervan-j1-1");
  EXPECT_EQ(internal::KubernetesJobName("train-42", 12), "kervan-train-42-12");
  std::vector<std::string> names = {
      internal::KubernetesJobName("job_01HZX3", 2),
      internal::KubernetesJobName("JOB-01hzx3", 2),
      internal::KubernetesJobName(std::string(100, 'a') + "1", 1),
      internal::KubernetesJobName(std::string(100, 'a') + "2", 1),
      internal::KubernetesJobName("__", 1),
      internal::KubernetesJobName("", 1),
      internal::KubernetesJobName(std::string(200, 'x'), 2147483647),
  };
  for (const auto& n : names) {
    EXPECT_LE(n.size(), 63u) << n;
    EXPECT_TRUE(dns1123(n)) << n;
  }
  // Ids that differ only in case, or past the cut, still get distinct names.
  EXPECT_NE(names[0], names[1]);
  EXPECT_NE(names[2], names[3]);
  EXPECT_EQ(names[0].rfind("kervan-job-01hzx3-", 0), 0u) << names[0];
}

TEST(KubernetesParse, JobEnd) {
  auto job = [](Json conditions) {
    return Json{{"metadata", {{"name", "kervan-j-1"}}}, {"status", {{"conditions", conditions}}}};
  };
  EXPECT_FALSE(internal::KubernetesJobEnd(Json{{"metadata", {{"name", "x"}}}}, false));
  EXPECT_FALSE(internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Suspended"}, {"status", "True"}}})), false));
  auto ok = internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Complete"}, {"status", "True"}}})), false);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->kind, ExitKind::kSucceeded);
  EXPECT_EQ(ok->external_id, "kervan-j-1");
  auto deadline = internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Failed"}, {"status", "True"}, {"reason", "DeadlineExceeded"}}})),
      false);
  ASSERT_TRUE(deadline);
  EXPECT_EQ(deadline->kind, ExitKind::kFailed);
  EXPECT_EQ(deadline->detail, "deadline");
  auto backoff = internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Failed"},
                        {"status", "True"},
                        {"reason", "BackoffLimitExceeded"},
                        {"message", "Job has reached the specified backoff limit"}}})),
      false);
  ASSERT_TRUE(backoff);
  EXPECT_EQ(backoff->kind, ExitKind::kFailed);
  EXPECT_NE(backoff->detail.find("BackoffLimitExceeded"), std::string::npos);
  auto stopped = internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Failed"}, {"status", "True"}, {"reason", "X"}}})), true);
  ASSERT_TRUE(stopped);
  EXPECT_EQ(stopped->kind, ExitKind::kTerminated);
  EXPECT_FALSE(internal::KubernetesJobEnd(
      job(Json::array({{{"type", "Failed"}, {"status", "False"}}})), false));
}

constexpr const char* kNodes = R"({"apiVersion": "v1", "kind": "List", "items": [
  {"metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}},
   "spec": {},
   "status": {"allocatable": {"cpu": "63900m", "memory": "528212340Ki", "nvidia.com/gpu": "8",
                              "pods": "110"},
              "conditions": [{"type": "MemoryPressure", "status": "False"},
                             {"type": "Ready", "status": "True"}]}},
  {"metadata": {"name": "gpu-2"}, "spec": {"unschedulable": true},
   "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"},
              "conditions": [{"type": "Ready", "status": "True"}]}},
  {"metadata": {"name": "cpu-1"},
   "status": {"allocatable": {"cpu": "4", "memory": "16G"},
              "conditions": [{"type": "Ready", "status": "False"}]}}
]})";

TEST(KubernetesParse, Nodes) {
  auto nodes = internal::ParseKubernetesNodes(Json::parse(kNodes));
  ASSERT_TRUE(nodes) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), 3u);
  EXPECT_EQ((*nodes)[0].name, "gpu-1");
  EXPECT_EQ((*nodes)[0].gpus, 8);
  EXPECT_EQ((*nodes)[0].gpu_type, "NVIDIA-A100-SXM4-80GB");
  EXPECT_EQ((*nodes)[0].cpus, 63);
  EXPECT_EQ((*nodes)[0].memory_mb, 528212340 / 1024);
  EXPECT_TRUE((*nodes)[0].schedulable);
  EXPECT_EQ((*nodes)[1].memory_mb, 131072);
  EXPECT_FALSE((*nodes)[1].schedulable);  // cordoned
  EXPECT_EQ((*nodes)[2].gpus, 0);
  EXPECT_EQ((*nodes)[2].memory_mb, 15258);  // 16e9 bytes
  EXPECT_FALSE((*nodes)[2].schedulable);    // not ready
  EXPECT_FALSE(internal::ParseKubernetesNodes(Json::object()));
}

// ---- The executor against a fake kubectl ---------------------------------------

class FakeKubectl : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/kervan-kubectl-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    const std::string script = R"(#!/bin/bash
D=)" + dir_ + R"(
n=$(( $(cat "$D/count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$D/count"
printf '%s\n' "$@" > "$D/argv-$n"
if [[ -e "$D/fail" ]]; then
  echo "The connection to the server localhost:8080 was refused" >&2; exit 1
fi
args=()
for a in "$@"; do case "$a" in --context=*|--namespace=*) ;; *) args+=("$a") ;; esac; done
case "${args[0]} ${args[1]}" in
  "apply -f") cat > "$D/stdin-$n"; echo "job.batch/x created" ;;
  "get jobs") cat "$D/jobs.json" ;;
  "get pods") cat "$D/pods.json" ;;
  "get nodes") cat "$D/nodes.json" ;;
  "get job")
    if [[ -f "$D/job-${args[2]}.json" ]]; then cat "$D/job-${args[2]}.json"
    else echo "Error from server (NotFound): jobs.batch \"${args[2]}\" not found" >&2; exit 1; fi ;;
  "delete job" | "delete pods") echo "deleted" ;;
  *) echo "fake kubectl: unexpected $*" >&2; exit 2 ;;
esac
)";
    WriteFile(dir_ + "/kubectl", script);
    std::filesystem::permissions(dir_ + "/kubectl", std::filesystem::perms::owner_all);
    WriteFile(dir_ + "/jobs.json", R"({"kind": "List", "items": []})");
    WriteFile(dir_ + "/pods.json", R"({"kind": "List", "items": []})");
    options_ = Options();
    options_.kubectl = dir_ + "/kubectl";
    options_.context = "lab";
    auto executor = MakeKubernetesExecutor(options_);
    ASSERT_TRUE(executor) << executor.error().ToString();
    executor_ = std::move(*executor);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  int Calls() { return std::stoi("0" + ReadFile(dir_ + "/count")); }
  std::vector<std::string> Argv(int n) {
    std::vector<std::string> argv;
    std::istringstream in(ReadFile(dir_ + "/argv-" + std::to_string(n)));
    for (std::string line; std::getline(in, line);)
      argv.push_back(line);
    return argv;
  }
  void SetJobs(const Json& items) {
    WriteFile(dir_ + "/jobs.json", Json({{"kind", "List"}, {"items", items}}).dump());
  }
  void SetPods(const Json& items) {
    WriteFile(dir_ + "/pods.json", Json({{"kind", "List"}, {"items", items}}).dump());
  }
  static Json JobWith(const std::string& name, const std::string& condition,
                      const std::string& reason = "") {
    Json status = Json::object();
    if (!condition.empty())
      status["conditions"] =
          Json::array({{{"type", condition}, {"status", "True"}, {"reason", reason}}});
    return {{"metadata", {{"name", name}}}, {"status", status}};
  }
  static Json PodOf(const std::string& job, int exit_code) {
    return {{"metadata", {{"name", job + "-abcde"}, {"labels", {{"job-name", job}}}}},
            {"status",
             {{"containerStatuses",
               Json::array(
                   {{{"name", "job"}, {"state", {{"terminated", {{"exitCode", exit_code}}}}}}})}}}};
  }

  std::string dir_;
  KubernetesOptions options_;
  std::unique_ptr<Executor> executor_;
};

TEST_F(FakeKubectl, LaunchAppliesTheManifest) {
  LaunchSpec spec = FullSpec();
  auto name = executor_->Launch(spec);
  ASSERT_TRUE(name) << name.error().ToString();
  EXPECT_EQ(*name, internal::KubernetesJobName(spec.job_id, spec.attempt));
  ASSERT_EQ(Calls(), 1);
  EXPECT_EQ(Argv(1),
            (std::vector<std::string>{"--context=lab", "--namespace=ml", "apply", "-f", "-"}));
  Json applied = Json::parse(ReadFile(dir_ + "/stdin-1"), nullptr, false);
  EXPECT_EQ(applied, KubernetesJobManifest(spec, options_));

  spec.image = "";
  auto no_image = executor_->Launch(spec);
  ASSERT_FALSE(no_image);
  EXPECT_EQ(no_image.error().field, "image");
}

TEST_F(FakeKubectl, PollReportsEnds) {
  LaunchSpec a = FullSpec();
  a.job_id = "ok";
  LaunchSpec b = FullSpec();
  b.job_id = "bad";
  LaunchSpec c = FullSpec();
  c.job_id = "running";
  auto na = executor_->Launch(a), nb = executor_->Launch(b), nc = executor_->Launch(c);
  ASSERT_TRUE(na && nb && nc);

  SetJobs(Json::array({JobWith(*na, "Complete"), JobWith(*nb, "Failed", "BackoffLimitExceeded"),
                       JobWith(*nc, "")}));
  SetPods(Json::array({PodOf(*nb, 3), PodOf(*nc, 0)}));
  int before = Calls();
  auto reports = executor_->Poll();
  ASSERT_EQ(reports.size(), 2u);
  std::map<std::string, ExitReport> by_job;
  for (const auto& r : reports)
    by_job[r.job_id] = r;
  EXPECT_EQ(by_job["ok"].kind, ExitKind::kSucceeded);
  EXPECT_EQ(by_job["ok"].attempt, 2);
  EXPECT_EQ(by_job["bad"].kind, ExitKind::kFailed);
  EXPECT_EQ(by_job["bad"].exit_code, 3);
  EXPECT_EQ(by_job["bad"].external_id, *nb);
  EXPECT_EQ(Argv(before + 1),
            (std::vector<std::string>{"--context=lab", "--namespace=ml", "get", "jobs", "-l",
                                      "app.kubernetes.io/managed-by=kervan", "-o", "json"}));

  // kubectl failing reports nothing (and loses nothing).
  WriteFile(dir_ + "/fail", "");
  EXPECT_TRUE(executor_->Poll().empty());
  std::filesystem::remove(dir_ + "/fail");

  // The running job's Job vanishes without Kervan asking: lost.
  SetJobs(Json::array());
  SetPods(Json::array());
  reports = executor_->Poll();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id, "running");
  EXPECT_EQ(reports[0].kind, ExitKind::kLost);
  EXPECT_TRUE(executor_->Poll().empty());
}

TEST_F(FakeKubectl, TerminateDeletesJobThenPodsWithGrace) {
  auto name = executor_->Launch(FullSpec());
  ASSERT_TRUE(name);
  SetJobs(Json::array({JobWith(*name, "")}));
  SetPods(Json::array({PodOf(*name, 0)}));
  int before = Calls();
  ASSERT_TRUE(executor_->Terminate(*name, 30s));
  EXPECT_EQ(Argv(before + 1),
            (std::vector<std::string>{"--context=lab", "--namespace=ml", "delete", "job", *name,
                                      "--cascade=orphan", "--ignore-not-found", "--wait=false"}));
  EXPECT_EQ(Argv(before + 2),
            (std::vector<std::string>{"--context=lab", "--namespace=ml", "delete", "pods", "-l",
                                      "job-name=" + *name, "--grace-period=30",
                                      "--ignore-not-found", "--wait=false"}));
  // The Job is gone but its pod still stops: not ended yet.
  SetJobs(Json::array());
  EXPECT_TRUE(executor_->Poll().empty());
  SetPods(Json::array());
  auto reports = executor_->Poll();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, ExitKind::kTerminated);

  WriteFile(dir_ + "/fail", "");
  auto failed = executor_->Terminate(*name, 1s);
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("connection to the server"), std::string::npos)
      << failed.error().message;
}

TEST_F(FakeKubectl, AdoptChecksTheLabels) {
  LaunchSpec spec = FullSpec();
  Json job = KubernetesJobManifest(spec, options_);
  const std::string name = job["metadata"]["name"];
  WriteFile(dir_ + "/job-" + name + ".json", job.dump());
  auto adopted = executor_->Adopt(spec.job_id, spec.attempt, name);
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  EXPECT_TRUE(*adopted);
  EXPECT_FALSE(*executor_->Adopt("other-job", spec.attempt, name));
  EXPECT_FALSE(*executor_->Adopt(spec.job_id, 1, name));
  EXPECT_FALSE(*executor_->Adopt(spec.job_id, spec.attempt, "kervan-gone-1"));
  WriteFile(dir_ + "/fail", "");
  EXPECT_FALSE(executor_->Adopt(spec.job_id, spec.attempt, name));
  std::filesystem::remove(dir_ + "/fail");

  // The adopted attempt's end is reported.
  Json done = job;
  done["status"] = {{"conditions", Json::array({{{"type", "Complete"}, {"status", "True"}}})}};
  SetJobs(Json::array({done}));
  auto reports = executor_->Poll();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id, spec.job_id);
  EXPECT_EQ(reports[0].kind, ExitKind::kSucceeded);
}

TEST_F(FakeKubectl, DiscoverNodes) {
  WriteFile(dir_ + "/nodes.json", kNodes);
  auto nodes = executor_->DiscoverNodes();
  ASSERT_TRUE(nodes) << nodes.error().ToString();
  EXPECT_EQ(nodes->size(), 3u);
  EXPECT_EQ(Argv(1), (std::vector<std::string>{"--context=lab", "--namespace=ml", "get", "nodes",
                                               "-o", "json"}));
}

}  // namespace
}  // namespace kervan::jobs

// The Slurm executor: the pure parts (script quoting, sbatch argv, squeue
// JSON, ExitCode, jobcomp and node parsing) with canned text captured from a
// real Slurm 22.05, and the executor end to end against a real single-host
// Slurm started by scripts/slurm.sh. The real-Slurm tests read
// KERVAN_TEST_SLURM_ENV (the env file `scripts/slurm.sh start DIR` writes);
// without it they skip loudly, or fail when KERVAN_REQUIRE_SLURM=1.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include <stdlib.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "jobs/cluster_tools.h"
#include "jobs/executor.h"

namespace kervan::jobs {
namespace {

using namespace std::chrono_literals;
using internal::SlurmJob;

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

std::string MakeTempDir() {
  std::string tmpl = "/tmp/kervan-slurm-test.XXXXXX";
  char* dir = ::mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr);
  return tmpl;
}

// ---- Quoting and the batch script -----------------------------------------

TEST(SlurmScript, ShellQuote) {
  EXPECT_EQ(internal::ShellQuote(""), "''");
  EXPECT_EQ(internal::ShellQuote("a b"), "'a b'");
  EXPECT_EQ(internal::ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(internal::ShellQuote("$HOME `x` \"q\""), "'$HOME `x` \"q\"'");
}

// The script is run by /bin/sh here exactly as slurmd runs it: every
// argument and env value must arrive byte for byte.
TEST(SlurmScript, ArgumentsAndEnvSurviveTheShell) {
  const std::string dir = MakeTempDir();
  const std::vector<std::string> tricky = {
      "a b", "it's", "$HOME", "`id`", "\"q\"", "", "new\nline", "back\\slash", "*", ";exit 9", "é",
  };
  LaunchSpec spec;
  spec.job_id = "job-1";
  spec.command = {"printf", "<%s>\\n"};
  spec.command.insert(spec.command.end(), tricky.begin(), tricky.end());
  spec.env = {{"WEIRD", "x'y \"z\" $PATH `id`"}, {"EMPTY", ""}};
  spec.working_dir = dir;
  auto script = internal::SlurmBatchScript(spec);
  ASSERT_TRUE(script) << script.error().ToString();
  WriteFile(dir + "/a.sh", *script);
  auto out = internal::RunToolChecked({.argv = {"/bin/sh", dir + "/a.sh"}});
  ASSERT_TRUE(out) << out.error().ToString();
  std::string expected;
  for (const auto& t : tricky)
    expected += "<" + t + ">\n";
  EXPECT_EQ(*out, expected);

  spec.command = {"/bin/sh", "-c", "printf '%s|%s|%s' \"$WEIRD\" \"$EMPTY\" \"$PWD\""};
  script = internal::SlurmBatchScript(spec);
  ASSERT_TRUE(script);
  WriteFile(dir + "/b.sh", *script);
  out = internal::RunToolChecked({.argv = {"/bin/sh", dir + "/b.sh"}});
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(*out, "x'y \"z\" $PATH `id`||" + dir);
  std::filesystem::remove_all(dir);
}

TEST(SlurmScript, RejectsEnvNamesTheShellCannotExport) {
  LaunchSpec spec;
  spec.command = {"true"};
  spec.env = {{"BAD-NAME", "x"}};
  auto script = internal::SlurmBatchScript(spec);
  ASSERT_FALSE(script);
  EXPECT_EQ(script.error().field, "env");
  EXPECT_NE(script.error().message.find("BAD-NAME"), std::string::npos);
  spec.env = {};
  spec.command = {};
  EXPECT_FALSE(internal::SlurmBatchScript(spec));
}

// ---- sbatch's argv ----------------------------------------------------------

LaunchSpec FullSpec() {
  LaunchSpec spec;
  spec.job_id = "job_42";
  spec.attempt = 2;
  spec.name = "train resnet";
  spec.priority_class = "prod";
  spec.command = {"python", "train.py"};
  spec.resources = {.gpus = 2, .gpu_type = "a100", .cpus = 8, .memory_mb = 32000};
  spec.active_deadline_s = 90;
  spec.log_path = "/var/log/kervan/job_42/100%.log";
  spec.scratch_dir = "/scratch/job_42/2";
  spec.working_dir = "/work";
  return spec;
}

TEST(SlurmArgs, FullSpec) {
  SlurmOptions options;
  options.partition_by_class = {{"prod", "gpu-prod"}, {"dev", "gpu-dev"}};
  options.qos_by_class = {{"prod", "high"}};
  options.extra_sbatch_args = {"--account=ml"};
  auto args = internal::SbatchArgs(FullSpec(), options, "/scratch/job_42/2/slurm-attempt-2.sh");
  ASSERT_TRUE(args) << args.error().ToString();
  std::vector<std::string> expected = {
      "--parsable",
      "--job-name=train_resnet",
      "--comment=kervan:job_42:2",
      "--partition=gpu-prod",
      "--qos=high",
      "--nodes=1",
      "--ntasks-per-node=1",
      "--gres=gpu:a100:2",
      "--cpus-per-task=8",
      "--mem=32000",
      "--time=2",  // 90 s, rounded up to Slurm's whole minutes
      "--output=/var/log/kervan/job_42/100%%.log",
      "--error=/var/log/kervan/job_42/100%%.log",
      "--open-mode=append",
      "--chdir=/work",
      "--export=ALL",
      "--no-requeue",
      "--account=ml",
      "/scratch/job_42/2/slurm-attempt-2.sh",
  };
  EXPECT_EQ(*args, expected);
}

TEST(SlurmArgs, DefaultsAndMultiNode) {
  LaunchSpec spec;
  spec.job_id = "j";
  spec.priority_class = "batch";  // no partition configured: the cluster's default
  spec.command = {"true"};
  spec.scratch_dir = "/s";
  auto args = internal::SbatchArgs(spec, {}, "/s/x.sh");
  ASSERT_TRUE(args);
  std::vector<std::string> expected = {
      "--parsable",
      "--job-name=kervan-j",
      "--comment=kervan:j:1",
      "--nodes=1",
      "--ntasks-per-node=1",
      "--output=/s/attempt-1.log",
      "--error=/s/attempt-1.log",
      "--open-mode=append",
      "--chdir=/s",
      "--export=ALL",
      "--no-requeue",
      "/s/x.sh",
  };
  EXPECT_EQ(*args, expected);

  // 8 GPUs on 2 nodes: 4 a node; the scheduler's allocation sets CPUs and memory.
  spec.resources = {.gpus = 8, .cpus = 16, .memory_mb = 1000, .nodes = 2};
  spec.allocation = {{.node = "n1", .gpu_indices = {0, 1, 2, 3}, .cpus = 6, .memory_mb = 500},
                     {.node = "n2", .gpu_indices = {0, 1, 2, 3}, .cpus = 6, .memory_mb = 500}};
  args = internal::SbatchArgs(spec, {}, "/s/x.sh");
  ASSERT_TRUE(args);
  auto has = [&](const std::string& a) {
    return std::find(args->begin(), args->end(), a) != args->end();
  };
  EXPECT_TRUE(has("--nodes=2"));
  EXPECT_TRUE(has("--gres=gpu:4"));
  EXPECT_TRUE(has("--cpus-per-task=6"));
  EXPECT_TRUE(has("--mem=500"));

  spec.resources = {.gpus = 3, .nodes = 2};
  EXPECT_FALSE(internal::SbatchArgs(spec, {}, "/s/x.sh"));
}

TEST(SlurmArgs, DeadlineIsWholeMinutes) {
  LaunchSpec spec;
  spec.job_id = "j";
  spec.command = {"true"};
  spec.scratch_dir = "/s";
  for (auto [seconds, flag] : std::vector<std::pair<int64_t, std::string>>{
           {1, "--time=1"}, {60, "--time=1"}, {61, "--time=2"}, {3600, "--time=60"}}) {
    spec.active_deadline_s = seconds;
    auto args = internal::SbatchArgs(spec, {}, "/s/x.sh");
    ASSERT_TRUE(args);
    EXPECT_NE(std::find(args->begin(), args->end(), flag), args->end()) << seconds;
  }
}

// ---- What Slurm prints --------------------------------------------------------

TEST(SlurmParse, ExitCode) {
  auto ok = internal::ParseSlurmExitCode("3:0");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->exit_code, 3);
  EXPECT_EQ(ok->signal, 0);
  auto sig = internal::ParseSlurmExitCode("0:15");
  ASSERT_TRUE(sig);
  EXPECT_EQ(sig->exit_code, -1);
  EXPECT_EQ(sig->signal, 15);
  EXPECT_FALSE(internal::ParseSlurmExitCode("3"));
  EXPECT_FALSE(internal::ParseSlurmExitCode("x:0"));
  EXPECT_FALSE(internal::ParseSlurmExitCode(":"));
}

// Trimmed from `squeue --json` of Slurm 22.05.8 (OpenAPI v0.0.38): job_state
// a string, exit_code the wait(2) status.
constexpr const char* kSqueue2205 = R"({
  "meta": {"plugin": {"type": "openapi/v0.0.38"}},
  "errors": [],
  "jobs": [
    {"job_id": 1, "job_state": "FAILED", "exit_code": 768, "state_reason": "NonZeroExitCode",
     "name": "kervan-x", "comment": "kervan:x:1", "restart_cnt": 0},
    {"job_id": 2, "job_state": "CANCELLED", "exit_code": 15, "state_reason": "None",
     "name": "wrap", "comment": ""},
    {"job_id": 5, "job_state": "PREEMPTED", "exit_code": 15, "state_reason": "None"},
    {"job_id": 6, "job_state": "COMPLETED", "exit_code": 0, "state_reason": "None"},
    {"job_id": 8, "job_state": "TIMEOUT", "exit_code": 15, "state_reason": "TimeLimit"},
    {"job_id": 9, "job_state": "RUNNING", "exit_code": 0, "state_reason": "None"},
    {"job_id": 10, "job_state": "COMPLETING", "exit_code": 0, "state_reason": "None"}
  ]
})";

TEST(SlurmParse, Squeue2205) {
  auto jobs = internal::ParseSqueueJson(kSqueue2205);
  ASSERT_TRUE(jobs) << jobs.error().ToString();
  ASSERT_EQ(jobs->size(), 7u);
  std::map<std::string, SlurmJob> by_id;
  for (const auto& j : *jobs)
    by_id[j.id] = j;
  EXPECT_EQ(by_id["1"].state, "FAILED");
  EXPECT_EQ(by_id["1"].exit_code, 3);
  EXPECT_EQ(by_id["1"].reason, "NonZeroExitCode");
  EXPECT_EQ(by_id["1"].comment, "kervan:x:1");
  EXPECT_EQ(by_id["2"].signal, 15);
  EXPECT_EQ(by_id["2"].exit_code, -1);
  EXPECT_EQ(by_id["2"].reason, "");
  EXPECT_EQ(by_id["6"].exit_code, 0);
  EXPECT_EQ(by_id["9"].state, "RUNNING");
  EXPECT_TRUE(by_id["10"].completing);
  EXPECT_FALSE(internal::IsSlurmFinalState(by_id["9"].state));
  EXPECT_TRUE(internal::IsSlurmFinalState(by_id["8"].state));
}

// Slurm 23.02+ (data_parser): job_state a list of flags, exit_code an object.
TEST(SlurmParse, SqueueLaterVersions) {
  auto jobs = internal::ParseSqueueJson(R"({"jobs": [
    {"job_id": 7, "job_state": ["FAILED"],
     "exit_code": {"status": ["EXITED"], "return_code": {"set": true, "infinite": false, "number": 2},
                   "signal": {"id": {"set": false, "infinite": false, "number": 0}, "name": ""}}},
    {"job_id": 8, "job_state": ["COMPLETED", "COMPLETING"],
     "exit_code": {"status": ["SUCCESS"], "return_code": {"set": true, "number": 0}}},
    {"job_id": 9, "job_state": ["CANCELLED"],
     "exit_code": {"status": ["SIGNALED"], "return_code": {"set": true, "number": 0},
                   "signal": {"id": {"set": true, "number": 9}, "name": "KILL"}}}
  ]})");
  ASSERT_TRUE(jobs) << jobs.error().ToString();
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0].state, "FAILED");
  EXPECT_EQ((*jobs)[0].exit_code, 2);
  EXPECT_EQ((*jobs)[1].state, "COMPLETED");
  EXPECT_TRUE((*jobs)[1].completing);
  EXPECT_EQ((*jobs)[2].signal, 9);
  EXPECT_EQ((*jobs)[2].exit_code, -1);
}

TEST(SlurmParse, SqueueGarbage) {
  EXPECT_FALSE(internal::ParseSqueueJson("slurm_load_jobs error: Unable to contact"));
  EXPECT_FALSE(internal::ParseSqueueJson("{}"));
  auto empty = internal::ParseSqueueJson(R"({"jobs": []})");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

// Lines of a real jobcomp/filetxt log (Slurm 22.05.8).
constexpr const char* kJobcomp =
    "JobId=1 UserId=root(0) GroupId=root(0) Name=kervan-x JobState=FAILED Partition=dev "
    "TimeLimit=1 StartTime=2026-11-27T18:58:34 EndTime=2026-11-27T18:58:36 NodeList=vm "
    "NodeCnt=1 ProcCnt=1 WorkDir=/tmp ReservationName= Tres=cpu=1,mem=16000M,node=1,billing=1 "
    "Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-27T18:58:33 "
    "EligibleTime=2026-11-27T18:58:33 DerivedExitCode=0:0 ExitCode=3:0 \n"
    "JobId=7 UserId=root(0) GroupId=root(0) Name=wrap JobState=FAILED Partition=dev "
    "TimeLimit=UNLIMITED StartTime=2026-11-27T18:59:08 EndTime=2026-11-27T18:59:09 NodeList=vm "
    "NodeCnt=1 ProcCnt=1 WorkDir=/tmp/my dir ReservationName= Tres=cpu=1,mem=16000M,node=1 "
    "Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-27T18:59:04 "
    "EligibleTime=2026-11-27T18:59:04 DerivedExitCode=0:0 ExitCode=0:15 \n"
    "JobId=8 UserId=root(0) GroupId=root(0) Name=wrap JobState=TIMEOUT Partition=batch "
    "TimeLimit=1 StartTime=2026-11-27T18:59:10 EndTime=2026-11-27T19:00:30 NodeList=vm "
    "NodeCnt=1 ProcCnt=1 WorkDir=/tmp/exs ReservationName= Tres=cpu=1,mem=16000M,node=1 "
    "Account= QOS= WcKey= Cluster=unknown SubmitTime=2026-11-27T18:59:09 "
    "EligibleTime=2026-11-27T18:59:09 DerivedExitCode=0:0 ExitCode=0:0 \n"
    "JobId=10 UserId=root(0) GroupId=root(0) Name=dev JobState=PREEMPTED Partition=dev "
    "ExitCode=0:15 \n"
    "JobId=10 UserId=root(0) GroupId=root(0) Name=dev JobState=COMPLETED Partition=dev "
    "ExitCode=0:0 \n";

TEST(SlurmParse, Jobcomp) {
  auto one = internal::FindJobcompRecord(kJobcomp, "1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->state, "FAILED");
  EXPECT_EQ(one->exit_code, 3);
  EXPECT_EQ(one->name, "kervan-x");
  auto seven = internal::FindJobcompRecord(kJobcomp, "7");
  ASSERT_TRUE(seven);
  EXPECT_EQ(seven->signal, 15);
  auto eight = internal::FindJobcompRecord(kJobcomp, "8");
  ASSERT_TRUE(eight);
  EXPECT_EQ(eight->state, "TIMEOUT");
  // A job preempted, requeued and run again: the last record counts.
  auto ten = internal::FindJobcompRecord(kJobcomp, "10");
  ASSERT_TRUE(ten);
  EXPECT_EQ(ten->state, "COMPLETED");
  EXPECT_FALSE(internal::FindJobcompRecord(kJobcomp, "2"));
  EXPECT_FALSE(internal::FindJobcompRecord(kJobcomp, ""));
}

TEST(SlurmParse, ExitReportMapping) {
  auto job = [](std::string state, int code, int sig, std::string reason = "") {
    SlurmJob j;
    j.id = "5";
    j.state = std::move(state);
    j.exit_code = code;
    j.signal = sig;
    j.reason = std::move(reason);
    return j;
  };
  struct Case {
    SlurmJob job;
    bool terminate;
    ExitKind kind;
    std::string detail_has;
  };
  std::vector<Case> cases = {
      {job("COMPLETED", 0, 0), false, ExitKind::kSucceeded, "COMPLETED"},
      {job("COMPLETED", 0, 0), true, ExitKind::kSucceeded, "COMPLETED"},  // ended first
      {job("FAILED", 3, 0, "NonZeroExitCode"), false, ExitKind::kFailed, "exit 3, NonZeroExitCode"},
      {job("FAILED", -1, 15), true, ExitKind::kTerminated, "terminated on request"},
      {job("CANCELLED", -1, 15), true, ExitKind::kTerminated, "terminated on request"},
      {job("CANCELLED", -1, 15), false, ExitKind::kFailed, "cancelled outside Kervan"},
      {job("TIMEOUT", -1, 15, "TimeLimit"), false, ExitKind::kFailed, "deadline"},
      {job("DEADLINE", -1, 0), false, ExitKind::kFailed, "deadline"},
      {job("PREEMPTED", -1, 15), false, ExitKind::kTerminated, "preempted by slurm"},
      {job("OUT_OF_MEMORY", 0, 0), false, ExitKind::kFailed, "out of memory"},
      {job("NODE_FAIL", -1, 0), false, ExitKind::kFailed, "node failure"},
      {job("BOOT_FAIL", -1, 0), false, ExitKind::kFailed, "node failure"},
  };
  for (const auto& c : cases) {
    ExitReport r = internal::SlurmExitReport(c.job, c.terminate);
    EXPECT_EQ(r.kind, c.kind) << c.job.state << " terminate=" << c.terminate << ": " << r.detail;
    EXPECT_NE(r.detail.find(c.detail_has), std::string::npos) << r.detail;
    EXPECT_EQ(r.external_id, "5");
    EXPECT_EQ(r.exit_code, c.job.exit_code);
    EXPECT_EQ(r.signal, c.job.signal);
  }
  EXPECT_EQ(internal::SlurmExitReport(job("TIMEOUT", -1, 15), false).detail, "deadline");
}

// `scontrol -o show node` of the test cluster, and variants.
TEST(SlurmParse, Nodes) {
  const std::string text =
      "NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=0 CPUEfctv=8 CPUTot=8 CPULoad=1.09 "
      "AvailableFeatures=(null) ActiveFeatures=(null) Gres=gpu:fake:4 NodeAddr=127.0.0.1 "
      "NodeHostName=vm Version=22.05.8 OS=Linux 6.18.44-fc-v782 #1 SMP PREEMPT_DYNAMIC @0  "
      "RealMemory=16000 AllocMem=0 FreeMem=23216 Sockets=8 Boards=1 State=IDLE ThreadsPerCore=1 "
      "TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=batch,dev,prod  "
      "BootTime=2026-11-27T09:27:54 CfgTRES=cpu=8,mem=16000M,billing=8 AllocTRES= CapWatts=n/a\n"
      "NodeName=g2 CPUTot=64 Gres=gpu:a100:4(S:0-1),gpu:a100:4(S:2-3),shard:8 RealMemory=512000 "
      "State=MIXED+DRAIN Partitions=prod\n"
      "NodeName=g3 CPUTot=32 Gres=gpu:2 RealMemory=1000 State=DOWN* Partitions=prod\n"
      "NodeName=c1 CPUTot=16 Gres=(null) RealMemory=64000 State=ALLOCATED\n"
      "NodeName=g4 CPUTot=16 Gres=gpu:h100:8(S:0,1) RealMemory=64000 State=IDLE*\n";
  auto nodes = internal::ParseSlurmNodes(text);
  ASSERT_TRUE(nodes) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), 5u);
  const Node& vm = (*nodes)[0];
  EXPECT_EQ(vm.name, "vm");
  EXPECT_EQ(vm.gpus, 4);
  EXPECT_EQ(vm.gpu_type, "fake");
  EXPECT_EQ(vm.cpus, 8);
  EXPECT_EQ(vm.memory_mb, 16000);
  EXPECT_TRUE(vm.schedulable);
  EXPECT_EQ((*nodes)[1].gpus, 8);
  EXPECT_EQ((*nodes)[1].gpu_type, "a100");
  EXPECT_FALSE((*nodes)[1].schedulable);  // draining
  EXPECT_EQ((*nodes)[2].gpus, 2);
  EXPECT_EQ((*nodes)[2].gpu_type, "");
  EXPECT_FALSE((*nodes)[2].schedulable);  // down
  EXPECT_EQ((*nodes)[3].gpus, 0);
  EXPECT_TRUE((*nodes)[3].schedulable);  // busy is still schedulable
  EXPECT_EQ((*nodes)[4].gpus, 8);
  EXPECT_FALSE((*nodes)[4].schedulable);  // not responding
}

// ---- Running tools -------------------------------------------------------------

TEST(RunTool, OutputInputAndErrors) {
  auto out = internal::RunToolChecked({.argv = {"cat"}, .input = "hello\n"});
  ASSERT_TRUE(out) << out.error().ToString();
  EXPECT_EQ(*out, "hello\n");

  auto failed = internal::RunToolChecked({.argv = {"/bin/sh", "-c", "echo oops >&2; exit 4"}});
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, core::ErrorCode::kUnavailable);
  EXPECT_NE(failed.error().message.find("exited with status 4: oops"), std::string::npos)
      << failed.error().message;

  auto missing = internal::RunTool({.argv = {"/nonexistent/sbatch"}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kUnavailable);

  auto env = internal::RunToolChecked(
      {.argv = {"/bin/sh", "-c", "printf '%s' \"$A\""}, .env = {{"A", "b c"}}});
  ASSERT_TRUE(env);
  EXPECT_EQ(*env, "b c");
  auto cleared = internal::RunToolChecked(
      {.argv = {"/usr/bin/env"}, .env = {{"ONLY", "1"}}, .clear_env = true});
  ASSERT_TRUE(cleared);
  EXPECT_EQ(*cleared, "ONLY=1\n");
}

TEST(RunTool, TimeoutKillsTheTool) {
  auto start = std::chrono::steady_clock::now();
  auto slow =
      internal::RunTool({.argv = {"/bin/sh", "-c", "sleep 30; echo late"}, .timeout = 300ms});
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code, core::ErrorCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// A tool that exits without reading a large stdin must not kill the caller
// with SIGPIPE.
TEST(RunTool, ToolThatIgnoresItsInput) {
  auto r = internal::RunTool({.argv = {"true"}, .input = std::string(1 << 22, 'x')});
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 0);
}

// ---- Against a real Slurm ---------------------------------------------------

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> env;
  std::istringstream in(ReadFile(path));
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos)
      env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

class RealSlurm : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* path = std::getenv("KERVAN_TEST_SLURM_ENV");
    if (path == nullptr || *path == '\0') {
      const char* require = std::getenv("KERVAN_REQUIRE_SLURM");
      if (require != nullptr && std::string(require) == "1")
        FAIL() << "KERVAN_REQUIRE_SLURM=1 but KERVAN_TEST_SLURM_ENV is not set";
      GTEST_SKIP() << "no Slurm: set KERVAN_TEST_SLURM_ENV to the env file of "
                      "`scripts/slurm.sh start DIR` (DIR/env)";
    }
    env_ = ReadEnvFile(path);
    ASSERT_FALSE(env_["SLURM_CONF"].empty()) << path << " has no SLURM_CONF";
    options_.bin_dir = env_["SLURM_BIN_DIR"];
    options_.slurm_conf = env_["SLURM_CONF"];
    options_.jobcomp_path = env_["SLURM_JOBCOMP"];
    options_.partition_by_class = {{"prod", "prod"}, {"dev", "dev"}, {"batch", "batch"}};
    auto executor = MakeSlurmExecutor(options_);
    ASSERT_TRUE(executor) << executor.error().ToString();
    executor_ = std::move(*executor);
    dir_ = MakeTempDir();
  }

  void TearDown() override {
    // Whatever a failed test left running would hold the GPUs of the next.
    for (const auto& id : launched_)
      if (executor_)
        (void)executor_->Terminate(id, 0ms);
    if (!dir_.empty())
      std::filesystem::remove_all(dir_);
  }

  LaunchSpec Spec(const std::string& job_id, int attempt, std::vector<std::string> command,
                  std::string priority_class = "dev", int gpus = 0) {
    LaunchSpec spec;
    spec.job_id = job_id;
    spec.attempt = attempt;
    spec.name = job_id;
    spec.priority_class = std::move(priority_class);
    spec.command = std::move(command);
    spec.resources.gpus = gpus;
    spec.resources.cpus = 1;
    spec.resources.memory_mb = 100;
    spec.env = {{"KERVAN_JOB_ID", job_id}, {"KERVAN_ATTEMPT", std::to_string(attempt)}};
    spec.scratch_dir = dir_ + "/" + job_id + "-" + std::to_string(attempt);
    std::filesystem::create_directories(spec.scratch_dir);
    spec.log_path = dir_ + "/" + job_id + ".log";
    return spec;
  }

  std::string Launch(const LaunchSpec& spec) {
    auto id = executor_->Launch(spec);
    EXPECT_TRUE(id) << id.error().ToString();
    if (!id)
      return "";
    launched_.push_back(*id);
    return *id;
  }

  // Polls until `id` ended; the reports of other attempts are kept for later.
  ExitReport WaitFor(const std::string& id, std::chrono::seconds timeout = 30s,
                     Executor* executor = nullptr) {
    executor = executor ? executor : executor_.get();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto it = ended_.find(id); it != ended_.end()) {
        ExitReport r = it->second;
        ended_.erase(it);
        launched_.erase(std::remove(launched_.begin(), launched_.end(), id), launched_.end());
        return r;
      }
      for (auto& r : executor->Poll())
        ended_[r.external_id] = r;
      if (!ended_.count(id))
        std::this_thread::sleep_for(200ms);
    }
    ADD_FAILURE() << "slurm job " << id << " did not end within " << timeout.count() << " s";
    return {};
  }

  // Waits until Slurm runs the job (the job writes `marker` when it starts).
  void WaitForFile(const std::string& path, std::chrono::seconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!std::filesystem::exists(path) && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(100ms);
    ASSERT_TRUE(std::filesystem::exists(path)) << path << " never appeared";
  }

  std::map<std::string, std::string> env_;
  SlurmOptions options_;
  std::unique_ptr<Executor> executor_;
  std::string dir_;
  std::vector<std::string> launched_;
  std::map<std::string, ExitReport> ended_;
};

TEST_F(RealSlurm, DiscoversTheNodeWithFourGpus) {
  auto nodes = executor_->DiscoverNodes();
  ASSERT_TRUE(nodes) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), 1u);
  const Node& node = nodes->front();
  EXPECT_EQ(node.name, env_["SLURM_NODE"]);
  EXPECT_EQ(node.gpus, 4);
  EXPECT_EQ(node.gpu_type, env_["SLURM_GPU_TYPE"]);
  EXPECT_EQ(node.cpus, 8);
  EXPECT_EQ(node.memory_mb, 16000);
  EXPECT_TRUE(node.schedulable);
}

TEST_F(RealSlurm, JobSeesItsGpusAndEnvAndSucceeds) {
  LaunchSpec spec =
      Spec("ok-job", 1,
           {"/bin/sh", "-c", "env > \"$OUT\"; echo \"GPUS=$CUDA_VISIBLE_DEVICES\"; pwd; echo done"},
           "dev", 2);
  spec.env["OUT"] = dir_ + "/ok-env.txt";
  spec.env["TRICKY"] = "a 'b' \"c\" $d";
  std::string id = Launch(spec);
  ASSERT_FALSE(id.empty());
  ExitReport r = WaitFor(id);
  EXPECT_EQ(r.kind, ExitKind::kSucceeded) << ExitKindName(r.kind) << ": " << r.detail;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.job_id, "ok-job");
  EXPECT_EQ(r.attempt, 1);
  EXPECT_EQ(r.external_id, id);
  std::string env = ReadFile(dir_ + "/ok-env.txt");
  EXPECT_NE(env.find("CUDA_VISIBLE_DEVICES=0,1\n"), std::string::npos) << env;
  EXPECT_NE(env.find("KERVAN_JOB_ID=ok-job\n"), std::string::npos) << env;
  EXPECT_NE(env.find("TRICKY=a 'b' \"c\" $d\n"), std::string::npos) << env;
  EXPECT_NE(env.find("SLURM_JOB_PARTITION=dev\n"), std::string::npos) << env;
  // The server's own environment does not leak into jobs.
  EXPECT_EQ(env.find("KERVAN_TEST_SLURM_ENV"), std::string::npos) << env;
  std::string log = ReadFile(spec.log_path);
  EXPECT_NE(log.find("GPUS=0,1\n" + spec.scratch_dir + "\ndone\n"), std::string::npos) << log;
}

TEST_F(RealSlurm, NonZeroExitFails) {
  std::string id = Launch(Spec("exit-3", 1, {"/bin/sh", "-c", "echo failing; exit 3"}, "batch"));
  ExitReport r = WaitFor(id);
  EXPECT_EQ(r.kind, ExitKind::kFailed) << r.detail;
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);

  // A command that does not exist: the shell's 127.
  id = Launch(Spec("no-such", 1, {"kervan-no-such-program"}, "batch"));
  r = WaitFor(id);
  EXPECT_EQ(r.kind, ExitKind::kFailed) << r.detail;
  EXPECT_EQ(r.exit_code, 127);
}

TEST_F(RealSlurm, TerminateStopsARunningJob) {
  LaunchSpec spec = Spec("long", 1, {"/bin/sh", "-c", "touch \"$MARK\"; exec sleep 120"}, "dev", 1);
  spec.env["MARK"] = dir_ + "/long.started";
  std::string id = Launch(spec);
  WaitForFile(dir_ + "/long.started");
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(executor_->Terminate(id, 2s));
  ExitReport r = WaitFor(id);
  EXPECT_EQ(r.kind, ExitKind::kTerminated) << r.detail;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 15s);

  // Terminating a job that has not started yet cancels it.
  LaunchSpec blocker =
      Spec("blocker", 1, {"/bin/sh", "-c", "touch \"$MARK\"; exec sleep 120"}, "prod", 4);
  blocker.env["MARK"] = dir_ + "/blocker.started";
  std::string blocker_id = Launch(blocker);
  WaitForFile(dir_ + "/blocker.started");
  std::string pending = Launch(Spec("pending", 1, {"true"}, "batch", 4));
  ASSERT_TRUE(executor_->Terminate(pending, 5s));
  r = WaitFor(pending);
  EXPECT_EQ(r.kind, ExitKind::kTerminated) << r.detail;
  ASSERT_TRUE(executor_->Terminate(blocker_id, 0ms));
  r = WaitFor(blocker_id);
  EXPECT_EQ(r.kind, ExitKind::kTerminated) << r.detail;
}

// Kervan's preemption, carried out by the executor: the scheduler decides a
// prod job needs the dev job's 4 GPUs, terminates the dev attempt, launches
// the prod job, and requeues the dev job as attempt 2.
TEST_F(RealSlurm, PreemptionByKervanRequeuesAsANewAttempt) {
  LaunchSpec dev1 = Spec("dev-job", 1,
                         {"/bin/sh", "-c",
                          "echo \"attempt $KERVAN_ATTEMPT\"; touch \"$MARK\"; "
                          "exec sleep 120"},
                         "dev", 4);
  dev1.env["MARK"] = dir_ + "/dev1.started";
  std::string dev1_id = Launch(dev1);
  WaitForFile(dir_ + "/dev1.started");

  ASSERT_TRUE(executor_->Terminate(dev1_id, 2s));
  std::string prod_id = Launch(Spec("prod-job", 1, {"/bin/sh", "-c", "echo prod ran"}, "prod", 4));
  ExitReport r = WaitFor(dev1_id);
  EXPECT_EQ(r.kind, ExitKind::kTerminated) << r.detail;
  EXPECT_EQ(r.attempt, 1);
  r = WaitFor(prod_id);
  EXPECT_EQ(r.kind, ExitKind::kSucceeded) << r.detail;

  LaunchSpec dev2 =
      Spec("dev-job", 2, {"/bin/sh", "-c", "echo \"attempt $KERVAN_ATTEMPT\""}, "dev", 4);
  std::string dev2_id = Launch(dev2);
  EXPECT_NE(dev2_id, dev1_id);
  r = WaitFor(dev2_id);
  EXPECT_EQ(r.kind, ExitKind::kSucceeded) << r.detail;
  EXPECT_EQ(r.attempt, 2);
  // Both attempts appended to the one log.
  std::string log = ReadFile(dev2.log_path);
  EXPECT_NE(log.find("attempt 1\n"), std::string::npos) << log;
  EXPECT_NE(log.find("attempt 2\n"), std::string::npos) << log;
}

// Slurm preempting on its own (partition PriorityTier, PreemptMode=REQUEUE;
// Kervan submits --no-requeue, so the job is cancelled): reported as
// terminated, for Kervan to requeue as a new attempt.
TEST_F(RealSlurm, PreemptionBySlurmIsReportedAsTerminated) {
  LaunchSpec dev =
      Spec("slurm-victim", 1, {"/bin/sh", "-c", "touch \"$MARK\"; exec sleep 120"}, "dev", 4);
  dev.env["MARK"] = dir_ + "/victim.started";
  std::string dev_id = Launch(dev);
  WaitForFile(dir_ + "/victim.started");
  std::string prod_id = Launch(Spec("slurm-prod", 1, {"true"}, "prod", 4));
  ExitReport r = WaitFor(dev_id);
  EXPECT_EQ(r.kind, ExitKind::kTerminated) << r.detail;
  EXPECT_NE(r.detail.find("preempted by slurm"), std::string::npos) << r.detail;
  r = WaitFor(prod_id);
  EXPECT_EQ(r.kind, ExitKind::kSucceeded) << r.detail;
}

// After a server restart, a fresh executor takes running attempts back.
TEST_F(RealSlurm, AdoptAfterRestart) {
  LaunchSpec spec = Spec("adopted", 3, {"/bin/sh", "-c", "sleep 2; exit 5"}, "batch");
  std::string id = Launch(spec);

  auto fresh = MakeSlurmExecutor(options_);
  ASSERT_TRUE(fresh);
  auto adopted = (*fresh)->Adopt("adopted", 3, id);
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  EXPECT_TRUE(*adopted);
  // Not ours: another job id, another attempt, an id Slurm never gave out.
  EXPECT_FALSE(*(*fresh)->Adopt("someone-else", 3, id));
  EXPECT_FALSE(*(*fresh)->Adopt("adopted", 2, id));
  EXPECT_FALSE(*(*fresh)->Adopt("adopted", 3, "99999999"));
  EXPECT_FALSE((*fresh)->Adopt("adopted", 3, "not-a-number"));

  ExitReport r = WaitFor(id, 30s, fresh->get());
  EXPECT_EQ(r.kind, ExitKind::kFailed) << r.detail;
  EXPECT_EQ(r.exit_code, 5);
  EXPECT_EQ(r.job_id, "adopted");
  EXPECT_EQ(r.attempt, 3);
}

// A job slurmctld has already forgotten (past MinJobAge) is found in the
// jobcomp log.
TEST_F(RealSlurm, AdoptFromTheJobcompLog) {
  const std::string jobcomp = dir_ + "/jobcomp.log";
  WriteFile(jobcomp,
            "JobId=99999998 UserId=root(0) GroupId=root(0) Name=old JobState=COMPLETED "
            "Partition=dev WorkDir=/tmp DerivedExitCode=0:0 ExitCode=0:0 \n");
  SlurmOptions options = options_;
  options.jobcomp_path = jobcomp;
  auto fresh = MakeSlurmExecutor(options);
  ASSERT_TRUE(fresh);
  auto adopted = (*fresh)->Adopt("old", 1, "99999998");
  ASSERT_TRUE(adopted) << adopted.error().ToString();
  EXPECT_TRUE(*adopted);
  auto reports = (*fresh)->Poll();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].kind, ExitKind::kSucceeded);
  EXPECT_EQ(reports[0].job_id, "old");
  EXPECT_FALSE(*(*fresh)->Adopt("old", 1, "99999997"));
}

TEST_F(RealSlurm, SbatchErrorsCarrySlurmsMessage) {
  LaunchSpec spec = Spec("bad-partition", 1, {"true"}, "nowhere");
  SlurmOptions options = options_;
  options.partition_by_class["nowhere"] = "no-such-partition";
  auto executor = MakeSlurmExecutor(options);
  ASSERT_TRUE(executor);
  auto id = (*executor)->Launch(spec);
  ASSERT_FALSE(id);
  EXPECT_NE(id.error().message.find("sbatch"), std::string::npos) << id.error().message;
  EXPECT_NE(id.error().message.find("invalid partition"), std::string::npos) << id.error().message;
}

}  // namespace
}  // namespace kervan::jobs

// The pipelines service on both store backends, with real processes (the
// jobs service and its local executor): a diamond DAG runs in order with its
// branches in parallel; a rerun is served from the cache (zero jobs, the same
// outputs); a changed parameter reruns only the steps that use it (and what
// depends on their outputs); a flaky step succeeds within its retries; a
// failing validation stops the run with its failed expectations; cron,
// dataset, event and webhook triggers each start a run naming their cause; a
// restarted server carries a run on to its end; a register step registers a
// version with the metrics the step logged; bad specs store nothing.
#include "pipelines/pipelines.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "artifacts/artifacts.h"
#include "core/crypto.h"
#include "core/sha256.h"
#include "jobs/jobs.h"
#include "registry/registry.h"
#include "tracking/tracking.h"

namespace kervan::pipelines {
namespace {

namespace fs = std::filesystem;
using store::testing::BackendTest;
using namespace std::chrono_literals;

store::CommandContext Ctx(std::string actor = "user:alice") {
  return {.actor = std::move(actor), .correlation_id = "req-1"};
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteText(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << text;
}

class PipelinesTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    char tmpl[] = "/tmp/kervan-pipelines-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/work");
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto t = tracking::Tracking::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(t) << t.error().ToString();
    tracking_ = std::move(t).value();
    auto r = registry::Registry::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(r) << r.error().ToString();
    registry_ = std::move(r).value();
    auto a = artifacts::OpenLocal(dir_ + "/artifacts");
    ASSERT_TRUE(a) << a.error().ToString();
    artifacts_ = std::move(a).value();
    key_ = core::RandomBytes(32);
    OpenServices(/*register_lifecycles=*/true);
  }

  void TearDown() override {
    if (jobs_) {
      if (auto all = jobs_->ListJobs({.limit = 1000})) {
        for (const auto& j : *all) {
          if (j.state == jobs::kQueued || j.state == jobs::kAdmitted || j.state == jobs::kRunning ||
              j.state == jobs::kPreempted)
            (void)jobs_->Cancel(j.id, "test teardown", Ctx());
        }
      }
      for (int i = 0; i < 50; ++i) {
        (void)jobs_->RunCycle();
        std::this_thread::sleep_for(20ms);
      }
    }
    pipelines_.reset();
    jobs_.reset();
    registry_.reset();
    tracking_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    if (!dir_.empty())
      fs::remove_all(dir_);
    BackendTest::TearDown();
  }

  // (Re)opens jobs and pipelines, as a restarted server does. Lifecycles
  // are registered once per Lifecycles object, so a restart makes a new one.
  void OpenServices(bool register_lifecycles) {
    if (!register_lifecycles) {
      lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
      auto t = tracking::Tracking::Open(*db_, *log_, *lifecycles_);
      ASSERT_TRUE(t) << t.error().ToString();
      tracking_ = std::move(t).value();
      auto r = registry::Registry::Open(*db_, *log_, *lifecycles_);
      ASSERT_TRUE(r) << r.error().ToString();
      registry_ = std::move(r).value();
    }
    jobs::Options options;
    options.scratch_root = dir_ + "/scratch";
    options.backoff_base = 50ms;
    options.backoff_cap = 100ms;
    options.termination_grace = 300ms;
    auto executor = jobs::MakeLocalExecutor({.virtual_gpus = 4,
                                             .node_name = "node-a",
                                             .shim_path = KERVAN_TEST_SHIM,
                                             .state_dir = dir_ + "/attempts"});
    auto j = jobs::Jobs::Open(*db_, *log_, *lifecycles_, std::move(executor), std::move(options),
                              tracking_.get());
    ASSERT_TRUE(j) << j.error().ToString();
    jobs_ = std::move(j).value();
    auto p = Pipelines::Open(*db_, *log_, *lifecycles_,
                             {.jobs = jobs_.get(),
                              .tracking = tracking_.get(),
                              .registry = registry_.get(),
                              .artifacts = artifacts_.get()},
                             {.root = dir_ + "/pipelines", .secret_key = key_});
    ASSERT_TRUE(p) << p.error().ToString();
    pipelines_ = std::move(p).value();
  }

  std::string Spec(std::string_view yaml) {
    // {dir} in a spec is the test's directory.
    std::string s(yaml);
    for (size_t at; (at = s.find("{dir}")) != std::string::npos;)
      s.replace(at, 5, dir_);
    return s;
  }

  PipelineVersion Submit(std::string_view yaml) {
    auto v = pipelines_->Submit(Spec(yaml), Ctx());
    EXPECT_TRUE(v) << v.error().ToString();
    return v ? v->version : PipelineVersion{};
  }

  PipelineRun Start(const std::string& pipeline, std::map<std::string, std::string> params = {},
                    bool no_cache = false) {
    auto r = pipelines_->StartRun(
        {.pipeline = pipeline, .params = std::move(params), .no_cache = no_cache}, Ctx());
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : PipelineRun{};
  }

  // Runs pipeline and scheduler cycles until the run is final.
  PipelineRun RunToEnd(const std::string& id, std::chrono::milliseconds timeout = 30s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      EXPECT_TRUE(pipelines_->RunCycle());
      EXPECT_TRUE(jobs_->RunCycle());
      auto run = pipelines_->GetRun(id);
      if (run && (run->state == kSucceeded || run->state == kFailed || run->state == kCancelled))
        return *run;
      std::this_thread::sleep_for(20ms);
    }
    ADD_FAILURE() << "run " << id << " did not finish";
    auto run = pipelines_->GetRun(id);
    return run ? *run : PipelineRun{};
  }

  static const StepRun& StepOf(const PipelineRun& run, const std::string& step) {
    for (const auto& s : run.steps) {
      if (s.step == step)
        return s;
    }
    static StepRun none;
    ADD_FAILURE() << "no step " << step;
    return none;
  }

  static std::string OutputPath(const StepRun& s, const std::string& name) {
    for (const auto& o : s.outputs) {
      if (o.name == name)
        return o.path;
    }
    ADD_FAILURE() << "step " << s.step << " has no output " << name;
    return "";
  }

  size_t JobCount() {
    auto all = jobs_->ListJobs({.limit = 1000});
    return all ? all->size() : 0;
  }

  std::vector<store::Event> Events(const std::string& type_prefix, int64_t after = 0) {
    auto e = log_->Read({.after_seq = after, .limit = 1000, .type_prefix = type_prefix});
    EXPECT_TRUE(e);
    return e ? *e : std::vector<store::Event>{};
  }

  std::string dir_, key_;
  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<tracking::Tracking> tracking_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<artifacts::ArtifactStore> artifacts_;
  std::unique_ptr<jobs::Jobs> jobs_;
  std::unique_ptr<Pipelines> pipelines_;
};

// a -> b, a -> c, b + c -> d. Each step records when it started and ended
// (ns); b and c take a while, so running them in parallel shows.
constexpr std::string_view kDiamond = R"(
name: diamond
workdir: {dir}/work
params:
  greeting: hello
steps:
  a:
    command: "date +%s%N > {{outputs.t}}; echo a > {{outputs.out}}; date +%s%N >> {{outputs.t}}"
    outputs: {out: a.txt, t: t.txt}
  b:
    command: "date +%s%N > {{outputs.t}}; sleep 0.8; cat {{inputs.x}} > {{outputs.out}}; echo b >> {{outputs.out}}; date +%s%N >> {{outputs.t}}"
    inputs: {x: steps.a.outputs.out}
    outputs: {out: b.txt, t: t.txt}
  c:
    command: "date +%s%N > {{outputs.t}}; sleep 0.8; echo {{params.greeting}} > {{outputs.out}}; date +%s%N >> {{outputs.t}}"
    after: [a]
    outputs: {out: c.txt, t: t.txt}
  d:
    command: "date +%s%N > {{outputs.t}}; cat {{inputs.b}} {{inputs.c}} > {{outputs.out}}; date +%s%N >> {{outputs.t}}"
    inputs: {b: steps.b.outputs.out, c: steps.c.outputs.out}
    outputs: {out: d.txt, t: t.txt}
)";

std::pair<int64_t, int64_t> Times(const std::string& path) {
  std::istringstream in(ReadText(path));
  int64_t start = 0, end = 0;
  in >> start >> end;
  return {start, end};
}

TEST_P(PipelinesTest, DiamondRunsInOrderWithParallelBranchesThenRerunsFromTheCache) {
  Submit(kDiamond);
  PipelineRun run = RunToEnd(Start("diamond").id);
  ASSERT_EQ(run.state, kSucceeded) << run.ToJson().dump(2);
  auto [a0, a1] = Times(OutputPath(StepOf(run, "a"), "t"));
  auto [b0, b1] = Times(OutputPath(StepOf(run, "b"), "t"));
  auto [c0, c1] = Times(OutputPath(StepOf(run, "c"), "t"));
  auto [d0, d1] = Times(OutputPath(StepOf(run, "d"), "t"));
  EXPECT_LE(a1, b0);
  EXPECT_LE(a1, c0);
  EXPECT_LT(b0, c1) << "b and c overlap";
  EXPECT_LT(c0, b1) << "b and c overlap";
  EXPECT_LE(std::max(b1, c1), d0);
  EXPECT_EQ(ReadText(OutputPath(StepOf(run, "d"), "out")), "a\nb\nhello\n");
  for (const auto& s : run.steps) {
    EXPECT_FALSE(s.job_id.empty()) << s.step;
    EXPECT_FALSE(s.tracking_run_id.empty()) << s.step;
    EXPECT_TRUE(s.cached_from.empty()) << s.step;
  }
  // Each step's output is an artifact of its tracking run.
  for (const auto& o : StepOf(run, "d").outputs) {
    ASSERT_FALSE(o.artifact.empty()) << o.name;
    auto bytes = artifacts_->Get(o.artifact);
    ASSERT_TRUE(bytes) << bytes.error().ToString();
    EXPECT_EQ(*bytes, ReadText(o.path));
  }

  // The same run again: every step is a cache hit, no job runs, and the
  // outputs are the same bytes.
  size_t jobs_before = JobCount();
  int64_t seq = log_->head_seq();
  PipelineRun again = RunToEnd(Start("diamond").id);
  ASSERT_EQ(again.state, kSucceeded) << again.ToJson().dump(2);
  EXPECT_EQ(JobCount(), jobs_before);
  for (const auto& s : again.steps) {
    EXPECT_TRUE(s.job_id.empty()) << s.step;
    EXPECT_EQ(s.cached_from, run.id + ":" + s.step);
    const StepRun& first = StepOf(run, s.step);
    ASSERT_EQ(s.outputs.size(), first.outputs.size());
    for (size_t i = 0; i < s.outputs.size(); ++i) {
      EXPECT_EQ(s.outputs[i].digest, first.outputs[i].digest);
      EXPECT_NE(s.outputs[i].path, first.outputs[i].path) << "copied into the new run";
      EXPECT_EQ(ReadText(s.outputs[i].path), ReadText(first.outputs[i].path));
    }
  }
  EXPECT_EQ(Events("pipeline_step.cache_hit", seq).size(), 4u);

  // A changed parameter reruns c (which uses it) and d (whose input changed);
  // a and b stay cached.
  PipelineRun changed = RunToEnd(Start("diamond", {{"greeting", "bonjour"}}).id);
  ASSERT_EQ(changed.state, kSucceeded) << changed.ToJson().dump(2);
  EXPECT_FALSE(StepOf(changed, "a").cached_from.empty());
  EXPECT_FALSE(StepOf(changed, "b").cached_from.empty());
  EXPECT_TRUE(StepOf(changed, "c").cached_from.empty());
  EXPECT_FALSE(StepOf(changed, "c").job_id.empty());
  EXPECT_TRUE(StepOf(changed, "d").cached_from.empty());
  EXPECT_EQ(ReadText(OutputPath(StepOf(changed, "d"), "out")), "a\nb\nbonjour\n");
  EXPECT_EQ(JobCount(), jobs_before + 2);

  // --no-cache runs everything again.
  PipelineRun forced = RunToEnd(Start("diamond", {}, /*no_cache=*/true).id);
  ASSERT_EQ(forced.state, kSucceeded);
  for (const auto& s : forced.steps)
    EXPECT_TRUE(s.cached_from.empty()) << s.step;
}

TEST_P(PipelinesTest, AFlakyStepSucceedsWithinItsRetries) {
  Submit(R"(
name: flaky
workdir: {dir}/work
steps:
  try:
    command: "n=$(cat {dir}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {dir}/count; [ $n -ge 3 ] && echo ok > {{outputs.out}}"
    outputs: {out: out.txt}
    retries: 2
)");
  PipelineRun run = RunToEnd(Start("flaky").id);
  ASSERT_EQ(run.state, kSucceeded) << run.ToJson().dump(2);
  auto job = jobs_->GetJob(StepOf(run, "try").job_id);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->attempts, 3);
  EXPECT_EQ(ReadText(dir_ + "/count"), "3\n");
}

TEST_P(PipelinesTest, AStepOutOfRetriesFailsTheRunAndCancelsWhatFollows) {
  Submit(R"(
name: broken
workdir: {dir}/work
steps:
  first:
    command: "exit 3"
    outputs: {out: out.txt}
    retries: 1
  second:
    command: "cat {{inputs.x}}"
    inputs: {x: steps.first.outputs.out}
)");
  PipelineRun run = RunToEnd(Start("broken").id);
  EXPECT_EQ(run.state, kFailed);
  EXPECT_EQ(StepOf(run, "first").state, kFailed);
  EXPECT_NE(StepOf(run, "first").failure.find("failed"), std::string::npos);
  EXPECT_EQ(StepOf(run, "second").state, kCancelled);
  EXPECT_TRUE(StepOf(run, "second").job_id.empty());
  EXPECT_NE(run.failure.find("first"), std::string::npos);
}

TEST_P(PipelinesTest, AnOutputThatIsASymlinkFailsTheStepAndIsNotUploaded) {
  WriteText(dir_ + "/secret.txt", "not for the artifact store\n");
  Submit(R"(
name: sneaky
workdir: {dir}/work
steps:
  leak:
    command: "ln -s {dir}/secret.txt {{outputs.o}}"
    outputs: {o: o.txt}
)");
  PipelineRun run = RunToEnd(Start("sneaky").id);
  ASSERT_EQ(run.state, kFailed) << run.ToJson().dump(2);
  EXPECT_NE(StepOf(run, "leak").failure.find("symbolic link"), std::string::npos)
      << StepOf(run, "leak").failure;
  EXPECT_TRUE(StepOf(run, "leak").outputs.empty());
}

TEST_P(PipelinesTest, AFailingValidationStopsTheRunWithTheFailedExpectations) {
  Submit(R"(
name: checked
workdir: {dir}/work
steps:
  ingest:
    command: "printf 'id,x\n1,\n2,5\n3,7\n' > {{outputs.data}}"
    outputs: {data: data.csv}
  validate:
    type: validate
    inputs: {data: steps.ingest.outputs.data}
    expectations:
      - {expect: not_null, column: x}
      - {expect: range, column: x, min: 0, max: 10}
      - {expect: row_count, min: 10, severity: warning}
  train:
    command: "cat {{inputs.data}}"
    inputs: {data: steps.ingest.outputs.data}
    after: [validate]
)");
  PipelineRun run = RunToEnd(Start("checked").id);
  ASSERT_EQ(run.state, kFailed) << run.ToJson().dump(2);
  const StepRun& v = StepOf(run, "validate");
  EXPECT_EQ(v.state, kFailed);
  EXPECT_TRUE(v.job_id.empty()) << "built in: no job";
  EXPECT_NE(v.failure.find("not_null x"), std::string::npos) << v.failure;
  ASSERT_TRUE(v.result.is_object()) << v.result.dump();
  EXPECT_EQ(v.result["passed"], false);
  EXPECT_EQ(v.result["rows"], 3);
  ASSERT_EQ(v.result["results"].size(), 3u);
  EXPECT_EQ(v.result["results"][0]["passed"], false);
  EXPECT_EQ(v.result["results"][0]["failing_rows"], 1);
  EXPECT_EQ(v.result["results"][1]["passed"], true);
  EXPECT_EQ(v.result["results"][2]["passed"], false);  // a warning: reported, not fatal alone
  EXPECT_EQ(StepOf(run, "train").state, kCancelled);
  EXPECT_TRUE(StepOf(run, "train").job_id.empty());
  // The numbers are on the step's tracking run too.
  auto metrics = tracking_->LatestMetrics(v.tracking_run_id);
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->at("expectations_failed"), 2);
}

TEST_P(PipelinesTest, RegisterStepRegistersAVersionWithTheMetricsTheStepLogged) {
  Submit(R"(
name: trainer
workdir: {dir}/work
steps:
  train:
    command: "echo '{\"learner\": {}}' > {{outputs.model}}; echo '{\"auc\": 0.91, \"f1\": 0.8}' > {{outputs.metrics}}; echo $MLFLOW_RUN_ID > {{outputs.run}}"
    outputs:
      model: {path: model.json, kind: model}
      metrics: {path: metrics.json, kind: metrics}
      run: run.txt
    code: [train.sh]
  register:
    type: register
    model: churn
    inputs: {model: steps.train.outputs.model, metrics: steps.train.outputs.metrics}
)");
  WriteText(dir_ + "/work/train.sh", "# the training code\n");
  PipelineRun run = RunToEnd(Start("trainer").id);
  ASSERT_EQ(run.state, kSucceeded) << run.ToJson().dump(2);
  const StepRun& train = StepOf(run, "train");
  // The step's process logs to its own tracking run (MLflow clients read
  // MLFLOW_RUN_ID), and the step records the code version it ran.
  EXPECT_EQ(ReadText(OutputPath(train, "run")), train.tracking_run_id + "\n");
  EXPECT_EQ(train.code["train.sh"], "sha256:" + core::Sha256Hex("# the training code\n"));
  auto logged = tracking_->LatestMetrics(train.tracking_run_id);
  ASSERT_TRUE(logged);
  EXPECT_DOUBLE_EQ(logged->at("auc"), 0.91);
  auto version = registry_->GetVersion("churn", 1);
  ASSERT_TRUE(version) << version.error().ToString();
  EXPECT_DOUBLE_EQ(version->metrics.at("auc"), logged->at("auc"));
  EXPECT_DOUBLE_EQ(version->metrics.at("f1"), logged->at("f1"));
  EXPECT_EQ(version->source_run_id, train.tracking_run_id);
  EXPECT_EQ(version->state, "DeploymentReady");  // no gate configured
  EXPECT_EQ(StepOf(run, "register").result["version"], 1);
  // Its model file went to the artifact store; the version points at it.
  EXPECT_EQ(version->artifact_uri.rfind("mlflow-artifacts:/", 0), 0u) << version->artifact_uri;
  // The step runs nest under the pipeline run's tracking run.
  auto info = tracking_->GetRun(train.tracking_run_id);
  ASSERT_TRUE(info);
  bool nested = false;
  for (const auto& [k, v] : info->tags)
    nested |= k == "mlflow.parentRunId" && v == run.tracking_run_id;
  EXPECT_TRUE(nested);
}

TEST_P(PipelinesTest, CronTriggerStartsOneRunPerFiringNamingItsSchedule) {
  Submit(R"(
name: nightly
workdir: {dir}/work
steps:
  hello:
    command: "echo hi"
triggers:
  - cron: "* * * * * *"
)");
  ASSERT_TRUE(pipelines_->RunCycle());  // learns the next firing
  auto none = pipelines_->ListRuns({.pipeline = "nightly"});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  std::this_thread::sleep_for(1100ms);
  ASSERT_TRUE(pipelines_->RunCycle());
  auto runs = pipelines_->ListRuns({.pipeline = "nightly"});
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].trigger["kind"], "cron");
  EXPECT_EQ((*runs)[0].trigger["schedule"], "* * * * * *");
  EXPECT_EQ(RunToEnd((*runs)[0].id).state, kSucceeded);

  // Two servers on one database, running their cycles at the same time,
  // with a firing due for both: one run per firing, not one per server.
  Submit(R"(
name: yearly
workdir: {dir}/work
steps:
  hello:
    command: "echo hi"
triggers:
  - cron: "@yearly"
)");
  ASSERT_TRUE(pipelines_->RunCycle());  // stores next New Year
  store::Lifecycles other_lifecycles(*log_);
  auto other = Pipelines::Open(*db_, *log_, other_lifecycles,
                               {.jobs = jobs_.get(), .tracking = tracking_.get()},
                               {.root = dir_ + "/pipelines-2", .secret_key = key_});
  ASSERT_TRUE(other) << other.error().ToString();
  constexpr int kFirings = 8;
  for (int i = 0; i < kFirings; ++i) {
    {
      auto conn = db_->Acquire();
      ASSERT_TRUE(conn);
      ASSERT_TRUE((*conn)->Exec("UPDATE pipeline_cron_state SET next_us = ? WHERE pipeline = ?",
                                {core::NowMicros() - 1000000, std::string("yearly")}));
    }
    std::thread a([&] { EXPECT_TRUE(pipelines_->RunCycle()); });
    std::thread b([&] { EXPECT_TRUE((*other)->RunCycle()); });
    a.join();
    b.join();
  }
  auto yearly = pipelines_->ListRuns({.pipeline = "yearly"});
  ASSERT_TRUE(yearly);
  EXPECT_EQ(yearly->size(), static_cast<size_t>(kFirings));
}

TEST_P(PipelinesTest, NewDatasetVersionTriggersARunOnThatVersion) {
  WriteText(dir_ + "/data/events.csv", "id,v\n1,2\n");
  auto v1 = pipelines_->RegisterDataset("events", "default", dir_ + "/data/events.csv",
                                        {{"kind", "user"}}, Ctx());
  ASSERT_TRUE(v1) << v1.error().ToString();
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->profile.rows, 1);
  // The same bytes again: no new version.
  auto same = pipelines_->RegisterDataset("events", "default", dir_ + "/data/events.csv",
                                          {{"kind", "user"}}, Ctx());
  ASSERT_TRUE(same);
  EXPECT_EQ(same->version, 1);
  Submit(R"(
name: retrain
workdir: {dir}/work
steps:
  count:
    command: "wc -l < {{inputs.data}} > {{outputs.n}}"
    inputs: {data: datasets.events}
    outputs: {n: n.txt}
triggers:
  - dataset: events
)");
  int64_t seq = log_->head_seq();
  WriteText(dir_ + "/data/events-2.csv", "id,v\n1,2\n2,3\n3,4\n");
  auto v2 = pipelines_->RegisterDataset("events", "default", dir_ + "/data/events-2.csv",
                                        {{"kind", "user"}}, Ctx());
  ASSERT_TRUE(v2);
  EXPECT_EQ(v2->version, 2);
  auto events = Events("dataset.version_created", seq);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_TRUE(pipelines_->OnEvent(events[0]));
  auto runs = pipelines_->ListRuns({.pipeline = "retrain"});
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].trigger["kind"], "dataset");
  EXPECT_EQ((*runs)[0].trigger["version"], 2);
  // The run's creation names the dataset event as its cause.
  auto created =
      log_->Read({.limit = 10, .subject_id = (*runs)[0].id, .type = "pipeline_run.created"});
  ASSERT_TRUE(created);
  ASSERT_EQ(created->size(), 1u);
  EXPECT_EQ((*created)[0].causation_id, events[0].id);
  PipelineRun run = RunToEnd((*runs)[0].id);
  ASSERT_EQ(run.state, kSucceeded) << run.ToJson().dump(2);
  EXPECT_EQ(StepOf(run, "count").inputs[0].source, "datasets.events@2");
  EXPECT_EQ(ReadText(OutputPath(StepOf(run, "count"), "n")), "4\n");
}

TEST_P(PipelinesTest, EventTriggerFiresOnlyOnEventsMatchingItsFilter) {
  Submit(R"(
name: on-decision
workdir: {dir}/work
steps:
  hello:
    command: "echo retrain"
triggers:
  - event: {type: rule.decision, filter: "data.action = 'retrain' and data.score > 0.5"}
)");
  auto no = log_->Append({.type = "rule.decision",
                          .subject_kind = "rule",
                          .subject_id = "drift",
                          .actor = "system:rules",
                          .data = {{"action", "alert"}, {"score", 0.9}}});
  ASSERT_TRUE(no);
  ASSERT_TRUE(pipelines_->OnEvent(*no));
  auto yes = log_->Append({.type = "rule.decision",
                           .subject_kind = "rule",
                           .subject_id = "drift",
                           .actor = "system:rules",
                           .data = {{"action", "retrain"}, {"score", 0.7}}});
  ASSERT_TRUE(yes);
  ASSERT_TRUE(pipelines_->OnEvent(*yes));
  auto runs = pipelines_->ListRuns({.pipeline = "on-decision"});
  ASSERT_TRUE(runs);
  ASSERT_EQ(runs->size(), 1u);
  EXPECT_EQ((*runs)[0].trigger["kind"], "event");
  EXPECT_EQ((*runs)[0].trigger["event_seq"], yes->seq);
}

TEST_P(PipelinesTest, WebhookNeedsTheSignatureAndMatchesEventAndBranch) {
  Submit(R"(
name: ci
workdir: {dir}/work
steps:
  hello:
    command: "echo built"
triggers:
  - webhook: {events: [push], branches: [main]}
)");
  std::string body = R"({"ref": "refs/heads/main", "after": "abc123"})";
  // No secret yet.
  auto none = pipelines_->HandleWebhook("ci", {{"x-github-event", "push"}}, body, "r1");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, core::ErrorCode::kUnauthenticated);
  auto secret = pipelines_->CreateWebhookSecret("ci", Ctx());
  ASSERT_TRUE(secret) << secret.error().ToString();
  auto bad = pipelines_->HandleWebhook(
      "ci", {{"x-github-event", "push"}, {"x-hub-signature-256", "sha256=00"}}, body, "r2");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, core::ErrorCode::kUnauthenticated);
  std::string sig = "sha256=" + core::HmacSha256Hex(*secret, body);
  auto good = pipelines_->HandleWebhook(
      "ci", {{"x-github-event", "push"}, {"x-hub-signature-256", sig}}, body, "r3");
  ASSERT_TRUE(good) << good.error().ToString();
  ASSERT_TRUE(good->run);
  EXPECT_EQ(good->run->trigger["kind"], "webhook");
  EXPECT_EQ(good->run->trigger["provider"], "github");
  EXPECT_EQ(good->run->trigger["commit"], "abc123");
  // Another branch: accepted, but no run.
  std::string dev = R"({"ref": "refs/heads/dev"})";
  auto other = pipelines_->HandleWebhook(
      "ci",
      {{"x-github-event", "push"},
       {"x-hub-signature-256", "sha256=" + core::HmacSha256Hex(*secret, dev)}},
      dev, "r4");
  ASSERT_TRUE(other);
  EXPECT_FALSE(other->run);
  // GitLab's token header.
  auto gitlab = pipelines_->HandleWebhook(
      "ci", {{"x-gitlab-event", "Push Hook"}, {"x-gitlab-token", *secret}}, body, "r5");
  ASSERT_TRUE(gitlab) << gitlab.error().ToString();
  ASSERT_TRUE(gitlab->run);
  EXPECT_EQ(gitlab->run->trigger["provider"], "gitlab");
  auto wrong = pipelines_->HandleWebhook(
      "ci", {{"x-gitlab-event", "Push Hook"}, {"x-gitlab-token", "nope"}}, body, "r6");
  EXPECT_FALSE(wrong);
}

TEST_P(PipelinesTest, ARestartedServerCarriesARunningRunToItsEnd) {
  Submit(R"(
name: long
workdir: {dir}/work
steps:
  slow:
    command: "sleep 1.5; echo done > {{outputs.out}}"
    outputs: {out: out.txt}
  after:
    command: "cat {{inputs.x}} > {{outputs.out}}"
    inputs: {x: steps.slow.outputs.out}
    outputs: {out: out.txt}
)");
  std::string id = Start("long").id;
  auto end = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < end) {
    ASSERT_TRUE(pipelines_->RunCycle());
    ASSERT_TRUE(jobs_->RunCycle());
    auto run = pipelines_->GetRun(id);
    ASSERT_TRUE(run);
    auto job = jobs_->GetJob(StepOf(*run, "slow").job_id);
    if (job && job->state == jobs::kRunning)
      break;
    std::this_thread::sleep_for(20ms);
  }
  // The server goes away while the step's process runs, and comes back.
  pipelines_.reset();
  jobs_.reset();
  OpenServices(/*register_lifecycles=*/false);
  PipelineRun run = RunToEnd(id);
  ASSERT_EQ(run.state, kSucceeded) << run.ToJson().dump(2);
  EXPECT_EQ(ReadText(OutputPath(StepOf(run, "after"), "out")), "done\n");
}

TEST_P(PipelinesTest, CancelNeedsAReasonAndStopsTheRunningJob) {
  Submit(R"(
name: cancellable
workdir: {dir}/work
steps:
  wait:
    command: "sleep 30"
)");
  std::string id = Start("cancellable").id;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(pipelines_->RunCycle());
    ASSERT_TRUE(jobs_->RunCycle());
  }
  auto no_reason = pipelines_->CancelRun(id, "", Ctx());
  ASSERT_FALSE(no_reason);
  EXPECT_EQ(no_reason.error().field, "reason");
  auto cancelled = pipelines_->CancelRun(id, "wrong data", Ctx());
  ASSERT_TRUE(cancelled) << cancelled.error().ToString();
  EXPECT_EQ(cancelled->state, kCancelled);
  EXPECT_EQ(StepOf(*cancelled, "wait").state, kCancelled);
  auto job = jobs_->GetJob(StepOf(*cancelled, "wait").job_id);
  ASSERT_TRUE(job);
  EXPECT_EQ(job->state, jobs::kCancelled);
}

TEST_P(PipelinesTest, BadSpecsAreRefusedWithTheirLocationAndStoreNothing) {
  struct Case {
    std::string yaml, field, fragment;
  };
  std::vector<Case> cases = {
      {"name: x\nsteps: [", "spec", "line"},
      {"name: x\nsteps:\n  a:\n    command: echo\n    after: [b]\n  b:\n    command: echo\n    "
       "after: [a]\n",
       "", "a -> b -> a"},
      {"name: x\nsteps:\n  a:\n    command: cat {{inputs.i}}\n    inputs: {i: "
       "steps.zz.outputs.o}\n",
       "steps.a.inputs.i", "zz"},
      {"name: x\nsteps:\n  a:\n    command: echo\n    outputs: {o: ../escape.txt}\n",
       "steps.a.outputs.o", ".."},
      {"name: x\nsteps:\n  a:\n    type: magic\n", "steps.a.type", "magic"},
  };
  for (const auto& c : cases) {
    auto r = pipelines_->Submit(c.yaml, Ctx());
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_EQ(r.error().code, core::ErrorCode::kInvalidArgument) << c.yaml;
    if (!c.field.empty()) {
      EXPECT_EQ(r.error().field.rfind(c.field, 0), 0u) << r.error().field << " for " << c.yaml;
    }
    EXPECT_NE(r.error().message.find(c.fragment), std::string::npos) << r.error().message;
  }
  auto list = pipelines_->ListPipelines(std::nullopt);
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  EXPECT_TRUE(Events("pipeline.").empty());
  // A run of an unknown pipeline or with a bad parameter starts nothing.
  Submit(kDiamond);
  auto unknown = pipelines_->StartRun({.pipeline = "nope"}, Ctx());
  EXPECT_FALSE(unknown);
  auto bad_param =
      pipelines_->StartRun({.pipeline = "diamond", .params = {{"volume", "11"}}}, Ctx());
  ASSERT_FALSE(bad_param);
  EXPECT_EQ(bad_param.error().field, "params.volume");
  auto runs = pipelines_->ListRuns({});
  ASSERT_TRUE(runs);
  EXPECT_TRUE(runs->empty());
  // The same spec again is not a new version.
  auto again = pipelines_->Submit(Spec(kDiamond), Ctx());
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->version.version, 1);
}

KERVAN_INSTANTIATE_BACKENDS(PipelinesTest);

}  // namespace
}  // namespace kervan::pipelines

// The jobs service with the local executor, on both store backends, with
// real processes: submission errors queue nothing; a job runs with its GPUs
// bound; prod preempts dev and the dev job is requeued and completes;
// quotas with borrowing and reclaim; retries stop at backoffLimit;
// activeDeadlineSeconds stops a job; the TTL removes scratch; cancel needs a
// reason and stops the process; a restarted service adopts running attempts
// and marks unknown ones lost.
#include "jobs/jobs.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include <unistd.h>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "tracking/tracking.h"

namespace kervan::jobs {
namespace {

namespace fs = std::filesystem;
using store::testing::BackendTest;
using namespace std::chrono_literals;

store::CommandContext Ctx(std::string actor = "user:alice") {
  return {.actor = std::move(actor), .correlation_id = "req-1"};
}

JobSpec Spec(std::string script, int gpus, std::string cls = "dev", std::string project = "risk") {
  JobSpec s;
  s.command = {"/bin/sh", "-c", std::move(script)};
  s.resources.gpus = gpus;
  s.priority_class = std::move(cls);
  s.project = std::move(project);
  return s;
}

class JobsTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    char tmpl[] = "/tmp/kervan-jobs-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    OpenJobs();
  }

  void TearDown() override {
    // Stop whatever still runs, so no test leaves processes behind.
    if (jobs_) {
      auto all = jobs_->ListJobs({.limit = 1000});
      if (all) {
        for (const auto& j : *all) {
          if (j.state == kQueued || j.state == kAdmitted || j.state == kRunning ||
              j.state == kPreempted)
            (void)jobs_->Cancel(j.id, "test teardown", Ctx());
        }
      }
      (void)CycleUntil([&] { return !HasOpenAttempts(); }, 5s);
    }
    jobs_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    if (!dir_.empty())
      fs::remove_all(dir_);
    BackendTest::TearDown();
  }

  void OpenJobs(Options options = {}, tracking::Tracking* tracking = nullptr) {
    options.scratch_root = dir_ + "/scratch";
    options.backoff_base = 50ms;
    options.backoff_cap = 200ms;
    options.termination_grace = 300ms;
    if (options.policy.quotas.empty())
      options.policy.quotas = quotas_;
    auto executor = MakeLocalExecutor({.virtual_gpus = 4,
                                       .node_name = "node-a",
                                       .shim_path = KERVAN_TEST_SHIM,
                                       .state_dir = dir_ + "/attempts"});
    jobs_.reset();
    auto j =
        Jobs::Open(*db_, *log_, *lifecycles_, std::move(executor), std::move(options), tracking);
    ASSERT_TRUE(j) << j.error().ToString();
    jobs_ = std::move(j).value();
  }

  bool HasOpenAttempts() {
    auto all = jobs_->ListJobs({.limit = 1000});
    if (!all)
      return false;
    for (const auto& j : *all) {
      auto full = jobs_->GetJob(j.id);
      for (const auto& a : full->attempt_list) {
        if (a.ended_us == 0)
          return true;
      }
    }
    return false;
  }

  // Runs cycles until `done` holds or `timeout` passes.
  ::testing::AssertionResult CycleUntil(const std::function<bool()>& done,
                                        std::chrono::milliseconds timeout = 10s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (auto s = jobs_->RunCycle(); !s)
        return ::testing::AssertionFailure() << "cycle: " << s.error().ToString();
      if (done())
        return ::testing::AssertionSuccess();
      if (std::chrono::steady_clock::now() > end)
        return ::testing::AssertionFailure() << "timed out";
      std::this_thread::sleep_for(20ms);
    }
  }

  std::string StateOf(const std::string& id) {
    auto j = jobs_->GetJob(id);
    return j ? j->state : "error: " + j.error().ToString();
  }

  Job Submit(const JobSpec& spec) {
    auto j = jobs_->Submit(spec, Ctx());
    EXPECT_TRUE(j) << j.error().ToString();
    return j ? *j : Job{};
  }

  std::vector<store::Event> EventsOf(const std::string& id) {
    auto events =
        log_->Read({.after_seq = 0, .limit = 1000, .subject_kind = "job", .subject_id = id});
    EXPECT_TRUE(events);
    return events ? *events : std::vector<store::Event>{};
  }

  std::vector<std::string> EventTypes(const std::string& id) {
    std::vector<std::string> out;
    for (const auto& e : EventsOf(id))
      out.push_back(e.type);
    return out;
  }

  std::string Log(const std::string& id, int attempt = 0) {
    auto r = jobs_->ReadLog(id, attempt, 0, 1 << 20);
    return r ? r->first : "";
  }

  std::string dir_;
  std::vector<ProjectQuota> quotas_;
  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<Jobs> jobs_;
};

TEST_P(JobsTest, BadSubmissionsAreRefusedAndQueueNothing) {
  JobSpec unknown = Spec("true", 1, "urgent");
  auto r = jobs_->Submit(unknown, Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::ErrorCode::kInvalidArgument);
  EXPECT_EQ(r.error().field, "priority_class");
  EXPECT_NE(r.error().message.find("prod, dev, batch"), std::string::npos) << r.error().message;

  r = jobs_->Submit(Spec("true", 16), Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "resources");
  EXPECT_NE(r.error().message.find("never run"), std::string::npos) << r.error().message;

  JobSpec typed = Spec("true", 1);
  typed.resources.gpu_type = "H100";
  r = jobs_->Submit(typed, Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "resources");

  auto all = jobs_->ListJobs({});
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
  auto events = log_->Read({.after_seq = 0, .limit = 100, .subject_kind = "job"});
  ASSERT_TRUE(events);
  EXPECT_TRUE(events->empty());

  // The spec parser names the field.
  auto bad = JobSpec::FromJson({{"command", {"train"}}, {"resources", {{"gpus", -1}}}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "resources.gpus");
  bad = JobSpec::FromJson({{"name", "x"}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "command");
  bad = JobSpec::FromJson({{"command", Json::array()}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "command");
  bad = JobSpec::FromJson({{"command", {"x"}}, {"resources", {{"gpus", 3}, {"nodes", 2}}}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "resources.nodes");
  bad = JobSpec::FromJson({{"command", {"x"}}, {"gpus", 1}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "gpus");
}

TEST_P(JobsTest, RunsWithItsGpusBoundAndEveryTransitionIsAnEvent) {
  JobSpec spec = Spec(
      "echo gpus=$CUDA_VISIBLE_DEVICES job=$KERVAN_JOB_ID cfg=$(cat "
      "$KERVAN_CONFIG_FILE) cwd=$(pwd)",
      2);
  spec.config_file_name = "dev.yaml";
  spec.config_file_content = "lr: 0.1";
  Job job = Submit(spec);
  EXPECT_EQ(job.state, kQueued);
  ASSERT_TRUE(CycleUntil([&] { return StateOf(job.id) == kSucceeded; }));
  std::string log = Log(job.id);
  EXPECT_NE(log.find("gpus=0,1 job=" + job.id + " cfg=lr: 0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("cwd=" + dir_ + "/scratch/" + job.id + "/scratch"), std::string::npos) << log;
  EXPECT_EQ(EventTypes(job.id), (std::vector<std::string>{"job.created", "job.admitted",
                                                          "job.started", "job.succeeded"}));
  for (const auto& e : EventsOf(job.id)) {
    if (e.type != "job.created") {
      EXPECT_EQ(e.actor, "system:scheduler");
    }
    EXPECT_EQ(e.project, "risk");
  }
  auto full = jobs_->GetJob(job.id);
  ASSERT_TRUE(full);
  ASSERT_EQ(full->attempt_list.size(), 1u);
  EXPECT_EQ(full->attempt_list[0].exit_kind, "succeeded");
  EXPECT_EQ(full->attempt_list[0].exit_code, 0);
  auto e = jobs_->Explain(job.id);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->summary, "succeeded on attempt 1");
}

TEST_P(JobsTest, AJobLogsToItsTrackingRun) {
  auto t = tracking::Tracking::Open(*db_, *log_, *lifecycles_);
  ASSERT_TRUE(t) << t.error().ToString();
  auto e = (*t)->CreateExperiment({.name = "churn", .project = "risk"}, Ctx());
  ASSERT_TRUE(e) << e.error().ToString();
  Options options;
  options.tracking_uri = "http://kervan.test:8080";
  OpenJobs(options, t->get());

  JobSpec spec = Spec("echo uri=$MLFLOW_TRACKING_URI run=$MLFLOW_RUN_ID", 0);
  spec.name = "train-churn";
  spec.tracking_experiment_id = e->id;
  Job job = Submit(spec);
  ASSERT_FALSE(job.tracking_run_id.empty());
  ASSERT_TRUE(CycleUntil([&] { return StateOf(job.id) == kSucceeded; }));
  EXPECT_NE(Log(job.id).find("uri=http://kervan.test:8080 run=" + job.tracking_run_id),
            std::string::npos)
      << Log(job.id);
  auto run = (*t)->GetRunInfo(job.tracking_run_id);
  ASSERT_TRUE(run) << run.error().ToString();
  EXPECT_EQ(run->status, "FINISHED");
  EXPECT_EQ(run->run_name, "train-churn");

  // Attaching to an existing run; an unknown one is refused, naming the field.
  JobSpec attach = Spec("true", 0);
  attach.tracking_run_id = job.tracking_run_id;
  EXPECT_TRUE(jobs_->Submit(attach, Ctx()));
  attach.tracking_run_id = "0123456789abcdef0123456789abcdef";
  auto bad = jobs_->Submit(attach, Ctx());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "tracking.run_id");
}

TEST_P(JobsTest, ProdPreemptsDevWhichIsRequeuedAndLaterCompletes) {
  // Attempt 1 of the dev job would run for a minute; its rerun finishes at once.
  Job dev = Submit(Spec("if [ \"$KERVAN_ATTEMPT\" = 1 ]; then sleep 60; fi; echo dev done", 4));
  ASSERT_TRUE(CycleUntil([&] { return StateOf(dev.id) == kRunning; }));
  Job prod = Submit(Spec("echo prod on $CUDA_VISIBLE_DEVICES", 2, "prod"));
  ASSERT_TRUE(jobs_->RunCycle());
  EXPECT_EQ(StateOf(dev.id), kPreempted);
  EXPECT_EQ(StateOf(prod.id), kQueued);  // the victim's GPUs stay its own until it stops
  auto why = jobs_->Explain(prod.id);
  ASSERT_TRUE(why && why->reason);
  EXPECT_EQ(why->reason->code, WaitCode::kPreempting);

  ASSERT_TRUE(CycleUntil([&] { return StateOf(prod.id) == kSucceeded; }));
  ASSERT_TRUE(CycleUntil([&] { return StateOf(dev.id) == kSucceeded; }));
  auto d = jobs_->GetJob(dev.id);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->preemptions, 1);
  ASSERT_EQ(d->attempt_list.size(), 2u);
  EXPECT_EQ(d->attempt_list[0].exit_kind, "terminated");
  EXPECT_EQ(d->attempt_list[1].exit_kind, "succeeded");
  EXPECT_NE(Log(dev.id, 2).find("dev done"), std::string::npos);
  // Attempt 2 of dev started only after prod had its GPUs.
  auto p = jobs_->GetJob(prod.id);
  EXPECT_GE(d->attempt_list[1].admitted_us, p->attempt_list[0].admitted_us);

  bool named = false;
  for (const auto& e : EventsOf(dev.id)) {
    if (e.type != "job.preempted")
      continue;
    Json data = Json::parse(e.data);
    EXPECT_EQ(data["data"]["preempted_by"], prod.id);
    EXPECT_EQ(data["data"]["why"], "priority");
    named = true;
  }
  EXPECT_TRUE(named);
  EXPECT_EQ(
      EventTypes(dev.id),
      (std::vector<std::string>{"job.created", "job.admitted", "job.started", "job.preempted",
                                "job.requeued", "job.admitted", "job.started", "job.succeeded"}));
}

TEST_P(JobsTest, NoFreshVictimsWhileTheFirstOneIsStillStopping) {
  // Both dev jobs take a second to stop after SIGTERM; several cycles pass
  // meanwhile, and none of them may pick the second dev job as well.
  const std::string slow_stop =
      "trap 'sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
  Job dev1 = Submit(Spec(slow_stop, 2));
  Job dev2 = Submit(Spec(slow_stop, 2));
  ASSERT_TRUE(CycleUntil([&] {
    return Log(dev1.id).find("ready") != std::string::npos &&
           Log(dev2.id).find("ready") != std::string::npos;
  }));
  Job prod = Submit(Spec("echo prod", 2, "prod"));
  ASSERT_TRUE(CycleUntil([&] { return StateOf(prod.id) == kSucceeded; }));
  int preemptions = jobs_->GetJob(dev1.id)->preemptions + jobs_->GetJob(dev2.id)->preemptions;
  EXPECT_EQ(preemptions, 1);
  auto why = jobs_->Explain(prod.id);
  ASSERT_TRUE(why);
}

TEST_P(JobsTest, QuotaBorrowingIsReclaimedWhenTheOwnerNeedsItsShare) {
  quotas_ = {{.project = "risk", .nominal_gpus = 2, .borrowing_limit = 1},
             {.project = "vision", .nominal_gpus = 2, .borrowing_limit = 0}};
  OpenJobs();
  // A burst from risk: 4 one-GPU jobs. It may use 2 + borrow 1.
  std::vector<Job> burst;
  for (int i = 0; i < 4; ++i)
    burst.push_back(Submit(Spec("sleep 60", 1)));
  ASSERT_TRUE(jobs_->RunCycle());
  int running = 0;
  std::string waiting;
  for (const auto& j : burst) {
    if (StateOf(j.id) == kRunning)
      ++running;
    else
      waiting = j.id;
  }
  EXPECT_EQ(running, 3);
  auto why = jobs_->Explain(waiting);
  ASSERT_TRUE(why && why->reason) << (why ? why->summary : why.error().ToString());
  EXPECT_EQ(why->reason->code, WaitCode::kQuota);
  EXPECT_NE(why->summary.find("quota"), std::string::npos) << why->summary;

  // vision's nominal share is still there for it: the borrowed GPU is reclaimed.
  Job v1 = Submit(Spec("echo v1", 1, "dev", "vision"));
  Job v2 = Submit(Spec("echo v2", 1, "dev", "vision"));
  ASSERT_TRUE(
      CycleUntil([&] { return StateOf(v1.id) == kSucceeded && StateOf(v2.id) == kSucceeded; }));
  int preempted = 0;
  for (const auto& j : burst) {
    auto full = jobs_->GetJob(j.id);
    preempted += full->preemptions;
    for (const auto& e : EventsOf(j.id)) {
      if (e.type == "job.preempted") {
        EXPECT_EQ(Json::parse(e.data)["data"]["why"], "reclaim");
      }
    }
  }
  EXPECT_EQ(preempted, 1);
}

TEST_P(JobsTest, RetriesStopAtTheBackoffLimit) {
  JobSpec spec = Spec("echo attempt $KERVAN_ATTEMPT; exit 3", 1);
  spec.backoff_limit = 2;
  Job job = Submit(spec);
  ASSERT_TRUE(CycleUntil([&] {
    auto j = jobs_->GetJob(job.id);
    return j && j->state == kFailed && j->finished_us > 0;
  }));
  auto j = jobs_->GetJob(job.id);
  EXPECT_EQ(j->attempts, 3);
  EXPECT_NE(j->failure.find("exited with status 3"), std::string::npos) << j->failure;
  int failed = 0, retried = 0;
  for (const auto& type : EventTypes(job.id)) {
    failed += type == "job.failed";
    retried += type == "job.retried";
  }
  EXPECT_EQ(failed, 3);
  EXPECT_EQ(retried, 2);
  EXPECT_NE(Log(job.id, 3).find("attempt 3"), std::string::npos);
  // Backoff: each retry waited at least the (test-sized) backoff.
  EXPECT_GE(j->attempt_list[1].admitted_us - j->attempt_list[0].ended_us, 50000);
}

TEST_P(JobsTest, ActiveDeadlineStopsTheJobWithoutRetry) {
  JobSpec spec = Spec("sleep 60", 1);
  spec.active_deadline_s = 1;
  spec.backoff_limit = 3;
  Job job = Submit(spec);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(CycleUntil(
      [&] {
        auto j = jobs_->GetJob(job.id);
        return j && j->state == kFailed && j->finished_us > 0;
      },
      8s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  auto j = jobs_->GetJob(job.id);
  EXPECT_EQ(j->attempts, 1);
  EXPECT_NE(j->failure.find("DeadlineExceeded"), std::string::npos) << j->failure;
}

TEST_P(JobsTest, TtlRemovesAFinishedJobsScratch) {
  JobSpec spec = Spec("echo model > $KERVAN_SCRATCH_DIR/model.bin", 0);
  spec.ttl_after_finished_s = 1;
  Job job = Submit(spec);
  ASSERT_TRUE(CycleUntil([&] { return StateOf(job.id) == kSucceeded; }));
  std::string scratch = dir_ + "/scratch/" + job.id + "/scratch";
  EXPECT_TRUE(fs::exists(scratch + "/model.bin"));
  ASSERT_TRUE(CycleUntil([&] { return jobs_->GetJob(job.id)->scratch_removed; }, 5s));
  EXPECT_FALSE(fs::exists(scratch));
  auto types = EventTypes(job.id);
  EXPECT_EQ(types.back(), "job.scratch_removed");
  // The log stays readable after the scratch is gone.
  EXPECT_TRUE(fs::exists(dir_ + "/scratch/" + job.id + "/attempt-1.log"));
}

TEST_P(JobsTest, CancelNeedsAReasonAndStopsTheProcess) {
  Job job = Submit(
      Spec("trap 'echo got TERM; exit 143' TERM; echo ready; while true; do sleep 0.1; done", 2));
  // Signals sent before the trap is set would kill the shell outright.
  ASSERT_TRUE(CycleUntil([&] { return Log(job.id).find("ready") != std::string::npos; }));
  auto r = jobs_->Cancel(job.id, "  ", Ctx());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "reason");
  r = jobs_->Cancel(job.id, "wrong dataset", Ctx("user:bob"));
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->state, kCancelled);
  ASSERT_TRUE(CycleUntil([&] { return !HasOpenAttempts(); }, 5s));
  auto j = jobs_->GetJob(job.id);
  EXPECT_EQ(j->attempt_list[0].exit_kind, "terminated");
  EXPECT_NE(Log(job.id).find("got TERM"), std::string::npos) << Log(job.id);
  auto events = EventsOf(job.id);
  EXPECT_EQ(events.back().type, "job.cancelled");
  EXPECT_EQ(events.back().actor, "user:bob");
  EXPECT_EQ(events.back().reason, "wrong dataset");
  // Cancelled is final.
  EXPECT_FALSE(jobs_->Cancel(job.id, "again", Ctx()));
}

TEST_P(JobsTest, ARestartedServiceAdoptsRunningAttemptsAndMarksUnknownOnesLost) {
  Job job = Submit(Spec("sleep 1; echo finished", 1));
  ASSERT_TRUE(CycleUntil([&] { return StateOf(job.id) == kRunning; }));
  // A "server restart": a fresh service and executor on the same store.
  OpenJobs();
  ASSERT_TRUE(CycleUntil([&] { return StateOf(job.id) == kSucceeded; }));
  EXPECT_NE(Log(job.id).find("finished"), std::string::npos);
  auto j = jobs_->GetJob(job.id);
  EXPECT_EQ(j->attempt_list[0].exit_kind, "succeeded");

  // An attempt whose process vanished without an exit status is lost, not forgotten.
  Job gone = Submit(Spec("sleep 60", 1));
  ASSERT_TRUE(CycleUntil([&] { return StateOf(gone.id) == kRunning; }));
  auto g = jobs_->GetJob(gone.id);
  std::string ext = g->attempt_list[0].external_id;
  pid_t pid = std::stoi(ext.substr(0, ext.find(':')));
  jobs_.reset();
  ASSERT_EQ(::killpg(pid, SIGKILL), 0);
  std::this_thread::sleep_for(200ms);
  OpenJobs();
  g = jobs_->GetJob(gone.id);
  EXPECT_EQ(g->state, kFailed);
  EXPECT_EQ(g->attempt_list[0].exit_kind, "lost");
  EXPECT_NE(g->failure.find("lost"), std::string::npos) << g->failure;
}

KERVAN_INSTANTIATE_BACKENDS(JobsTest);

// GPU discovery: nvidia-smi's GPUs when it lists any, else the virtual ones.
TEST(LocalExecutor, DiscoversGpusWithNvidiaSmiElseUsesVirtualOnes) {
  char tmpl[] = "/tmp/kervan-smi.XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  {
    std::ofstream smi(dir + "/nvidia-smi");
    smi << "#!/bin/sh\n"
           "[ \"$1\" = --query-gpu=index,name ] || exit 9\n"
           "echo '0, NVIDIA H100 80GB HBM3'\n"
           "echo '1, NVIDIA H100 80GB HBM3'\n";
  }
  fs::permissions(dir + "/nvidia-smi", fs::perms::owner_all);
  ::setenv("PATH", (dir + ":" + old_path).c_str(), 1);
  auto nodes = MakeLocalExecutor({.virtual_gpus = 4, .node_name = "n1"})->DiscoverNodes();
  ::setenv("PATH", old_path.c_str(), 1);
  ASSERT_TRUE(nodes) << nodes.error().ToString();
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].name, "n1");
  EXPECT_EQ((*nodes)[0].gpus, 2);
  EXPECT_EQ((*nodes)[0].gpu_type, "NVIDIA H100 80GB HBM3");
  EXPECT_GT((*nodes)[0].cpus, 0);

  // Without nvidia-smi (this machine): the configured virtual GPUs.
  ::setenv("PATH", "/usr/bin:/bin", 1);
  nodes = MakeLocalExecutor({.virtual_gpus = 3})->DiscoverNodes();
  ::setenv("PATH", old_path.c_str(), 1);
  ASSERT_TRUE(nodes);
  EXPECT_EQ((*nodes)[0].gpus, 3);
  EXPECT_EQ((*nodes)[0].gpu_type, "");
  fs::remove_all(dir);
}

// Spec documents: JSON as is, YAML read as YAML 1.2's core schema.
TEST(JobSpecDocument, YamlAndJsonGiveTheSameSpec) {
  auto yaml = ParseSpecDocument(
      "name: train\n"
      "command: [python, train.py]\n"
      "args: [--lr, 0.1, --epochs, 20, --fast, true]\n"
      "env: {SEED: 7, MODE: \"prod\"}\n"
      "resources: {gpus: 2}\n"
      "config_file:\n  name: prod.yaml\n  content: |\n    lr: 0.05\n");
  ASSERT_TRUE(yaml) << yaml.error().ToString();
  auto spec = JobSpec::FromJson(*yaml);
  ASSERT_TRUE(spec) << spec.error().ToString();
  EXPECT_EQ(spec->command, (std::vector<std::string>{"python", "train.py", "--lr", "0.1",
                                                     "--epochs", "20", "--fast", "true"}));
  EXPECT_EQ(spec->env.at("SEED"), "7");
  EXPECT_EQ(spec->resources.gpus, 2);
  EXPECT_EQ(spec->config_file_content, "lr: 0.05\n");
  auto json = ParseSpecDocument(R"({"command": ["python"], "resources": {"gpus": 1}})");
  ASSERT_TRUE(json);
  EXPECT_EQ((*json)["resources"]["gpus"], 1);

  auto bad = ParseSpecDocument("command: [python\nname: x\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "body");
  EXPECT_NE(bad.error().message.find("line "), std::string::npos) << bad.error().message;
  EXPECT_FALSE(ParseSpecDocument(""));
}

// Config strings for priority classes and quotas.
TEST(JobsConfig, ParsesPriorityClassesAndQuotas) {
  auto classes = ParsePriorityClasses(kDefaultPriorityClasses);
  ASSERT_TRUE(classes) << classes.error().ToString();
  ASSERT_EQ(classes->size(), 3u);
  EXPECT_EQ((*classes)[0].name, "prod");
  EXPECT_EQ((*classes)[0].value, 1000);
  EXPECT_FALSE((*classes)[0].preemptible_default);
  EXPECT_EQ((*classes)[2].preemption, PreemptionPolicy::kNever);
  EXPECT_TRUE((*classes)[2].preemptible_default);
  EXPECT_FALSE(ParsePriorityClasses("prod"));
  EXPECT_FALSE(ParsePriorityClasses("prod=1,prod=2"));
  EXPECT_FALSE(ParsePriorityClasses("prod=1:sometimes"));

  auto quotas = ParseQuotas("risk=4:2:1.5,vision=8");
  ASSERT_TRUE(quotas) << quotas.error().ToString();
  ASSERT_EQ(quotas->size(), 2u);
  EXPECT_EQ((*quotas)[0].nominal_gpus, 4);
  EXPECT_EQ((*quotas)[0].borrowing_limit, 2);
  EXPECT_DOUBLE_EQ((*quotas)[0].weight, 1.5);
  EXPECT_EQ((*quotas)[1].borrowing_limit, -1);
  EXPECT_TRUE(ParseQuotas("")->empty());
  for (const char* bad : {"risk", "risk=-1", "risk=2:-2", "risk=2:1:0", "risk=x", "=2",
                          "risk=1,risk=2", "risk=1:2:3:4"}) {
    EXPECT_FALSE(ParseQuotas(bad)) << bad;
  }
}

}  // namespace
}  // namespace kervan::jobs

// The preemption scenario of jobs_test, with the jobs service driving a REAL
// single-host Slurm (scripts/slurm.sh: 4 fake GPUs, partitions dev/prod):
// a dev job holds all GPUs, a prod job arrives, Kervan's scheduler preempts
// the dev job (scancel), runs prod, requeues dev, and dev's second attempt
// completes — every step an event, as with the local executor.
//
// Needs KERVAN_TEST_SLURM_ENV (the env file of `scripts/slurm.sh start DIR`);
// skips without it, fails without it when KERVAN_REQUIRE_SLURM=1.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "jobs/jobs.h"

namespace kervan::jobs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using store::testing::BackendTest;

std::map<std::string, std::string> ReadEnvFile(const std::string& path) {
  std::map<std::string, std::string> env;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos)
      env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

class JobsOnSlurm : public BackendTest {
 protected:
  void SetUp() override {
    const char* path = std::getenv("KERVAN_TEST_SLURM_ENV");
    if (path == nullptr || *path == '\0') {
      const char* require = std::getenv("KERVAN_REQUIRE_SLURM");
      if (require != nullptr && std::string(require) == "1")
        FAIL() << "KERVAN_REQUIRE_SLURM=1 but KERVAN_TEST_SLURM_ENV is not set";
      GTEST_SKIP() << "no Slurm: set KERVAN_TEST_SLURM_ENV to DIR/env of scripts/slurm.sh start";
    }
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto env = ReadEnvFile(path);
    ASSERT_FALSE(env["SLURM_CONF"].empty()) << path;
    char tmpl[] = "/tmp/kervan-jobs-slurm.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto executor = MakeSlurmExecutor({.bin_dir = env["SLURM_BIN_DIR"],
                                       .partition_by_class = {{"prod", "prod"}, {"dev", "dev"}},
                                       .jobcomp_path = env["SLURM_JOBCOMP"],
                                       .slurm_conf = env["SLURM_CONF"]});
    ASSERT_TRUE(executor) << executor.error().ToString();
    Options options;
    options.scratch_root = dir_ + "/scratch";
    options.termination_grace = 1s;
    options.backoff_base = 50ms;
    auto jobs = Jobs::Open(*db_, *log_, *lifecycles_, std::move(executor).value(), options);
    ASSERT_TRUE(jobs) << jobs.error().ToString();
    jobs_ = std::move(jobs).value();
  }

  void TearDown() override {
    if (jobs_) {
      auto all = jobs_->ListJobs({.limit = 100});
      for (const auto& j : all ? *all : std::vector<Job>{}) {
        if (j.state == kQueued || j.state == kAdmitted || j.state == kRunning ||
            j.state == kPreempted)
          (void)jobs_->Cancel(j.id, "test teardown", {.actor = "user:test"});
      }
      for (int i = 0; i < 50; ++i) {
        (void)jobs_->RunCycle();
        std::this_thread::sleep_for(100ms);
      }
    }
    jobs_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    if (!dir_.empty())
      fs::remove_all(dir_);
    if (!IsSkipped())
      BackendTest::TearDown();
  }

  std::string StateOf(const std::string& id) {
    auto j = jobs_->GetJob(id);
    return j ? j->state : j.error().ToString();
  }

  ::testing::AssertionResult CycleUntil(const std::function<bool()>& done,
                                        std::chrono::milliseconds timeout = 30s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (auto s = jobs_->RunCycle(); !s)
        return ::testing::AssertionFailure() << s.error().ToString();
      if (done())
        return ::testing::AssertionSuccess();
      if (std::chrono::steady_clock::now() > end)
        return ::testing::AssertionFailure() << "timed out";
      std::this_thread::sleep_for(100ms);
    }
  }

  std::string dir_;
  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<Jobs> jobs_;
};

TEST_P(JobsOnSlurm, ProdPreemptsDevWhichIsRequeuedAndCompletes) {
  ASSERT_EQ(jobs_->nodes().size(), 1u);
  EXPECT_EQ(jobs_->nodes()[0].gpus, 4);

  JobSpec dev;
  dev.project = "risk";
  dev.priority_class = "dev";
  dev.command = {"/bin/sh", "-c",
                 "if [ \"$KERVAN_ATTEMPT\" = 1 ]; then sleep 120; fi; echo dev done on "
                 "$CUDA_VISIBLE_DEVICES"};
  dev.resources.gpus = 4;
  auto d = jobs_->Submit(dev, {.actor = "user:alice"});
  ASSERT_TRUE(d) << d.error().ToString();
  ASSERT_TRUE(CycleUntil([&] { return StateOf(d->id) == kRunning; }));

  JobSpec prod = dev;
  prod.priority_class = "prod";
  prod.command = {"/bin/sh", "-c", "echo prod on $CUDA_VISIBLE_DEVICES"};
  prod.resources.gpus = 2;
  auto p = jobs_->Submit(prod, {.actor = "user:erin"});
  ASSERT_TRUE(p) << p.error().ToString();

  ASSERT_TRUE(CycleUntil([&] { return StateOf(p->id) == kSucceeded; }, 60s))
      << StateOf(p->id) << " / dev " << StateOf(d->id);
  ASSERT_TRUE(CycleUntil([&] { return StateOf(d->id) == kSucceeded; }, 60s)) << StateOf(d->id);

  auto dev_job = jobs_->GetJob(d->id);
  ASSERT_TRUE(dev_job);
  EXPECT_EQ(dev_job->preemptions, 1);
  ASSERT_EQ(dev_job->attempt_list.size(), 2u);
  EXPECT_EQ(dev_job->attempt_list[0].executor, "slurm");
  EXPECT_EQ(dev_job->attempt_list[0].exit_kind, "terminated");
  EXPECT_EQ(dev_job->attempt_list[1].exit_kind, "succeeded");
  // Two Slurm jobs: one per attempt.
  EXPECT_NE(dev_job->attempt_list[0].external_id, dev_job->attempt_list[1].external_id);
  auto log = jobs_->ReadLog(d->id, 2, 0, 1 << 16);
  ASSERT_TRUE(log);
  EXPECT_NE(log->first.find("dev done on 0,1,2,3"), std::string::npos) << log->first;

  std::vector<std::string> types;
  std::string preempted_by;
  auto events =
      log_->Read({.after_seq = 0, .limit = 100, .subject_kind = "job", .subject_id = d->id});
  ASSERT_TRUE(events);
  for (const auto& e : *events) {
    types.push_back(e.type);
    if (e.type == "job.preempted")
      preempted_by = core::Json::parse(e.data)["data"]["preempted_by"];
  }
  EXPECT_EQ(types, (std::vector<std::string>{"job.created", "job.admitted", "job.started",
                                             "job.preempted", "job.requeued", "job.admitted",
                                             "job.started", "job.succeeded"}));
  EXPECT_EQ(preempted_by, p->id);
}

KERVAN_INSTANTIATE_BACKENDS(JobsOnSlurm);

}  // namespace
}  // namespace kervan::jobs

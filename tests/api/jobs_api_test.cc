// Training jobs through real HTTP against the real `kervan` binary, whose
// local executor runs real processes (`kervan job-shim`) on 4 virtual GPUs:
// bad submissions are refused with the field and queue nothing; prod
// preempts dev, dev is requeued and completes; explain, logs and cancel;
// a server restart while a job runs loses nothing.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

using namespace std::chrono_literals;

ServerProcessOptions JobServer() {
  return {.extra_args = {"--set", "jobs.virtual_gpus=4", "--set", "jobs.cycle_ms=50", "--set",
                         "jobs.termination_grace_ms=500", "--set", "jobs.backoff_base_ms=50",
                         "--set", "jobs.quotas=burst=2:1,vision=2:0"}};
}

class JobsApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    http::Client admin = server_.client();
    ASSERT_EQ(Post(admin, "/api/v1/projects", {{"name", "risk"}}).status, 201);
    ASSERT_EQ(Post(admin, "/api/v1/projects", {{"name", "vision"}}).status, 201);
    ASSERT_EQ(Post(admin, "/api/v1/projects", {{"name", "burst"}}).status, 201);
    ASSERT_EQ(Post(admin, "/api/v1/principals", {{"name", "user:alice"}}).status, 201);
    for (const char* project : {"risk", "vision", "burst"}) {
      ASSERT_EQ(Post(admin, "/api/v1/principals/user:alice/roles",
                     {{"role", "scientist"}, {"project", project}})
                    .status,
                201);
    }
    Reply t = Post(admin, "/api/v1/tokens", {{"principal", "user:alice"}, {"name", "t"}});
    ASSERT_EQ(t.status, 201) << t.Describe();
    alice_.emplace(server_.client_with_token(t.body["token"].get<std::string>()));
  }

  Json Submit(const Json& spec, int expect = 201) {
    Reply r = Post(*alice_, "/api/v1/jobs", spec);
    EXPECT_EQ(r.status, expect) << r.Describe();
    return r.body;
  }

  std::string State(const std::string& id) {
    Reply r = Get(*alice_, "/api/v1/jobs/" + id);
    return r.status == 200 ? r.body["state"].get<std::string>() : r.Describe();
  }

  bool WaitFor(const std::string& id, const std::string& state,
               std::chrono::milliseconds timeout = 15s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      if (State(id) == state)
        return true;
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "job " << id << " is " << State(id) << ", not " << state;
    return false;
  }

  ServerProcess server_{JobServer()};
  std::optional<http::Client> alice_;
};

TEST_F(JobsApi, BadSubmissionsGetTheFieldAndQueueNothing) {
  struct Case {
    Json spec;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"command", {"python", "train.py"}}, {"project", "risk"}, {"resources", {{"gpus", -1}}}},
       "resources.gpus"},
      {{{"command", {"python"}}, {"project", "risk"}, {"resources", {{"gpus", 100000}}}},
       "resources.gpus"},
      {{{"command", {"python"}}, {"project", "risk"}, {"resources", {{"memory_mb", -5}}}},
       "resources.memory_mb"},
      {{{"command", {"python"}}, {"project", "risk"}, {"priority_class", "urgent"}},
       "priority_class"},
      {{{"command", {"python"}}, {"project", "risk"}, {"resources", {{"gpus", 8}}}}, "resources"},
      {{{"command", {"python"}}, {"project", "vision"}, {"resources", {{"gpus", 3}}}},
       "resources.gpus"},
      {{{"project", "risk"}, {"resources", {{"gpus", 1}}}}, "command"},
      {{{"command", {"python"}}, {"project", "risk"}, {"gpu", 1}}, "gpu"},
      {{{"command", {"python"}}, {"project", "nope"}}, "project"},
  };
  for (const auto& c : cases) {
    Reply r = Post(*alice_, "/api/v1/jobs", c.spec);
    EXPECT_EQ(r.status, 400) << c.spec.dump() << " -> " << r.Describe();
    EXPECT_EQ(r.body["error"]["field"], c.field) << c.spec.dump() << " -> " << r.Describe();
    EXPECT_EQ(r.body["error"]["code"], "invalid_argument") << r.Describe();
  }
  Reply never = Post(*alice_, "/api/v1/jobs",
                     {{"command", {"python"}}, {"project", "risk"}, {"resources", {{"gpus", 8}}}});
  EXPECT_NE(never.body["error"]["message"].get<std::string>().find("never"), std::string::npos)
      << never.Describe();
  Reply list = Get(*alice_, "/api/v1/jobs");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.body["jobs"].empty()) << list.raw;
  Reply events = Get(*alice_, "/api/v1/events?kind=job&project=risk");
  EXPECT_TRUE(events.body["events"].empty()) << events.raw;
}

TEST_F(JobsApi, AcceptsAYamlSpec) {
  Reply r = Call(*alice_, "POST", "/api/v1/jobs",
                 "project: risk\ncommand: [/bin/sh, -c, 'echo yaml $LR']\nenv: {LR: 0.1}\n",
                 {{"Content-Type", "application/yaml"}});
  ASSERT_EQ(r.status, 201) << r.Describe();
  std::string id = r.body["id"];
  ASSERT_TRUE(WaitFor(id, "Succeeded"));
  EXPECT_NE(
      Get(*alice_, "/api/v1/jobs/" + id + "/logs").body["data"].get<std::string>().find("yaml 0.1"),
      std::string::npos);
  Reply bad = Call(*alice_, "POST", "/api/v1/jobs", "command: [unclosed\n",
                   {{"Content-Type", "application/yaml"}});
  EXPECT_EQ(bad.status, 400) << bad.Describe();
  EXPECT_EQ(bad.body["error"]["field"], "body") << bad.raw;
}

TEST_F(JobsApi, ProdPreemptsDevWhichIsRequeuedAndCompletes) {
  Json dev = Submit({{"name", "dev-train"},
                     {"project", "risk"},
                     {"priority_class", "dev"},
                     {"command", {"/bin/sh", "-c"}},
                     {"args", {"if [ \"$KERVAN_ATTEMPT\" = 1 ]; then sleep 60; fi; echo dev ok"}},
                     {"resources", {{"gpus", 4}}}});
  std::string dev_id = dev["id"];
  ASSERT_TRUE(WaitFor(dev_id, "Running"));
  Json prod = Submit({{"name", "prod-train"},
                      {"project", "risk"},
                      {"priority_class", "prod"},
                      {"command", {"/bin/sh", "-c", "echo prod on GPUs $CUDA_VISIBLE_DEVICES"}},
                      {"resources", {{"gpus", 2}}}});
  std::string prod_id = prod["id"];
  ASSERT_TRUE(WaitFor(prod_id, "Succeeded"));
  ASSERT_TRUE(WaitFor(dev_id, "Succeeded"));

  Reply d = Get(*alice_, "/api/v1/jobs/" + dev_id);
  EXPECT_EQ(d.body["preemptions"], 1) << d.raw;
  EXPECT_EQ(d.body["attempt_list"].size(), 2u) << d.raw;
  Reply logs = Get(*alice_, "/api/v1/jobs/" + prod_id + "/logs");
  ASSERT_EQ(logs.status, 200) << logs.Describe();
  EXPECT_NE(logs.body["data"].get<std::string>().find("prod on GPUs 0,1"), std::string::npos)
      << logs.raw;
  EXPECT_TRUE(logs.body["done"].get<bool>());

  // The audit trail names the job that caused the preemption.
  Reply events = Get(*alice_, "/api/v1/events?kind=job&project=risk&id=" + dev_id);
  bool named = false;
  for (const auto& e : events.body["events"]) {
    if (e["type"] == "job.preempted") {
      EXPECT_EQ(e["data"]["data"]["preempted_by"], prod_id) << e.dump();
      EXPECT_EQ(e["actor"], "system:scheduler");
      named = true;
    }
  }
  EXPECT_TRUE(named) << events.raw;
}

TEST_F(JobsApi, ExplainAndCancel) {
  Json big =
      Submit({{"project", "risk"}, {"command", {"sleep", "60"}}, {"resources", {{"gpus", 4}}}});
  std::string big_id = big["id"];
  ASSERT_TRUE(WaitFor(big_id, "Running"));
  // Same class: no preemption; it waits for GPUs, and explain says so.
  Json next =
      Submit({{"project", "risk"}, {"command", {"sleep", "60"}}, {"resources", {{"gpus", 2}}}});
  std::string next_id = next["id"];
  Reply why;
  for (int i = 0; i < 100; ++i) {
    why = Get(*alice_, "/api/v1/jobs/" + next_id + "/explain");
    if (why.status == 200 && why.body.contains("reason"))
      break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(why.status, 200) << why.Describe();
  EXPECT_EQ(why.body["state"], "Queued");
  EXPECT_EQ(why.body["reason"]["code"], "no_fit") << why.raw;
  EXPECT_FALSE(why.body["summary"].get<std::string>().empty());

  Reply no_reason = Post(*alice_, "/api/v1/jobs/" + big_id + "/cancel", Json::object());
  EXPECT_EQ(no_reason.status, 400) << no_reason.Describe();
  EXPECT_EQ(no_reason.body["error"]["field"], "reason");
  Reply cancelled =
      Post(*alice_, "/api/v1/jobs/" + big_id + "/cancel", {{"reason", "wrong config"}});
  ASSERT_EQ(cancelled.status, 200) << cancelled.Describe();
  EXPECT_EQ(cancelled.body["state"], "Cancelled");
  ASSERT_TRUE(WaitFor(next_id, "Running"));
  Reply again = Post(*alice_, "/api/v1/jobs/" + next_id + "/cancel", {{"reason", "done"}});
  EXPECT_EQ(again.status, 200);
  Reply twice = Post(*alice_, "/api/v1/jobs/" + next_id + "/cancel", {{"reason", "done"}});
  EXPECT_EQ(twice.status, 409) << twice.Describe();
}

TEST_F(JobsApi, QuotasHoldUnderABurstAndTheOtherProjectsShareStaysAvailable) {
  // burst: nominal 2, may borrow 1. Four one-GPU jobs: three run, one waits.
  std::vector<std::string> burst;
  for (int i = 0; i < 4; ++i) {
    Json j =
        Submit({{"project", "burst"}, {"command", {"sleep", "60"}}, {"resources", {{"gpus", 1}}}});
    burst.push_back(j["id"]);
  }
  auto count = [&](const std::string& state) {
    int n = 0;
    for (const auto& id : burst)
      n += State(id) == state;
    return n;
  };
  for (int i = 0; i < 200 && count("Running") < 3; ++i)
    std::this_thread::sleep_for(50ms);
  ASSERT_EQ(count("Running"), 3);
  std::this_thread::sleep_for(200ms);  // a few more cycles: still three
  EXPECT_EQ(count("Running"), 3);
  for (const auto& id : burst) {
    if (State(id) != "Queued")
      continue;
    Reply why = Get(*alice_, "/api/v1/jobs/" + id + "/explain");
    EXPECT_EQ(why.body["reason"]["code"], "quota") << why.raw;
    EXPECT_EQ(why.body["reason"]["project_limit_gpus"], 3) << why.raw;
  }
  // vision's nominal 2 GPUs are there for it: the borrowed one is reclaimed,
  // and both vision jobs run at the same time.
  std::vector<std::string> vision;
  for (int i = 0; i < 2; ++i) {
    Json j =
        Submit({{"project", "vision"}, {"command", {"sleep", "60"}}, {"resources", {{"gpus", 1}}}});
    vision.push_back(j["id"]);
  }
  for (const auto& id : vision)
    ASSERT_TRUE(WaitFor(id, "Running"));
  EXPECT_EQ(count("Running"), 2);
  int reclaimed = 0;
  for (const auto& id : burst) {
    Reply events = Get(*alice_, "/api/v1/events?kind=job&project=burst&id=" + id);
    for (const auto& e : events.body["events"]) {
      if (e["type"] == "job.preempted") {
        EXPECT_EQ(e["data"]["data"]["why"], "reclaim") << e.dump();
        ++reclaimed;
      }
    }
  }
  EXPECT_EQ(reclaimed, 1);
}

TEST_F(JobsApi, RetriesDeadlineAndTtl) {
  Json flaky = Submit({{"project", "risk"},
                       {"command", {"/bin/sh", "-c", "echo try $KERVAN_ATTEMPT; exit 3"}},
                       {"backoff_limit", 2}});
  Json slow = Submit({{"project", "risk"},
                      {"command", {"sleep", "60"}},
                      {"active_deadline_s", 1},
                      {"backoff_limit", 2}});
  Json done = Submit({{"project", "risk"},
                      {"command", {"/bin/sh", "-c", "echo w > $KERVAN_SCRATCH_DIR/weights"}},
                      {"ttl_after_finished_s", 1}});
  auto final_of = [&](const std::string& id) {
    for (int i = 0; i < 300; ++i) {
      Reply r = Get(*alice_, "/api/v1/jobs/" + id);
      if (r.body.contains("finished_time") &&
          (id != done["id"] || r.body.value("scratch_removed", false)))
        return r.body;
      std::this_thread::sleep_for(50ms);
    }
    return Json();
  };
  Json f = final_of(flaky["id"]);
  EXPECT_EQ(f["state"], "Failed") << f.dump();
  EXPECT_EQ(f["attempts"], 3) << f.dump();  // 1 + backoff_limit retries, then no more
  Json s = final_of(slow["id"]);
  EXPECT_EQ(s["state"], "Failed") << s.dump();
  EXPECT_EQ(s["attempts"], 1) << s.dump();  // a deadline is not retried
  EXPECT_NE(s.value("failure", "").find("DeadlineExceeded"), std::string::npos) << s.dump();
  Json d = final_of(done["id"]);
  EXPECT_EQ(d["state"], "Succeeded") << d.dump();
  EXPECT_EQ(d.value("scratch_removed", false), true) << d.dump();
}

TEST_F(JobsApi, AServerRestartWhileJobsRunLosesNone) {
  Json job = Submit({{"project", "risk"},
                     {"command", {"/bin/sh", "-c", "sleep 2; echo survived"}},
                     {"resources", {{"gpus", 1}}}});
  std::string id = job["id"];
  ASSERT_TRUE(WaitFor(id, "Running"));
  ASSERT_TRUE(server_.Stop());
  ASSERT_TRUE(server_.Start());
  http::Client admin = server_.client();
  Reply t = Post(admin, "/api/v1/tokens", {{"principal", "user:alice"}, {"name", "t2"}});
  ASSERT_EQ(t.status, 201);
  alice_.emplace(server_.client_with_token(t.body["token"].get<std::string>()));
  ASSERT_TRUE(WaitFor(id, "Succeeded"));
  Reply logs = Get(*alice_, "/api/v1/jobs/" + id + "/logs");
  EXPECT_NE(logs.body["data"].get<std::string>().find("survived"), std::string::npos) << logs.raw;
  Reply j = Get(*alice_, "/api/v1/jobs/" + id);
  EXPECT_EQ(j.body["attempts"], 1) << j.raw;
}

}  // namespace
}  // namespace kervan::apitest

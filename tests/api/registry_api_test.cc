// The registry lifecycle end to end through real HTTP, as three people with
// their own tokens: a candidate passes its gate automatically, a failing one
// is rejected with evidence, a manual approve needs a reason, alias moves
// and every decision appear in the audit log with actor and reason.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

class RegistryApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start());
    http::Client admin = server_.client();
    ASSERT_EQ(Post(admin, "/api/v1/projects", {{"name", "risk"}}).status, 201);
    alice_.emplace(server_.client_with_token(Person(admin, "user:alice", "scientist")));
    erin_.emplace(server_.client_with_token(Person(admin, "user:erin", "engineer")));
    Reply m = Post(*erin_, "/api/v1/models",
                   {{"name", "credit"},
                    {"project", "risk"},
                    {"validation",
                     {{"checks",
                       {{{"metric", "auc"}, {"op", ">="}, {"threshold", 0.85}},
                        {{"type", "champion"}, {"metric", "auc"}, {"max_regression", 0.02}}}}}}});
    ASSERT_EQ(m.status, 201) << m.Describe();
  }

  static std::string Person(const http::Client& admin, const std::string& name,
                            const std::string& role) {
    EXPECT_EQ(Post(admin, "/api/v1/principals", {{"name", name}}).status, 201);
    EXPECT_EQ(
        Post(admin, "/api/v1/principals/" + name + "/roles", {{"role", role}, {"project", "risk"}})
            .status,
        201);
    Reply t = Post(admin, "/api/v1/tokens", {{"principal", name}, {"name", "test"}});
    EXPECT_EQ(t.status, 201) << t.Describe();
    return t.body.value("token", "");
  }

  Reply Register(double auc) {
    return Post(*alice_, "/api/v1/models/credit/versions",
                {{"source_run_id", "run-" + std::to_string(auc)},
                 {"artifact_uri", "file:///artifacts/credit"},
                 {"metrics", {{"auc", auc}, {"f1", 0.7}}}});
  }

  ServerProcess server_;
  std::optional<http::Client> alice_, erin_;
};

TEST_F(RegistryApi, GatePassesRejectsAndManualOverrideIsAudited) {
  // 1. A good candidate: automatic validation, DeploymentReady.
  Reply v1 = Register(0.91);
  ASSERT_EQ(v1.status, 201) << v1.Describe();
  EXPECT_EQ(v1.body.value("state", ""), "DeploymentReady") << v1.raw;
  EXPECT_EQ(v1.body["validation"].value("decision", ""), "passed");

  // 2. The champion alias moves, with a reason.
  Reply alias = Call(*erin_, "PUT", "/api/v1/models/credit/aliases/champion",
                     R"({"version":1,"reason":"first model above the bar"})");
  ASSERT_EQ(alias.status, 200) << alias.Describe();

  // 3. A failing candidate: Rejected, with the failed check as evidence.
  Reply v2 = Register(0.80);
  ASSERT_EQ(v2.status, 201) << v2.Describe();
  EXPECT_EQ(v2.body.value("state", ""), "Rejected") << v2.raw;
  const Json& checks = v2.body["validation"]["checks"];
  ASSERT_EQ(checks.size(), 2u) << v2.raw;
  EXPECT_EQ(checks[0].value("passed", true), false);
  EXPECT_DOUBLE_EQ(checks[0].value("value", 0.0), 0.80);
  EXPECT_DOUBLE_EQ(checks[0].value("threshold", 0.0), 0.85);
  EXPECT_EQ(checks[1].value("champion_version", 0), 1);
  EXPECT_EQ(checks[1].value("passed", true), false);

  // 4. A scientist may not override; an engineer must give a reason.
  Reply denied = Post(*alice_, "/api/v1/models/credit/versions/2/approve", {{"reason", "pls"}});
  ASSERT_TRUE(IsError(denied, 403, "permission_denied"));
  EXPECT_EQ(denied.body["error"].value("permission", ""), "model_version.approve");
  EXPECT_TRUE(IsError(Post(*erin_, "/api/v1/models/credit/versions/2/approve", Json::object()), 400,
                      "invalid_argument", "reason"));
  Reply approved = Post(*erin_, "/api/v1/models/credit/versions/2/approve",
                        {{"reason", "recall matters more than auc for this segment (RISK-12)"}});
  ASSERT_EQ(approved.status, 200) << approved.Describe();
  EXPECT_EQ(approved.body.value("state", ""), "DeploymentReady");

  // 5. A better candidate passes both checks; champion moves to it.
  Reply v3 = Register(0.93);
  ASSERT_EQ(v3.status, 201) << v3.Describe();
  EXPECT_EQ(v3.body.value("state", ""), "DeploymentReady") << v3.raw;
  ASSERT_EQ(Call(*erin_, "PUT", "/api/v1/models/credit/aliases/champion",
                 R"({"version":3,"reason":"auc +0.02 over v1"})")
                .status,
            200);

  // The audit log tells the story: who, what, why, with evidence.
  Reply audit = Get(*erin_, "/api/v1/audit?project=risk&limit=1000");
  ASSERT_EQ(audit.status, 200) << audit.Describe();
  std::vector<std::string> story;
  for (const auto& e : audit.body["events"]) {
    story.push_back(e.value("type", "") + " " + e["subject"].value("id", "") + " by " +
                    e.value("actor", ""));
  }
  const std::vector<std::string> want = {
      "project.created risk by user:admin",
      "principal.role_bound user:alice by user:admin",
      "principal.role_bound user:erin by user:admin",
      "registered_model.created credit by user:erin",
      "model_version.created credit:1 by user:alice",
      "model_version.validation_started credit:1 by system:registry",
      "model_version.validated credit:1 by system:registry",
      "registered_model.alias_set credit by user:erin",
      "model_version.created credit:2 by user:alice",
      "model_version.validation_started credit:2 by system:registry",
      "model_version.validation_failed credit:2 by system:registry",
      "model_version.approved credit:2 by user:erin",
      "model_version.created credit:3 by user:alice",
      "model_version.validation_started credit:3 by system:registry",
      "model_version.validated credit:3 by system:registry",
      "registered_model.alias_set credit by user:erin",
  };
  EXPECT_EQ(story, want) << audit.raw.substr(0, 2000);

  // Filters: by type prefix, by actor, by subject, by time.
  Reply rejected = Get(*erin_, "/api/v1/audit?project=risk&type=model_version.validation_failed");
  ASSERT_EQ(rejected.status, 200);
  ASSERT_EQ(rejected.body["events"].size(), 1u);
  const Json& evidence = rejected.body["events"][0]["data"]["data"];
  EXPECT_EQ(evidence.value("decision", ""), "failed") << evidence.dump();
  EXPECT_EQ(evidence["checks"][0].value("passed", true), false);

  Reply overrides = Get(*erin_, "/api/v1/audit?project=risk&actor=user:erin&type=model_version.*");
  ASSERT_EQ(overrides.status, 200);
  ASSERT_EQ(overrides.body["events"].size(), 1u) << overrides.raw;
  EXPECT_EQ(overrides.body["events"][0].value("reason", ""),
            "recall matters more than auc for this segment (RISK-12)");

  Reply aliases = Get(
      *erin_,
      "/api/v1/audit?project=risk&kind=registered_model&id=credit&type=registered_model.alias_set");
  ASSERT_EQ(aliases.status, 200);
  ASSERT_EQ(aliases.body["events"].size(), 2u) << aliases.raw;
  EXPECT_EQ(aliases.body["events"][1].value("actor", ""), "user:erin");
  EXPECT_EQ(aliases.body["events"][1].value("reason", ""), "auc +0.02 over v1");
  EXPECT_EQ(aliases.body["events"][1]["data"].value("previous_version", 0), 1);

  Reply future = Get(*erin_, "/api/v1/audit?project=risk&since=2100-01-01T00:00:00Z");
  ASSERT_EQ(future.status, 200);
  EXPECT_TRUE(future.body["events"].empty());
  Reply past = Get(*erin_, "/api/v1/audit?project=risk&until=2000-01-01T00:00:00Z");
  ASSERT_EQ(past.status, 200);
  EXPECT_TRUE(past.body["events"].empty());

  // Pagination: 5 at a time walks the same list.
  std::vector<std::string> paged;
  int64_t after = 0;
  for (int page = 0; page < 10; ++page) {
    Reply p = Get(*erin_, "/api/v1/audit?project=risk&limit=5&after=" + std::to_string(after));
    ASSERT_EQ(p.status, 200);
    for (const auto& e : p.body["events"])
      paged.push_back(e.value("type", "") + " " + e["subject"].value("id", "") + " by " +
                      e.value("actor", ""));
    after = p.body.value("next_after", int64_t{0});
    if (p.body.value("complete", false))
      break;
  }
  EXPECT_EQ(paged, want);

  // The export: JSON lines with a cursor header.
  Reply jsonl = Get(*erin_, "/api/v1/audit?project=risk&format=jsonl");
  ASSERT_EQ(jsonl.status, 200) << jsonl.Describe();
  EXPECT_EQ(jsonl.headers["content-type"], "application/x-ndjson");
  EXPECT_EQ(jsonl.headers["x-kervan-count"], std::to_string(want.size()));
  size_t lines = 0;
  for (size_t pos = 0; (pos = jsonl.raw.find('\n', pos)) != std::string::npos; ++pos)
    ++lines;
  EXPECT_EQ(lines, want.size());

  // Alias history and lineage.
  Reply champion = Get(*alice_, "/api/v1/models/credit/aliases/champion");
  ASSERT_EQ(champion.status, 200) << champion.Describe();
  EXPECT_EQ(champion.body.value("version", 0), 3);
  ASSERT_EQ(champion.body["history"].size(), 2u);
  EXPECT_EQ(champion.body["history"][0].value("reason", ""), "first model above the bar");
  Reply lineage = Get(*alice_, "/api/v1/models/credit/versions/1/lineage");
  ASSERT_EQ(lineage.status, 200) << lineage.Describe();
  EXPECT_EQ(lineage.body.value("source_run_id", ""), "run-0.910000");
  ASSERT_EQ(lineage.body["alias_history"].size(), 2u) << lineage.raw;

  // The whole chain still verifies.
  Reply verify = Post(*erin_, "/api/v1/audit/verify", Json::object());
  ASSERT_EQ(verify.status, 200) << verify.Describe();
  EXPECT_EQ(verify.body.value("ok", false), true) << verify.raw;

  // And the generic projection (global readers only) agrees with the registry.
  Reply entity = Get(server_.client(), "/api/v1/entities/model_version/credit:2");
  ASSERT_EQ(entity.status, 200) << entity.Describe();
  EXPECT_EQ(entity.body.value("state", ""), "DeploymentReady");
  Reply ready = Get(*alice_, "/api/v1/models/credit/versions?state=DeploymentReady");
  ASSERT_EQ(ready.status, 200);
  EXPECT_EQ(ready.body["items"].size(), 3u);
}

}  // namespace
}  // namespace kervan::apitest

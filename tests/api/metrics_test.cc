// /metrics through a real server is valid Prometheus exposition: promtool
// (the reference parser and linter) accepts it once the histograms have
// samples.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "api_util.h"
#include "server_process.h"

namespace kervan::apitest {
namespace {

constexpr char kPromtool[] = "/usr/bin/promtool";

TEST(Metrics, ExpositionPassesPromtoolCheck) {
  if (::access(kPromtool, X_OK) != 0) {
    if (EnvIs("KERVAN_REQUIRE_TOOLS", "1")) {
      FAIL() << kPromtool << " is missing but KERVAN_REQUIRE_TOOLS=1 (run scripts/setup.sh)";
    }
    GTEST_SKIP() << "\n*** SKIPPING promtool check: " << kPromtool
                 << " not found. Run scripts/setup.sh to install it. ***";
  }
  ServerProcess server;
  ASSERT_TRUE(server.Start());
  http::Client client = server.client();

  // Traffic on several routes and statuses, so every family has samples.
  ASSERT_EQ(Post(client, "/api/v1/models", {{"name", "m-1"}}).status, 201);
  ASSERT_EQ(Post(client, "/api/v1/models/m-1/versions", {{"metrics", {{"auc", 0.9}}}}).status, 201);
  EXPECT_EQ(Post(client, "/api/v1/models", {{"name", "m-1"}}).status, 409);
  EXPECT_EQ(Get(client, "/api/v1/entities/model_version/m-1:1").status, 200);
  // Failed authentication and a webhook subscription put the auth and
  // webhook families on the page too.
  EXPECT_EQ(Get(server.anonymous_client(), "/api/v1/models").status, 401);
  EXPECT_EQ(
      Post(client, "/api/v1/webhooks", {{"url", "http://127.0.0.1:9/hook"}, {"event_types", {"*"}}})
          .status,
      201);
  EXPECT_EQ(Get(client, "/api/v1/events?limit=5").status, 200);
  EXPECT_EQ(Get(client, "/api/v1/nope").status, 404);
  EXPECT_EQ(Get(client, "/readyz").status, 200);

  Reply metrics = Get(client, "/metrics");
  ASSERT_EQ(metrics.status, 200) << metrics.Describe();
  EXPECT_NE(metrics.raw.find("kervan_http_requests_total"), std::string::npos);
  EXPECT_NE(metrics.raw.find("kervan_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.raw.find("kervan_event_log_head_seq"), std::string::npos);
  EXPECT_NE(metrics.raw.find("kervan_auth_failures_total{reason=\"missing\"} 1"),
            std::string::npos);

  std::filesystem::path out = server.data_dir() / "promtool.out";
  std::string cmd = std::string(kPromtool) + " check metrics >" + out.string() + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "w");
  ASSERT_NE(p, nullptr) << "popen failed";
  size_t written = ::fwrite(metrics.raw.data(), 1, metrics.raw.size(), p);
  int status = ::pclose(p);
  EXPECT_EQ(written, metrics.raw.size());
  std::ifstream in(out);
  std::stringstream report;
  report << in.rdbuf();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "promtool check metrics failed (" << ServerProcess::DescribeStatus(status) << "):\n"
      << report.str() << "\n--- exposition ---\n"
      << metrics.raw;
}

}  // namespace
}  // namespace kervan::apitest

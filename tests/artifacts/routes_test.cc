// The MLflow artifact proxy routes through a real http::Server on an
// ephemeral port, over a local store in a temporary directory.
#include <mutex>

#include <fmt/format.h>

#include "test_util.h"

namespace kervan::artifacts {
namespace {

using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr char kApi[] = "/api/2.0/mlflow-artifacts/artifacts";
constexpr char kAjax[] = "/ajax-api/2.0/mlflow-artifacts/artifacts";

class ArtifactRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    WriteFile(outside_ / "secret.txt", "TOP SECRET");
    auto store = OpenLocal(root_);
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(store).value();

    RouteOptions options;
    options.max_upload_bytes = 3 << 20;
    // Stands in for the tracking module: paths under "denied/" are off
    // limits, and "readonly/" may be read but not written.
    options.authorize = [this](const http::Request& req, std::string_view path, bool write) {
      std::lock_guard lock(mu_);
      seen_.push_back(fmt::format("{} {} {}", req.method, path, write ? "write" : "read"));
      if (path == "denied" || path.starts_with("denied/") ||
          (write && path.starts_with("readonly/")))
        return core::Status(core::PermissionDenied(fmt::format("no access to \"{}\"", path)));
      return core::Ok();
    };
    http::Router router;
    auto registered = RegisterRoutes(router, *store_, options);
    ASSERT_TRUE(registered) << registered.error().ToString();
    routes_ = router.Routes();

    http::ServerOptions server_options;
    server_options.port = 0;
    server_options.io_threads = 1;
    server_options.worker_threads = 2;
    server_options.access_log = false;
    server_ = std::make_unique<http::Server>(
        server_options, std::make_shared<const http::Router>(std::move(router)));
    auto started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
    client_ = std::make_unique<http::Client>("http://127.0.0.1:" + std::to_string(server_->port()));
  }

  void TearDown() override {
    if (server_)
      server_->Shutdown(std::chrono::milliseconds(500));
  }

  struct Reply {
    int status = 0;
    std::string body;
    core::Json json;
    http::ClientResponse raw;
  };
  Reply Call(const std::string& method, const std::string& target, std::string body = {}) {
    http::HeaderList headers;
    if (!body.empty())
      headers.emplace_back("Content-Type", "application/octet-stream");
    auto r = client_->Send(method, target, std::move(body), headers);
    EXPECT_TRUE(r) << r.error().ToString();
    if (!r)
      return {};
    return {r->status, r->body, core::Json::parse(r->body, nullptr, false), *r};
  }

  std::vector<std::string> Seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }

  TempDir tmp_;
  std::filesystem::path root_;
  std::filesystem::path outside_;
  std::unique_ptr<ArtifactStore> store_;
  std::vector<http::RouteInfo> routes_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
  std::mutex mu_;
  std::vector<std::string> seen_;
};

TEST_F(ArtifactRoutesTest, RegistersBothPrefixesWithArtifactPermissions) {
  std::vector<std::string> routes;
  for (const http::RouteInfo& r : routes_) {
    routes.push_back(fmt::format("{} {} {}", r.method, r.pattern, r.permission));
    EXPECT_FALSE(r.public_route);
  }
  EXPECT_EQ(routes, (std::vector<std::string>{
                        "GET /api/2.0/mlflow-artifacts/artifacts artifact.read",
                        "GET /api/2.0/mlflow-artifacts/artifacts/{path...} artifact.read",
                        "PUT /api/2.0/mlflow-artifacts/artifacts/{path...} artifact.write",
                        "DELETE /api/2.0/mlflow-artifacts/artifacts/{path...} artifact.write",
                        "GET /ajax-api/2.0/mlflow-artifacts/artifacts artifact.read",
                        "GET /ajax-api/2.0/mlflow-artifacts/artifacts/{path...} artifact.read",
                        "PUT /ajax-api/2.0/mlflow-artifacts/artifacts/{path...} artifact.write",
                        "DELETE /ajax-api/2.0/mlflow-artifacts/artifacts/{path...} artifact.write",
                    }));
  EXPECT_EQ(routes_[2].max_body_bytes, size_t{3} << 20);
  http::Router again;
  ASSERT_TRUE(RegisterRoutes(again, *store_, {}));
  EXPECT_FALSE(RegisterRoutes(again, *store_, {}));  // the same routes twice
}

TEST_F(ArtifactRoutesTest, UploadListDownloadDeleteAsTheMlflowClientDoes) {
  const std::string run = std::string(kApi) + "/1/0123abcd/artifacts";
  Reply put = Call("PUT", run + "/model/MLmodel", "flavors:\n  python_function: {}\n");
  EXPECT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.body, "{}");
  EXPECT_EQ(Call("PUT", run + "/model/model.pkl", std::string(1000, '\x01')).status, 200);
  EXPECT_EQ(Call("PUT", run + "/metrics%20file.txt", "auc 0.9").status, 200);
  EXPECT_EQ(Call("PUT", run + "/plot.png", "\x89PNG").status, 200);
  EXPECT_EQ(ReadFile(root_ / "1/0123abcd/artifacts/metrics file.txt"), "auc 0.9");

  Reply list = Call("GET", std::string(kApi) + "?path=1/0123abcd/artifacts");
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.json, core::Json::parse(R"({"files":[
      {"path":"metrics file.txt","is_dir":false,"file_size":7},
      {"path":"model","is_dir":true},
      {"path":"plot.png","is_dir":false,"file_size":4}]})"));
  Reply sub = Call("GET", std::string(kAjax) + "?path=1%2F0123abcd%2Fartifacts%2Fmodel%2F");
  ASSERT_EQ(sub.status, 200) << sub.body;
  EXPECT_EQ(sub.json["files"].size(), 2u);
  EXPECT_EQ(sub.json["files"][0]["path"], "MLmodel");
  Reply root = Call("GET", kApi);
  EXPECT_EQ(root.json, core::Json::parse(R"({"files":[{"path":"1","is_dir":true}]})"));
  Reply empty = Call("GET", std::string(kApi) + "?path=1/0123abcd/nothing");
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(empty.body, "{}");

  Reply model = Call("GET", run + "/model/MLmodel");
  ASSERT_EQ(model.status, 200);
  EXPECT_EQ(model.body, "flavors:\n  python_function: {}\n");
  EXPECT_EQ(model.raw.Header("content-type"), "text/plain");
  EXPECT_EQ(model.raw.Header("content-disposition"), "attachment; filename=\"MLmodel\"");
  EXPECT_EQ(model.raw.Header("x-content-type-options"), "nosniff");
  EXPECT_EQ(Call("GET", run + "/model/model.pkl").raw.Header("content-type"),
            "application/octet-stream");
  EXPECT_EQ(Call("GET", run + "/plot.png").raw.Header("content-type"), "image/png");
  EXPECT_EQ(Call("GET", run + "/metrics%20file.txt").raw.Header("content-type"), "text/plain");
  EXPECT_EQ(Call("GET", std::string(kAjax) + "/1/0123abcd/artifacts/plot.png").body, "\x89PNG");

  Reply head = Call("HEAD", run + "/model/model.pkl");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.raw.Header("content-length"), "1000");

  EXPECT_EQ(Call("DELETE", run + "/model").body, "{}");
  EXPECT_EQ(Call("GET", run + "/model/MLmodel").status, 404);
  EXPECT_EQ(Call("DELETE", std::string(kAjax) + "/1/0123abcd/artifacts/plot.png").status, 200);
  EXPECT_EQ(Call("GET", std::string(kApi) + "?path=1/0123abcd/artifacts").json["files"].size(), 1u);
}

TEST_F(ArtifactRoutesTest, ErrorsUseMlflowsCodes) {
  Reply missing = Call("GET", std::string(kApi) + "/1/run/artifacts/nope.txt");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json["error_code"], "RESOURCE_DOES_NOT_EXIST");
  EXPECT_EQ(missing.json["message"], "artifact \"1/run/artifacts/nope.txt\" does not exist");
  EXPECT_FALSE(missing.json.contains("error"));
  EXPECT_EQ(Call("DELETE", std::string(kApi) + "/1/run/nope").json["error_code"],
            "RESOURCE_DOES_NOT_EXIST");

  Reply unknown = Call("GET", std::string(kApi) + "?path=x&pth=y");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(unknown.json["error_code"], "INVALID_PARAMETER_VALUE");
  EXPECT_EQ(Call("PUT", std::string(kApi) + "/a.txt?x=1", "x").status, 400);

  ASSERT_TRUE(store_->Put("dir/file", "x"));
  Reply dir = Call("GET", std::string(kApi) + "/dir");
  EXPECT_EQ(dir.status, 400);
  EXPECT_EQ(dir.json["error_code"], "INVALID_PARAMETER_VALUE");
  Reply onto_dir = Call("PUT", std::string(kApi) + "/dir", "y");
  EXPECT_EQ(onto_dir.status, 400);
}

TEST_F(ArtifactRoutesTest, AuthorizeSeesTheNormalisedPathAndDecides) {
  Reply denied = Call("GET", std::string(kApi) + "/denied/x.txt");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.json["error_code"], "PERMISSION_DENIED");
  EXPECT_EQ(denied.json["message"], "no access to \"denied/x.txt\"");
  EXPECT_EQ(Call("PUT", std::string(kApi) + "/readonly/x.txt", "x").status, 403);
  EXPECT_FALSE(std::filesystem::exists(root_ / "readonly"));
  ASSERT_TRUE(store_->Put("readonly/x.txt", "x"));
  EXPECT_EQ(Call("GET", std::string(kApi) + "/readonly/x.txt").status, 200);
  EXPECT_EQ(Call("DELETE", std::string(kApi) + "/readonly/x.txt").status, 403);
  EXPECT_EQ(Call("GET", std::string(kApi) + "?path=denied/").status, 403);
  EXPECT_EQ(Call("GET", kApi).status, 200);
  // A traversing path is refused before authorize is asked.
  EXPECT_EQ(Call("GET", std::string(kApi) + "/readonly/../denied/x.txt").status, 400);
  EXPECT_EQ(Seen(),
            (std::vector<std::string>{"GET denied/x.txt read", "PUT readonly/x.txt write",
                                      "GET readonly/x.txt read", "DELETE readonly/x.txt write",
                                      "GET denied read", "GET  read"}));
}

TEST_F(ArtifactRoutesTest, UploadsMayBeLargerThanTheServerDefaultUpToTheLimit) {
  const std::string two_mib(size_t{2} << 20, 'm');  // the server default is 1 MiB
  Reply big = Call("PUT", std::string(kApi) + "/big.bin", two_mib);
  EXPECT_EQ(big.status, 200) << big.body;
  EXPECT_EQ(std::filesystem::file_size(root_ / "big.bin"), two_mib.size());
  Reply too_big =
      Call("PUT", std::string(kApi) + "/huge.bin", std::string((size_t{3} << 20) + 1, 'm'));
  EXPECT_EQ(too_big.status, 413);
  EXPECT_FALSE(std::filesystem::exists(root_ / "huge.bin"));
}

// Traversal attempts sent as raw request targets: each must be refused
// (400), or miss (404), and never answer with anything from outside.
TEST_F(ArtifactRoutesTest, TraversalThroughTheRoutesNeverLeavesTheRoot) {
  ASSERT_TRUE(store_->Put("1/run/artifacts/ok.txt", "inside"));
  std::filesystem::create_directory_symlink(outside_, root_ / "1/run/artifacts/link");
  std::filesystem::create_symlink(outside_ / "secret.txt", root_ / "1/run/artifacts/secret.txt");
  std::filesystem::create_symlink("/etc/passwd", root_ / "passwd");

  const std::string api = kApi;
  const std::string reads[] = {
      api + "/../../etc/passwd",
      api + "/../../../outside/secret.txt",
      api + "/1/run/artifacts/../../../../outside/secret.txt",
      api + "/%2e%2e/%2e%2e/etc/passwd",
      api + "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
      api + "/..%2f..%2fetc%2fpasswd",
      api + "/%252e%252e/%252e%252e/etc/passwd",
      api + "/%252e%252e%252fetc%252fpasswd",
      api + "//etc/passwd",
      api + "///etc/passwd",
      api + "/..%5c..%5coutside%5csecret.txt",
      api + "/1/run/artifacts/ok.txt%00/../../../outside/secret.txt",
      api + "/1/run/artifacts/ok.txt%23/../../../outside/secret.txt",
      api + "/file:%2f%2f%2fetc%2fpasswd",
      api + "/C:%5cWindows%5cwin.ini",
      api + "/1/run/artifacts/link/secret.txt",
      api + "/1/run/artifacts/secret.txt",
      api + "/passwd",
      api + "?path=../outside",
      api + "?path=%2e%2e%2foutside",
      api + "?path=/etc",
      api + "?path=1/run/artifacts/link",
      std::string(kAjax) + "/../../etc/passwd",
      std::string(kAjax) + "/1/run/artifacts/link/secret.txt",
  };
  for (const std::string& target : reads) {
    Reply r = Call("GET", target);
    EXPECT_TRUE(r.status == 400 || r.status == 404 || (r.status == 200 && r.body == "{}"))
        << target << " -> " << r.status << " " << r.body;
    EXPECT_EQ(r.body.find("TOP SECRET"), std::string::npos) << target;
    EXPECT_EQ(r.body.find("root:"), std::string::npos) << target;
    if (r.status == 400) {
      EXPECT_EQ(r.json["error_code"], "INVALID_PARAMETER_VALUE") << target;
    }
  }
  EXPECT_EQ(Call("GET", api + "/../../etc/passwd").json["message"],
            "path \"../../etc/passwd\": must not contain \".\" or \"..\" segments");

  const std::string writes[] = {
      api + "/../../outside/pwned.txt",        api + "/%2e%2e/%2e%2e/outside/pwned.txt",
      api + "/..%2f..%2foutside%2fpwned.txt",  api + "//tmp/kervan-pwned.txt",
      api + "/1/run/artifacts/link/pwned.txt",
  };
  for (const std::string& target : writes) {
    Reply put = Call("PUT", target, "PWNED");
    EXPECT_EQ(put.status, 400) << target << " -> " << put.body;
    Reply del = Call("DELETE", target);
    EXPECT_TRUE(del.status == 400 || del.status == 404) << target << " -> " << del.body;
  }
  // Deleting the planted links removes the links, not what they point to.
  EXPECT_EQ(Call("DELETE", api + "/1/run/artifacts/link").status, 200);
  EXPECT_EQ(Call("DELETE", api + "/passwd").status, 200);
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd"));
  EXPECT_FALSE(std::filesystem::exists("/tmp/kervan-pwned.txt"));
  EXPECT_EQ(ReadFile(outside_ / "secret.txt"), "TOP SECRET");
  size_t outside_entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(outside_))
    ++outside_entries;
  EXPECT_EQ(outside_entries, 1u);
  EXPECT_EQ(Call("GET", api + "/1/run/artifacts/ok.txt").body, "inside");
}

}  // namespace
}  // namespace kervan::artifacts

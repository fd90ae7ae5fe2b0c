// Model runtimes and request formats: the XGBoost C API runtime against
// Python XGBoost's own predictions on the same model, an OIP upstream served
// by a real HTTP server, and every request-format error with its field.
#include "serving/runtime.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "http/http.h"

namespace kervan::serving {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The benchmark's model (bench/serving/make_model.py): trained once per test
// binary by Debian's python3-xgboost, with Python's predictions for 20 rows.
class XgboostModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("kervan-runtime-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    std::string cmd = std::string("/usr/bin/python3 ") + KERVAN_SOURCE_DIR +
                      "/bench/serving/make_model.py --out " + (*dir_ / "model.json").string() +
                      " --row-out " + (*dir_ / "row.json").string() + " --check-out " +
                      (*dir_ / "check.json").string() + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    model_ = new std::string(ReadFile(*dir_ / "model.json"));
    check_ = new Json(Json::parse(ReadFile(*dir_ / "check.json")));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete model_;
    delete check_;
  }

  static Batch Rows(int n) {
    Batch b;
    b.rows = n;
    b.cols = 30;
    for (int r = 0; r < n; ++r) {
      for (const Json& v : (*check_)["rows"][r])
        b.values.push_back(v.get<float>());
    }
    return b;
  }

  static fs::path* dir_;
  static std::string* model_;
  static Json* check_;
};
fs::path* XgboostModel::dir_ = nullptr;
std::string* XgboostModel::model_ = nullptr;
Json* XgboostModel::check_ = nullptr;

TEST_F(XgboostModel, SchemaComesFromTheModel) {
  auto rt = LoadXgboostModel(*model_, nullptr);
  ASSERT_TRUE(rt) << rt.error().message;
  EXPECT_EQ((*rt)->kind(), "xgboost");
  EXPECT_EQ((*rt)->schema().num_features, 30);
  ASSERT_EQ((*rt)->schema().names.size(), 30u);
  EXPECT_EQ((*rt)->schema().names[0], "mean_radius");
  EXPECT_EQ((*rt)->schema().names, (*check_)["feature_names"].get<std::vector<std::string>>());
}

TEST_F(XgboostModel, PredictionsEqualPythonXgboost) {
  auto rt = LoadXgboostModel(*model_, nullptr);
  ASSERT_TRUE(rt);
  auto p = (*rt)->Predict(Rows(20));
  ASSERT_TRUE(p) << p.error().message;
  ASSERT_EQ(p->rows, 20);
  EXPECT_EQ(p->per_row, 1);
  for (int r = 0; r < 20; ++r)
    EXPECT_NEAR(p->first(r), (*check_)["predictions"][r].get<double>(), 1e-6) << "row " << r;
}

TEST_F(XgboostModel, PredictIsThreadSafe) {
  auto rt = LoadXgboostModel(*model_, nullptr);
  ASSERT_TRUE(rt);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        int row = (t * 7 + i) % 20;
        Batch b = Rows(20);
        Batch one{.rows = 1, .cols = 30};
        one.values.assign(b.values.begin() + row * 30, b.values.begin() + (row + 1) * 30);
        auto p = (*rt)->Predict(one);
        if (!p || std::fabs(p->first(0) - (*check_)["predictions"][row].get<double>()) > 1e-6)
          ++wrong;
      }
    });
  }
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(XgboostModel, DeclaredInputsMustMatchTheModel) {
  Json names = Json::array();
  for (const Json& n : (*check_)["feature_names"])
    names.push_back({{"name", n}, {"type", "double"}});
  EXPECT_TRUE(LoadXgboostModel(*model_, {{"inputs", names}}));

  Json fewer = names;
  fewer.erase(fewer.size() - 1);
  auto r = LoadXgboostModel(*model_, {{"inputs", fewer}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "signature.inputs");
  EXPECT_NE(r.error().message.find("29 inputs"), std::string::npos) << r.error().message;

  Json renamed = names;
  renamed[3]["name"] = "area";
  r = LoadXgboostModel(*model_, {{"inputs", renamed}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "signature.inputs[3]");
  EXPECT_NE(r.error().message.find("mean_area"), std::string::npos) << r.error().message;
}

TEST(XgboostLoad, GarbageIsRefused) {
  EXPECT_FALSE(LoadXgboostModel("", nullptr));
  auto r = LoadXgboostModel("{\"not\": \"a model\"}", nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, core::ErrorCode::kInvalidArgument);
}

// ---------------------------------------------------------------- request formats

InputSchema Named() {
  return {.num_features = 3, .names = {"a", "b", "c"}};
}

std::string ParseError(const char* body, bool oip = false, InputSchema schema = Named()) {
  Json j = Json::parse(body);
  auto r = oip ? ParseOipRequest(j, schema, 4) : ParseInstances(j, schema, 4);
  return r ? "<ok>" : r.error().field;
}

TEST(Instances, ArraysObjectsAndNulls) {
  auto b = ParseInstances(Json::parse(R"({"instances": [[1, 2, 3], {"c": 6, "a": 4, "b": null}]})"),
                          Named(), 4);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->rows, 2);
  EXPECT_EQ(b->values[0], 1);
  EXPECT_EQ(b->values[3], 4);
  EXPECT_TRUE(std::isnan(b->values[4]));
  EXPECT_EQ(b->values[5], 6);
}

TEST(Instances, ErrorsNameTheField) {
  EXPECT_EQ(ParseError(R"({})"), "instances");
  EXPECT_EQ(ParseError(R"({"instances": []})"), "instances");
  EXPECT_EQ(ParseError(R"({"instances": 5})"), "instances");
  EXPECT_EQ(ParseError(R"({"instances": [[1, 2, 3], [1, 2]]})"), "instances[1]");
  EXPECT_EQ(ParseError(R"({"instances": [[1, "x", 3]]})"), "instances[0][1]");
  EXPECT_EQ(ParseError(R"({"instances": [{"a": 1, "b": 2}]})"), "instances[0].c");
  EXPECT_EQ(ParseError(R"({"instances": [{"a": 1, "b": 2, "c": 3, "d": 4}]})"), "instances[0].d");
  EXPECT_EQ(ParseError(R"({"instances": [{"a": 1, "b": [2], "c": 3}]})"), "instances[0].b");
  EXPECT_EQ(ParseError(R"({"instances": ["row"]})"), "instances[0]");
  EXPECT_EQ(ParseError(R"({"instances": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3]]})"),
            "instances");  // more than max_rows
  EXPECT_EQ(ParseError(R"({"instances": [[1, 2, 3]], "inputs": []})"), "inputs");
  EXPECT_EQ(ParseError(R"({"instances": [{"a": 1, "b": 2, "c": 3}]})", false, {.num_features = 3}),
            "instances[0]");  // unnamed features need arrays
}

TEST(Oip, OneMatrixTensorOrOneTensorPerFeature) {
  auto b = ParseOipRequest(Json::parse(R"({"id": "r1", "inputs": [{"name": "x", "shape": [2, 3],
      "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]})"),
                           Named(), 4);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->rows, 2);
  EXPECT_EQ(b->values[5], 6);
  b = ParseOipRequest(Json::parse(R"({"inputs": [{"name": "x", "shape": [2, 3],
      "datatype": "FP64", "data": [[1, 2, 3], [4, 5, 6]]}]})"),
                      Named(), 4);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->values[3], 4);
  b = ParseOipRequest(Json::parse(R"({"inputs": [
      {"name": "c", "shape": [2], "datatype": "FP32", "data": [3, 6]},
      {"name": "a", "shape": [2, 1], "datatype": "INT64", "data": [1, 4]},
      {"name": "b", "shape": [2], "datatype": "BOOL", "data": [true, false]}]})"),
                      Named(), 4);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->rows, 2);
  EXPECT_EQ(std::vector<float>(b->values.begin(), b->values.end()),
            (std::vector<float>{1, 1, 3, 4, 0, 6}));
}

TEST(Oip, ErrorsNameTheField) {
  EXPECT_EQ(ParseError(R"({"inputs": []})", true), "inputs");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
      "data": [1, 2, 3, 4]}]})",
                       true),
            "inputs[0].shape");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
      "data": [1, 2, 3]}]})",
                       true),
            "inputs[0].data");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "BYTES",
      "data": ["a", "b", "c"]}]})",
                       true),
            "inputs[0].datatype");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
      "data": [1, "b", 3]}]})",
                       true),
            "inputs[0].data");
  EXPECT_EQ(ParseError(R"({"inputs": [{"shape": [1, 3], "datatype": "FP32",
      "data": [1, 2, 3]}]})",
                       true),
            "inputs[0].name");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]},
      {"name": "z", "shape": [1], "datatype": "FP32", "data": [1]},
      {"name": "c", "shape": [1], "datatype": "FP32", "data": [1]}]})",
                       true),
            "inputs[1].name");
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [5, 3], "datatype": "FP32",
      "data": [1,2,3,1,2,3,1,2,3,1,2,3,1,2,3]}]})",
                       true),
            "inputs");  // > max_rows
  EXPECT_EQ(ParseError(R"({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32",
      "data": [1, 2, 3]}], "extra": 1})",
                       true),
            "extra");
}

TEST(Oip, ResponseShape) {
  Prediction p{.rows = 2, .per_row = 1, .values = {0.25, 0.75}};
  Json r = OipResponse("bc", "3", "req-1", p);
  EXPECT_EQ(r["model_name"], "bc");
  EXPECT_EQ(r["model_version"], "3");
  EXPECT_EQ(r["id"], "req-1");
  EXPECT_EQ(r["outputs"][0]["shape"], Json::array({2}));
  EXPECT_EQ(r["outputs"][0]["datatype"], "FP32");
  EXPECT_EQ(r["outputs"][0]["data"][1], 0.75);
}

// ---------------------------------------------------------------- HTTP upstream

Json ThreeInputs() {
  return {{"inputs", Json::array({{{"name", "a"}}, {{"name", "b"}}, {{"name", "c"}}})}};
}

TEST(Upstream, SpeaksOipToARealServer) {
  auto router = std::make_shared<http::Router>();
  std::atomic<int> calls{0};
  ASSERT_TRUE(router->Add({.method = "POST",
                           .pattern = "/v2/models/up/infer",
                           .handler =
                               [&calls](const http::Request& req) {
                                 ++calls;
                                 Json body = Json::parse(req.body);
                                 // Answers the sum of each row.
                                 const Json& in = body["inputs"][0];
                                 int64_t rows = in["shape"][0], cols = in["shape"][1];
                                 Json out = Json::array();
                                 for (int64_t r = 0; r < rows; ++r) {
                                   double s = 0;
                                   for (int64_t c = 0; c < cols; ++c)
                                     s += in["data"][r * cols + c].get<double>();
                                   out.push_back(s);
                                 }
                                 return http::Response::Json(
                                     200, {{"outputs", Json::array({{{"name", "y"},
                                                                     {"datatype", "FP64"},
                                                                     {"shape", {rows}},
                                                                     {"data", out}}})}});
                               },
                           .public_route = true}));
  ASSERT_TRUE(router->Add({.method = "POST",
                           .pattern = "/v2/models/broken/infer",
                           .handler =
                               [](const http::Request&) {
                                 return http::Response::Json(500, {{"error", "boom"}});
                               },
                           .public_route = true}));
  http::Server server({.port = 0, .access_log = false}, router);
  ASSERT_TRUE(server.Start());
  std::string base = "http://127.0.0.1:" + std::to_string(server.port());

  auto rt = ConnectUpstream({.url = base + "/v2/models/up"}, ThreeInputs());
  ASSERT_TRUE(rt) << rt.error().message;
  EXPECT_EQ((*rt)->schema().num_features, 3);
  auto p = (*rt)->Predict({.rows = 2, .cols = 3, .values = {1, 2, 3, 4, 5, 6}});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->values, (std::vector<double>{6, 15}));
  EXPECT_EQ(calls.load(), 1);

  auto broken = ConnectUpstream({.url = base + "/v2/models/broken"}, ThreeInputs());
  ASSERT_TRUE(broken);
  auto e = (*broken)->Predict({.rows = 1, .cols = 3, .values = {1, 2, 3}});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, core::ErrorCode::kUnavailable);
  EXPECT_NE(e.error().message.find("HTTP 500"), std::string::npos);
  server.Shutdown(std::chrono::milliseconds(100));

  // Nobody listens: unavailable, not a crash.
  auto gone = ConnectUpstream({.url = "http://127.0.0.1:1/v2/models/up"}, ThreeInputs());
  ASSERT_TRUE(gone);
  e = (*gone)->Predict({.rows = 1, .cols = 3, .values = {1, 2, 3}});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, core::ErrorCode::kUnavailable) << e.error().message;
}

TEST(Upstream, NeedsASignatureAndAnHttpUrl) {
  EXPECT_EQ(ConnectUpstream({.url = "http://127.0.0.1:1/v2/models/x"}, nullptr).error().field,
            "signature.inputs");
  EXPECT_EQ(ConnectUpstream({.url = "ftp://x"}, ThreeInputs()).error().field, "url");
}

}  // namespace
}  // namespace kervan::serving

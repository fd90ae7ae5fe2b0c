// The DOM-free log-batch and log-metric decoders (DecodeLogBatchFast,
// DecodeLogMetricFast) against the DOM routes they stand in for
// (mlflow::Args + DecodeLogBatch / DecodeLogMetric): the common bodies take
// the fast path, and whenever it decodes a body the DOM route decodes it to
// exactly the same run id and points (doubles compared bit for bit), over
// hand-picked edge cases and many random mutations of valid bodies.
#include <bit>
#include <cstring>
#include <random>
#include <string>

#include <gtest/gtest.h>

#include "tracking/internal.h"

namespace kervan::tracking::internal {
namespace {

// What the DOM route makes of `body` as a POST with a JSON Content-Type:
// nullopt when it rejects the body.
std::optional<DecodedLogBatch> ViaDom(const std::string& body) {
  http::Request req;
  req.method = "POST";
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = body;
  auto args = mlflow::Args(req);
  if (!args)
    return std::nullopt;
  auto decoded = DecodeLogBatch(*args);
  if (!decoded)
    return std::nullopt;
  return *decoded;
}

bool SameBits(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

// The invariant: a body the fast path takes decodes identically on the DOM
// route. Returns whether the fast path took it.
bool FastAgreesWithDom(const std::string& body) {
  std::optional<DecodedLogBatch> fast = DecodeLogBatchFast(body);
  if (!fast)
    return false;
  std::optional<DecodedLogBatch> dom = ViaDom(body);
  EXPECT_TRUE(dom.has_value()) << "fast path took a body the DOM route rejects: " << body;
  if (!dom)
    return true;
  EXPECT_EQ(fast->run_id, dom->run_id) << body;
  EXPECT_TRUE(fast->batch.params.empty() && dom->batch.params.empty()) << body;
  EXPECT_TRUE(fast->batch.tags.empty() && dom->batch.tags.empty()) << body;
  EXPECT_EQ(fast->batch.metrics.size(), dom->batch.metrics.size()) << body;
  for (size_t i = 0; i < std::min(fast->batch.metrics.size(), dom->batch.metrics.size()); ++i) {
    const MetricPoint& f = fast->batch.metrics[i];
    const MetricPoint& d = dom->batch.metrics[i];
    EXPECT_EQ(f.key, d.key) << body;
    EXPECT_TRUE(SameBits(f.value, d.value)) << f.value << " vs " << d.value << " in " << body;
    EXPECT_EQ(f.timestamp, d.timestamp) << body;
    EXPECT_EQ(f.step, d.step) << body;
  }
  return true;
}

std::string Batch(const std::string& metrics) {
  return R"({"run_id":"0123abcd","metrics":[)" + metrics + "]}";
}

// One to three random single-byte edits (replace, insert, erase) of `base`.
std::string Mutate(const std::string& base, std::mt19937& rng) {
  const std::string alphabet = "{}[]:,\"\\0123456789-+.eEnulratfs \t";
  std::string body = base;
  const int edits = 1 + static_cast<int>(rng() % 3);
  for (int e = 0; e < edits && !body.empty(); ++e) {
    size_t at = rng() % body.size();
    char c = alphabet[rng() % alphabet.size()];
    switch (rng() % 3) {
      case 0:
        body[at] = c;
        break;
      case 1:
        body.insert(body.begin() + static_cast<std::ptrdiff_t>(at), c);
        break;
      default:
        body.erase(at, 1);
        break;
    }
  }
  return body;
}

TEST(FastDecodeTest, DecodesTheCommonShape) {
  auto d = DecodeLogBatchFast(
      R"( {"run_id": "r1", "metrics": [{"key": "loss", "value": 0.25, "timestamp": 1700000000000, "step": 3},)"
      R"( {"step": -2, "timestamp": -5, "value": -1e-300, "key": "acc/top\u0031"},)"
      R"( {"key": "n", "value": 7, "timestamp": 0}], "params": [], "tags": null} )");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->run_id, "r1");
  ASSERT_EQ(d->batch.metrics.size(), 3U);
  EXPECT_EQ(d->batch.metrics[0].key, "loss");
  EXPECT_EQ(d->batch.metrics[0].value, 0.25);
  EXPECT_EQ(d->batch.metrics[0].timestamp, 1700000000000);
  EXPECT_EQ(d->batch.metrics[0].step, 3);
  EXPECT_EQ(d->batch.metrics[1].key, "acc/top1");
  EXPECT_EQ(d->batch.metrics[1].value, -1e-300);
  EXPECT_EQ(d->batch.metrics[1].timestamp, -5);
  EXPECT_EQ(d->batch.metrics[1].step, -2);
  EXPECT_EQ(d->batch.metrics[2].value, 7.0);
  EXPECT_EQ(d->batch.metrics[2].step, 0);  // absent: 0, as MLflow
  EXPECT_TRUE(d->batch.params.empty());
  EXPECT_TRUE(d->batch.tags.empty());
}

TEST(FastDecodeTest, DeclinesWhatTheDomRouteMustAnswer) {
  const std::string ok = R"({"key":"m","value":1,"timestamp":1,"step":1})";
  ASSERT_TRUE(DecodeLogBatchFast(Batch(ok)).has_value());
  std::string thousand_and_one;
  for (int i = 0; i < 1001; ++i)
    thousand_and_one += (i ? "," : "") + ok;
  std::string thousand = thousand_and_one.substr(ok.size() + 1);
  EXPECT_TRUE(DecodeLogBatchFast(Batch(thousand)).has_value());
  const std::string declined[] = {
      "",
      "[]",
      R"("{\"run_id\":\"r\",\"metrics\":[]}")",  // double-encoded: the DOM route's
      Batch(thousand_and_one),                   // over MLflow's limit
      Batch(ok) + "x",                           // trailing text
      Batch(ok) + "{}",
      R"({"run_id":"r","metrics":[)" + ok + "]",  // unterminated
      R"({"run_uuid":"r","metrics":[)" + ok + "]}",
      R"({"run_id":"","metrics":[)" + ok + "]}",
      R"({"run_id":7,"metrics":[)" + ok + "]}",
      R"({"run_id":"r","run_id":"s","metrics":[)" + ok + "]}",
      R"({"run_id":"r","metrics":[)" + ok + "],\"extra\":1}",
      R"({"run_id":"r","metrics":[)" + ok + R"(],"params":[{"key":"a","value":"b"}]})",
      R"({"run_id":"r","metrics":[)" + ok + R"(],"tags":[{"key":"a","value":"b"}]})",
      R"({"run_id":"r","metrics":null})",
      R"({"run_id":"r","metrics":{}})",
      Batch(R"({"key":"m","value":"NaN","timestamp":1})"),
      Batch(R"({"key":"m","value":"1.5","timestamp":1})"),
      Batch(R"({"key":"m","value":null,"timestamp":1})"),
      Batch(R"({"key":"m","timestamp":1})"),
      Batch(R"({"key":"m","value":1})"),
      Batch(R"({"value":1,"timestamp":1})"),
      Batch(R"({"key":"","value":1,"timestamp":1})"),
      Batch(R"({"key":5,"value":1,"timestamp":1})"),
      Batch(R"({"key":"m","value":1,"timestamp":"1"})"),
      Batch(R"({"key":"m","value":1,"timestamp":1.5})"),
      Batch(R"({"key":"m","value":1,"timestamp":1,"step":null})"),
      Batch(R"({"key":"m","value":1,"timestamp":1,"step":1,"step":2})"),
      Batch(R"({"key":"m","value":1,"timestamp":1,"extra":true})"),
      Batch(R"({"key":"m","value":1e999,"timestamp":1})"),
      Batch(R"({"key":"m","value":123456789012345678901234567890,"timestamp":1})"),
      Batch(R"({"key":"m","value":1,"timestamp":9223372036854775808})"),
      Batch(R"({"key":"m\u0001","value":1,"timestamp":1})"),
      Batch("{\"key\":\"m\x01\",\"value\":1,\"timestamp\":1}"),
      Batch(R"({"key":"m","value":NaN,"timestamp":1})"),
      Batch("[]"),
      Batch("1"),
      // Field names spelled with escapes: the DOM route's (names are
      // compared as written).
      R"({"run_\u0069d":"r","metrics":[)" + ok + "]}",
      Batch(R"({"\u006bey":"m","value":1,"timestamp":1})"),
  };
  for (const std::string& body : declined)
    EXPECT_FALSE(DecodeLogBatchFast(body).has_value()) << body;
  EXPECT_FALSE(DecodeLogBatchFast(Batch(ok) + std::string(5u << 20, ' ')).has_value());
}

TEST(FastDecodeTest, AgreesWithTheDomRouteOnEdgeCases) {
  const std::string bodies[] = {
      Batch(R"({"key":"m","value":-0,"timestamp":1})"),  // integer -0 is +0.0 on both
      Batch(R"({"key":"m","value":-0.0,"timestamp":1})"),
      Batch(R"({"key":"m","value":18446744073709551615,"timestamp":1})"),
      Batch(R"({"key":"m","value":9223372036854775807,"timestamp":-9223372036854775808})"),
      Batch(R"({"key":"m","value":4.9406564584124654e-324,"timestamp":1})"),
      Batch(R"({"key":"m","value":1.7976931348623157e308,"timestamp":1})"),
      Batch(R"({"key":"m","value":0.1e1,"timestamp":1,"step":0})"),
      Batch(R"({"key":"m","value":2.2250738585072011e-308,"timestamp":1})"),
      Batch(R"({"key":"m","value":1E+2,"timestamp":1})"),
      Batch(R"({"key":"\u00e9t\u00e9","value":1,"timestamp":1})"),
      Batch(R"({"key":"a\/b","value":1,"timestamp":1})"),
      Batch(""),
      R"({"metrics":[],"run_id":"r","tags":[],"params":[]})",
      "\t\r\n {\"run_id\" : \"r\" , \"metrics\" : [ ] } \n",
  };
  for (const std::string& body : bodies)
    EXPECT_TRUE(FastAgreesWithDom(body)) << "declined: " << body;
}

// Random single-byte edits of valid bodies: whatever the fast path takes,
// the DOM route decodes identically (most edits make the body malformed or
// change a type, and both routes must then agree that only the DOM answers).
TEST(FastDecodeTest, AgreesWithTheDomRouteOnRandomMutations) {
  const std::string base =
      Batch(R"({"key":"loss","value":0.125,"timestamp":1700000000000,"step":12},)"
            R"({"key":"acc","value":-3e-7,"timestamp":1700000000001,"step":13},)"
            R"({"key":"n","value":42,"timestamp":5})");
  ASSERT_TRUE(FastAgreesWithDom(base));
  std::mt19937 rng(20261128);
  int taken = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string body = Mutate(base, rng);
    taken += FastAgreesWithDom(body) ? 1 : 0;
    if (HasFailure())
      FAIL() << "mutation " << i << ": " << body;
  }
  // Some mutations keep the shape (a digit for a digit): the fast path must
  // still take those, or this test checks nothing.
  EXPECT_GT(taken, 1000);
}

// The log-metric decoder against its DOM route (mlflow::Args +
// DecodeLogMetric), as above. Returns whether the fast path took `body`.
bool FastMetricAgreesWithDom(const std::string& body) {
  std::optional<DecodedLogMetric> fast = DecodeLogMetricFast(body);
  if (!fast)
    return false;
  http::Request req;
  req.method = "POST";
  req.headers.emplace_back("Content-Type", "application/json");
  req.body = body;
  auto args = mlflow::Args(req);
  Result<DecodedLogMetric> dom =
      args ? DecodeLogMetric(*args) : Result<DecodedLogMetric>(args.error());
  EXPECT_TRUE(static_cast<bool>(dom)) << "fast path took a body the DOM route rejects: " << body;
  if (!dom)
    return true;
  EXPECT_EQ(fast->run_id, dom->run_id) << body;
  EXPECT_EQ(fast->metric.key, dom->metric.key) << body;
  EXPECT_TRUE(SameBits(fast->metric.value, dom->metric.value))
      << fast->metric.value << " vs " << dom->metric.value << " in " << body;
  EXPECT_EQ(fast->metric.timestamp, dom->metric.timestamp) << body;
  EXPECT_EQ(fast->metric.step, dom->metric.step) << body;
  return true;
}

TEST(FastDecodeTest, LogMetricDecodesTheCommonShapeAndDeclinesTheRest) {
  auto d = DecodeLogMetricFast(
      R"( {"run_id": "r1", "key": "loss", "value": 0.25, "timestamp": 1700000000000, "step": 3} )");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->run_id, "r1");
  EXPECT_EQ(d->metric.key, "loss");
  EXPECT_EQ(d->metric.value, 0.25);
  EXPECT_EQ(d->metric.timestamp, 1700000000000);
  EXPECT_EQ(d->metric.step, 3);
  auto no_step = DecodeLogMetricFast(R"({"timestamp":5,"value":7,"key":"n","run_id":"r"})");
  ASSERT_TRUE(no_step.has_value());
  EXPECT_EQ(no_step->metric.step, 0);  // absent: 0, as MLflow
  const std::string declined[] = {
      "",
      "[]",
      R"({"key":"m","value":1,"timestamp":1})",                 // no run id
      R"({"run_uuid":"r","key":"m","value":1,"timestamp":1})",  // the DOM route's alias
      R"({"run_id":"r","run_uuid":"r","key":"m","value":1,"timestamp":1})",
      R"({"run_id":"","key":"m","value":1,"timestamp":1})",
      R"({"run_id":7,"key":"m","value":1,"timestamp":1})",
      R"({"run_id":"r","run_id":"s","key":"m","value":1,"timestamp":1})",
      R"({"run_id":"r","key":"m","value":1,"timestamp":1,"model_id":"x"})",
      R"({"run_id":"r","key":"m","value":"NaN","timestamp":1})",
      R"({"run_id":"r","key":"m","value":null,"timestamp":1})",
      R"({"run_id":"r","key":"m","timestamp":1})",
      R"({"run_id":"r","key":"m","value":1})",
      R"({"run_id":"r","key":"","value":1,"timestamp":1})",
      R"({"run_id":"r","key":"m","value":1,"timestamp":1.5})",
      R"({"run_id":"r","key":"m","value":1,"timestamp":1,"step":null})",
      R"({"run_id":"r","key":"m\u0001","value":1,"timestamp":1})",
      R"({"run_id":"r","key":"m","value":1,"timestamp":1}x)",
      R"({"run_id":"r","\u006bey":"m","value":1,"timestamp":1})",
  };
  for (const std::string& body : declined)
    EXPECT_FALSE(DecodeLogMetricFast(body).has_value()) << body;
  for (const std::string& body :
       {std::string(R"({"run_id":"r","key":"m","value":-0,"timestamp":1})"),
        std::string(R"({"run_id":"r","key":"m","value":18446744073709551615,"timestamp":-1})"),
        std::string(R"({"run_id":"r","key":"\u00e9","value":1E+2,"timestamp":1,"step":-4})")})
    EXPECT_TRUE(FastMetricAgreesWithDom(body)) << "declined: " << body;
}

TEST(FastDecodeTest, LogMetricAgreesWithTheDomRouteOnRandomMutations) {
  const std::string base =
      R"({"run_id":"0123abcd","key":"loss","value":0.125,"timestamp":1700000000000,"step":12})";
  ASSERT_TRUE(FastMetricAgreesWithDom(base));
  std::mt19937 rng(20261129);
  int taken = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string body = Mutate(base, rng);
    taken += FastMetricAgreesWithDom(body) ? 1 : 0;
    if (HasFailure())
      FAIL() << "mutation " << i << ": " << body;
  }
  EXPECT_GT(taken, 1000);
}

}  // namespace
}  // namespace kervan::tracking::internal

// The CPU a log-batch of 1000 metric points costs the server before the
// metric writer stores it: decoding the body without a DOM
// (DecodeLogBatchFast) and encoding the points into per-key chunks and one
// batch text (EncodeChunks, JoinChunks); and decoding one log-metric body
// (DecodeLogMetricFast). The body has the shape
// bench/lua/log_batch.lua sends for (b) in bench/tracking_bench.sh: 100 keys
// x 10 steps, steps outermost.
#include <string>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "tracking/internal.h"

namespace {

namespace ti = kervan::tracking::internal;

std::string LogBatchBody(int keys, int steps) {
  std::string metrics;
  for (int s = 0; s < steps; ++s) {
    for (int k = 0; k < keys; ++k) {
      const int step = 80 + s;
      metrics += fmt::format("{}{{\"key\":\"m{}\",\"value\":{:.6f},\"timestamp\":{},\"step\":{}}}",
                             metrics.empty() ? "" : ",", k, (k + 1.0) / (step + 1),
                             1700000000000 + step, step);
    }
  }
  return fmt::format("{{\"run_id\":\"0123456789abcdef0123456789abcdef\",\"metrics\":[{}]}}",
                     metrics);
}

void BM_DecodeLogBatchFast(benchmark::State& state) {
  const std::string body = LogBatchBody(100, 10);
  for (auto _ : state) {
    auto decoded = ti::DecodeLogBatchFast(body);
    if (!decoded)
      state.SkipWithError("the body was declined");
    benchmark::DoNotOptimize(decoded);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_DecodeLogBatchFast);

// One log-metric body as bench/lua/log_metric.lua sends it for (a).
void BM_DecodeLogMetricFast(benchmark::State& state) {
  const std::string body =
      R"({"run_id":"0123456789abcdef0123456789abcdef","key":"loss","value":0.000123,)"
      R"("timestamp":1700000012345,"step":1000012345})";
  for (auto _ : state) {
    auto decoded = ti::DecodeLogMetricFast(body);
    if (!decoded)
      state.SkipWithError("the body was declined");
    benchmark::DoNotOptimize(decoded);
  }
}
BENCHMARK(BM_DecodeLogMetricFast);

void BM_EncodeChunks(benchmark::State& state) {
  const auto decoded = ti::DecodeLogBatchFast(LogBatchBody(100, 10));
  if (!decoded) {
    state.SkipWithError("the body was declined");
    return;
  }
  for (auto _ : state) {
    auto chunks = ti::EncodeChunks(42, decoded->batch.metrics);
    std::string batch = ti::JoinChunks(chunks);
    benchmark::DoNotOptimize(batch);
  }
  state.SetItemsProcessed(state.iterations() * 1000);
}
BENCHMARK(BM_EncodeChunks);

}  // namespace

BENCHMARK_MAIN();

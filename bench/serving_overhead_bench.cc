// What the gateway adds to a prediction (docs/performance.md, "Serving").
//  - RuntimeDirect: XGBoost's inplace predict of one row through the runtime
//    (the model's own cost);
//  - GatewayInfer: the same row through Gateway::Infer, as the
//    /v1/endpoints/{name}/predict handler calls it. That adds JSON parsing
//    and validation against the schema, routing (a canary at 50 % with a
//    header route), Prometheus metrics, window statistics, sampling (10 %)
//    and the JSON answer. HTTP itself is not included; bench/serving_bench.sh
//    measures whole requests.
// Each reports p50_us and p99_us over its iterations. The gateway's added
// latency is GatewayInfer minus RuntimeDirect, at the same percentile.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <benchmark/benchmark.h>

#include "serving/serving.h"

namespace kervan::serving {
namespace {

namespace fs = std::filesystem;

struct Fixture {
  std::string model;
  Json row;
};

const Fixture& Model() {
  static const Fixture f = [] {
    fs::path dir = fs::temp_directory_path() / "kervan-serving-overhead-bench";
    fs::create_directories(dir);
    std::string cmd = std::string("/usr/bin/python3 ") + KERVAN_SOURCE_DIR +
                      "/bench/serving/make_model.py --out " + (dir / "model.json").string() +
                      " --row-out " + (dir / "row.json").string() + " >/dev/null";
    if (std::system(cmd.c_str()) != 0)
      std::abort();
    auto read = [](const fs::path& p) {
      std::ifstream in(p);
      std::stringstream s;
      s << in.rdbuf();
      return s.str();
    };
    return Fixture{read(dir / "model.json"), Json::parse(read(dir / "row.json"))};
  }();
  return f;
}

void Percentiles(benchmark::State& state, std::vector<double>& us) {
  std::sort(us.begin(), us.end());
  if (us.empty())
    return;
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[std::min(us.size() - 1, us.size() * 99 / 100)];
}

void BM_RuntimeDirect(benchmark::State& state) {
  auto rt = LoadXgboostModel(Model().model, nullptr);
  if (!rt) {
    state.SkipWithError(rt.error().message.c_str());
    return;
  }
  Batch batch{.rows = 1, .cols = 30};
  for (const Json& v : Model().row["instances"][0])
    batch.values.push_back(v.get<float>());
  std::vector<double> us;
  us.reserve(1 << 20);
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    auto p = (*rt)->Predict(batch);
    benchmark::DoNotOptimize(p);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  Percentiles(state, us);
}
BENCHMARK(BM_RuntimeDirect)->MinTime(2.0);

void BM_GatewayInfer(benchmark::State& state) {
  std::shared_ptr<ModelRuntime> runtime;
  {
    auto rt = LoadXgboostModel(Model().model, nullptr);
    if (!rt) {
      state.SkipWithError(rt.error().message.c_str());
      return;
    }
    runtime = std::move(rt).value();
  }
  Gateway gateway(
      {.loader = [runtime](const std::string&, int64_t) -> Result<std::shared_ptr<ModelRuntime>> {
         return runtime;
       },
       .sample_sink = [](std::vector<Sample>) {}});
  RoutingTable table;
  table.endpoints["bench"] =
      RouteEntry{.endpoint = "bench",
                 .model = "bench",
                 .stable = 1,
                 .candidate = 2,
                 .rollout_id = "r1",
                 .rule = {.phase = Phase::kCanary,
                          .weight = 50,
                          .header_routes = {{.header = "x-group", .value = "beta"}}},
                 .sample_percent = 10};
  gateway.Apply(table);
  gateway.Start();
  http::Request req;
  req.method = "POST";
  req.body = Model().row.dump();
  req.request_id = "bench";
  std::vector<double> us;
  us.reserve(1 << 20);
  int64_t n = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    InferResponse r = gateway.Infer({.endpoint = "bench", .http = &req});
    benchmark::DoNotOptimize(r);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                     .count());
    if (r.response.status != 200) {
      state.SkipWithError(r.response.body.c_str());
      break;
    }
    if (++n % 4096 == 0)
      (void)gateway.DrainStats();  // as the controller does each cycle
  }
  gateway.Stop();
  Percentiles(state, us);
}
BENCHMARK(BM_GatewayInfer)->MinTime(2.0);

}  // namespace
}  // namespace kervan::serving

BENCHMARK_MAIN();

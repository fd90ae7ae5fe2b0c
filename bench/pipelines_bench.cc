// The pipelines module's hot paths (docs/performance.md, "Pipelines"):
//  - ValidateCsv: a validate step over a CSV of N rows x 12 columns with 8
//    expectations (parse + every check), reported as rows per second;
//  - DigestPath: the content digest every input and output gets (cache keys),
//    as bytes per second;
//  - ParsePipelineSpec: the example pipeline's spec (parsed on submit and
//    once per version per server).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <benchmark/benchmark.h>

#include "pipelines/checks.h"
#include "pipelines/spec.h"

namespace kervan::pipelines {
namespace {

namespace fs = std::filesystem;

fs::path BenchDir() {
  const char* base = std::getenv("KERVAN_BENCH_DIR");
  fs::path dir = fs::path(base ? base : "/var/tmp") / "kervan-pipelines-bench";
  fs::create_directories(dir);
  return dir;
}

// id, 10 numeric features, a 0/1 target; deterministic.
fs::path CsvOf(int64_t rows) {
  fs::path path = BenchDir() / ("data-" + std::to_string(rows) + ".csv");
  if (fs::exists(path))
    return path;
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> x(0, 100);
  std::ofstream out(path);
  out << "id";
  for (int f = 0; f < 10; ++f)
    out << ",f" << f;
  out << ",target\n";
  char cell[32];
  for (int64_t r = 1; r <= rows; ++r) {
    out << r;
    for (int f = 0; f < 10; ++f) {
      std::snprintf(cell, sizeof cell, ",%.6f", x(rng));
      out << cell;
    }
    out << ',' << (r % 3 == 0 ? 1 : 0) << '\n';
  }
  return path;
}

std::vector<Expectation> Expectations() {
  std::vector<Json> specs = {
      {{"expect", "column_exists"}, {"column", "target"}},
      {{"expect", "row_count"}, {"min", 1}},
      {{"expect", "not_null"}, {"column", "f0"}},
      {{"expect", "type"}, {"column", "id"}, {"type", "int"}},
      {{"expect", "range"}, {"column", "f1"}, {"min", 0}, {"max", 100}},
      {{"expect", "allowed_values"}, {"column", "target"}, {"values", {"0", "1"}}},
      {{"expect", "unique"}, {"column", "id"}},
      {{"expect", "regex"}, {"column", "id"}, {"pattern", "^[0-9]+$"}},
  };
  std::vector<Expectation> out;
  for (size_t i = 0; i < specs.size(); ++i) {
    auto e = ExpectationFromJson(specs[i], "bench");
    if (!e)
      std::abort();
    out.push_back(*e);
  }
  return out;
}

void BM_ValidateCsv(benchmark::State& state) {
  const int64_t rows = state.range(0);
  fs::path csv = CsvOf(rows);
  auto expectations = Expectations();
  for (auto _ : state) {
    auto report = ValidateCsv(csv, expectations);
    if (!report || !report->passed)
      state.SkipWithError("validation failed");
    benchmark::DoNotOptimize(report);
  }
  state.SetItemsProcessed(state.iterations() * rows);
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(fs::file_size(csv)));
}
BENCHMARK(BM_ValidateCsv)->Arg(10'000)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond);

void BM_DigestPath(benchmark::State& state) {
  const int64_t bytes = state.range(0) << 20;
  fs::path path = BenchDir() / ("blob-" + std::to_string(state.range(0)) + "MiB.bin");
  if (!fs::exists(path) || static_cast<int64_t>(fs::file_size(path)) != bytes) {
    std::ofstream out(path, std::ios::binary);
    std::string chunk(1 << 20, 'k');
    for (int64_t i = 0; i < state.range(0); ++i)
      out << chunk;
  }
  for (auto _ : state) {
    auto digest = DigestPath(path);
    if (!digest)
      state.SkipWithError("digest failed");
    benchmark::DoNotOptimize(digest);
  }
  state.SetBytesProcessed(state.iterations() * bytes);
}
BENCHMARK(BM_DigestPath)->Arg(1)->Arg(64)->Unit(benchmark::kMillisecond);

void BM_ParseExampleSpec(benchmark::State& state) {
  std::ifstream in(std::string(KERVAN_SOURCE_DIR) +
                   "/examples/pipelines/breast-cancer/pipeline.yaml");
  std::stringstream s;
  s << in.rdbuf();
  std::string yaml = "workdir: /srv/example\n" + s.str();
  for (auto _ : state) {
    auto spec = ParsePipelineSpec(yaml);
    if (!spec)
      state.SkipWithError(spec.error().message.c_str());
    benchmark::DoNotOptimize(spec);
  }
}
BENCHMARK(BM_ParseExampleSpec)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kervan::pipelines

BENCHMARK_MAIN();

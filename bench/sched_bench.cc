// Scheduler benchmarks: the cost of one Schedule() cycle, and of replaying a
// whole trace in the simulator.
//
//   schedule/full_cluster    100,000 pending jobs on 1,000 nodes × 8 GPUs with
//                            every GPU busy (8,000 running 1-GPU jobs, a
//                            quarter of them preemptible dev, the rest prod):
//                            nearly every job is rejected fast, plus the
//                            bounded preemption searches.
//   schedule/empty_cluster   the same queue on an idle cluster: about 4,000
//                            jobs are placed (best fit) until it is full, the
//                            rest wait.
//   schedule/*_explain_off   the same with PolicyConfig::explain_waiting off
//                            (what the simulator uses).
//   simulate/100k_jobs       GenerateTrace (100,000 jobs, seed 1) replayed on
//                            the default cluster of docs/scheduling.md with
//                            the kervan policy (fifo and strict too).
//
// Counters: pending (jobs in the queue), admitted (jobs started in the cycle),
// cycles (simulator).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "jobs/policy.h"
#include "jobs/simulator.h"

namespace kervan::jobs {
namespace {

constexpr int64_t kSec = 1'000'000;

struct Scenario {
  ClusterState cluster;
  std::vector<PendingJob> pending;
  Usage usage;
};

Scenario Make(bool full) {
  Scenario s;
  auto nodes = ParseClusterSpec("1000x8");
  s.cluster.nodes = std::move(*nodes);
  s.cluster.now_us = 1'000'000 * kSec;
  if (full) {
    int k = 0;
    for (const Node& n : s.cluster.nodes) {
      for (int g = 0; g < 8; ++g, ++k) {
        bool dev = k % 4 == 0;
        s.cluster.running.push_back(
            {.id = fmt::format("r{}", k),
             .project = fmt::format("p{}", k % 10),
             .user = fmt::format("u{}", k % 7),
             .priority_class = dev ? "dev" : "prod",
             .preemptible = dev,
             .allocation = {{.node = n.name, .gpu_indices = {g}}},
             .started_us = k * kSec,
             .expected_end_us = s.cluster.now_us + (1 + k % 5000) * 60 * kSec});
      }
    }
  }
  TraceGenOptions gen;
  gen.jobs = 100'000;
  gen.seed = 42;
  gen.projects = 10;
  gen.users_per_project = 8;
  for (const TraceJob& t : GenerateTrace(gen))
    s.pending.push_back({.id = t.id,
                         .project = t.project,
                         .user = t.user,
                         .priority_class = t.priority_class,
                         .resources = {.gpus = t.gpus, .nodes = t.nodes},
                         .preemptible = t.priority_class != "prod",
                         .queued_us = t.submit_us,
                         .expected_runtime_us = t.duration_us});
  for (int p = 0; p < 10; ++p)
    s.usage.by_project[fmt::format("p{}", p + 1)] = 1000.0 * p;
  return s;
}

void BM_Schedule(benchmark::State& state, bool full, bool explain) {
  static const Scenario full_s = Make(true);
  static const Scenario empty_s = Make(false);
  const Scenario& s = full ? full_s : empty_s;
  PolicyConfig config;
  config.explain_waiting = explain;
  size_t admitted = 0;
  for (auto _ : state) {
    Decision d = Schedule(config, s.cluster, s.pending, s.usage);
    admitted = d.admitted.size();
    benchmark::DoNotOptimize(d);
  }
  state.counters["pending"] = static_cast<double>(s.pending.size());
  state.counters["admitted"] = static_cast<double>(admitted);
}
BENCHMARK_CAPTURE(BM_Schedule, full_cluster, true, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Schedule, empty_cluster, false, true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Schedule, full_cluster_explain_off, true, false)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Schedule, empty_cluster_explain_off, false, false)
    ->Unit(benchmark::kMillisecond);

void BM_Simulate(benchmark::State& state, PolicyMode mode) {
  static const std::vector<TraceJob> trace = [] {
    TraceGenOptions gen;
    gen.jobs = 100'000;
    gen.seed = 1;
    return GenerateTrace(gen);
  }();
  auto nodes = ParseClusterSpec("64x8");
  PolicyConfig config;
  config.mode = mode;
  int64_t cycles = 0;
  double util = 0;
  for (auto _ : state) {
    auto report = Simulate(trace, *nodes, config, {});
    cycles = report->cycles;
    util = report->gpu_utilization;
    benchmark::DoNotOptimize(report);
  }
  state.counters["cycles"] = static_cast<double>(cycles);
  state.counters["utilization"] = util;
}
BENCHMARK_CAPTURE(BM_Simulate, 100k_jobs_kervan, PolicyMode::kKervan)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Simulate, 100k_jobs_fifo, PolicyMode::kFifo)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);
BENCHMARK_CAPTURE(BM_Simulate, 100k_jobs_strict, PolicyMode::kStrictPriority)
    ->Unit(benchmark::kSecond)
    ->Iterations(1);

}  // namespace
}  // namespace kervan::jobs

BENCHMARK_MAIN();

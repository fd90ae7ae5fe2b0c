// Local scheduler tools (no server needed):
//   kervan sched simulate        replay a trace against a cluster with one policy
//   kervan sched compare         the same trace under fifo, strict and kervan
//   kervan sched generate-trace  write a synthetic trace
// They run the same policy code as the server (src/jobs/policy.h) on a
// virtual clock (src/jobs/simulator.h); docs/scheduling.md explains the
// trace format and every number in the report.
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "app/cli_commands.h"
#include "jobs/simulator.h"

namespace kervan::app {
namespace {

struct SchedFlags {
  std::string trace, cluster, policy = "kervan", quotas_file;
  std::vector<std::string> quotas;
  double cycle_s = 10;
  double half_life_h = 24;
  bool hide_estimates = false;
  bool no_backfill = false;
  bool no_preemption = false;
  bool json = false;
};

void AddSimFlags(CLI::App* cmd, SchedFlags& f) {
  cmd->add_option("--trace", f.trace,
                  "CSV trace: job_id,submit_s,duration_s,gpus,nodes,project,user,"
                  "priority_class,preemptible[,gpu_type] (docs/scheduling.md)")
      ->required();
  cmd->add_option("--cluster", f.cluster, "nodes and GPUs: 64x8, or typed groups 4x8:A100,2x4:V100")
      ->required();
  cmd->add_option("--quota", f.quotas,
                  "project quota PROJECT=NOMINAL[:BORROWING_LIMIT[:WEIGHT]], e.g. risk=64:32:2 "
                  "(repeatable; a project without one has nominal 0, unlimited borrowing, "
                  "weight 1)");
  cmd->add_option("--quotas", f.quotas_file, "file with one quota spec per line (# comments)");
  cmd->add_option("--cycle", f.cycle_s, "seconds between scheduling cycles (virtual)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 86400.0));
  cmd->add_option("--usage-half-life", f.half_life_h,
                  "fair-share usage half-life in hours (virtual)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e6));
  cmd->add_flag("--hide-estimates", f.hide_estimates,
                "do not tell the scheduler job durations (backfill then only uses unreserved "
                "GPUs)");
  cmd->add_flag("--no-backfill", f.no_backfill, "kervan policy without backfill");
  cmd->add_flag("--no-preemption", f.no_preemption, "never preempt (and never reclaim)");
  cmd->add_flag("--json", f.json, "print the report as JSON");
}

struct Loaded {
  std::vector<jobs::TraceJob> trace;
  std::vector<jobs::Node> nodes;
  jobs::PolicyConfig config;
  jobs::SimulationOptions options;
};

core::Result<Loaded> Load(const SchedFlags& f) {
  Loaded l;
  ASSIGN_OR_RETURN(l.trace, jobs::ReadTraceFile(f.trace));
  ASSIGN_OR_RETURN(l.nodes, jobs::ParseClusterSpec(f.cluster));
  ASSIGN_OR_RETURN(l.config.mode, jobs::ParsePolicyMode(f.policy));
  if (!f.quotas_file.empty()) {
    std::ifstream in(f.quotas_file);
    if (!in)
      return core::InvalidArgument("cannot read quota file \"" + f.quotas_file + "\"", "quotas");
    std::stringstream ss;
    ss << in.rdbuf();
    auto qs = jobs::ParseQuotaFile(ss.str());
    if (!qs)
      return core::InvalidArgument(f.quotas_file + ": " + qs.error().message, "quotas");
    l.config.quotas = *qs;
  }
  for (const std::string& spec : f.quotas) {
    ASSIGN_OR_RETURN(auto q, jobs::ParseQuotaSpec(spec));
    l.config.quotas.push_back(q);
  }
  l.config.backfill = !f.no_backfill;
  l.config.preemption = !f.no_preemption;
  l.options.cycle_us = static_cast<int64_t>(f.cycle_s * 1e6);
  l.options.usage_half_life_us = static_cast<int64_t>(f.half_life_h * 3600e6);
  l.options.hide_runtime_estimates = f.hide_estimates;
  return l;
}

int Fail(const core::Error& e) {
  std::cerr << "error: " << e.message << "\n";
  return 2;
}

}  // namespace

void AddSchedCommands(CLI::App& app, int& rc) {
  auto* sched = app.add_subcommand(
      "sched",
      "Scheduler tools that run locally: replay job traces through the scheduling policy on a "
      "virtual clock, compare policies, generate synthetic traces (no server needed)");
  sched->require_subcommand(1);
  sched->footer(
      "The simulator runs the server's own scheduling policy. Trace format, cluster specs, "
      "quotas and report definitions: docs/scheduling.md.");

  auto sim_flags = std::make_shared<SchedFlags>();
  SchedFlags& sim = *sim_flags;
  auto* simulate = sched->add_subcommand(
      "simulate",
      "Replay a trace against a cluster under one policy; print JCT and queueing delay per "
      "priority class and project, utilization, preemptions and fairness");
  AddSimFlags(simulate, sim);
  simulate
      ->add_option("--policy", sim.policy,
                   "kervan (priority, fair share, quotas, "
                   "preemption, backfill), fifo, or strict")
      ->capture_default_str()
      ->check(CLI::IsMember({"kervan", "fifo", "strict"}));
  simulate->footer(
      "Example:\n  kervan sched generate-trace --jobs 10000 --seed 1 -o trace.csv\n"
      "  kervan sched simulate --trace trace.csv --cluster 64x8 --quota p1=256:128");
  simulate->callback([&rc, sim_flags] {
    const SchedFlags& sim = *sim_flags;
    auto loaded = Load(sim);
    if (!loaded) {
      rc = Fail(loaded.error());
      return;
    }
    auto start = std::chrono::steady_clock::now();
    auto report = jobs::Simulate(loaded->trace, loaded->nodes, loaded->config, loaded->options);
    double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!report) {
      rc = Fail(report.error());
      return;
    }
    if (sim.json) {
      core::Json j = jobs::ReportToJson(*report);
      j["wall_s"] = wall;
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << jobs::FormatReport(*report)
                << fmt::format("\n(simulated in {:.2f} s of wall time)\n", wall);
    }
    rc = 0;
  });

  auto cmp_flags = std::make_shared<SchedFlags>();
  SchedFlags& cmp = *cmp_flags;
  auto* compare = sched->add_subcommand(
      "compare",
      "Replay one trace under fifo, strict priority and kervan; print one row per policy "
      "(avg JCT, queueing delay of the top class, utilization, fairness, preemptions)");
  AddSimFlags(compare, cmp);
  compare->footer("Example:\n  kervan sched compare --trace trace.csv --cluster 64x8");
  compare->callback([&rc, cmp_flags] {
    const SchedFlags& cmp = *cmp_flags;
    std::vector<jobs::SimulationReport> reports;
    for (const char* policy : {"fifo", "strict", "kervan"}) {
      SchedFlags f = cmp;
      f.policy = policy;
      auto loaded = Load(f);
      if (!loaded) {
        rc = Fail(loaded.error());
        return;
      }
      auto report = jobs::Simulate(loaded->trace, loaded->nodes, loaded->config, loaded->options);
      if (!report) {
        rc = Fail(report.error());
        return;
      }
      reports.push_back(std::move(*report));
    }
    if (cmp.json) {
      core::Json j = core::Json::array();
      for (const auto& r : reports)
        j.push_back(jobs::ReportToJson(r));
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "trace " << cmp.trace << " on " << reports.front().cluster << "\n"
                << jobs::FormatComparison(reports);
    }
    rc = 0;
  });

  struct GenFlags {
    jobs::TraceGenOptions options;
    std::string out, types;
  };
  auto gen_flags = std::make_shared<GenFlags>();
  jobs::TraceGenOptions& gen = gen_flags->options;
  std::string& gen_out = gen_flags->out;
  std::string& gen_types = gen_flags->types;
  auto* generate = sched->add_subcommand(
      "generate-trace",
      "Write a synthetic, seeded trace: Poisson arrivals with a day/night cycle, log-normal "
      "durations, 1/2/4/8/16 GPUs, Zipf-skewed projects, prod/dev/batch mix");
  generate->add_option("--jobs", gen.jobs, "number of jobs")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000'000));
  generate->add_option("--seed", gen.seed, "random seed (same seed, same trace)")
      ->capture_default_str();
  generate->add_option("--projects", gen.projects, "projects p1..pN")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  generate->add_option("--users", gen.users_per_project, "users per project")
      ->capture_default_str()
      ->check(CLI::Range(1, 10'000));
  generate
      ->add_option("--interarrival", gen.mean_interarrival_s, "mean seconds between submissions")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1e6));
  generate->add_option("--median-duration", gen.median_duration_s, "median job duration in seconds")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 1e7));
  generate->add_option("--prod-share", gen.prod_share, "share of prod jobs")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  generate->add_option("--dev-share", gen.dev_share, "share of dev jobs (the rest is batch)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  generate->add_option("--gpu-types", gen_types,
                       "comma-separated GPU types; 30% of jobs then ask for one (e.g. A100,V100)");
  generate->add_option("-o,--output", gen_out, "write here (default: standard output)");
  generate->footer("Example:\n  kervan sched generate-trace --jobs 100000 --seed 1 -o trace.csv");
  generate->callback([&rc, gen_flags] {
    jobs::TraceGenOptions& gen = gen_flags->options;
    const std::string& gen_out = gen_flags->out;
    const std::string& gen_types = gen_flags->types;
    if (gen.prod_share + gen.dev_share > 1.0) {
      rc = UsageError("--prod-share plus --dev-share must be at most 1");
      return;
    }
    gen.gpu_types.clear();
    std::stringstream types(gen_types);
    for (std::string t; std::getline(types, t, ',');)
      if (!t.empty())
        gen.gpu_types.push_back(t);
    std::string csv = jobs::FormatTrace(jobs::GenerateTrace(gen));
    if (gen_out.empty() || gen_out == "-") {
      std::cout << csv;
    } else {
      std::ofstream out(gen_out, std::ios::binary | std::ios::trunc);
      out << csv;
      out.close();
      if (!out) {
        rc = UsageError("cannot write \"" + gen_out + "\"");
        return;
      }
      std::cerr << "wrote " << gen.jobs << " jobs to " << gen_out << "\n";
    }
    rc = 0;
  });
}

}  // namespace kervan::app

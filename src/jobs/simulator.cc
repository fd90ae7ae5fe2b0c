#include "jobs/simulator.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <map>
#include <numbers>
#include <queue>
#include <random>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

namespace kervan::jobs {
namespace {

using core::InvalidArgument;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> Split(std::string_view line, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t at = line.find(sep, start);
    out.push_back(Trim(line.substr(start, at - start)));
    if (at == std::string_view::npos)
      return out;
    start = at + 1;
  }
}

std::optional<int64_t> ToInt(std::string_view s) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty())
    return std::nullopt;
  return v;
}

std::optional<double> ToDouble(std::string_view s) {
  double v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty() || !std::isfinite(v))
    return std::nullopt;
  return v;
}

enum Column {
  kJobId,
  kSubmit,
  kDuration,
  kGpus,
  kNodes,
  kProject,
  kUser,
  kClass,
  kPreemptible,
  kGpuType,
  kColumns
};
constexpr std::string_view kColumnNames[kColumns] = {
    "job_id",  "submit_s", "duration_s",     "gpus",        "nodes",
    "project", "user",     "priority_class", "preemptible", "gpu_type"};

}  // namespace

core::Result<std::vector<TraceJob>> ParseTrace(std::string_view csv) {
  std::vector<TraceJob> jobs;
  std::vector<int> where(kColumns, -1);  // column -> field index
  std::vector<std::string_view> header;
  std::set<std::string, std::less<>> ids;
  int line_no = 0;
  size_t start = 0;
  while (start < csv.size()) {
    size_t end = csv.find('\n', start);
    std::string_view raw = csv.substr(start, end == std::string_view::npos ? end : end - start);
    start = end == std::string_view::npos ? csv.size() : end + 1;
    ++line_no;
    std::string_view line = Trim(raw);
    if (line.empty() || line.front() == '#')
      continue;
    auto fields = Split(line, ',');
    if (header.empty()) {
      header = fields;
      for (size_t i = 0; i < fields.size(); ++i) {
        auto it = std::find(std::begin(kColumnNames), std::end(kColumnNames), fields[i]);
        if (it == std::end(kColumnNames))
          return InvalidArgument(
              fmt::format("trace line {}, column {}: unknown column \"{}\" (expected {})", line_no,
                          i + 1, fields[i],
                          "job_id,submit_s,duration_s,gpus,nodes,project,user,"
                          "priority_class,preemptible[,gpu_type]"),
              "trace");
        int c = static_cast<int>(it - std::begin(kColumnNames));
        if (where[c] >= 0)
          return InvalidArgument(fmt::format("trace line {}, column {}: column \"{}\" repeated",
                                             line_no, i + 1, fields[i]),
                                 "trace");
        where[c] = static_cast<int>(i);
      }
      for (int c = 0; c < kColumns; ++c)
        if (where[c] < 0 && c != kGpuType)
          return InvalidArgument(fmt::format("trace line {}: the header has no column \"{}\"",
                                             line_no, kColumnNames[c]),
                                 "trace");
      continue;
    }
    if (fields.size() != header.size())
      return InvalidArgument(fmt::format("trace line {}: {} fields, the header has {}", line_no,
                                         fields.size(), header.size()),
                             "trace");
    auto bad = [&](int c, std::string_view want) {
      return InvalidArgument(fmt::format("trace line {}, column {} ({}): {}, got \"{}\"", line_no,
                                         where[c] + 1, kColumnNames[c], want, fields[where[c]]),
                             "trace");
    };
    auto get = [&](int c) { return where[c] < 0 ? std::string_view() : fields[where[c]]; };
    TraceJob j;
    j.id = std::string(get(kJobId));
    if (j.id.empty())
      return bad(kJobId, "must not be empty");
    if (!ids.insert(j.id).second)
      return bad(kJobId, "duplicate job id");
    auto submit = ToDouble(get(kSubmit));
    if (!submit || *submit < 0 || *submit > 1e12)
      return bad(kSubmit, "expected seconds >= 0");
    j.submit_us = std::llround(*submit * 1e6);
    auto duration = ToDouble(get(kDuration));
    if (!duration || *duration < 0 || *duration > 1e12)
      return bad(kDuration, "expected seconds >= 0");
    j.duration_us = std::llround(*duration * 1e6);
    auto gpus = ToInt(get(kGpus));
    if (!gpus || *gpus < 0 || *gpus > 1'000'000)
      return bad(kGpus, "expected an integer between 0 and 1000000");
    j.gpus = static_cast<int>(*gpus);
    auto nodes = ToInt(get(kNodes));
    if (!nodes || *nodes < 1 || *nodes > 100'000)
      return bad(kNodes, "expected an integer between 1 and 100000");
    j.nodes = static_cast<int>(*nodes);
    if (j.gpus % j.nodes != 0)
      return bad(kNodes, fmt::format("gpus ({}) must split evenly over the nodes", j.gpus));
    j.project = std::string(get(kProject));
    if (j.project.empty())
      return bad(kProject, "must not be empty");
    j.user = std::string(get(kUser));
    if (j.user.empty())
      return bad(kUser, "must not be empty");
    j.priority_class = std::string(get(kClass));
    if (j.priority_class.empty())
      return bad(kClass, "must not be empty");
    std::string_view pre = get(kPreemptible);
    if (pre == "true" || pre == "1")
      j.preemptible = true;
    else if (pre == "false" || pre == "0")
      j.preemptible = false;
    else if (!pre.empty())
      return bad(kPreemptible, "expected true, false, 1, 0 or empty");
    j.gpu_type = std::string(get(kGpuType));
    jobs.push_back(std::move(j));
  }
  if (header.empty())
    return InvalidArgument("trace: empty (no header row)", "trace");
  return jobs;
}

core::Result<std::vector<TraceJob>> ReadTraceFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return InvalidArgument(fmt::format("cannot read trace file \"{}\"", path), "trace");
  std::stringstream ss;
  ss << in.rdbuf();
  auto jobs = ParseTrace(ss.str());
  if (!jobs)
    return InvalidArgument(path + ": " + jobs.error().message, "trace");
  return jobs;
}

namespace {

std::string Seconds(int64_t us) {
  if (us % 1000000 == 0)
    return std::to_string(us / 1000000);
  return fmt::format("{:.6f}", us / 1e6);
}

}  // namespace

std::string FormatTrace(const std::vector<TraceJob>& jobs) {
  bool typed = std::any_of(jobs.begin(), jobs.end(), [](auto& j) { return !j.gpu_type.empty(); });
  std::string out = "job_id,submit_s,duration_s,gpus,nodes,project,user,priority_class,preemptible";
  out += typed ? ",gpu_type\n" : "\n";
  for (const TraceJob& j : jobs) {
    out += fmt::format("{},{},{},{},{},{},{},{},{}", j.id, Seconds(j.submit_us),
                       Seconds(j.duration_us), j.gpus, j.nodes, j.project, j.user, j.priority_class,
                       j.preemptible ? (*j.preemptible ? "true" : "false") : "");
    if (typed)
      out += "," + j.gpu_type;
    out += '\n';
  }
  return out;
}

namespace {

// Uniform in [0, 1) from the top 53 bits: identical on every platform.
double Uniform(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

double StandardNormal(std::mt19937_64& rng) {
  double u1 = 1.0 - Uniform(rng);  // (0, 1]
  double u2 = Uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2);
}

int Pick(std::mt19937_64& rng, const std::vector<double>& weights) {
  double total = 0;
  for (double w : weights)
    total += w;
  double x = Uniform(rng) * total;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (x < weights[i])
      return static_cast<int>(i);
    x -= weights[i];
  }
  return static_cast<int>(weights.size()) - 1;
}

}  // namespace

std::vector<TraceJob> GenerateTrace(const TraceGenOptions& o) {
  std::mt19937_64 rng(o.seed);
  std::vector<TraceJob> jobs;
  jobs.reserve(std::max(0, o.jobs));
  int projects = std::max(1, o.projects);
  std::vector<double> project_weights;
  for (int p = 1; p <= projects; ++p)
    project_weights.push_back(1.0 / p);
  double batch_share = std::max(0.0, 1.0 - o.prod_share - o.dev_share);
  std::vector<double> class_weights = {o.prod_share, o.dev_share, batch_share};
  const char* classes[] = {"prod", "dev", "batch"};
  std::vector<double> gpu_weights = o.gpu_weights;
  gpu_weights.resize(4, 0.0);
  const int gpu_counts[] = {1, 2, 4, 8};
  double mu = std::log(std::max(1.0, o.median_duration_s));
  int width = std::max(6, static_cast<int>(std::to_string(o.jobs).size()));
  double t = 0;
  for (int i = 0; i < o.jobs; ++i) {
    // Thinning-free diurnal modulation: scale the exponential gap by the rate.
    double rate = 1.0;
    if (o.diurnal)
      rate = 1.0 + 0.5 * std::sin(2 * std::numbers::pi * t / 86400.0);
    double gap = -std::log(1.0 - Uniform(rng)) * o.mean_interarrival_s / rate;
    if (i > 0)
      t += gap;
    TraceJob j;
    j.id = fmt::format("j{:0{}}", i + 1, width);
    j.submit_us = static_cast<int64_t>(std::llround(t)) * 1000000;
    int p = Pick(rng, project_weights);
    j.project = fmt::format("p{}", p + 1);
    j.user =
        fmt::format("u{}", 1 + static_cast<int>(Uniform(rng) * std::max(1, o.users_per_project)));
    j.priority_class = classes[Pick(rng, class_weights)];
    int g = Pick(rng, gpu_weights);
    j.gpus = gpu_counts[g];
    double multi = Uniform(rng);
    if (j.gpus == 8 && multi < o.multi_node_share) {
      j.gpus = 16;
      j.nodes = 2;
    }
    double d = std::exp(mu + o.duration_sigma * StandardNormal(rng));
    d = std::clamp(d, 60.0, std::max(60.0, o.max_duration_s));
    j.duration_us = static_cast<int64_t>(std::llround(d)) * 1000000;
    double typed = Uniform(rng);
    if (!o.gpu_types.empty() && typed < o.typed_share)
      j.gpu_type = o.gpu_types[static_cast<size_t>(Uniform(rng) * o.gpu_types.size())];
    jobs.push_back(std::move(j));
  }
  return jobs;
}

core::Result<std::vector<Node>> ParseClusterSpec(std::string_view spec) {
  struct Group {
    int64_t count;
    int gpus;
    std::string type;
  };
  std::vector<Group> groups;
  int64_t total = 0;
  for (std::string_view g : Split(spec, ',')) {
    auto bad = [&](std::string_view why) {
      return InvalidArgument(fmt::format("cluster spec group \"{}\": {} (expected NODESxGPUS or "
                                         "NODESxGPUS:TYPE, e.g. 1000x8 or 4x8:A100,2x4:V100)",
                                         g, why),
                             "cluster");
    };
    std::string_view type;
    if (size_t colon = g.find(':'); colon != std::string_view::npos) {
      type = Trim(g.substr(colon + 1));
      g = Trim(g.substr(0, colon));
      if (type.empty())
        return bad("empty GPU type");
    }
    size_t x = g.find('x');
    if (x == std::string_view::npos)
      return bad("no 'x'");
    auto count = ToInt(Trim(g.substr(0, x)));
    auto gpus = ToInt(Trim(g.substr(x + 1)));
    if (!count || *count < 1 || *count > 1'000'000)
      return bad("node count must be an integer between 1 and 1000000");
    if (!gpus || *gpus < 0 || *gpus > 1024)
      return bad("GPUs per node must be an integer between 0 and 1024");
    groups.push_back({*count, static_cast<int>(*gpus), std::string(type)});
    total += *count;
  }
  if (total > 1'000'000)
    return InvalidArgument("cluster spec: more than 1000000 nodes", "cluster");
  int width = std::max(4, static_cast<int>(std::to_string(total - 1).size()));
  std::vector<Node> nodes;
  nodes.reserve(total);
  for (const Group& g : groups)
    for (int64_t i = 0; i < g.count; ++i)
      nodes.push_back({.name = fmt::format("n{:0{}}", nodes.size(), width),
                       .gpus = g.gpus,
                       .gpu_type = g.type});
  return nodes;
}

core::Result<ProjectQuota> ParseQuotaSpec(std::string_view spec) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument(
        fmt::format("quota \"{}\": {} (expected "
                    "PROJECT=NOMINAL[:BORROWING_LIMIT[:WEIGHT]], e.g. risk=8:4:2)",
                    spec, why),
        "quota");
  };
  size_t eq = spec.find('=');
  if (eq == std::string_view::npos)
    return bad("no '='");
  ProjectQuota q;
  q.project = std::string(Trim(spec.substr(0, eq)));
  if (q.project.empty())
    return bad("empty project");
  auto parts = Split(spec.substr(eq + 1), ':');
  if (parts.size() > 3)
    return bad("too many ':' parts");
  auto nominal = ToInt(parts[0]);
  if (!nominal || *nominal < 0 || *nominal > 10'000'000)
    return bad("nominal GPUs must be an integer >= 0");
  q.nominal_gpus = static_cast<int>(*nominal);
  if (parts.size() > 1) {
    auto limit = ToInt(parts[1]);
    if (!limit || *limit < -1 || *limit > 10'000'000)
      return bad("borrowing limit must be an integer >= 0, or -1 for no limit");
    q.borrowing_limit = static_cast<int>(*limit);
  }
  if (parts.size() > 2) {
    auto weight = ToDouble(parts[2]);
    if (!weight || *weight <= 0)
      return bad("weight must be a number > 0");
    q.weight = *weight;
  }
  return q;
}

core::Result<std::vector<ProjectQuota>> ParseQuotaFile(std::string_view text) {
  std::vector<ProjectQuota> out;
  int line_no = 0;
  for (std::string_view line : Split(text, '\n')) {
    ++line_no;
    if (line.empty() || line.front() == '#')
      continue;
    auto q = ParseQuotaSpec(line);
    if (!q)
      return InvalidArgument(fmt::format("line {}: {}", line_no, q.error().message), "quota");
    out.push_back(*q);
  }
  return out;
}

double JainIndex(const std::vector<double>& values) {
  double sum = 0, sq = 0;
  for (double v : values) {
    sum += v;
    sq += v * v;
  }
  if (values.empty() || sq == 0)
    return 0;
  return sum * sum / (static_cast<double>(values.size()) * sq);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  size_t i = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(i, values.size() - 1)];
}

std::string_view PolicyModeName(PolicyMode mode) {
  switch (mode) {
    case PolicyMode::kKervan:
      return "kervan";
    case PolicyMode::kFifo:
      return "fifo";
    case PolicyMode::kStrictPriority:
      return "strict";
  }
  return "kervan";
}

core::Result<PolicyMode> ParsePolicyMode(std::string_view name) {
  if (name == "kervan")
    return PolicyMode::kKervan;
  if (name == "fifo")
    return PolicyMode::kFifo;
  if (name == "strict")
    return PolicyMode::kStrictPriority;
  return InvalidArgument(fmt::format("policy \"{}\": expected kervan, fifo or strict", name),
                         "policy");
}

namespace {

constexpr double kSlowdownFloorS = 10;

struct SimJob {
  const TraceJob* t = nullptr;
  bool preemptible = false;
  int project = 0, user = 0, cls = 0;
  int pending_slot = -1, running_slot = -1;
  int generation = 0;
  int64_t start_us = -1, end_us = -1;
};

// Usage that decays continuously: between two instants, each project's
// usage decays and gains its running GPUs integrated under the same decay.
class DecayingUsage {
 public:
  DecayingUsage(int64_t half_life_us) : half_life_s_(half_life_us / 1e6) {}
  void Advance(double dt_s, const std::vector<int64_t>& gpus, std::vector<double*>& values) {
    if (dt_s <= 0)
      return;
    double keep = half_life_s_ > 0 ? std::exp2(-dt_s / half_life_s_) : 1.0;
    double gain = half_life_s_ > 0 ? half_life_s_ / std::numbers::ln2 * (1 - keep) : dt_s;
    for (size_t i = 0; i < values.size(); ++i)
      *values[i] = *values[i] * keep + static_cast<double>(gpus[i]) * gain;
  }

 private:
  double half_life_s_;
};

GroupStats Stats(std::string name, const std::vector<const SimJob*>& jobs) {
  GroupStats g;
  g.name = std::move(name);
  g.jobs = static_cast<int64_t>(jobs.size());
  if (jobs.empty())
    return g;
  std::vector<double> jct, queue;
  double slowdown = 0;
  for (const SimJob* j : jobs) {
    double c = (j->end_us - j->t->submit_us) / 1e6;
    double q = (j->start_us - j->t->submit_us) / 1e6;
    jct.push_back(c);
    queue.push_back(q);
    slowdown += std::max(1.0, c / std::max(kSlowdownFloorS, j->t->duration_us / 1e6));
  }
  double n = static_cast<double>(jobs.size());
  double sj = 0, sq = 0;
  for (size_t i = 0; i < jct.size(); ++i) {
    sj += jct[i];
    sq += queue[i];
  }
  g.avg_jct_s = sj / n;
  g.avg_queue_s = sq / n;
  g.mean_slowdown = slowdown / n;
  g.p50_jct_s = Percentile(jct, 50);
  g.p95_jct_s = Percentile(jct, 95);
  g.p99_jct_s = Percentile(jct, 99);
  g.p50_queue_s = Percentile(queue, 50);
  g.p95_queue_s = Percentile(queue, 95);
  g.p99_queue_s = Percentile(queue, 99);
  return g;
}

}  // namespace

core::Result<SimulationReport> Simulate(const std::vector<TraceJob>& trace,
                                        const std::vector<Node>& nodes, const PolicyConfig& config,
                                        const SimulationOptions& options) {
  if (nodes.empty())
    return InvalidArgument("the cluster has no nodes", "cluster");
  if (trace.empty())
    return InvalidArgument("the trace has no jobs", "trace");
  if (options.cycle_us <= 0)
    return InvalidArgument("cycle must be > 0", "cycle");
  SimulationReport report;
  report.policy = std::string(PolicyModeName(config.mode));
  int64_t total_gpus = 0;
  for (const Node& n : nodes)
    if (n.schedulable)
      total_gpus += n.gpus;
  report.cluster = fmt::format("{} nodes, {} GPUs", nodes.size(), total_gpus);
  report.jobs = static_cast<int64_t>(trace.size());

  PolicyConfig cfg = config;
  cfg.explain_waiting = false;

  // Interned projects, users and classes.
  std::map<std::string, int> class_index;
  for (const PriorityClass& c : cfg.priority_classes)
    class_index.emplace(c.name, static_cast<int>(class_index.size()));
  std::vector<const PriorityClass*> classes;
  for (const PriorityClass& c : cfg.priority_classes)
    classes.push_back(&c);
  Usage usage;
  std::map<std::string, int> project_index, user_index;
  std::vector<double*> usage_values;  // projects then users, by interned index
  std::vector<std::string> project_names, user_keys;

  std::vector<SimJob> jobs(trace.size());
  std::vector<int> order(trace.size());
  for (size_t i = 0; i < trace.size(); ++i)
    order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return trace[a].submit_us != trace[b].submit_us ? trace[a].submit_us < trace[b].submit_us
                                                    : trace[a].id < trace[b].id;
  });
  std::map<std::tuple<int, int, std::string>, std::optional<std::string>> never_cache;
  for (size_t i = 0; i < trace.size(); ++i) {
    const TraceJob& t = trace[i];
    SimJob& j = jobs[i];
    j.t = &t;
    auto c = class_index.find(t.priority_class);
    j.cls = c == class_index.end() ? -1 : c->second;
    j.preemptible = t.preemptible.value_or(j.cls >= 0 && classes[j.cls]->preemptible_default);
    auto [p, pnew] = project_index.emplace(t.project, static_cast<int>(project_names.size()));
    if (pnew)
      project_names.push_back(t.project);
    j.project = p->second;
    std::string key = t.project + "/" + t.user;
    auto [u, unew] = user_index.emplace(key, static_cast<int>(user_keys.size()));
    if (unew)
      user_keys.push_back(key);
    j.user = u->second;
  }
  for (const std::string& p : project_names)
    usage_values.push_back(&usage.by_project[p]);
  for (const std::string& u : user_keys)
    usage_values.push_back(&usage.by_user[u]);
  std::vector<int64_t> running_gpus(usage_values.size(), 0);
  DecayingUsage decay(options.usage_half_life_us);

  ClusterState cluster;
  cluster.nodes = nodes;
  std::vector<PendingJob> pending;
  std::vector<int> pending_job;  // slot -> job index
  std::vector<int> running_job;  // slot -> job index
  std::unordered_map<std::string_view, int> by_id;
  by_id.reserve(trace.size() * 2);
  for (size_t i = 0; i < trace.size(); ++i)
    by_id.emplace(trace[i].id, static_cast<int>(i));

  // Completions: (end, job, generation); stale entries (preempted runs) skipped.
  using Completion = std::tuple<int64_t, int, int>;
  std::priority_queue<Completion, std::vector<Completion>, std::greater<>> completions;

  auto enqueue = [&](int ji, int64_t now) {
    SimJob& j = jobs[ji];
    const TraceJob& t = *j.t;
    j.pending_slot = static_cast<int>(pending.size());
    pending.push_back({.id = t.id,
                       .project = t.project,
                       .user = t.user,
                       .priority_class = t.priority_class,
                       .resources = {.gpus = t.gpus, .gpu_type = t.gpu_type, .nodes = t.nodes},
                       .preemptible = j.preemptible,
                       .queued_us = now,
                       .expected_runtime_us = options.hide_runtime_estimates ? 0 : t.duration_us});
    pending_job.push_back(ji);
  };
  auto remove_pending = [&](int ji) {
    int slot = jobs[ji].pending_slot;
    int last = static_cast<int>(pending.size()) - 1;
    if (slot != last) {
      pending[slot] = std::move(pending[last]);
      pending_job[slot] = pending_job[last];
      jobs[pending_job[slot]].pending_slot = slot;
    }
    pending.pop_back();
    pending_job.pop_back();
    jobs[ji].pending_slot = -1;
  };
  auto remove_running = [&](int ji) {
    SimJob& j = jobs[ji];
    int slot = j.running_slot;
    int last = static_cast<int>(cluster.running.size()) - 1;
    if (slot != last) {
      cluster.running[slot] = std::move(cluster.running[last]);
      running_job[slot] = running_job[last];
      jobs[running_job[slot]].running_slot = slot;
    }
    cluster.running.pop_back();
    running_job.pop_back();
    j.running_slot = -1;
    running_gpus[j.project] -= j.t->gpus;
    running_gpus[project_names.size() + j.user] -= j.t->gpus;
  };

  double busy_gpu_s = 0, lost_gpu_s = 0;
  size_t next_arrival = 0;
  int64_t first_submit = trace[order[0]].submit_us;
  int64_t last_completion = first_submit;
  int64_t now = first_submit;      // the usage clock
  int64_t last_cycle = INT64_MIN;  // when the last cycle ran
  std::vector<std::optional<std::string>> rejected_reason(trace.size());

  auto advance = [&](int64_t to) {
    decay.Advance((to - now) / 1e6, running_gpus, usage_values);
    now = to;
  };

  for (;;) {
    while (!completions.empty()) {
      auto [end, ji, gen] = completions.top();
      if (jobs[ji].generation == gen && jobs[ji].running_slot >= 0)
        break;
      completions.pop();
    }
    int64_t next_event = INT64_MAX;
    if (next_arrival < order.size())
      next_event = trace[order[next_arrival]].submit_us;
    if (!completions.empty())
      next_event = std::min(next_event, std::get<0>(completions.top()));
    if (next_event == INT64_MAX)
      break;  // nothing left that could change the queue
    int64_t cycle_at =
        last_cycle == INT64_MIN ? next_event : std::max(next_event, last_cycle + options.cycle_us);
    // Events up to the cycle, in time order (completions first on ties).
    for (;;) {
      int64_t arrival =
          next_arrival < order.size() ? trace[order[next_arrival]].submit_us : INT64_MAX;
      while (!completions.empty()) {
        auto [end, ji, gen] = completions.top();
        if (jobs[ji].generation == gen && jobs[ji].running_slot >= 0)
          break;
        completions.pop();
      }
      int64_t completion = completions.empty() ? INT64_MAX : std::get<0>(completions.top());
      if (std::min(arrival, completion) > cycle_at)
        break;
      if (completion <= arrival) {
        auto [end, ji, gen] = completions.top();
        completions.pop();
        advance(end);
        SimJob& j = jobs[ji];
        j.end_us = end;
        busy_gpu_s += j.t->gpus * ((end - j.start_us) / 1e6);
        last_completion = std::max(last_completion, end);
        remove_running(ji);
        ++report.completed;
      } else {
        int ji = order[next_arrival++];
        advance(arrival);
        SimJob& j = jobs[ji];
        if (j.cls < 0) {
          rejected_reason[ji] =
              fmt::format("priority class \"{}\" is not configured", j.t->priority_class);
          continue;
        }
        auto key = std::make_tuple(j.t->gpus, j.t->nodes, j.t->gpu_type);
        auto it = never_cache.find(key);
        if (it == never_cache.end())
          it = never_cache
                   .emplace(key, NeverFits(nodes, {.gpus = j.t->gpus,
                                                   .gpu_type = j.t->gpu_type,
                                                   .nodes = j.t->nodes}))
                   .first;
        if (it->second) {
          rejected_reason[ji] = *it->second;
          continue;
        }
        enqueue(ji, arrival);
      }
    }
    advance(cycle_at);
    last_cycle = cycle_at;
    // Cycles at this instant: one, plus one more after each preemption.
    for (int round = 0; round < 16 && !pending.empty(); ++round) {
      cluster.now_us = cycle_at;
      Decision d = Schedule(cfg, cluster, pending, usage);
      ++report.cycles;
      for (const Preemption& p : d.preempted) {
        int ji = by_id.at(p.victim_id);
        SimJob& j = jobs[ji];
        if (j.running_slot < 0)
          continue;
        double ran = j.t->gpus * ((cycle_at - j.start_us) / 1e6);
        busy_gpu_s += ran;
        lost_gpu_s += ran;
        ++j.generation;
        remove_running(ji);
        enqueue(ji, cycle_at);
        ++report.preemptions;
      }
      for (Admission& a : d.admitted) {
        int ji = by_id.at(a.job_id);
        SimJob& j = jobs[ji];
        remove_pending(ji);
        j.start_us = cycle_at;
        j.running_slot = static_cast<int>(cluster.running.size());
        const TraceJob& t = *j.t;
        cluster.running.push_back(
            {.id = t.id,
             .project = t.project,
             .user = t.user,
             .priority_class = t.priority_class,
             .preemptible = j.preemptible,
             .allocation = std::move(a.allocation),
             .started_us = cycle_at,
             .expected_end_us = options.hide_runtime_estimates ? 0 : cycle_at + t.duration_us,
             .borrowed = a.borrowed});
        running_job.push_back(ji);
        running_gpus[j.project] += t.gpus;
        running_gpus[project_names.size() + j.user] += t.gpus;
        completions.emplace(cycle_at + t.duration_us, ji, j.generation);
      }
      if (d.preempted.empty())
        break;
    }
  }

  // Statistics over completed jobs.
  report.unfinished = static_cast<int64_t>(pending.size());
  std::vector<const SimJob*> done;
  std::vector<std::vector<const SimJob*>> by_class(classes.size());
  std::map<std::string, std::vector<const SimJob*>> by_project;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const SimJob& j = jobs[i];
    if (rejected_reason[i]) {
      ++report.rejected;
      if (report.rejected_examples.size() < 5)
        report.rejected_examples.push_back(j.t->id + ": " + *rejected_reason[i]);
      continue;
    }
    if (j.end_us < 0)
      continue;
    done.push_back(&j);
    by_class[j.cls].push_back(&j);
    by_project[j.t->project].push_back(&j);
  }
  report.makespan_s = (last_completion - first_submit) / 1e6;
  report.gpu_utilization =
      report.makespan_s > 0 && total_gpus > 0 ? busy_gpu_s / (total_gpus * report.makespan_s) : 0;
  report.lost_gpu_hours = lost_gpu_s / 3600;
  report.overall = Stats("all", done);
  std::vector<int> class_order(classes.size());
  for (size_t i = 0; i < classes.size(); ++i)
    class_order[i] = static_cast<int>(i);
  std::stable_sort(class_order.begin(), class_order.end(),
                   [&](int a, int b) { return classes[a]->value > classes[b]->value; });
  for (int c : class_order)
    report.by_class.push_back(Stats(classes[c]->name, by_class[c]));
  std::vector<double> inverse_slowdown;
  for (auto& [name, list] : by_project) {
    report.by_project.push_back(Stats(name, list));
    if (report.by_project.back().mean_slowdown > 0)
      inverse_slowdown.push_back(1.0 / report.by_project.back().mean_slowdown);
  }
  report.fairness = JainIndex(inverse_slowdown);
  return report;
}

namespace {

std::string Dur(double s) {
  if (s < 120)
    return fmt::format("{:.0f}s", s);
  if (s < 2 * 3600)
    return fmt::format("{:.1f}m", s / 60);
  if (s < 2 * 86400)
    return fmt::format("{:.1f}h", s / 3600);
  return fmt::format("{:.1f}d", s / 86400);
}

std::string Table(const std::vector<std::string>& header,
                  const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& r : rows)
      width[c] = std::max(width[c], r[c].size());
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& r) {
    for (size_t c = 0; c < r.size(); ++c) {
      out += r[c];
      if (c + 1 < r.size())
        out += std::string(width[c] - r[c].size() + 2, ' ');
    }
    out += '\n';
  };
  line(header);
  for (const auto& r : rows)
    line(r);
  return out;
}

std::vector<std::string> StatsRow(const GroupStats& g) {
  return {g.name,
          std::to_string(g.jobs),
          Dur(g.avg_jct_s),
          Dur(g.p50_jct_s),
          Dur(g.p95_jct_s),
          Dur(g.p99_jct_s),
          Dur(g.avg_queue_s),
          Dur(g.p50_queue_s),
          Dur(g.p95_queue_s),
          Dur(g.p99_queue_s),
          fmt::format("{:.2f}", g.mean_slowdown)};
}

core::Json StatsJson(const GroupStats& g) {
  return {{"name", g.name},
          {"jobs", g.jobs},
          {"avg_jct_s", g.avg_jct_s},
          {"p50_jct_s", g.p50_jct_s},
          {"p95_jct_s", g.p95_jct_s},
          {"p99_jct_s", g.p99_jct_s},
          {"avg_queue_s", g.avg_queue_s},
          {"p50_queue_s", g.p50_queue_s},
          {"p95_queue_s", g.p95_queue_s},
          {"p99_queue_s", g.p99_queue_s},
          {"mean_slowdown", g.mean_slowdown}};
}

}  // namespace

std::string FormatReport(const SimulationReport& r) {
  std::string out = fmt::format(
      "policy {} on {}: {} jobs, {} completed, {} rejected, {} unfinished\n"
      "makespan {}, GPU utilization {:.1f}%, {} preemptions ({:.1f} GPU-hours lost), {} cycles, "
      "fairness (Jain, projects) {:.3f}\n",
      r.policy, r.cluster, r.jobs, r.completed, r.rejected, r.unfinished, Dur(r.makespan_s),
      100 * r.gpu_utilization, r.preemptions, r.lost_gpu_hours, r.cycles, r.fairness);
  for (const std::string& e : r.rejected_examples)
    out += "  rejected " + e + "\n";
  const std::vector<std::string> header = {"",          "jobs",      "avg JCT",   "p50 JCT",
                                           "p95 JCT",   "p99 JCT",   "avg queue", "p50 queue",
                                           "p95 queue", "p99 queue", "slowdown"};
  std::vector<std::vector<std::string>> rows = {StatsRow(r.overall)};
  for (const auto& g : r.by_class)
    rows.push_back(StatsRow(g));
  out += "\nby priority class\n" + Table(header, rows);
  rows.clear();
  for (const auto& g : r.by_project)
    rows.push_back(StatsRow(g));
  out += "\nby project\n" + Table(header, rows);
  return out;
}

core::Json ReportToJson(const SimulationReport& r) {
  core::Json by_class = core::Json::array(), by_project = core::Json::array();
  for (const auto& g : r.by_class)
    by_class.push_back(StatsJson(g));
  for (const auto& g : r.by_project)
    by_project.push_back(StatsJson(g));
  return {{"policy", r.policy},
          {"cluster", r.cluster},
          {"jobs", r.jobs},
          {"completed", r.completed},
          {"rejected", r.rejected},
          {"unfinished", r.unfinished},
          {"rejected_examples", r.rejected_examples},
          {"makespan_s", r.makespan_s},
          {"gpu_utilization", r.gpu_utilization},
          {"lost_gpu_hours", r.lost_gpu_hours},
          {"preemptions", r.preemptions},
          {"cycles", r.cycles},
          {"fairness", r.fairness},
          {"overall", StatsJson(r.overall)},
          {"by_class", by_class},
          {"by_project", by_project}};
}

std::string FormatComparison(const std::vector<SimulationReport>& reports) {
  std::vector<std::vector<std::string>> rows;
  std::string first_class;
  for (const auto& r : reports) {
    const GroupStats* top = r.by_class.empty() ? nullptr : &r.by_class.front();
    if (top)
      first_class = top->name;
    rows.push_back({r.policy, Dur(r.overall.avg_jct_s), Dur(r.overall.p99_queue_s),
                    top ? Dur(top->avg_queue_s) : "-", top ? Dur(top->p99_queue_s) : "-",
                    fmt::format("{:.1f}%", 100 * r.gpu_utilization),
                    fmt::format("{:.3f}", r.fairness), std::to_string(r.preemptions),
                    std::to_string(r.completed)});
  }
  std::string c = first_class.empty() ? "top class" : first_class;
  return Table({"policy", "avg JCT", "p99 queue", "avg queue " + c, "p99 queue " + c, "utilization",
                "fairness", "preemptions", "completed"},
               rows);
}

}  // namespace kervan::jobs

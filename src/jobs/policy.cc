#include "jobs/policy.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <functional>
#include <queue>
#include <set>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

namespace kervan::jobs {

std::vector<PriorityClass> DefaultPriorityClasses() {
  return {
      {.name = "prod",
       .value = 1000,
       .preemption = PreemptionPolicy::kPreemptLowerPriority,
       .preemptible_default = false},
      {.name = "dev",
       .value = 100,
       .preemption = PreemptionPolicy::kPreemptLowerPriority,
       .preemptible_default = true},
      {.name = "batch",
       .value = 10,
       .preemption = PreemptionPolicy::kNever,
       .preemptible_default = true},
  };
}

double DecayUsage(double usage, int64_t elapsed_us, int64_t half_life_us) {
  if (half_life_us <= 0 || elapsed_us <= 0)
    return usage;
  return usage * std::exp2(-static_cast<double>(elapsed_us) / static_cast<double>(half_life_us));
}

std::string_view WaitCodeName(WaitCode code) {
  switch (code) {
    case WaitCode::kQuota:
      return "quota";
    case WaitCode::kNoFit:
      return "no_fit";
    case WaitCode::kPreempting:
      return "preempting";
    case WaitCode::kReservation:
      return "reservation";
    case WaitCode::kBehindJob:
      return "behind_job";
    case WaitCode::kNeverFits:
      return "never_fits";
    case WaitCode::kUnknownClass:
      return "unknown_class";
  }
  return "unknown";
}

namespace {

// Per-node share of a job's request (gpus, cpus and memory split evenly).
struct Shape {
  int nodes = 1;
  int gpus = 0;  // per node
  int cpus = 0;  // per node
  int64_t memory_mb = 0;
};

Shape ShapeOf(const Resources& r) {
  int n = std::max(1, r.nodes);
  return {.nodes = n,
          .gpus = r.gpus / n,
          .cpus = (r.cpus + n - 1) / n,
          .memory_mb = (r.memory_mb + n - 1) / n};
}

std::string GpuWords(int gpus, const std::string& type) {
  std::string t = type.empty() ? "" : type + " ";
  return fmt::format("{} {}GPU{}", gpus, t, gpus == 1 ? "" : "s");
}

}  // namespace

std::optional<std::string> NeverFits(const std::vector<Node>& nodes, const Resources& r) {
  if (r.gpus < 0)
    return fmt::format("asks for {} GPUs; must be 0 or more", r.gpus);
  if (r.nodes < 1)
    return fmt::format("asks for {} nodes; must be 1 or more", r.nodes);
  if (r.gpus % r.nodes != 0)
    return fmt::format("asks for {} GPUs over {} nodes; GPUs must split evenly over the nodes",
                       r.gpus, r.nodes);
  Shape s = ShapeOf(r);
  int typed = 0, by_gpus = 0, fits = 0, largest = 0, largest_cpus = 0;
  int64_t largest_mem = 0;
  for (const Node& n : nodes) {
    if (!n.schedulable || (!r.gpu_type.empty() && n.gpu_type != r.gpu_type))
      continue;
    ++typed;
    largest = std::max(largest, n.gpus);
    if (n.gpus < s.gpus)
      continue;
    ++by_gpus;
    largest_cpus = std::max(largest_cpus, n.cpus == 0 ? INT_MAX : n.cpus);
    largest_mem = std::max(largest_mem, n.memory_mb == 0 ? INT64_MAX : n.memory_mb);
    if ((n.cpus == 0 || n.cpus >= s.cpus) && (n.memory_mb == 0 || n.memory_mb >= s.memory_mb))
      ++fits;
  }
  if (fits >= s.nodes)
    return std::nullopt;
  std::string where = s.nodes == 1 ? "on one node" : fmt::format("on each of {} nodes", s.nodes);
  if (typed == 0)
    return r.gpu_type.empty()
               ? std::string("no schedulable node")
               : fmt::format("asks for {} GPUs; no schedulable node has them", r.gpu_type);
  if (by_gpus == 0)
    return fmt::format("asks for {} {}; the largest {}node has {}", GpuWords(s.gpus, r.gpu_type),
                       where, r.gpu_type.empty() ? "" : r.gpu_type + " ", largest);
  if (by_gpus < s.nodes)
    return fmt::format("asks for {} {}; only {} schedulable node{} ha{} that many",
                       GpuWords(s.gpus, r.gpu_type), where, by_gpus, by_gpus == 1 ? "" : "s",
                       by_gpus == 1 ? "s" : "ve");
  if (largest_cpus < s.cpus)
    return fmt::format("asks for {} CPUs {}; the largest node that fits its GPUs has {}", s.cpus,
                       where, largest_cpus);
  return fmt::format("asks for {} MB of memory {}; the largest node that fits its GPUs has {} MB",
                     s.memory_mb, where, largest_mem);
}

namespace {

std::string Duration(int64_t us) {
  int64_t s = us / 1000000;
  if (s < 120)
    return fmt::format("{}s", s);
  if (s < 2 * 3600)
    return fmt::format("{}m", s / 60);
  if (s < 2 * 86400)
    return fmt::format("{}h {}m", s / 3600, s / 60 % 60);
  return fmt::format("{}d {}h", s / 86400, s / 3600 % 24);
}

}  // namespace

std::string Explain(const WaitReason& reason, const PendingJob& job) {
  const Resources& r = job.resources;
  Shape s = ShapeOf(r);
  std::string ask =
      s.nodes == 1 ? GpuWords(r.gpus, r.gpu_type) + " on one node"
                   : GpuWords(s.gpus, r.gpu_type) + fmt::format(" on each of {} nodes", s.nodes);
  std::string pos = reason.position > 0
                        ? fmt::format(" (position {} in this cycle's order)", reason.position)
                        : "";
  switch (reason.code) {
    case WaitCode::kQuota:
      return fmt::format(
          "waits for quota: project {} uses {} of {} GPUs (nominal {} + borrowing limit {}) and "
          "the job asks for {} more{}",
          job.project, reason.project_used_gpus, reason.project_limit_gpus,
          reason.project_nominal_gpus, reason.project_limit_gpus - reason.project_nominal_gpus,
          r.gpus, pos);
    case WaitCode::kNoFit:
      return fmt::format(
          "waits for GPUs: asks for {}; the most free GPUs on any eligible node is {}{}", ask,
          reason.max_free_gpus, pos);
    case WaitCode::kPreempting:
      return fmt::format(
          "waits for preemption: {} running job{} {} being stopped to make room for it{}",
          reason.victims, reason.victims == 1 ? "" : "s", reason.victims == 1 ? "is" : "are", pos);
    case WaitCode::kReservation:
      return fmt::format(
          "waits for backfill: it fits now but would run into the GPUs reserved for job {}, "
          "expected to start {}{}",
          reason.other_job,
          reason.reservation_in_us > 0 ? "in " + Duration(reason.reservation_in_us)
                                       : std::string("at an unknown time"),
          pos);
    case WaitCode::kBehindJob:
      return fmt::format(
          "waits in line behind job {}, which does not fit yet; nothing behind it starts before "
          "it{}",
          reason.other_job, pos);
    case WaitCode::kNeverFits:
      return "never fits: " + reason.detail;
    case WaitCode::kUnknownClass:
      return fmt::format("priority class \"{}\" is not configured", job.priority_class);
  }
  return "waits";
}

namespace {

constexpr double kUnknownRuntimeChargeS = 3600;  // in-cycle fair-share charge per GPU

struct NodeState {
  const Node* node = nullptr;
  int type = 0;
  int total = 0;
  int free = 0;
  int cpus_free = INT_MAX;       // INT_MAX: not tracked
  int64_t mem_free = INT64_MAX;  // INT64_MAX: not tracked
  std::vector<char> used;        // per GPU index
  std::vector<int> running;      // indices into cluster.running (built on demand)
};

struct ClassInfo {
  const PriorityClass* pc = nullptr;
  int rank = 0;  // position in value-descending order
};

struct ProjectState {
  std::string_view name;
  int name_rank = 0;
  int nominal = 0;
  int64_t limit = INT64_MAX;  // nominal + borrowing limit
  int borrow_limit = -1;
  double weight = 1.0;
  int64_t used = 0;         // GPUs running + admitted this cycle
  int64_t victim_gpus = 0;  // GPUs of victims chosen this cycle
  double share = 0;         // (decayed usage + in-cycle charge) / weight
};

struct UserState {
  int project = 0;
  std::string_view name;
  int name_rank = 0;
  double usage = 0;
};

// What a cycle needs of a pending job, copied once into a compact array so
// the ordered pass does not chase 100,000 scattered PendingJobs.
struct Job {
  const PendingJob* p = nullptr;
  int cls = -1;  // index into classes (value order); -1 unknown
  int project = 0;
  int user = 0;
  int type = -1;   // TypeOf(gpu_type)
  int never = -1;  // index into never_fits_ (a shape that never fits), or -1
  Shape shape;
  int gpus = 0;
  int64_t queued_us = 0;
  int64_t runtime_us = 0;
};

struct RunInfo {
  int cls_value = 0;
  int project = -1;
  int gpus = 0;
  bool victim = false;
};

struct Placement {
  std::vector<int> nodes;  // node indices, one per gang member
};

// Hash for interning string_views owned by the inputs.
struct SvHash {
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Interns names owned by the inputs. A few distinct names (classes, the
// projects, a project's users) are the common case, and a scan comparing
// lengths first beats hashing there; past kSmall names a hash map takes over.
class NameIndex {
 public:
  int Find(std::string_view name) const {
    if (big_.empty()) {
      for (const auto& [n, i] : small_)
        if (n.size() == name.size() && n == name)
          return i;
      return -1;
    }
    auto it = big_.find(name);
    return it == big_.end() ? -1 : it->second;
  }
  // The index of `name`, giving it `next` when new; second: whether it was new.
  std::pair<int, bool> Insert(std::string_view name, int next) {
    int found = Find(name);
    if (found >= 0)
      return {found, false};
    if (big_.empty() && small_.size() < kSmall) {
      small_.emplace_back(name, next);
    } else {
      if (big_.empty())
        big_.insert(small_.begin(), small_.end());
      big_.emplace(name, next);
    }
    return {next, true};
  }

 private:
  static constexpr size_t kSmall = 16;
  std::vector<std::pair<std::string_view, int>> small_;
  std::unordered_map<std::string_view, int, SvHash> big_;
};

class Cycle {
 public:
  Cycle(const PolicyConfig& config, const ClusterState& cluster,
        const std::vector<PendingJob>& pending, const Usage& usage)
      : config_(config), cluster_(cluster), pending_(pending), usage_(usage) {}

  Decision Run();

 private:
  void InternClasses();
  int InternProject(std::string_view name);
  void BuildNodes();
  void AccountRunning();
  void InternPending();
  void ProcessKervan();
  void ProcessSorted();
  void Process(int job_index, int64_t position, double share);
  void Wait(const Job& j, WaitReason&& reason);

  int MaxFree(int type) const;
  // Best-fit placement of `s` for job type `type` (-1 any, -2 a type no node has).
  // With `reserved` true, long jobs may use reserved nodes only within extra_.
  bool Place(const Shape& s, int type, bool respect_reservation, Placement& out) const;
  bool NodeFits(int n, const Shape& s, bool respect_reservation) const;
  void Take(int n, const Shape& s, NodeAllocation* alloc);
  void SetBucket(int n, int old_free);
  int TypeOf(const std::string& gpu_type) const;
  bool TryPreempt(const Job& j, const Shape& s, int type, WaitReason& reason);
  void EnsureRunningIndex();
  void MakeReservation(const Job& j, const Shape& s, int type);

  const PolicyConfig& config_;
  const ClusterState& cluster_;
  const std::vector<PendingJob>& pending_;
  const Usage& usage_;
  Decision decision_;

  std::vector<const PriorityClass*> classes_;  // by value desc, name
  NameIndex class_index_;

  std::vector<ProjectState> projects_;
  NameIndex project_index_;
  std::vector<UserState> users_;
  std::vector<NameIndex> user_index_;  // per project

  std::vector<NodeState> nodes_;  // in name order
  std::unordered_map<std::string_view, int, SvHash> node_index_;
  std::vector<std::string_view> types_;
  int max_gpus_ = 0;
  // buckets_[type][free] = nodes of that type with exactly `free` GPUs free.
  std::vector<std::vector<std::set<int>>> buckets_;

  std::vector<Job> jobs_;
  std::vector<RunInfo> runs_;
  bool running_indexed_ = false;

  std::vector<std::string> never_fits_;              // distinct NeverFits sentences of this cycle
  std::vector<std::pair<int, WaitReason>> waiting_;  // job index, reason (explain_waiting)

  int preemption_searches_ = 0;
  // Head-of-line blocking (baselines, or backfill off): the blocked job.
  const PendingJob* blocked_ = nullptr;
  // EASY backfill reservation.
  const PendingJob* reserved_for_ = nullptr;
  int64_t reservation_us_ = 0;  // INT64_MAX: unknown
  std::vector<int> extra_;      // per node: GPUs a long job may still take; INT_MAX unreserved
};

void Cycle::InternClasses() {
  for (const PriorityClass& c : config_.priority_classes)
    classes_.push_back(&c);
  std::stable_sort(classes_.begin(), classes_.end(), [](auto* a, auto* b) {
    return a->value != b->value ? a->value > b->value : a->name < b->name;
  });
  for (size_t i = 0; i < classes_.size(); ++i)
    class_index_.Insert(classes_[i]->name, static_cast<int>(i));
}

int Cycle::InternProject(std::string_view name) {
  auto [index, inserted] = project_index_.Insert(name, static_cast<int>(projects_.size()));
  if (inserted) {
    ProjectState p;
    p.name = name;
    p.nominal = 0;
    p.limit = INT64_MAX;
    projects_.push_back(p);
    user_index_.emplace_back();
  }
  return index;
}

int Cycle::TypeOf(const std::string& gpu_type) const {
  if (gpu_type.empty())
    return -1;
  for (size_t i = 0; i < types_.size(); ++i)
    if (types_[i] == gpu_type)
      return static_cast<int>(i);
  return -2;
}

void Cycle::BuildNodes() {
  std::vector<const Node*> order;
  order.reserve(cluster_.nodes.size());
  for (const Node& n : cluster_.nodes)
    order.push_back(&n);
  if (!std::is_sorted(order.begin(), order.end(),
                      [](auto* a, auto* b) { return a->name < b->name; }))
    std::stable_sort(order.begin(), order.end(),
                     [](auto* a, auto* b) { return a->name < b->name; });
  nodes_.resize(order.size());
  node_index_.reserve(order.size() * 2);
  for (size_t i = 0; i < order.size(); ++i) {
    const Node* n = order[i];
    NodeState& s = nodes_[i];
    s.node = n;
    s.total = std::max(0, n->gpus);
    s.free = s.total;
    s.used.assign(s.total, 0);
    if (n->cpus > 0)
      s.cpus_free = n->cpus;
    if (n->memory_mb > 0)
      s.mem_free = n->memory_mb;
    auto t = std::find(types_.begin(), types_.end(), std::string_view(n->gpu_type));
    s.type = static_cast<int>(t - types_.begin());
    if (t == types_.end())
      types_.push_back(n->gpu_type);
    node_index_.emplace(n->name, static_cast<int>(i));
    if (n->schedulable)
      max_gpus_ = std::max(max_gpus_, s.total);
  }
}

void Cycle::AccountRunning() {
  runs_.resize(cluster_.running.size());
  for (size_t r = 0; r < cluster_.running.size(); ++r) {
    const RunningJob& rj = cluster_.running[r];
    RunInfo& info = runs_[r];
    info.project = InternProject(rj.project);
    int c = class_index_.Find(rj.priority_class);
    info.cls_value = c < 0 ? 0 : classes_[c]->value;
    for (const NodeAllocation& a : rj.allocation) {
      info.gpus += static_cast<int>(a.gpu_indices.size());
      auto it = node_index_.find(a.node);
      if (it == node_index_.end())
        continue;
      NodeState& n = nodes_[it->second];
      for (int g : a.gpu_indices) {
        if (g >= 0 && g < n.total && !n.used[g]) {
          n.used[g] = 1;
          --n.free;
        }
      }
      if (n.cpus_free != INT_MAX)
        n.cpus_free -= a.cpus;
      if (n.mem_free != INT64_MAX)
        n.mem_free -= a.memory_mb;
    }
    projects_[info.project].used += info.gpus;
  }
  buckets_.assign(types_.size(), std::vector<std::set<int>>(max_gpus_ + 1));
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].node->schedulable)
      buckets_[nodes_[i].type][nodes_[i].free].insert(static_cast<int>(i));
}

struct ShapeKey {
  int gpus, nodes, type, cpus;
  int64_t memory_mb;
  bool operator==(const ShapeKey&) const = default;
};
struct ShapeKeyHash {
  size_t operator()(const ShapeKey& k) const {
    uint64_t h = static_cast<uint32_t>(k.gpus) * 0x9E3779B97F4A7C15ull;
    h ^= (static_cast<uint64_t>(static_cast<uint32_t>(k.nodes)) << 20) ^
         (static_cast<uint64_t>(static_cast<uint32_t>(k.type)) << 40) ^
         (static_cast<uint64_t>(static_cast<uint32_t>(k.cpus)) * 0xC2B2AE3D27D4EB4Full) ^
         static_cast<uint64_t>(k.memory_mb);
    return static_cast<size_t>(h);
  }
};

void Cycle::InternPending() {
  // Distinct request shapes -> index into never_fits_ (or -1): a short list
  // first, a hash map past 32 shapes.
  std::vector<std::pair<ShapeKey, int>> few_shapes;
  std::unordered_map<ShapeKey, int, ShapeKeyHash> shapes;
  jobs_.resize(pending_.size());
  if (config_.explain_waiting)
    waiting_.reserve(pending_.size());
  for (size_t i = 0; i < pending_.size(); ++i) {
    const PendingJob& p = pending_[i];
    Job& j = jobs_[i];
    j.p = &p;
    j.cls = class_index_.Find(p.priority_class);
    j.project = InternProject(p.project);
    auto [user, inserted] = user_index_[j.project].Insert(p.user, static_cast<int>(users_.size()));
    if (inserted)
      users_.push_back({.project = j.project, .name = p.user});
    j.user = user;
    j.gpus = p.resources.gpus;
    j.shape = ShapeOf(p.resources);
    j.type = TypeOf(p.resources.gpu_type);
    j.queued_us = p.queued_us;
    j.runtime_us = p.expected_runtime_us;
    // Shapes repeat: ask NeverFits once per distinct shape.
    const Resources& r = p.resources;
    ShapeKey key{r.gpus, r.nodes, j.type, r.cpus, r.memory_mb};
    int* never = nullptr;
    for (auto& [k, v] : few_shapes)
      if (k == key) {
        never = &v;
        break;
      }
    if (!never && few_shapes.size() >= 32) {
      if (auto it = shapes.find(key); it != shapes.end())
        never = &it->second;
    }
    if (!never) {
      int v = -1;
      if (j.type == -2) {
        v = -2;  // a type no node has: the sentence names it, so one per job
      } else if (auto why = NeverFits(cluster_.nodes, r)) {
        v = static_cast<int>(never_fits_.size());
        never_fits_.push_back(std::move(*why));
      }
      never = few_shapes.size() < 32 ? &few_shapes.emplace_back(key, v).second
                                     : &shapes.emplace(key, v).first->second;
    }
    j.never = *never;
    if (j.never == -2) {
      j.never = static_cast<int>(never_fits_.size());
      never_fits_.push_back(NeverFits(cluster_.nodes, r).value_or("no node has its GPU type"));
    }
  }
  // Quotas and usage, once per project and user.
  std::unordered_map<std::string_view, const ProjectQuota*, SvHash> quotas;
  for (const ProjectQuota& q : config_.quotas)
    quotas[q.project] = &q;
  for (ProjectState& p : projects_) {
    if (auto q = quotas.find(p.name); q != quotas.end()) {
      p.nominal = std::max(0, q->second->nominal_gpus);
      p.borrow_limit = q->second->borrowing_limit;
      p.limit = p.borrow_limit < 0 ? INT64_MAX : int64_t{p.nominal} + p.borrow_limit;
      p.weight = q->second->weight > 0 ? q->second->weight : 1.0;
    }
    auto u = usage_.by_project.find(std::string(p.name));
    p.share = (u == usage_.by_project.end() ? 0.0 : u->second) / p.weight;
  }
  std::string key;
  for (UserState& u : users_) {
    key.assign(projects_[u.project].name);
    key += '/';
    key += u.name;
    auto it = usage_.by_user.find(key);
    u.usage = it == usage_.by_user.end() ? 0.0 : it->second;
  }
  // Name ranks break fair-share ties without comparing strings in the heap.
  std::vector<int> order(projects_.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return projects_[a].name < projects_[b].name; });
  for (size_t i = 0; i < order.size(); ++i)
    projects_[order[i]].name_rank = static_cast<int>(i);
  order.resize(users_.size());
  for (size_t i = 0; i < order.size(); ++i)
    order[i] = static_cast<int>(i);
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return users_[a].name < users_[b].name; });
  for (size_t i = 0; i < order.size(); ++i)
    users_[order[i]].name_rank = static_cast<int>(i);
}

int Cycle::MaxFree(int type) const {
  if (type == -2)
    return 0;
  int best = 0;
  for (size_t t = 0; t < buckets_.size(); ++t) {
    if (type >= 0 && static_cast<int>(t) != type)
      continue;
    for (int f = max_gpus_; f > best; --f)
      if (!buckets_[t][f].empty()) {
        best = f;
        break;
      }
  }
  return best;
}

bool Cycle::NodeFits(int n, const Shape& s, bool respect_reservation) const {
  const NodeState& ns = nodes_[n];
  if (ns.cpus_free != INT_MAX && ns.cpus_free < s.cpus)
    return false;
  if (ns.mem_free != INT64_MAX && ns.mem_free < s.memory_mb)
    return false;
  if (respect_reservation && !extra_.empty() && extra_[n] < s.gpus)
    return false;
  return true;
}

bool Cycle::Place(const Shape& s, int type, bool respect_reservation, Placement& out) const {
  out.nodes.clear();
  if (type == -2 || s.gpus > max_gpus_)
    return false;
  std::vector<int> level;
  for (int f = s.gpus; f <= max_gpus_; ++f) {
    level.clear();
    for (size_t t = 0; t < buckets_.size(); ++t) {
      if (type >= 0 && static_cast<int>(t) != type)
        continue;
      int want = s.nodes - static_cast<int>(out.nodes.size());
      for (int n : buckets_[t][f]) {
        if (!NodeFits(n, s, respect_reservation))
          continue;
        level.push_back(n);
        if (--want == 0)
          break;
      }
    }
    if (level.empty())
      continue;
    std::sort(level.begin(), level.end());
    for (int n : level) {
      out.nodes.push_back(n);
      if (static_cast<int>(out.nodes.size()) == s.nodes)
        return true;
    }
  }
  return false;
}

void Cycle::SetBucket(int n, int old_free) {
  NodeState& ns = nodes_[n];
  if (!ns.node->schedulable || old_free == ns.free)
    return;
  buckets_[ns.type][old_free].erase(n);
  buckets_[ns.type][ns.free].insert(n);
}

// Marks `s` as taken on node n, lowest free GPU indices first.
void Cycle::Take(int n, const Shape& s, NodeAllocation* alloc) {
  NodeState& ns = nodes_[n];
  int old = ns.free;
  int need = std::min(s.gpus, ns.free);
  for (int g = 0; g < ns.total && need > 0; ++g) {
    if (ns.used[g])
      continue;
    ns.used[g] = 1;
    --ns.free;
    --need;
    if (alloc)
      alloc->gpu_indices.push_back(g);
  }
  if (ns.cpus_free != INT_MAX)
    ns.cpus_free -= s.cpus;
  if (ns.mem_free != INT64_MAX)
    ns.mem_free -= s.memory_mb;
  if (alloc) {
    alloc->node = ns.node->name;
    alloc->cpus = s.cpus;
    alloc->memory_mb = s.memory_mb;
  }
  SetBucket(n, old);
}

void Cycle::EnsureRunningIndex() {
  if (running_indexed_)
    return;
  running_indexed_ = true;
  for (size_t r = 0; r < cluster_.running.size(); ++r) {
    for (const NodeAllocation& a : cluster_.running[r].allocation) {
      auto it = node_index_.find(a.node);
      if (it != node_index_.end() && (nodes_[it->second].running.empty() ||
                                      nodes_[it->second].running.back() != static_cast<int>(r)))
        nodes_[it->second].running.push_back(static_cast<int>(r));
    }
  }
}

void Cycle::Wait(const Job& j, WaitReason&& reason) {
  if (config_.explain_waiting)
    waiting_.emplace_back(static_cast<int>(&j - jobs_.data()), std::move(reason));
}

// Victims for job j: see the header, step 4.
bool Cycle::TryPreempt(const Job& j, const Shape& s, int type, WaitReason& reason) {
  if (!config_.preemption || config_.mode == PolicyMode::kFifo)
    return false;
  const PriorityClass& jc = *classes_[j.cls];
  if (jc.preemption == PreemptionPolicy::kNever)
    return false;
  if (preemption_searches_ >= config_.max_preemption_searches)
    return false;
  ++preemption_searches_;
  EnsureRunningIndex();
  const ProjectState& jp = projects_[j.project];
  bool may_reclaim = config_.mode == PolicyMode::kKervan && jp.used + j.gpus <= jp.nominal;

  struct Candidate {
    int node;
    std::vector<int> victims;
    int gpus;
    int top_value;  // the highest class among the victims
  };
  std::vector<Candidate> best;  // the s.nodes nodes with the fewest victims
  std::vector<int> eligible;
  std::vector<std::pair<int, int64_t>> tentative;  // project, GPUs taken in this node's pick
  for (int n = 0; n < static_cast<int>(nodes_.size()); ++n) {
    const NodeState& ns = nodes_[n];
    if (!ns.node->schedulable || ns.total < s.gpus || (type >= 0 && ns.type != type) || type == -2)
      continue;
    eligible.clear();
    for (int r : ns.running) {
      const RunInfo& info = runs_[r];
      const RunningJob& rj = cluster_.running[r];
      if (info.victim || !rj.preemptible)
        continue;
      const ProjectState& vp = projects_[info.project];
      bool borrowing = vp.used - vp.victim_gpus > vp.nominal;
      bool by_priority = info.cls_value < jc.value && (info.project == j.project || borrowing);
      bool by_reclaim = may_reclaim && info.project != j.project && borrowing;
      if (by_priority || by_reclaim)
        eligible.push_back(r);
    }
    if (eligible.empty() && ns.free < s.gpus)
      continue;
    std::sort(eligible.begin(), eligible.end(), [&](int a, int b) {
      if (runs_[a].cls_value != runs_[b].cls_value)
        return runs_[a].cls_value < runs_[b].cls_value;
      if (cluster_.running[a].started_us != cluster_.running[b].started_us)
        return cluster_.running[a].started_us > cluster_.running[b].started_us;
      return cluster_.running[a].id < cluster_.running[b].id;
    });
    Candidate c{.node = n, .victims = {}, .gpus = 0, .top_value = INT_MIN};
    int free = ns.free;
    int64_t cpus = ns.cpus_free;
    int64_t mem = ns.mem_free;
    tentative.clear();
    auto enough = [&] { return free >= s.gpus && cpus >= s.cpus && mem >= s.memory_mb; };
    for (int r : eligible) {
      if (enough())
        break;
      const RunInfo& info = runs_[r];
      const RunningJob& rj = cluster_.running[r];
      // A reclaim victim only while its project is still above nominal.
      bool by_priority_only = info.cls_value < jc.value;
      if (!by_priority_only || info.project != j.project) {
        const ProjectState& vp = projects_[info.project];
        int64_t taken = 0;
        for (auto& [p, g] : tentative)
          if (p == info.project)
            taken += g;
        bool still_borrowing = vp.used - vp.victim_gpus - taken > vp.nominal;
        if (!still_borrowing)
          continue;
      }
      for (const NodeAllocation& a : rj.allocation) {
        if (a.node != ns.node->name)
          continue;
        free += static_cast<int>(a.gpu_indices.size());
        if (cpus != INT_MAX)
          cpus += a.cpus;
        if (mem != INT64_MAX)
          mem += a.memory_mb;
      }
      tentative.emplace_back(info.project, info.gpus);
      c.victims.push_back(r);
      c.gpus += info.gpus;
      c.top_value = std::max(c.top_value, info.cls_value);
    }
    if (!enough() || c.victims.empty())
      continue;
    best.push_back(std::move(c));
  }
  if (static_cast<int>(best.size()) < s.nodes)
    return false;
  std::stable_sort(best.begin(), best.end(), [](const Candidate& a, const Candidate& b) {
    if (a.victims.size() != b.victims.size())
      return a.victims.size() < b.victims.size();
    if (a.top_value != b.top_value)
      return a.top_value < b.top_value;
    return a.gpus < b.gpus;
  });
  best.resize(s.nodes);
  int count = 0;
  for (Candidate& c : best) {
    for (int r : c.victims) {
      RunInfo& info = runs_[r];
      if (info.victim)
        continue;
      info.victim = true;
      projects_[info.project].victim_gpus += info.gpus;
      ++count;
      const RunningJob& rj = cluster_.running[r];
      bool reclaim = info.cls_value >= jc.value;
      decision_.preempted.push_back(
          {.victim_id = rj.id,
           .for_job_id = j.p->id,
           .why = reclaim ? Preemption::Why::kReclaim : Preemption::Why::kPriority});
    }
    // Hold the node's free GPUs for the job: nobody else gets them this cycle.
    Shape hold = s;
    hold.gpus = std::min(s.gpus, nodes_[c.node].free);
    hold.cpus = 0;
    hold.memory_mb = 0;
    Take(c.node, hold, nullptr);
  }
  reason.code = WaitCode::kPreempting;
  reason.victims = count;
  return true;
}

void Cycle::MakeReservation(const Job& j, const Shape& s, int type) {
  EnsureRunningIndex();
  reserved_for_ = j.p;
  struct At {
    int64_t t;
    int node;
  };
  std::vector<At> times;
  std::vector<std::pair<int64_t, int>> ends;
  for (int n = 0; n < static_cast<int>(nodes_.size()); ++n) {
    const NodeState& ns = nodes_[n];
    if (!ns.node->schedulable || ns.total < s.gpus || (type >= 0 && ns.type != type) || type == -2)
      continue;
    ends.clear();
    for (int r : ns.running) {
      const RunningJob& rj = cluster_.running[r];
      int64_t end = runs_[r].victim          ? cluster_.now_us
                    : rj.expected_end_us > 0 ? std::max(rj.expected_end_us, cluster_.now_us)
                                             : INT64_MAX;
      for (const NodeAllocation& a : rj.allocation)
        if (a.node == ns.node->name)
          ends.emplace_back(end, static_cast<int>(a.gpu_indices.size()));
    }
    std::sort(ends.begin(), ends.end());
    int free = ns.free;
    int64_t t = free >= s.gpus ? cluster_.now_us : INT64_MAX;
    for (auto& [end, g] : ends) {
      if (free >= s.gpus)
        break;
      free += g;
      if (free >= s.gpus)
        t = end;
    }
    times.push_back({t, n});
  }
  if (static_cast<int>(times.size()) < s.nodes)
    return;  // NeverFits would have caught this; keep the cycle safe anyway
  std::stable_sort(times.begin(), times.end(), [](const At& a, const At& b) { return a.t < b.t; });
  times.resize(s.nodes);
  reservation_us_ = times.back().t;
  extra_.assign(nodes_.size(), INT_MAX);
  for (const At& at : times) {
    const NodeState& ns = nodes_[at.node];
    int free = ns.free;
    for (int r : ns.running) {
      const RunningJob& rj = cluster_.running[r];
      int64_t end = runs_[r].victim          ? cluster_.now_us
                    : rj.expected_end_us > 0 ? rj.expected_end_us
                                             : INT64_MAX;
      if (end > reservation_us_ && reservation_us_ != INT64_MAX)
        continue;
      for (const NodeAllocation& a : rj.allocation)
        if (a.node == ns.node->name)
          free += static_cast<int>(a.gpu_indices.size());
    }
    extra_[at.node] = std::max(0, free - s.gpus);
  }
}

void Cycle::Process(int job_index, int64_t position, double share) {
  const Job& j = jobs_[job_index];
  WaitReason reason;
  reason.position = position;
  reason.fair_share_usage = share;
  if (j.never >= 0) {
    reason.code = WaitCode::kNeverFits;
    if (config_.explain_waiting)
      reason.detail = never_fits_[j.never];
    return Wait(j, std::move(reason));
  }
  if (blocked_) {
    reason.code = WaitCode::kBehindJob;
    if (config_.explain_waiting)
      reason.other_job = blocked_->id;
    return Wait(j, std::move(reason));
  }
  ProjectState& proj = projects_[j.project];
  const int gpus = j.gpus;
  if (proj.limit != INT64_MAX && proj.used + gpus > proj.limit) {
    reason.code = WaitCode::kQuota;
    reason.project_used_gpus = static_cast<int>(proj.used);
    reason.project_limit_gpus = static_cast<int>(proj.limit);
    reason.project_nominal_gpus = proj.nominal;
    return Wait(j, std::move(reason));
  }
  const Shape& s = j.shape;
  const int type = j.type;
  int max_free = MaxFree(type);
  Placement placement;
  bool fits = s.gpus <= max_free && Place(s, type, false, placement);
  if (fits && reserved_for_) {
    bool short_job = j.runtime_us > 0 && reservation_us_ != INT64_MAX &&
                     cluster_.now_us + j.runtime_us <= reservation_us_;
    if (!short_job && !Place(s, type, true, placement)) {
      reason.code = WaitCode::kReservation;
      reason.reservation_us = reservation_us_ == INT64_MAX ? 0 : reservation_us_;
      reason.reservation_in_us = reservation_us_ == INT64_MAX
                                     ? 0
                                     : std::max<int64_t>(0, reservation_us_ - cluster_.now_us);
      if (config_.explain_waiting)
        reason.other_job = reserved_for_->id;
      return Wait(j, std::move(reason));
    }
    if (!short_job)
      for (int n : placement.nodes)
        extra_[n] = extra_[n] == INT_MAX ? INT_MAX : extra_[n] - s.gpus;
  }
  if (fits) {
    Admission a;
    a.job_id = j.p->id;
    a.borrowed = proj.used + gpus > proj.nominal;
    a.allocation.resize(placement.nodes.size());
    for (size_t i = 0; i < placement.nodes.size(); ++i)
      Take(placement.nodes[i], s, &a.allocation[i]);
    proj.used += gpus;
    double charge = gpus * (j.runtime_us > 0 ? j.runtime_us / 1e6 : kUnknownRuntimeChargeS);
    proj.share += charge / proj.weight;
    users_[j.user].usage += charge;
    decision_.admitted.push_back(std::move(a));
    return;
  }
  if (TryPreempt(j, s, type, reason))
    return Wait(j, std::move(reason));
  reason.code = WaitCode::kNoFit;
  reason.max_free_gpus = max_free;
  if (config_.mode == PolicyMode::kKervan && config_.backfill) {
    if (!reserved_for_)
      MakeReservation(j, s, type);
  } else {
    blocked_ = j.p;
  }
  Wait(j, std::move(reason));
}

bool QueuedBefore(const Job& a, const Job& b) {
  if (a.queued_us != b.queued_us)
    return a.queued_us < b.queued_us;
  return a.p->id < b.p->id;
}

void Cycle::ProcessSorted() {
  std::vector<int> order;
  order.reserve(jobs_.size());
  for (size_t i = 0; i < jobs_.size(); ++i)
    if (jobs_[i].cls >= 0)
      order.push_back(static_cast<int>(i));
  bool strict = config_.mode == PolicyMode::kStrictPriority;
  std::sort(order.begin(), order.end(), [&](int a, int b) {
    if (strict && jobs_[a].cls != jobs_[b].cls)
      return jobs_[a].cls < jobs_[b].cls;
    return QueuedBefore(jobs_[a], jobs_[b]);
  });
  int64_t position = 0;
  for (int i : order)
    Process(i, ++position, 0);
}

void Cycle::ProcessKervan() {
  // Group jobs by (class, project, user); each group in queued order.
  struct Group {
    int cls, project, user;
    std::vector<int> jobs;
    size_t next = 0;
  };
  std::vector<Group> groups;
  std::vector<int> group_of(classes_.size() * users_.size(), -1);  // [cls][user]
  for (size_t i = 0; i < jobs_.size(); ++i) {
    const Job& j = jobs_[i];
    if (j.cls < 0)
      continue;
    int& g = group_of[static_cast<size_t>(j.cls) * users_.size() + j.user];
    if (g < 0) {
      g = static_cast<int>(groups.size());
      groups.push_back({.cls = j.cls, .project = j.project, .user = j.user, .jobs = {}});
    }
    groups[g].jobs.push_back(static_cast<int>(i));
  }
  auto before = [&](int a, int b) { return QueuedBefore(jobs_[a], jobs_[b]); };
  for (Group& g : groups)
    if (!std::is_sorted(g.jobs.begin(), g.jobs.end(), before))
      std::sort(g.jobs.begin(), g.jobs.end(), before);
  // Per class: the projects with work, each with its users' groups.
  std::vector<std::vector<std::vector<int>>> by_class(classes_.size());  // [cls][project] groups
  for (auto& v : by_class)
    v.resize(projects_.size());
  for (size_t g = 0; g < groups.size(); ++g)
    by_class[groups[g].cls][groups[g].project].push_back(static_cast<int>(g));

  int64_t position = 0;
  struct PKey {
    double share;
    int rank;
    int project;
  };
  auto pgreater = [](const PKey& a, const PKey& b) {
    return a.share != b.share ? a.share > b.share : a.rank > b.rank;
  };
  struct UKey {
    double usage;
    int rank;
    int group;
  };
  auto ugreater = [](const UKey& a, const UKey& b) {
    return a.usage != b.usage ? a.usage > b.usage : a.rank > b.rank;
  };
  using UHeap = std::priority_queue<UKey, std::vector<UKey>, decltype(ugreater)>;
  std::vector<UHeap> user_heaps;
  for (size_t c = 0; c < classes_.size(); ++c) {
    std::priority_queue<PKey, std::vector<PKey>, decltype(pgreater)> pheap(pgreater);
    user_heaps.assign(projects_.size(), UHeap(ugreater));
    for (size_t p = 0; p < projects_.size(); ++p) {
      if (by_class[c][p].empty())
        continue;
      for (int g : by_class[c][p])
        user_heaps[p].push({users_[groups[g].user].usage, users_[groups[g].user].name_rank, g});
      pheap.push({projects_[p].share, projects_[p].name_rank, static_cast<int>(p)});
    }
    while (!pheap.empty()) {
      PKey pk = pheap.top();
      pheap.pop();
      UHeap& uh = user_heaps[pk.project];
      UKey uk = uh.top();
      uh.pop();
      Group& g = groups[uk.group];
      Process(g.jobs[g.next++], ++position, pk.share);
      // This group's next job is needed when its turn comes again: load it
      // now, so the cycle does not wait on a cache miss per job.
      if (g.next < g.jobs.size())
        __builtin_prefetch(&jobs_[g.jobs[g.next]]);
      if (g.next < g.jobs.size())
        uh.push({users_[g.user].usage, uk.rank, uk.group});
      if (!uh.empty())
        pheap.push({projects_[pk.project].share, pk.rank, pk.project});
    }
  }
}

Decision Cycle::Run() {
  InternClasses();
  BuildNodes();
  AccountRunning();
  InternPending();
  if (config_.mode == PolicyMode::kKervan)
    ProcessKervan();
  else
    ProcessSorted();
  for (const Job& j : jobs_) {
    if (j.cls >= 0)
      continue;
    WaitReason reason;
    reason.code = WaitCode::kUnknownClass;
    reason.detail = j.p->priority_class;
    Wait(j, std::move(reason));
  }
  // Insert in id order with a hint: O(1) per job instead of a tree descent.
  if (!waiting_.empty()) {
    std::vector<int> slot(pending_.size(), -1);
    for (size_t k = 0; k < waiting_.size(); ++k)
      slot[waiting_[k].first] = static_cast<int>(k);
    std::vector<int> order;
    order.reserve(pending_.size());
    for (size_t i = 0; i < pending_.size(); ++i)
      order.push_back(static_cast<int>(i));
    auto by_id = [&](int a, int b) { return pending_[a].id < pending_[b].id; };
    if (!std::is_sorted(order.begin(), order.end(), by_id))
      std::sort(order.begin(), order.end(), by_id);
    for (int i : order)
      if (slot[i] >= 0)
        decision_.waiting.emplace_hint(decision_.waiting.end(), pending_[i].id,
                                       std::move(waiting_[slot[i]].second));
  }
  return std::move(decision_);
}

}  // namespace

Decision Schedule(const PolicyConfig& config, const ClusterState& cluster,
                  const std::vector<PendingJob>& pending, const Usage& usage) {
  return Cycle(config, cluster, pending, usage).Run();
}

}  // namespace kervan::jobs

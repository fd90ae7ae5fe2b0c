#include "jobs/policy.h"

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

namespace kervan::jobs {
namespace {

constexpr int64_t kSec = 1'000'000;
constexpr int64_t kNow = 1000 * kSec;

Node N(std::string name, int gpus, std::string type = "") {
  return {.name = std::move(name), .gpus = gpus, .gpu_type = std::move(type)};
}

std::vector<int> Range(int from, int to) {
  std::vector<int> v;
  for (int i = from; i < to; ++i)
    v.push_back(i);
  return v;
}

RunningJob R(std::string id, std::string project, std::string cls, bool preemptible,
             std::string node, std::vector<int> gpus, int64_t started = 0, int64_t end = 0) {
  return {.id = std::move(id),
          .project = std::move(project),
          .user = "u",
          .priority_class = std::move(cls),
          .preemptible = preemptible,
          .allocation = {{.node = std::move(node), .gpu_indices = std::move(gpus)}},
          .started_us = started,
          .expected_end_us = end};
}

PendingJob P(std::string id, std::string project, std::string cls, int gpus, int64_t queued,
             int64_t runtime = 0, int nodes = 1, std::string user = "u") {
  return {.id = std::move(id),
          .project = std::move(project),
          .user = std::move(user),
          .priority_class = std::move(cls),
          .resources = {.gpus = gpus, .nodes = nodes},
          .preemptible = cls != "prod",
          .queued_us = queued,
          .expected_runtime_us = runtime};
}

std::vector<std::string> AdmittedIds(const Decision& d) {
  std::vector<std::string> ids;
  for (const auto& a : d.admitted)
    ids.push_back(a.job_id);
  return ids;
}

const Admission& AdmissionOf(const Decision& d, const std::string& id) {
  for (const auto& a : d.admitted)
    if (a.job_id == id)
      return a;
  ADD_FAILURE() << id << " not admitted";
  static Admission none;
  return none;
}

ClusterState Cluster(std::vector<Node> nodes, std::vector<RunningJob> running = {}) {
  return {.nodes = std::move(nodes), .running = std::move(running), .now_us = kNow};
}

TEST(Policy, HigherPriorityClassGoesFirst) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 1)});
  std::vector<PendingJob> pending = {P("b", "x", "batch", 1, 1), P("d", "x", "dev", 1, 2),
                                     P("p", "x", "prod", 1, 3)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"p"});
  ASSERT_EQ(d.waiting.size(), 2u);
  EXPECT_EQ(d.waiting.at("d").position, 2);
  EXPECT_EQ(d.waiting.at("b").position, 3);
  EXPECT_EQ(d.waiting.at("d").code, WaitCode::kNoFit);
}

TEST(Policy, ProdPreemptsDevWhenFullAndVictimGpusAreNotReused) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 8)}, {R("dev1", "x", "dev", true, "n0", Range(0, 6))});
  std::vector<PendingJob> pending = {P("prod1", "y", "prod", 8, 5), P("small", "z", "batch", 1, 1)};
  Decision d = Schedule(config, cluster, pending, {});
  ASSERT_EQ(d.preempted.size(), 1u);
  EXPECT_EQ(d.preempted[0].victim_id, "dev1");
  EXPECT_EQ(d.preempted[0].for_job_id, "prod1");
  EXPECT_EQ(d.preempted[0].why, Preemption::Why::kPriority);
  EXPECT_EQ(d.waiting.at("prod1").code, WaitCode::kPreempting);
  EXPECT_EQ(d.waiting.at("prod1").victims, 1);
  // The 2 free GPUs are held for prod1: the batch job does not get them.
  EXPECT_TRUE(d.admitted.empty());
  EXPECT_EQ(d.waiting.at("small").code, WaitCode::kNoFit);
}

TEST(Policy, PreemptionPicksFewestVictimsLowestPriorityMostRecent) {
  PolicyConfig config;
  auto cluster =
      Cluster({N("n0", 8), N("n1", 8)}, {R("a", "x", "dev", true, "n0", Range(0, 4), 10),
                                         R("b", "x", "dev", true, "n0", Range(4, 8), 20),
                                         R("c", "x", "batch", true, "n1", Range(0, 4), 10),
                                         R("d", "x", "batch", true, "n1", Range(4, 8), 5)});
  // 4 GPUs: one victim on either node; batch before dev; the newer batch job.
  Decision d = Schedule(config, cluster, {P("p", "y", "prod", 4, 1)}, {});
  ASSERT_EQ(d.preempted.size(), 1u);
  EXPECT_EQ(d.preempted[0].victim_id, "c");
  // 8 GPUs: two victims on one node, never spread over both.
  d = Schedule(config, cluster, {P("p", "y", "prod", 8, 1)}, {});
  ASSERT_EQ(d.preempted.size(), 2u);
  EXPECT_EQ(d.preempted[0].victim_id, "c");
  EXPECT_EQ(d.preempted[1].victim_id, "d");
}

TEST(Policy, BatchClassNeverPreempts) {
  PolicyConfig config;
  config.priority_classes.push_back({.name = "scavenger", .value = 1, .preemptible_default = true});
  auto cluster = Cluster({N("n0", 4)}, {R("s", "x", "scavenger", true, "n0", Range(0, 4))});
  Decision d = Schedule(config, cluster, {P("b", "y", "batch", 4, 1)}, {});
  EXPECT_TRUE(d.preempted.empty());
  EXPECT_EQ(d.waiting.at("b").code, WaitCode::kNoFit);
  // Not by reclaim either: y is within its nominal share, x borrows.
  config.quotas = {{.project = "y", .nominal_gpus = 4}};
  d = Schedule(config, cluster, {P("b", "y", "batch", 4, 1)}, {});
  EXPECT_TRUE(d.preempted.empty());
}

TEST(Policy, NonPreemptibleJobIsNeverAVictim) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 4)}, {R("d", "x", "dev", false, "n0", Range(0, 4))});
  Decision d = Schedule(config, cluster, {P("p", "y", "prod", 4, 1)}, {});
  EXPECT_TRUE(d.preempted.empty());
  EXPECT_EQ(d.waiting.at("p").code, WaitCode::kNoFit);
}

TEST(Policy, QuotaLimitKeepsBurstOutOfOtherProjectsNominalShare) {
  PolicyConfig config;
  config.quotas = {{.project = "a", .nominal_gpus = 4, .borrowing_limit = 4},
                   {.project = "b", .nominal_gpus = 8, .borrowing_limit = 0}};
  auto cluster = Cluster({N("n0", 8), N("n1", 8)});
  std::vector<PendingJob> pending;
  for (int i = 0; i < 6; ++i)
    pending.push_back(P("a" + std::to_string(i), "a", "dev", 2, i));
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), (std::vector<std::string>{"a0", "a1", "a2", "a3"}));
  EXPECT_FALSE(AdmissionOf(d, "a1").borrowed);
  EXPECT_TRUE(AdmissionOf(d, "a2").borrowed);
  const WaitReason& w = d.waiting.at("a4");
  EXPECT_EQ(w.code, WaitCode::kQuota);
  EXPECT_EQ(w.project_used_gpus, 8);
  EXPECT_EQ(w.project_limit_gpus, 8);
  EXPECT_EQ(Explain(w, pending[4]),
            "waits for quota: project a uses 8 of 8 GPUs (nominal 4 + borrowing limit 4) and the "
            "job asks for 2 more (position 5 in this cycle's order)");
}

TEST(Policy, BorrowsIdleCapacityUpToTheLimit) {
  PolicyConfig config;
  config.quotas = {{.project = "a", .nominal_gpus = 2, .borrowing_limit = 10}};
  auto cluster = Cluster({N("n0", 8)});
  std::vector<PendingJob> pending;
  for (int i = 0; i < 5; ++i)
    pending.push_back(P("a" + std::to_string(i), "a", "dev", 2, i));
  Decision d = Schedule(config, cluster, pending, {});
  // 8 GPUs on the node: four jobs, three of them borrowed; the fifth no room.
  EXPECT_EQ(d.admitted.size(), 4u);
  EXPECT_FALSE(AdmissionOf(d, "a0").borrowed);
  EXPECT_TRUE(AdmissionOf(d, "a3").borrowed);
  EXPECT_EQ(d.waiting.at("a4").code, WaitCode::kNoFit);
}

TEST(Policy, ReclaimPreemptsBorrowerWhenOwnerComesBack) {
  PolicyConfig config;
  config.quotas = {{.project = "a", .nominal_gpus = 4, .borrowing_limit = 4},
                   {.project = "b", .nominal_gpus = 4, .borrowing_limit = 4}};
  auto cluster = Cluster(
      {N("n0", 8)},
      {R("a1", "a", "dev", true, "n0", {0, 1}, 10), R("a2", "a", "dev", true, "n0", {2, 3}, 20),
       R("a3", "a", "dev", true, "n0", {4, 5}, 30), R("a4", "a", "dev", true, "n0", {6, 7}, 40)});
  std::vector<PendingJob> pending = {P("b1", "b", "dev", 2, 50)};
  Decision d = Schedule(config, cluster, pending, {});
  ASSERT_EQ(d.preempted.size(), 1u);
  EXPECT_EQ(d.preempted[0].victim_id, "a4");  // the most recently started
  EXPECT_EQ(d.preempted[0].why, Preemption::Why::kReclaim);
  EXPECT_EQ(d.waiting.at("b1").code, WaitCode::kPreempting);
  // Reclaim stops at a's nominal share: b asks for 6, a may only lose 4.
  pending = {P("b1", "b", "dev", 4, 50), P("b2", "b", "dev", 4, 51)};
  config.max_preemption_searches = 64;
  d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(d.preempted.size(), 2u);
  // The borrower cannot win its GPUs back by priority either (same class).
  EXPECT_EQ(d.waiting.at("b2").code, WaitCode::kNoFit);
}

TEST(Policy, BorrowerDoesNotPreemptAProjectWithinItsNominalShare) {
  PolicyConfig config;
  config.quotas = {{.project = "a", .nominal_gpus = 0}, {.project = "b", .nominal_gpus = 8}};
  auto cluster = Cluster({N("n0", 8)}, {R("b1", "b", "batch", true, "n0", Range(0, 8))});
  // a's dev outranks b's batch, but b is within its nominal share.
  Decision d = Schedule(config, cluster, {P("a1", "a", "dev", 8, 1)}, {});
  EXPECT_TRUE(d.preempted.empty());
}

TEST(Policy, FairShareBetweenProjectsAtEqualPriority) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 1)});
  Usage usage;
  usage.by_project["a"] = 1000;
  Decision d =
      Schedule(config, cluster, {P("a1", "a", "dev", 1, 1), P("b1", "b", "dev", 1, 2)}, usage);
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"b1"});
  EXPECT_DOUBLE_EQ(d.waiting.at("a1").fair_share_usage, 1000);
  // The weight divides: a with weight 10 has normalized usage 100 < 200.
  usage.by_project["b"] = 200;
  config.quotas = {{.project = "a", .nominal_gpus = 0, .weight = 10}};
  d = Schedule(config, cluster, {P("a1", "a", "dev", 1, 1), P("b1", "b", "dev", 1, 2)}, usage);
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"a1"});
}

TEST(Policy, ProjectsTakeTurnsWithinACycle) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 4)});
  std::vector<PendingJob> pending;
  for (int i = 0; i < 3; ++i)
    pending.push_back(P("a" + std::to_string(i), "a", "dev", 1, i, 60 * kSec));
  for (int i = 0; i < 3; ++i)
    pending.push_back(P("b" + std::to_string(i), "b", "dev", 1, 10 + i, 60 * kSec));
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), (std::vector<std::string>{"a0", "b0", "a1", "b1"}));
}

TEST(Policy, FairShareBetweenUsersInAProject) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 1)});
  Usage usage;
  usage.by_user["a/alice"] = 500;
  Decision d = Schedule(
      config, cluster,
      {P("j1", "a", "dev", 1, 1, 0, 1, "alice"), P("j2", "a", "dev", 1, 2, 0, 1, "bob")}, usage);
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"j2"});
}

TEST(Policy, GangOnOneNodeBestFitLowestIndices) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 8), N("n1", 8), N("n2", 8)},
                         {R("r0", "x", "prod", false, "n0", {0, 1, 2, 3, 4}),
                          R("r1", "x", "prod", false, "n1", {1, 2, 3})});
  // n0 has 3 free, n1 5 free, n2 8 free.
  Decision d = Schedule(config, cluster, {P("j3", "y", "dev", 3, 1)}, {});
  ASSERT_EQ(d.admitted.size(), 1u);
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n0");
  EXPECT_EQ(d.admitted[0].allocation[0].gpu_indices, (std::vector<int>{5, 6, 7}));
  d = Schedule(config, cluster, {P("j4", "y", "dev", 4, 1)}, {});
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n1");
  EXPECT_EQ(d.admitted[0].allocation[0].gpu_indices, (std::vector<int>{0, 4, 5, 6}));
  d = Schedule(config, cluster, {P("j6", "y", "dev", 6, 1)}, {});
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n2");
}

TEST(Policy, MultiNodeGangGetsEqualShareOnDistinctNodes) {
  PolicyConfig config;
  auto cluster =
      Cluster({N("n0", 8), N("n1", 8), N("n2", 8)}, {R("r0", "x", "prod", false, "n1", {0})});
  Decision d = Schedule(config, cluster, {P("g", "y", "dev", 16, 1, 0, 2)}, {});
  ASSERT_EQ(d.admitted.size(), 1u);
  ASSERT_EQ(d.admitted[0].allocation.size(), 2u);
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n0");
  EXPECT_EQ(d.admitted[0].allocation[1].node, "n2");
  EXPECT_EQ(d.admitted[0].allocation[1].gpu_indices, Range(0, 8));
  // Three nodes of 8 each would be needed; only two are whole.
  d = Schedule(config, cluster, {P("g3", "y", "dev", 24, 1, 0, 3)}, {});
  EXPECT_TRUE(d.admitted.empty());
  EXPECT_EQ(d.waiting.at("g3").code, WaitCode::kNoFit);
}

TEST(Policy, GpuTypeMustMatch) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 8, "V100"), N("n1", 8, "A100")});
  PendingJob j = P("a", "y", "dev", 4, 1);
  j.resources.gpu_type = "A100";
  PendingJob h = P("h", "y", "dev", 4, 2);
  h.resources.gpu_type = "H100";
  Decision d = Schedule(config, cluster, {j, h}, {});
  ASSERT_EQ(d.admitted.size(), 1u);
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n1");
  EXPECT_EQ(d.waiting.at("h").code, WaitCode::kNeverFits);
  EXPECT_EQ(Explain(d.waiting.at("h"), h),
            "never fits: asks for H100 GPUs; no schedulable node has them");
}

TEST(Policy, BackfillStartsShortJobThatEndsBeforeTheReservation) {
  PolicyConfig config;
  auto cluster =
      Cluster({N("n0", 8)}, {R("r", "x", "prod", false, "n0", Range(0, 6), 0, kNow + 100 * kSec)});
  std::vector<PendingJob> pending = {P("big", "y", "dev", 8, 1, 3600 * kSec),
                                     P("short", "y", "dev", 2, 2, 50 * kSec)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"short"});
  EXPECT_EQ(d.waiting.at("big").code, WaitCode::kNoFit);
  EXPECT_EQ(d.waiting.at("big").max_free_gpus, 2);
}

TEST(Policy, BackfillRefusesLongJobThatWouldDelayTheReservation) {
  PolicyConfig config;
  auto cluster =
      Cluster({N("n0", 8)}, {R("r", "x", "prod", false, "n0", Range(0, 6), 0, kNow + 100 * kSec)});
  std::vector<PendingJob> pending = {P("big", "y", "dev", 8, 1, 3600 * kSec),
                                     P("long", "y", "dev", 2, 2, 500 * kSec),
                                     P("unknown", "y", "dev", 2, 3, 0)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_TRUE(d.admitted.empty());
  const WaitReason& w = d.waiting.at("long");
  EXPECT_EQ(w.code, WaitCode::kReservation);
  EXPECT_EQ(w.other_job, "big");
  EXPECT_EQ(w.reservation_us, kNow + 100 * kSec);
  EXPECT_EQ(Explain(w, pending[1]),
            "waits for backfill: it fits now but would run into the GPUs reserved for job big, "
            "expected to start in 100s (position 2 in this cycle's order)");
  EXPECT_EQ(d.waiting.at("unknown").code, WaitCode::kReservation);
}

TEST(Policy, BackfillLongJobMayUseUnreservedGpus) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 8), N("n1", 4)},
                         {R("r", "x", "prod", false, "n0", Range(0, 6), 0, kNow + 100 * kSec),
                          R("s", "x", "prod", false, "n1", Range(0, 2), 0, kNow + 900 * kSec)});
  std::vector<PendingJob> pending = {P("big", "y", "dev", 8, 1, 3600 * kSec),
                                     P("long", "y", "dev", 2, 2, 500 * kSec)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"long"});
  EXPECT_EQ(d.admitted[0].allocation[0].node, "n1");
}

TEST(Policy, FifoBlocksTheHeadOfTheLine) {
  PolicyConfig config;
  config.mode = PolicyMode::kFifo;
  auto cluster = Cluster({N("n0", 8)}, {R("r", "x", "batch", true, "n0", Range(0, 6))});
  std::vector<PendingJob> pending = {P("big", "y", "prod", 8, 1), P("small", "y", "dev", 1, 2)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_TRUE(d.admitted.empty());
  EXPECT_TRUE(d.preempted.empty());  // FIFO never preempts
  const WaitReason& w = d.waiting.at("small");
  EXPECT_EQ(w.code, WaitCode::kBehindJob);
  EXPECT_EQ(w.other_job, "big");
  EXPECT_EQ(Explain(w, pending[1]),
            "waits in line behind job big, which does not fit yet; nothing behind it starts "
            "before it (position 2 in this cycle's order)");
}

TEST(Policy, StrictPriorityOrdersByClassThenBlocks) {
  PolicyConfig config;
  config.mode = PolicyMode::kStrictPriority;
  auto cluster = Cluster({N("n0", 8)}, {R("r", "x", "prod", false, "n0", Range(0, 6))});
  std::vector<PendingJob> pending = {P("batch1", "y", "batch", 1, 1), P("dev8", "y", "dev", 8, 2),
                                     P("prod1", "y", "prod", 1, 3)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(AdmittedIds(d), std::vector<std::string>{"prod1"});
  EXPECT_EQ(d.waiting.at("dev8").code, WaitCode::kNoFit);
  EXPECT_EQ(d.waiting.at("batch1").code, WaitCode::kBehindJob);
  EXPECT_EQ(d.waiting.at("batch1").other_job, "dev8");
  // Without backfill, kervan mode blocks the same way.
  config.mode = PolicyMode::kKervan;
  config.backfill = false;
  d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(d.waiting.at("batch1").code, WaitCode::kBehindJob);
}

TEST(Policy, NeverFitsSentences) {
  std::vector<Node> nodes = {N("n0", 8), N("n1", 8)};
  EXPECT_EQ(NeverFits(nodes, {.gpus = 8}), std::nullopt);
  EXPECT_EQ(NeverFits(nodes, {.gpus = 16}), "asks for 16 GPUs on one node; the largest node has 8");
  EXPECT_EQ(NeverFits(nodes, {.gpus = 24, .nodes = 3}),
            "asks for 8 GPUs on each of 3 nodes; only 2 schedulable nodes have that many");
  EXPECT_EQ(NeverFits(nodes, {.gpus = 3, .nodes = 2}),
            "asks for 3 GPUs over 2 nodes; GPUs must split evenly over the nodes");
  EXPECT_EQ(NeverFits(nodes, {.gpus = 1, .gpu_type = "A100"}),
            "asks for A100 GPUs; no schedulable node has them");
  std::vector<Node> small = {{.name = "c", .gpus = 4, .cpus = 16}};
  EXPECT_EQ(NeverFits(small, {.gpus = 1, .cpus = 32}),
            "asks for 32 CPUs on one node; the largest node that fits its GPUs has 16");
  nodes[1].schedulable = false;
  EXPECT_EQ(NeverFits(nodes, {.gpus = 16, .nodes = 2}),
            "asks for 8 GPUs on each of 2 nodes; only 1 schedulable node has that many");
}

TEST(Policy, UnknownClassAndNeverFitsWaitWithReasons) {
  PolicyConfig config;
  auto cluster = Cluster({N("n0", 8)});
  std::vector<PendingJob> pending = {P("u", "y", "urgent", 1, 1), P("huge", "y", "dev", 9, 2)};
  Decision d = Schedule(config, cluster, pending, {});
  EXPECT_EQ(d.waiting.at("u").code, WaitCode::kUnknownClass);
  EXPECT_EQ(Explain(d.waiting.at("u"), pending[0]), "priority class \"urgent\" is not configured");
  EXPECT_EQ(d.waiting.at("huge").code, WaitCode::kNeverFits);
  EXPECT_EQ(Explain(d.waiting.at("huge"), pending[1]),
            "never fits: asks for 9 GPUs on one node; the largest node has 8");
}

TEST(Policy, ExplainNoFitAndPreempting) {
  WaitReason w{.code = WaitCode::kNoFit, .position = 3, .max_free_gpus = 2};
  PendingJob j = P("j", "y", "dev", 4, 1);
  EXPECT_EQ(Explain(w, j),
            "waits for GPUs: asks for 4 GPUs on one node; the most free GPUs on any eligible "
            "node is 2 (position 3 in this cycle's order)");
  w = {.code = WaitCode::kPreempting, .position = 1, .victims = 2};
  EXPECT_EQ(Explain(w, j),
            "waits for preemption: 2 running jobs are being stopped to make room for it "
            "(position 1 in this cycle's order)");
  EXPECT_EQ(WaitCodeName(WaitCode::kQuota), "quota");
  EXPECT_EQ(WaitCodeName(WaitCode::kBehindJob), "behind_job");
  EXPECT_EQ(WaitCodeName(WaitCode::kUnknownClass), "unknown_class");
}

TEST(Policy, PreemptionSearchesAreBounded) {
  PolicyConfig config;
  config.max_preemption_searches = 1;
  auto cluster = Cluster({N("n0", 4), N("n1", 4)}, {R("d0", "x", "dev", true, "n0", Range(0, 4)),
                                                    R("d1", "x", "dev", true, "n1", Range(0, 4))});
  Decision d =
      Schedule(config, cluster, {P("p0", "y", "prod", 4, 1), P("p1", "y", "prod", 4, 2)}, {});
  EXPECT_EQ(d.preempted.size(), 1u);
  EXPECT_EQ(d.waiting.at("p1").code, WaitCode::kNoFit);
  config.max_preemption_searches = 64;
  d = Schedule(config, cluster, {P("p0", "y", "prod", 4, 1), P("p1", "y", "prod", 4, 2)}, {});
  EXPECT_EQ(d.preempted.size(), 2u);
}

TEST(Policy, ExplainWaitingOffLeavesWaitingEmpty) {
  PolicyConfig config;
  config.explain_waiting = false;
  Decision d = Schedule(config, Cluster({N("n0", 1)}),
                        {P("a", "y", "dev", 1, 1), P("b", "y", "dev", 1, 2)}, {});
  EXPECT_EQ(d.admitted.size(), 1u);
  EXPECT_TRUE(d.waiting.empty());
}

TEST(Policy, DecayUsageHalvesPerHalfLife) {
  EXPECT_DOUBLE_EQ(DecayUsage(100, 10, 10), 50);
  EXPECT_DOUBLE_EQ(DecayUsage(100, 20, 10), 25);
  EXPECT_DOUBLE_EQ(DecayUsage(100, 0, 10), 100);
}

// A random, busy scenario; the decision must not depend on input order.
TEST(Policy, DeterministicRegardlessOfInputOrder) {
  std::mt19937_64 rng(7);
  std::vector<Node> nodes;
  for (int i = 0; i < 20; ++i)
    nodes.push_back(N("n" + std::to_string(100 + i), 8, i % 4 == 0 ? "A100" : ""));
  std::vector<RunningJob> running;
  for (int i = 0; i < 20; ++i) {
    const char* cls[] = {"prod", "dev", "batch"};
    running.push_back(R("r" + std::to_string(i), "p" + std::to_string(i % 3), cls[i % 3],
                        i % 3 != 0, "n" + std::to_string(100 + i), Range(0, 2 + i % 6),
                        int64_t(i) * kSec, kNow + int64_t(rng() % 1000) * kSec));
  }
  std::vector<PendingJob> pending;
  for (int i = 0; i < 300; ++i) {
    const char* cls[] = {"prod", "dev", "batch"};
    pending.push_back(P("j" + std::to_string(i), "p" + std::to_string(rng() % 4), cls[rng() % 3],
                        1 << (rng() % 4), int64_t(rng() % 100) * kSec, int64_t(rng() % 2000) * kSec,
                        1, "u" + std::to_string(rng() % 3)));
  }
  PolicyConfig config;
  config.quotas = {{.project = "p0", .nominal_gpus = 40, .borrowing_limit = 20},
                   {.project = "p1", .nominal_gpus = 20, .borrowing_limit = 0}};
  Usage usage;
  usage.by_project["p2"] = 5000;
  ClusterState cluster{.nodes = nodes, .running = running, .now_us = kNow};
  Decision a = Schedule(config, cluster, pending, usage);
  std::shuffle(pending.begin(), pending.end(), rng);
  std::shuffle(cluster.running.begin(), cluster.running.end(), rng);
  std::shuffle(cluster.nodes.begin(), cluster.nodes.end(), rng);
  Decision b = Schedule(config, cluster, pending, usage);
  ASSERT_EQ(AdmittedIds(a), AdmittedIds(b));
  EXPECT_FALSE(a.admitted.empty());
  for (size_t i = 0; i < a.admitted.size(); ++i) {
    ASSERT_EQ(a.admitted[i].allocation.size(), b.admitted[i].allocation.size());
    for (size_t k = 0; k < a.admitted[i].allocation.size(); ++k) {
      EXPECT_EQ(a.admitted[i].allocation[k].node, b.admitted[i].allocation[k].node);
      EXPECT_EQ(a.admitted[i].allocation[k].gpu_indices, b.admitted[i].allocation[k].gpu_indices);
    }
  }
  ASSERT_EQ(a.preempted.size(), b.preempted.size());
  for (size_t i = 0; i < a.preempted.size(); ++i)
    EXPECT_EQ(a.preempted[i].victim_id, b.preempted[i].victim_id);
  ASSERT_EQ(a.waiting.size(), b.waiting.size());
  for (const auto& [id, w] : a.waiting) {
    EXPECT_EQ(w.code, b.waiting.at(id).code) << id;
    EXPECT_EQ(w.position, b.waiting.at(id).position) << id;
    EXPECT_EQ(w.other_job, b.waiting.at(id).other_job) << id;
  }
  EXPECT_EQ(a.admitted.size() + a.waiting.size(), pending.size());
}

}  // namespace
}  // namespace kervan::jobs

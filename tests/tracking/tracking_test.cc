// Experiment tracking on both store backends: experiments and runs with
// their lifecycles and events, telemetry (params immutable, metric history
// and latest values, NaN/Infinity), all-or-nothing batches, and search with
// every filter operator, ordering and pagination.
#include "tracking/tracking.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "../store/backend_fixture.h"
#include "tracking/internal.h"

namespace kervan::tracking {
namespace {

using store::testing::BackendTest;

store::CommandContext Ctx(std::string actor = "user:alice") {
  return {.actor = std::move(actor), .correlation_id = "req-7"};
}

class TrackingTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure())
      return;
    auto log = store::EventLog::Open(Migrated());
    ASSERT_TRUE(log) << log.error().ToString();
    log_ = std::move(log).value();
    lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
    auto t = Tracking::Open(*db_, *log_, *lifecycles_);
    ASSERT_TRUE(t) << t.error().ToString();
    tracking_ = std::move(t).value();
    auto e = tracking_->CreateExperiment({.name = "churn", .project = "risk"}, Ctx());
    ASSERT_TRUE(e) << e.error().ToString();
    experiment_ = e->id;
  }
  void TearDown() override {
    tracking_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    BackendTest::TearDown();
  }

  tracking::Run NewRun(std::string name = "", int64_t start = 1000) {
    auto r = tracking_->CreateRun(
        {.experiment_id = experiment_, .run_name = std::move(name), .start_time = start}, Ctx());
    EXPECT_TRUE(r) << r.error().ToString();
    return r ? *r : tracking::Run{};
  }

  std::vector<store::Event> EventsOf(const std::string& kind, const std::string& id) {
    auto events =
        log_->Read({.after_seq = 0, .limit = 1000, .subject_kind = kind, .subject_id = id});
    EXPECT_TRUE(events);
    return events ? *events : std::vector<store::Event>{};
  }

  std::vector<std::string> SearchNames(const std::string& filter,
                                       std::vector<std::string> order_by = {},
                                       ViewType view = ViewType::kActiveOnly) {
    auto r = tracking_->SearchRuns({.experiment_ids = {experiment_},
                                    .filter = filter,
                                    .order_by = std::move(order_by),
                                    .view = view});
    EXPECT_TRUE(r) << filter << ": " << r.error().ToString();
    std::vector<std::string> names;
    if (r) {
      for (const auto& run : r->runs)
        names.push_back(run.info.run_name);
    }
    return names;
  }

  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<Tracking> tracking_;
  std::string experiment_;
};

TEST_P(TrackingTest, DefaultExperimentExistsAndNamesAreUnique) {
  auto d = tracking_->GetExperiment("0");
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->name, "Default");
  EXPECT_EQ(d->artifact_location, "mlflow-artifacts:/0");
  EXPECT_EQ(d->project, "default");
  auto dup = tracking_->CreateExperiment({.name = "churn", .project = "risk"}, Ctx());
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, core::ErrorCode::kAlreadyExists);
  EXPECT_EQ(mlflow::ErrorCodeName(dup.error()), "RESOURCE_ALREADY_EXISTS");
  auto missing = tracking_->GetExperiment("42");
  ASSERT_FALSE(missing);
  EXPECT_EQ(mlflow::ErrorCodeName(missing.error()), "RESOURCE_DOES_NOT_EXIST");
  auto by_name = tracking_->GetExperimentByName("churn");
  ASSERT_TRUE(by_name);
  EXPECT_EQ(by_name->id, experiment_);
  EXPECT_EQ(by_name->artifact_location, "mlflow-artifacts:/" + experiment_);
}

TEST_P(TrackingTest, ExperimentLifecycleMovesItsRunsAndIsEvented) {
  tracking::Run run = NewRun("r1");
  auto deleted = tracking_->DeleteExperiment(experiment_, Ctx("user:erin"));
  ASSERT_TRUE(deleted) << deleted.error().ToString();
  EXPECT_EQ(deleted->lifecycle_stage, "deleted");
  auto info = tracking_->GetRunInfo(run.info.run_id);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->lifecycle_stage, "deleted");
  // Writes to a deleted run are refused; reads still work.
  auto write = tracking_->LogParam(run.info.run_id, "lr", "0.1");
  ASSERT_FALSE(write);
  EXPECT_EQ(mlflow::ErrorCodeName(write.error()), "INVALID_PARAMETER_VALUE");
  auto again = tracking_->DeleteExperiment(experiment_, Ctx());
  EXPECT_FALSE(again);
  auto dup = tracking_->CreateExperiment({.name = "churn", .project = "risk"}, Ctx());
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("deleted state"), std::string::npos);
  ASSERT_TRUE(tracking_->RestoreExperiment(experiment_, Ctx()));
  EXPECT_EQ(tracking_->GetRunInfo(run.info.run_id)->lifecycle_stage, "active");

  auto exp_events = EventsOf("experiment", experiment_);
  ASSERT_EQ(exp_events.size(), 3u);
  EXPECT_EQ(exp_events[0].type, "experiment.created");
  EXPECT_EQ(exp_events[1].type, "experiment.deleted");
  EXPECT_EQ(exp_events[1].actor, "user:erin");
  EXPECT_EQ(exp_events[1].project, "risk");
  EXPECT_EQ(exp_events[2].type, "experiment.restored");
  auto run_events = EventsOf("run", run.info.run_id);
  ASSERT_EQ(run_events.size(), 3u);
  EXPECT_EQ(run_events[1].type, "run.deleted");
  EXPECT_EQ(run_events[1].causation_id, exp_events[1].id);  // caused by the experiment's
  EXPECT_EQ(tracking_->DeleteExperiment("0", Ctx()).error().field, "experiment_id");
}

TEST_P(TrackingTest, RunCreationSetsNameTagUserAndArtifactUri) {
  auto r = tracking_->CreateRun({.experiment_id = experiment_,
                                 .tags = {{"mlflow.runName", "from-tag"}, {"mlflow.user", "bob"}}},
                                Ctx());
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->info.run_name, "from-tag");
  EXPECT_EQ(r->info.user_id, "bob");
  EXPECT_EQ(r->info.status, "RUNNING");
  EXPECT_EQ(r->info.run_id.size(), 32u);
  EXPECT_EQ(r->info.artifact_uri,
            "mlflow-artifacts:/" + experiment_ + "/" + r->info.run_id + "/artifacts");
  auto conflict = tracking_->CreateRun(
      {.experiment_id = experiment_, .run_name = "a", .tags = {{"mlflow.runName", "b"}}}, Ctx());
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error().field, "run_name");
  tracking::Run generated = NewRun();
  EXPECT_FALSE(generated.info.run_name.empty());
  ASSERT_EQ(generated.tags.size(), 1u);
  EXPECT_EQ(generated.tags[0].first, "mlflow.runName");
  EXPECT_EQ(generated.tags[0].second, generated.info.run_name);
  auto bad_exp = tracking_->CreateRun({.experiment_id = "99"}, Ctx());
  ASSERT_FALSE(bad_exp);
  EXPECT_EQ(bad_exp.error().code, core::ErrorCode::kNotFound);
}

TEST_P(TrackingTest, UpdateRunChangesStatusEndTimeAndNameWithOneEvent) {
  tracking::Run run = NewRun("before");
  auto u = tracking_->UpdateRun(run.info.run_id,
                                {.status = "FINISHED", .end_time = 5000, .run_name = "after"},
                                Ctx("user:bob"));
  ASSERT_TRUE(u) << u.error().ToString();
  EXPECT_EQ(u->status, "FINISHED");
  EXPECT_EQ(u->end_time, 5000);
  auto got = tracking_->GetRun(run.info.run_id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->info.run_name, "after");
  EXPECT_EQ(got->tags[0], (KeyValue{"mlflow.runName", "after"}));
  auto bad = tracking_->UpdateRun(run.info.run_id, {.status = "DONE"}, Ctx());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "status");
  // No change, no event.
  ASSERT_TRUE(tracking_->UpdateRun(run.info.run_id, {.status = "FINISHED"}, Ctx()));
  auto events = EventsOf("run", run.info.run_id);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, "run.updated");
  EXPECT_EQ(events[1].actor, "user:bob");
  EXPECT_EQ(events[1].correlation_id, "req-7");
  Json data = Json::parse(events[1].data);
  EXPECT_EQ(data["status"]["from"], "RUNNING");
  EXPECT_EQ(data["status"]["to"], "FINISHED");
}

TEST_P(TrackingTest, ParamsAreImmutableAndNotEvents) {
  tracking::Run run = NewRun();
  int64_t head = log_->head_seq();
  ASSERT_TRUE(tracking_->LogParam(run.info.run_id, "lr", "0.1"));
  ASSERT_TRUE(tracking_->LogParam(run.info.run_id, "lr", "0.1"));  // same value: fine
  auto changed = tracking_->LogParam(run.info.run_id, "lr", "0.2");
  ASSERT_FALSE(changed);
  EXPECT_EQ(mlflow::ErrorCodeName(changed.error()), "INVALID_PARAMETER_VALUE");
  EXPECT_NE(changed.error().message.find("Changing param values is not allowed"),
            std::string::npos);
  EXPECT_EQ(log_->head_seq(), head);  // telemetry appends no events
  auto bad_key = tracking_->LogParam(run.info.run_id, "../etc", "x");
  EXPECT_FALSE(bad_key);
  auto long_value = tracking_->LogParam(run.info.run_id, "k", std::string(6001, 'x'));
  EXPECT_FALSE(long_value);
  auto unknown = tracking_->LogParam("0123456789abcdef0123456789abcdef", "k", "v");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
}

TEST_P(TrackingTest, MetricHistoryKeepsEveryPointAndLatestFollowsStepThenTime) {
  tracking::Run run = NewRun();
  const std::string& id = run.info.run_id;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  ASSERT_TRUE(tracking_->LogMetric(id, {.key = "loss", .value = 0.9, .timestamp = 10, .step = 0}));
  ASSERT_TRUE(tracking_->LogMetric(id, {.key = "loss", .value = 0.5, .timestamp = 20, .step = 2}));
  // A late point for an earlier step does not become the latest.
  ASSERT_TRUE(tracking_->LogMetric(id, {.key = "loss", .value = 0.7, .timestamp = 30, .step = 1}));
  ASSERT_TRUE(tracking_->LogMetric(id, {.key = "weird", .value = nan, .timestamp = 1, .step = 0}));
  ASSERT_TRUE(tracking_->LogMetric(id, {.key = "big", .value = -inf, .timestamp = 1, .step = 0}));
  auto history = tracking_->GetMetricHistory(id, "loss", 0, 0);
  ASSERT_TRUE(history) << history.error().ToString();
  ASSERT_EQ(history->points.size(), 3u);
  EXPECT_EQ(history->points[1].step, 1);  // ordered by step, then timestamp
  EXPECT_FALSE(history->next_offset);
  auto page = tracking_->GetMetricHistory(id, "loss", 0, 2);
  ASSERT_TRUE(page);
  ASSERT_EQ(page->points.size(), 2u);
  ASSERT_TRUE(page->next_offset);
  auto rest = tracking_->GetMetricHistory(id, "loss", *page->next_offset, 2);
  ASSERT_EQ(rest->points.size(), 1u);
  EXPECT_DOUBLE_EQ(rest->points[0].value, 0.5);

  auto latest = tracking_->LatestMetrics(id);
  ASSERT_TRUE(latest);
  EXPECT_DOUBLE_EQ(latest->at("loss"), 0.5);
  EXPECT_TRUE(std::isnan(latest->at("weird")));
  EXPECT_EQ(latest->at("big"), -inf);
  EXPECT_EQ(MetricPoint{.value = nan}.ToMlflow()["value"], "NaN");
  EXPECT_EQ(MetricPoint{.value = -inf}.ToMlflow()["value"], "-Infinity");
}

TEST_P(TrackingTest, MetricPointsNeedAnActiveRun) {
  tracking::Run run = NewRun();
  const std::string& id = run.info.run_id;
  const MetricPoint point{.key = "loss", .value = 1, .timestamp = 1, .step = 0};
  LogBatchRequest batch{.metrics = {point, point}};
  auto unknown = tracking_->LogMetric(std::string(32, 'f'), point);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, core::ErrorCode::kNotFound);
  ASSERT_TRUE(tracking_->RunProject(id));  // cached from here on
  ASSERT_TRUE(tracking_->DeleteRun(id, Ctx()));
  auto deleted = tracking_->LogMetric(id, point);
  ASSERT_FALSE(deleted);
  EXPECT_EQ(deleted.error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_EQ(tracking_->LogBatch(id, batch, Ctx()).error().code,
            core::ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(tracking_->RestoreRun(id, Ctx()));
  ASSERT_TRUE(tracking_->LogMetric(id, point));
  ASSERT_TRUE(tracking_->LogBatch(id, batch, Ctx()));
  EXPECT_EQ(tracking_->GetMetricHistory(id, "loss", 0, 0)->points.size(), 3u);
}

// The non-blocking entry points: they decline (false, `done` not called)
// until the run is cached, answer invalid input at once, decline a batch
// with params or tags, and otherwise answer what the blocking call would,
// once, after the commit.
TEST_P(TrackingTest, AsyncLoggingAnswersAsTheBlockingCallsOrDeclines) {
  tracking::Run run = NewRun();
  const std::string& id = run.info.run_id;
  const MetricPoint point{.key = "loss", .value = 1, .timestamp = 1, .step = 0};
  struct Answers {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<Status> got;
    // Logs through `start` and waits for its one answer; nullopt: declined.
    std::optional<Status> Call(const std::function<bool(std::function<void(Status)>)>& start) {
      std::unique_lock lk(mu);
      const size_t before = got.size();
      lk.unlock();
      if (!start([this](Status s) {
            std::lock_guard lk(mu);
            got.push_back(std::move(s));
            cv.notify_all();
          })) {
        std::lock_guard lk(mu);
        EXPECT_EQ(got.size(), before) << "declined, yet answered";
        return std::nullopt;
      }
      lk.lock();
      EXPECT_TRUE(cv.wait_for(lk, std::chrono::seconds(10), [&] { return got.size() > before; }));
      EXPECT_EQ(got.size(), before + 1) << "answered more than once";
      return got.back();
    }
  } answers;
  auto metric = [&](const std::string& run_id, MetricPoint p) {
    return answers.Call([&](auto done) { return tracking_->LogMetricAsync(run_id, p, done); });
  };
  auto batch = [&](const std::string& run_id, LogBatchRequest b) {
    return answers.Call([&](auto done) { return tracking_->LogBatchAsync(run_id, b, done); });
  };
  EXPECT_FALSE(tracking_->CachedRunProject(id));
  EXPECT_FALSE(metric(id, point)) << "not cached yet: declined";
  EXPECT_FALSE(batch(id, {.metrics = {point}}));
  EXPECT_FALSE(metric(std::string(32, 'f'), point)) << "unknown: the blocking call answers";
  ASSERT_TRUE(tracking_->RunProject(id));  // cached from here on
  EXPECT_EQ(tracking_->CachedRunProject(id), run.info.project);

  std::optional<Status> ok = metric(id, point);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(*ok) << ok->error().ToString();
  std::optional<Status> bad = metric(id, {.key = "", .value = 1, .timestamp = 1});
  ASSERT_TRUE(bad);
  ASSERT_FALSE(*bad);
  EXPECT_EQ(bad->error().ToString(),
            tracking_->LogMetric(id, {.key = "", .value = 1, .timestamp = 1}).error().ToString());
  std::optional<Status> in_batch = batch(id, {.metrics = {point, {.key = "loss", .step = 1}}});
  ASSERT_TRUE(in_batch);
  EXPECT_TRUE(*in_batch);
  EXPECT_FALSE(batch(id, {.metrics = {point}, .params = {{"lr", "1"}}})) << "params: declined";
  EXPECT_FALSE(batch(id, {.metrics = {point}, .tags = {{"t", "1"}}})) << "tags: declined";
  EXPECT_FALSE(batch(id, {})) << "nothing to write: declined";
  LogBatchRequest too_many;
  too_many.metrics.assign(kMaxMetricsPerBatch + 1, point);
  std::optional<Status> over = batch(id, too_many);
  ASSERT_TRUE(over);
  ASSERT_FALSE(*over);
  EXPECT_EQ(over->error().ToString(), tracking_->LogBatch(id, too_many, Ctx()).error().ToString());
  EXPECT_EQ(tracking_->GetMetricHistory(id, "loss", 0, 0)->points.size(), 3u);

  ASSERT_TRUE(tracking_->DeleteRun(id, Ctx()));
  std::optional<Status> deleted = metric(id, point);
  ASSERT_TRUE(deleted);
  ASSERT_FALSE(*deleted);
  EXPECT_EQ(deleted->error().ToString(), tracking_->LogMetric(id, point).error().ToString());
  std::optional<Status> deleted_batch = batch(id, {.metrics = {point}});
  ASSERT_TRUE(deleted_batch);
  ASSERT_FALSE(*deleted_batch);
  EXPECT_EQ(deleted_batch->error().code, core::ErrorCode::kFailedPrecondition);
  EXPECT_EQ(tracking_->GetMetricHistory(id, "loss", 0, 0)->points.size(), 3u);
}

TEST_P(TrackingTest, BatchIsAllOrNothing) {
  tracking::Run run = NewRun();
  const std::string& id = run.info.run_id;
  ASSERT_TRUE(tracking_->LogParam(id, "lr", "0.1"));
  // A param conflicting with a stored one fails the whole batch.
  auto conflicting =
      tracking_->LogBatch(id,
                          {.metrics = {{.key = "acc", .value = 0.5, .timestamp = 1, .step = 0}},
                           .params = {{"depth", "3"}, {"lr", "0.2"}},
                           .tags = {{"team", "risk"}}},
                          Ctx());
  ASSERT_FALSE(conflicting);
  auto got = tracking_->GetRun(id);
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->metrics.empty());
  EXPECT_EQ(got->params.size(), 1u);
  EXPECT_EQ(got->tags.size(), 1u);  // only mlflow.runName

  // Over the limits: refused before anything is written.
  LogBatchRequest too_many;
  for (int i = 0; i < 1001; ++i)
    too_many.metrics.push_back({.key = "m", .value = 1, .timestamp = i, .step = i});
  auto over = tracking_->LogBatch(id, too_many, Ctx());
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().field, "metrics");
  LogBatchRequest params;
  for (int i = 0; i < 101; ++i)
    params.params.emplace_back("p" + std::to_string(i), "v");
  EXPECT_EQ(tracking_->LogBatch(id, params, Ctx()).error().field, "params");
  LogBatchRequest tags;
  for (int i = 0; i < 101; ++i)
    tags.tags.emplace_back("t" + std::to_string(i), "v");
  EXPECT_EQ(tracking_->LogBatch(id, tags, Ctx()).error().field, "tags");
  LogBatchRequest dup_params{.params = {{"a", "1"}, {"a", "2"}}};
  EXPECT_FALSE(tracking_->LogBatch(id, dup_params, Ctx()));

  // A good batch lands whole; its tags are one event.
  int64_t head = log_->head_seq();
  LogBatchRequest good{.params = {{"depth", "3"}}, .tags = {{"team", "risk"}}};
  for (int i = 0; i < 1000; ++i)
    good.metrics.push_back(
        {.key = i % 2 ? "acc" : "loss", .value = i * 0.001, .timestamp = i, .step = i / 2});
  good.metrics.resize(997);  // not a power of two: every INSERT chunk size is used
  ASSERT_TRUE(tracking_->LogBatch(id, good, Ctx()));
  EXPECT_EQ(log_->head_seq(), head + 1);
  auto acc = tracking_->GetMetricHistory(id, "acc", 0, 0);
  auto loss = tracking_->GetMetricHistory(id, "loss", 0, 0);
  EXPECT_EQ(acc->points.size() + loss->points.size(), 997u);
  EXPECT_DOUBLE_EQ(tracking_->LatestMetrics(id)->at("loss"), 0.996);
}

TEST_P(TrackingTest, TagsInputsAndLoggedModelsAreEvents) {
  tracking::Run run = NewRun();
  const std::string& id = run.info.run_id;
  ASSERT_TRUE(tracking_->SetTag(id, "team", "risk", Ctx()));
  ASSERT_TRUE(tracking_->DeleteTag(id, "team", Ctx()));
  auto missing = tracking_->DeleteTag(id, "team", Ctx());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, core::ErrorCode::kNotFound);
  DatasetInput input{.dataset = {{"name", "credit.csv"},
                                 {"digest", "abc123"},
                                 {"source_type", "local"},
                                 {"source", "/data/credit.csv"}},
                     .tags = {{"mlflow.data.context", "training"}}};
  ASSERT_TRUE(tracking_->LogInputs(id, {input}, Ctx()));
  ASSERT_TRUE(tracking_->LogInputs(id, {input}, Ctx()));  // the same input again: no-op
  DatasetInput bad{.dataset = {{"name", "x"}}};
  auto refused = tracking_->LogInputs(id, {bad}, Ctx());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field, "datasets[0].dataset.digest");
  ASSERT_TRUE(
      tracking_->LogModel(id, {{"artifact_path", "model"}, {"flavors", Json::object()}}, Ctx()));
  auto got = tracking_->GetRun(id);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->inputs.size(), 1u);
  EXPECT_EQ(got->inputs[0].dataset["digest"], "abc123");
  Json mlflow_run = got->ToMlflow();
  EXPECT_EQ(mlflow_run["inputs"]["dataset_inputs"][0]["tags"][0]["value"], "training");
  bool has_history = false;
  for (const auto& [k, v] : got->tags)
    has_history |= k == "mlflow.log-model.history" && Json::parse(v).size() == 1;
  EXPECT_TRUE(has_history);
  std::vector<std::string> types;
  for (const auto& e : EventsOf("run", id))
    types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"run.created", "run.tag_set", "run.tag_deleted",
                                             "run.inputs_logged", "run.model_logged"}));
}

// A page's params, tags, latest metrics and inputs are read for all its
// runs at once: each run gets its own, keys sorted, inputs in logged order.
TEST_P(TrackingTest, SearchLoadsEachRunsOwnDataSortedAndInputsInOrder) {
  tracking::Run a = NewRun("a", 2000), b = NewRun("b", 1000);
  ASSERT_TRUE(tracking_->LogBatch(a.info.run_id,
                                  {.metrics = {{.key = "z", .value = 1, .timestamp = 1},
                                               {.key = "B", .value = 2, .timestamp = 1}},
                                   .params = {{"y", "1"}, {"a", "2"}, {"M", "3"}},
                                   .tags = {{"t2", "x"}, {"t1", "y"}}},
                                  Ctx()));
  ASSERT_TRUE(tracking_->LogBatch(
      b.info.run_id,
      {.metrics = {{.key = "m", .value = std::nan(""), .timestamp = 5, .step = 7}},
       .params = {{"p", "b"}}},
      Ctx()));
  auto input = [](const std::string& name) {
    return DatasetInput{.dataset = {{"name", name},
                                    {"digest", "d-" + name},
                                    {"source_type", "local"},
                                    {"source", "/data/" + name}},
                        .tags = {{"mlflow.data.context", "training"}}};
  };
  // Logged in an order that is neither by name nor by digest.
  ASSERT_TRUE(tracking_->LogInputs(a.info.run_id, {input("n2"), input("n3")}, Ctx()));
  ASSERT_TRUE(tracking_->LogInputs(a.info.run_id, {input("n1")}, Ctx()));
  auto found = tracking_->SearchRuns({.experiment_ids = {experiment_}});
  ASSERT_TRUE(found) << found.error().ToString();
  ASSERT_EQ(found->runs.size(), 2u);
  const tracking::Run& ra = found->runs[0];
  const tracking::Run& rb = found->runs[1];
  ASSERT_EQ(ra.info.run_id, a.info.run_id);
  using KV = std::vector<KeyValue>;
  EXPECT_EQ(ra.params, (KV{{"M", "3"}, {"a", "2"}, {"y", "1"}}));
  ASSERT_GE(ra.tags.size(), 2u);
  EXPECT_TRUE(std::is_sorted(ra.tags.begin(), ra.tags.end()));
  ASSERT_EQ(ra.metrics.size(), 2u);
  EXPECT_EQ(ra.metrics[0].key, "B");
  EXPECT_EQ(ra.metrics[1].key, "z");
  ASSERT_EQ(ra.inputs.size(), 3u);
  EXPECT_EQ(ra.inputs[0].dataset["name"], "n2");
  EXPECT_EQ(ra.inputs[1].dataset["name"], "n3");
  EXPECT_EQ(ra.inputs[2].dataset["name"], "n1");
  EXPECT_EQ(ra.inputs[2].tags, (KV{{"mlflow.data.context", "training"}}));
  EXPECT_EQ(rb.params, (KV{{"p", "b"}}));
  ASSERT_EQ(rb.metrics.size(), 1u);
  EXPECT_TRUE(std::isnan(rb.metrics[0].value));
  EXPECT_EQ(rb.metrics[0].timestamp, 5);
  EXPECT_EQ(rb.metrics[0].step, 7);
  EXPECT_TRUE(rb.inputs.empty());
  // GetRun reads the same way.
  auto got = tracking_->GetRun(a.info.run_id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->params, ra.params);
  ASSERT_EQ(got->inputs.size(), 3u);
  EXPECT_EQ(got->inputs[2].dataset["name"], "n1");
}

// runs.data (migration 0016) holds each run's params, tags and inputs for
// reads: every command that changes them rewrites it, so what a search
// reads equals what the server rebuilds from the tables when it starts
// with the documents gone (as after the migration).
TEST_P(TrackingTest, EveryCommandKeepsTheRunsDataDocumentCurrent) {
  auto created = tracking_->CreateRun(
      {.experiment_id = experiment_, .run_name = "first", .tags = {{"origin", "q\"uote\\"}}},
      Ctx());
  ASSERT_TRUE(created) << created.error().ToString();
  const std::string id = created->info.run_id;
  tracking::Run other = NewRun("other");
  // After each command: what GetRun serves equals a rebuild from the
  // tables (each rewrite is whole, so only checking after every command
  // finds one that does not rewrite).
  auto served_is_current = [&](const std::string& step) {
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    for (const std::string& run_id : {id, other.info.run_id}) {
      auto served = tracking_->GetRun(run_id);
      ASSERT_TRUE(served) << step;
      ASSERT_TRUE(internal::RefreshRunData(**conn, "run_uuid = ?", {run_id}));
      auto rebuilt = tracking_->GetRun(run_id);
      ASSERT_TRUE(rebuilt) << step;
      EXPECT_EQ(served->ToMlflow(), rebuilt->ToMlflow()) << step;
    }
  };
  served_is_current("create");
  ASSERT_TRUE(tracking_->SetTag(id, "team", "risk \u00fc\n\ttab", Ctx()));
  served_is_current("set-tag");
  ASSERT_TRUE(tracking_->SetTag(id, "gone", "soon", Ctx()));
  ASSERT_TRUE(tracking_->DeleteTag(id, "gone", Ctx()));
  served_is_current("delete-tag");
  ASSERT_TRUE(tracking_->LogParam(id, "lr", "0.01"));
  served_is_current("log-param");
  ASSERT_TRUE(
      tracking_->LogBatch(id, {.params = {{"depth", "7"}}, .tags = {{"stage", "b"}}}, Ctx()));
  served_is_current("log-batch");
  ASSERT_TRUE(tracking_->LogBatch(
      other.info.run_id,
      {.metrics = {{.key = "auc", .value = 0.5, .timestamp = 1}}, .params = {{"lr", "0.1"}}},
      Ctx()));
  served_is_current("log-batch with metrics");
  ASSERT_TRUE(tracking_->LogInputs(
      id,
      {{.dataset = {{"name", "d"}, {"digest", "1"}, {"source_type", "local"}, {"source", "/d"}},
        .tags = {{"mlflow.data.context", "training"}}}},
      Ctx()));
  served_is_current("log-inputs");
  ASSERT_TRUE(tracking_->LogModel(id, {{"artifact_path", "model"}}, Ctx()));
  served_is_current("log-model");
  ASSERT_TRUE(tracking_->UpdateRun(id, {.run_name = "renamed"}, Ctx()));
  served_is_current("update-run");
  auto snapshot = [&]() {
    auto found = tracking_->SearchRuns({.experiment_ids = {experiment_}});
    EXPECT_TRUE(found) << found.error().ToString();
    std::vector<std::string> runs;
    if (found) {
      for (const tracking::Run& run : found->runs)
        runs.push_back(run.ToMlflow().dump());
    }
    return runs;
  };
  const std::vector<std::string> served = snapshot();
  ASSERT_EQ(served.size(), 2u);
  auto got = tracking_->GetRun(id);
  ASSERT_TRUE(got);
  using KV = std::vector<KeyValue>;
  EXPECT_EQ(got->params, (KV{{"depth", "7"}, {"lr", "0.01"}}));
  std::map<std::string, std::string> tags(got->tags.begin(), got->tags.end());
  EXPECT_EQ(tags["origin"], "q\"uote\\");
  EXPECT_EQ(tags["team"], "risk \u00fc\n\ttab");
  EXPECT_EQ(tags["stage"], "b");
  EXPECT_EQ(tags["mlflow.runName"], "renamed");
  EXPECT_EQ(tags.count("gone"), 0u);
  EXPECT_EQ(tags.count("mlflow.log-model.history"), 1u);
  ASSERT_EQ(got->inputs.size(), 1u);

  // Without the documents, reads fail loudly instead of answering without
  // the run's params and tags...
  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Exec("UPDATE runs SET data = NULL", {}));
  auto without = tracking_->GetRun(id);
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().code, core::ErrorCode::kInternal);
  // ...and opening the tracking service rebuilds them from the tables.
  tracking_.reset();
  lifecycles_ = std::make_unique<store::Lifecycles>(*log_);
  auto reopened = Tracking::Open(*db_, *log_, *lifecycles_);
  ASSERT_TRUE(reopened) << reopened.error().ToString();
  tracking_ = std::move(reopened).value();
  EXPECT_EQ(snapshot(), served);
}

// A page's documents are parsed while the database reads its metrics (on
// two connections on PostgreSQL, for this many runs): a malformed one
// fails the read as Internal, and the reads after it are whole.
TEST_P(TrackingTest, AMalformedDocumentFailsTheReadAndLeavesConnectionsUsable) {
  std::vector<std::string> ids;
  for (size_t i = 0; i < internal::kParallelRunData; ++i) {
    tracking::Run run = NewRun("r" + std::to_string(i), 1000 + static_cast<int64_t>(i));
    ids.push_back(run.info.run_id);
    ASSERT_TRUE(tracking_->LogMetric(
        run.info.run_id, {.key = "auc", .value = static_cast<double>(i), .timestamp = 1}));
  }
  {
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    ASSERT_TRUE((*conn)->Exec(R"(UPDATE runs SET data = '{"p": 1}' WHERE run_uuid = ?)", {ids[5]}));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto found = tracking_->SearchRuns({.experiment_ids = {experiment_}});
    ASSERT_FALSE(found);
    EXPECT_EQ(found.error().code, core::ErrorCode::kInternal);
  }
  {
    auto conn = db_->Acquire();
    ASSERT_TRUE(conn);
    ASSERT_TRUE(internal::RefreshRunData(**conn, "run_uuid = ?", {ids[5]}));
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto found = tracking_->SearchRuns({.experiment_ids = {experiment_}});
    ASSERT_TRUE(found) << found.error().ToString();
    ASSERT_EQ(found->runs.size(), ids.size());
    for (const tracking::Run& run : found->runs) {
      ASSERT_EQ(run.metrics.size(), 1u);
      EXPECT_EQ("r" + std::to_string(static_cast<int>(run.metrics[0].value)), run.info.run_name);
    }
  }
}

// Two servers on one PostgreSQL database: a command of the other (here a
// transaction on another connection, locking the run's row and rewriting
// its document as RequireActiveRun and RefreshRunData do) adds a tag;
// a set-tag of ours waits for it, so the document ours writes holds both.
TEST_P(TrackingTest, ACommandWaitsForAnotherServersChangeOfTheSameRun) {
  if (GetParam() != store::Dialect::kPostgres)
    GTEST_SKIP() << "SQLite has one writer at a time";
  tracking::Run run = NewRun();
  const std::string id = run.info.run_id;
  auto other = db_->OpenDedicated();
  ASSERT_TRUE(other) << other.error().ToString();
  store::Connection& theirs = **other;
  ASSERT_TRUE(theirs.Begin());
  auto locked = theirs.Query("SELECT run_pk FROM runs WHERE run_uuid = ? FOR UPDATE", {id});
  ASSERT_TRUE(locked && locked->size() == 1u);
  const int64_t pk = (*locked)[0].Int(0);
  ASSERT_TRUE(
      theirs.Exec("INSERT INTO run_tags (run_pk, key, value) VALUES (?, 'theirs', '1')", {pk}));
  ASSERT_TRUE(internal::RefreshRunData(theirs, pk));
  std::thread ours([&] { EXPECT_TRUE(tracking_->SetTag(id, "ours", "2", Ctx())); });
  // Time for ours to reach the lock; were it later, it would see their
  // committed tag anyway.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_TRUE(theirs.Commit());
  ours.join();
  auto got = tracking_->GetRun(id);
  ASSERT_TRUE(got);
  std::map<std::string, std::string> tags(got->tags.begin(), got->tags.end());
  EXPECT_EQ(tags["theirs"], "1");
  EXPECT_EQ(tags["ours"], "2");
}

TEST(RunData, ParsesEscapesSortsKeysAndOrdersInputsByPosition) {
  tracking::Run run;
  ASSERT_TRUE(
      internal::ParseRunData(R"({"t": [["b", "2"], ["a\"q", "\u00fc\n"]], "p": [], )"
                             R"("i": [[2, {"name": "x"}, {}], [1, {"name": "y"}, {"k": "v"}]]})",
                             run));
  using KV = std::vector<KeyValue>;
  EXPECT_EQ(run.tags, (KV{{"a\"q", "\u00fc\n"}, {"b", "2"}}));
  EXPECT_TRUE(run.params.empty());
  ASSERT_EQ(run.inputs.size(), 2u);
  EXPECT_EQ(run.inputs[0].dataset["name"], "y");
  EXPECT_EQ(run.inputs[0].tags, (KV{{"k", "v"}}));
  EXPECT_EQ(run.inputs[1].dataset["name"], "x");
  for (std::string_view bad :
       {"[]", R"({"p": [["k"]]})", R"({"p": [["k", 1]]})", R"({"t": [["k", "v", "w"]]})",
        R"({"i": [["1", {}, {}]]})", R"({"i": [[1, {}]]})", R"({"x": []})", R"({"p": [)"}) {
    tracking::Run r;
    auto parsed = internal::ParseRunData(bad, r);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, core::ErrorCode::kInternal) << bad;
  }
}

// Log-batches with params (the event log's transaction) and without (the
// metric writer's statement) upsert one run's latest_metrics rows at
// once, naming the keys in opposite orders: every upsert locks the rows in
// one order, so none is aborted as a deadlock on PostgreSQL.
TEST_P(TrackingTest, ConcurrentBatchesNamingKeysInAnyOrderAllLand) {
  tracking::Run run = NewRun();
  const std::string id = run.info.run_id;
  constexpr int kWrites = 40;
  std::atomic<int> failures{0};
  auto log = [&](int thread, bool with_params, bool reversed) {
    std::vector<std::string> keys;
    for (int k = 0; k < 16; ++k)
      keys.push_back("k" + std::to_string(k));
    if (reversed)
      std::reverse(keys.begin(), keys.end());
    for (int i = 0; i < kWrites; ++i) {
      const int64_t step = thread * 1000 + i;
      LogBatchRequest batch;
      for (const std::string& key : keys)
        batch.metrics.push_back({.key = key, .value = 1, .timestamp = 1, .step = step});
      if (with_params)
        batch.params = {{"p" + std::to_string(step), "v"}};
      if (Status s = tracking_->LogBatch(id, batch, Ctx()); !s) {
        ADD_FAILURE() << s.error().ToString();
        ++failures;
      }
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(log, 0, true, false);
  threads.emplace_back(log, 1, false, true);
  threads.emplace_back(log, 2, true, true);
  threads.emplace_back(log, 3, false, false);
  for (auto& t : threads)
    t.join();
  EXPECT_EQ(failures.load(), 0);
  auto got = tracking_->GetRun(id);
  ASSERT_TRUE(got);
  ASSERT_EQ(got->metrics.size(), 16u);
  for (const MetricPoint& m : got->metrics)
    EXPECT_EQ(m.step, 3 * 1000 + kWrites - 1) << m.key;
  EXPECT_EQ(got->params.size(), 2u * kWrites);
}

TEST_P(TrackingTest, SearchSupportsEveryOperatorOrderingAndPages) {
  // Three runs: a (auc .9, lr .1, tag team=risk), b (auc .8, lr .2), c (no auc).
  tracking::Run a = NewRun("run-a", 3000), b = NewRun("run-b", 2000), c = NewRun("Run-C", 1000);
  ASSERT_TRUE(tracking_->LogBatch(a.info.run_id,
                                  {.metrics = {{.key = "auc", .value = 0.9, .timestamp = 1}},
                                   .params = {{"lr", "0.1"}},
                                   .tags = {{"team", "risk"}}},
                                  Ctx()));
  ASSERT_TRUE(tracking_->LogBatch(
      b.info.run_id,
      {.metrics = {{.key = "auc", .value = 0.8, .timestamp = 1}}, .params = {{"lr", "0.2"}}},
      Ctx()));
  ASSERT_TRUE(tracking_->UpdateRun(c.info.run_id, {.status = "FAILED"}, Ctx()));
  using V = std::vector<std::string>;
  EXPECT_EQ(SearchNames(""), (V{"run-a", "run-b", "Run-C"}));  // start_time DESC
  EXPECT_EQ(SearchNames("metrics.auc > 0.85"), (V{"run-a"}));
  EXPECT_EQ(SearchNames("metrics.auc >= 0.8"), (V{"run-a", "run-b"}));
  EXPECT_EQ(SearchNames("metrics.auc < 0.9"), (V{"run-b"}));
  EXPECT_EQ(SearchNames("metrics.auc <= 0.9"), (V{"run-a", "run-b"}));
  EXPECT_EQ(SearchNames("metrics.auc = 0.8"), (V{"run-b"}));
  EXPECT_EQ(SearchNames("metrics.auc != 0.8"), (V{"run-a"}));  // c has no auc: no match
  EXPECT_EQ(SearchNames("params.lr = '0.1'"), (V{"run-a"}));
  EXPECT_EQ(SearchNames("params.lr != '0.1'"), (V{"run-b"}));
  EXPECT_EQ(SearchNames("params.lr LIKE '0.%'"), (V{"run-a", "run-b"}));
  EXPECT_EQ(SearchNames("tags.team = 'risk' AND metrics.auc > 0.5"), (V{"run-a"}));
  EXPECT_EQ(SearchNames("attributes.run_name LIKE 'run-%'"), (V{"run-a", "run-b"}));
  EXPECT_EQ(SearchNames("attributes.run_name ILIKE 'run-%'"), (V{"run-a", "run-b", "Run-C"}));
  EXPECT_EQ(SearchNames("attributes.run_name LIKE 'run-_'"), (V{"run-a", "run-b"}));
  EXPECT_EQ(SearchNames("attributes.status = 'FAILED'"), (V{"Run-C"}));
  EXPECT_EQ(SearchNames("attributes.start_time > 1500 and attributes.start_time < 2500"),
            (V{"run-b"}));
  EXPECT_EQ(SearchNames("attributes.run_id IN ('" + a.info.run_id + "', '" + c.info.run_id + "')"),
            (V{"run-a", "Run-C"}));
  EXPECT_EQ(SearchNames("attributes.run_id NOT IN ('" + a.info.run_id + "')"),
            (V{"run-b", "Run-C"}));
  EXPECT_EQ(SearchNames("tags.team IS NULL"), (V{"run-b", "Run-C"}));
  // Ordering: missing values last in both directions.
  EXPECT_EQ(SearchNames("", {"metrics.auc ASC"}), (V{"run-b", "run-a", "Run-C"}));
  EXPECT_EQ(SearchNames("", {"metrics.auc DESC"}), (V{"run-a", "run-b", "Run-C"}));
  EXPECT_EQ(SearchNames("metrics.auc > 0", {"metrics.auc ASC"}), (V{"run-b", "run-a"}));
  EXPECT_EQ(SearchNames("", {"params.lr DESC"}), (V{"run-b", "run-a", "Run-C"}));
  EXPECT_EQ(SearchNames("", {"attributes.start_time ASC"}), (V{"Run-C", "run-b", "run-a"}));
  // Views.
  ASSERT_TRUE(tracking_->DeleteRun(b.info.run_id, Ctx()));
  EXPECT_EQ(SearchNames(""), (V{"run-a", "Run-C"}));
  EXPECT_EQ(SearchNames("", {}, ViewType::kDeletedOnly), (V{"run-b"}));
  EXPECT_EQ(SearchNames("", {}, ViewType::kAll), (V{"run-a", "run-b", "Run-C"}));
  // Pages: a full page carries an offset, the last full one too (MLflow).
  auto p1 = tracking_->SearchRuns({.experiment_ids = {experiment_}, .max_results = 1});
  ASSERT_TRUE(p1);
  ASSERT_EQ(p1->runs.size(), 1u);
  ASSERT_TRUE(p1->next_offset);
  auto p2 = tracking_->SearchRuns(
      {.experiment_ids = {experiment_}, .max_results = 1, .offset = *p1->next_offset});
  ASSERT_EQ(p2->runs.size(), 1u);
  EXPECT_EQ(p2->runs[0].info.run_name, "Run-C");
  auto p3 = tracking_->SearchRuns(
      {.experiment_ids = {experiment_}, .max_results = 1, .offset = *p2->next_offset});
  EXPECT_TRUE(p3->runs.empty());
  EXPECT_FALSE(p3->next_offset);
  // Bad filters and orderings name their field.
  for (std::string bad : {"metrics.auc > 'x'", "params.lr > 1", "foo.bar = 1",
                          "attributes.nope = 'x'", "metrics.auc > 1 OR metrics.auc < 0"}) {
    auto r = tracking_->SearchRuns({.experiment_ids = {experiment_}, .filter = bad});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "filter") << bad;
  }
  auto bad_order =
      tracking_->SearchRuns({.experiment_ids = {experiment_}, .order_by = {"metrics.auc UP"}});
  ASSERT_FALSE(bad_order);
  EXPECT_EQ(bad_order.error().field, "order_by");
}

TEST_P(TrackingTest, ExperimentSearchFiltersOrdersAndScopesByProject) {
  ASSERT_TRUE(tracking_->CreateExperiment(
      {.name = "fraud", .tags = {{"team", "x"}}, .project = "ops"}, Ctx()));
  auto names = [&](SearchExperimentsRequest req) {
    std::vector<std::string> out;
    auto r = tracking_->SearchExperiments(req);
    EXPECT_TRUE(r) << r.error().ToString();
    if (r) {
      for (const auto& e : r->experiments)
        out.push_back(e.name);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names({.order_by = {"name ASC"}}), (V{"Default", "churn", "fraud"}));
  EXPECT_EQ(names({.filter = "name LIKE '%ur%'", .order_by = {"name"}}), (V{"churn"}));
  EXPECT_EQ(names({.filter = "tags.team = 'x'"}), (V{"fraud"}));
  EXPECT_EQ(names({.order_by = {"name"}, .projects = std::set<std::string>{"risk", "ops"}}),
            (V{"churn", "fraud"}));
  EXPECT_TRUE(names({.projects = std::set<std::string>{}}).empty());
  auto bad = tracking_->SearchExperiments({.filter = "metrics.auc > 1"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "filter");
}

KERVAN_INSTANTIATE_BACKENDS(TrackingTest);

TEST(RunJson, WritesWhatToMlflowGives) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  tracking::Run run;
  run.info = {.run_id = "abc",
              .experiment_id = "3",
              .run_name = "q\"uo\\te\n\x01",
              .user_id = "ü",
              .status = "RUNNING",
              .start_time = 17,
              .end_time = 99,
              .artifact_uri = "mlflow-artifacts:/3/abc/artifacts",
              .lifecycle_stage = "active"};
  run.metrics = {{.key = "a", .value = 1.0, .timestamp = 5, .step = 2},
                 {.key = "b", .value = 0.1, .timestamp = 6, .step = -1},
                 {.key = "c", .value = nan, .timestamp = 0, .step = 0},
                 {.key = "d", .value = -std::numeric_limits<double>::infinity()},
                 {.key = "e", .value = 1e-7},
                 {.key = "f", .value = -3.0}};
  run.params = {{"lr", "0.1"}};
  run.tags = {{"mlflow.runName", "x"}, {"t", ""}};
  for (int variant = 0; variant < 3; ++variant) {
    if (variant == 1) {
      run.metrics.clear();
      run.info.end_time.reset();
    }
    if (variant == 2) {
      run.params.clear();
      run.inputs.push_back({.dataset = {{"name", "d"}, {"digest", "1"}}, .tags = {{"k", "v"}}});
    }
    std::string text;
    internal::AppendRunJson(text, run);
    Json parsed = Json::parse(text, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << text;
    EXPECT_EQ(parsed, run.ToMlflow()) << text;
    if (variant > 0) {  // no doubles: byte for byte
      EXPECT_EQ(text, run.ToMlflow().dump());
    }
  }
}

TEST(MlflowWire, PageTokensRoundTripAndRefuseGarbage) {
  std::string token = mlflow::EncodePageToken(1000);
  auto back = mlflow::DecodePageToken(token);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, 1000);
  for (std::string bad : {"%%%", "bm90IGpzb24=", "eyJvZmZzZXQiOi0xfQ=="}) {
    auto r = mlflow::DecodePageToken(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "page_token");
  }
}

TEST(MlflowWire, NumbersAcceptStringsAndNonFiniteNames) {
  Json args = {{"a", "9007199254740993"}, {"b", 12},   {"c", "x"}, {"d", "NaN"},
               {"e", "-Infinity"},        {"f", "0.5"}};
  EXPECT_EQ(*mlflow::OptionalInt64(args, "a").value(), 9007199254740993LL);
  EXPECT_EQ(*mlflow::OptionalInt64(args, "b").value(), 12);
  EXPECT_FALSE(mlflow::OptionalInt64(args, "c"));
  EXPECT_FALSE(mlflow::OptionalInt64(args, "missing").value().has_value());
  EXPECT_TRUE(std::isnan(*mlflow::OptionalDouble(args, "d").value()));
  EXPECT_EQ(*mlflow::OptionalDouble(args, "e").value(), -std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(*mlflow::OptionalDouble(args, "f").value(), 0.5);
  auto bad = mlflow::OptionalDouble(args, "c");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "c");
  EXPECT_EQ(mlflow::StatusFor("RESOURCE_ALREADY_EXISTS"), 400);
  EXPECT_EQ(mlflow::StatusFor("RESOURCE_DOES_NOT_EXIST"), 404);
  EXPECT_EQ(mlflow::StatusFor("PERMISSION_DENIED"), 403);
  auto missing = mlflow::RequiredString(args, "run_id");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("Missing value for required parameter 'run_id'"),
            std::string::npos);
}

}  // namespace
}  // namespace kervan::tracking

// Monitoring: reference profiles stored with model versions, monitors that
// compare windows of an endpoint's production traffic with the reference
// (data drift, data quality, prediction drift), ground-truth feedback joined
// to earlier predictions by request id (performance, late labels included),
// Prometheus metrics for all of it, and alerts sent to Alertmanager.
//
// Monitor lifecycle (entity kind "monitor", id = the endpoint's name; one
// monitor per endpoint, following its production version):
//
//   Monitoring | RetrainDecision --evaluate--> Evaluating      (a window closed)
//   Evaluating --evaluated--> Monitoring                       (healthy)
//   Evaluating --retrain_needed--> RetrainDecision             (dataset drift, or
//                                                               performance below
//                                                               its floor)
//   Monitoring | RetrainDecision | Evaluating --retarget--> Monitoring
//                                      (the endpoint's production version changed)
//   RetrainDecision --resolve--> Monitoring                    (a person, with a reason)
//   Monitoring | RetrainDecision --stop--> Stopped --resume--> Monitoring
//
// Automated transitions carry actor "system:monitoring" (permission
// monitor.orchestrate, held by no role). The evaluated / retrain_needed
// events carry the window's numbers under data.data.metrics, flat
// (drift_share, dataset_drift, drift.<feature>, accuracy, ...), which is
// what rules read as metrics.<name>. Every evaluation's full report is
// stored (monitor_evaluations) and exported as kervan_monitor_* metrics.
//
// Parts: stats.h (statistical tests), profile.h (profiles from data),
// drift.h (the drift and data-quality report).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "auth/auth.h"
#include "core/core.h"
#include "http/http.h"
#include "monitoring/drift.h"
#include "monitoring/profile.h"
#include "store/store.h"

namespace kervan::artifacts {
class ArtifactStore;
}
namespace kervan::registry {
class Registry;
}

namespace kervan::monitoring {

using core::Status;

inline constexpr std::string_view kMonitorKind = "monitor";
inline constexpr std::string_view kMonitoringActor = "system:monitoring";
inline constexpr std::string_view kMonitoringState = "Monitoring";
inline constexpr std::string_view kEvaluating = "Evaluating";
inline constexpr std::string_view kRetrainDecision = "RetrainDecision";
inline constexpr std::string_view kStopped = "Stopped";

// The model-version tag naming a version's training data (a CSV): an
// "mlflow-artifacts:/<path>" or "file://<path>" URI. The pipelines' register
// step sets it from its `reference` input; the profile is built from it.
inline constexpr std::string_view kReferenceTag = "kervan.reference_uri";

// How a monitor judges its windows. JSON keys as the fields.
struct MonitorConfig {
  int64_t window_rows = 500;            // a window closes after this many rows...
  int64_t window_seconds = 0;           // ...or this long after it opened (0: rows only)
  int64_t min_rows = 50;                // a time-closed window needs at least this many rows
  std::string task = "classification";  // or "regression" (performance metrics)
  double decision_threshold = 0.5;      // score >= threshold predicts class 1
  std::map<std::string, double> min_performance;  // e.g. {"accuracy": 0.9}
  std::map<std::string, double> max_performance;  // e.g. {"rmse": 3.5}
  int64_t min_labeled = 20;                       // labeled rows a performance verdict needs
  double drift_share = 0.5;                       // share of drifted features that is dataset drift
  // Per-feature test and threshold overrides: {"mean_radius": {"method": "psi", "threshold": 0.2}}
  Json features = Json::object();

  Json ToJson() const;
  // Fields left out keep `base`'s values (the built-in defaults without it).
  static Result<MonitorConfig> FromJson(const Json& j, const std::string& prefix,
                                        const MonitorConfig& base);
  static Result<MonitorConfig> FromJson(const Json& j, const std::string& prefix = "config.");
};

struct Monitor {
  std::string id;  // = endpoint
  std::string endpoint, model, project, state;
  int64_t version = 0;  // the production version it watches
  MonitorConfig config;
  int64_t cursor = 0;  // last sample id in a closed window
  int64_t window_opened_us = 0;
  int64_t windows = 0;  // evaluations so far
  // The profile of the watched version's first window of outputs (JSON
  // text, "" before it); prediction drift compares with it. Not in ToJson.
  std::string prediction_baseline;
  Json last = nullptr;  // the last evaluation's summary
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};

struct Evaluation {
  int64_t id = 0;
  std::string monitor, model;
  int64_t version = 0, window = 0;
  int64_t from_sample = 0, to_sample = 0;  // (from, to]
  int64_t started_us = 0, ended_us = 0;
  int64_t rows = 0, labeled = 0;
  Json drift;                             // DriftReport::ToJson()
  Json prediction_drift;                  // null before a baseline exists
  Json performance;                       // null without labels
  std::map<std::string, double> metrics;  // flat, what rules read
  std::string decision;                   // "healthy" | "retrain" | "insufficient_data"
  std::vector<std::string> reasons;
  int64_t created_us = 0, updated_us = 0;
  Json ToJson() const;
};

struct FeedbackItem {
  std::string request_id;
  Json label;  // a number, or an array of numbers (one per row of a batch request)
};

struct FeedbackResult {
  int64_t accepted = 0;
  int64_t matched = 0;  // joined to a stored prediction now; the rest join when it arrives
};

struct MonitoringOptions {
  std::chrono::milliseconds cycle_interval{2000};
  bool auto_monitor = true;  // a monitor for every endpoint with a production version
  MonitorConfig defaults;
  ProfileOptions profile;
};

class Monitoring {
 public:
  // Registers the "monitor" lifecycle.
  static Result<std::unique_ptr<Monitoring>> Open(store::Database& db, store::EventLog& log,
                                                  store::Lifecycles& lifecycles,
                                                  registry::Registry& registry,
                                                  artifacts::ArtifactStore* artifacts,
                                                  MonitoringOptions options);
  ~Monitoring();

  // Reference profiles. SetProfile builds one from CSV text (header row) and
  // replaces the version's; event model_version.profile_recorded.
  Result<Profile> SetProfile(const std::string& model, int64_t version, std::string_view csv,
                             const std::string& source, const store::CommandContext& ctx);
  Result<Profile> GetProfile(const std::string& model, int64_t version);
  // Builds the profile from the version's kReferenceTag, if it has one and
  // no profile yet. Returns whether a profile exists afterwards.
  Result<bool> EnsureProfile(const std::string& model, int64_t version);
  // The project owning an endpoint (who may configure its monitor).
  Result<std::string> EndpointProject(const std::string& endpoint);
  // The configuration new monitors get (monitoring.* keys).
  const MonitorConfig& default_config() const { return options_.defaults; }
  // The project owning a model version (who may read or set its profile).
  Result<std::string> VersionProject(const std::string& model, int64_t version);

  // Creates the endpoint's monitor, or replaces its configuration.
  Result<Monitor> Configure(const std::string& endpoint, const MonitorConfig& config,
                            const store::CommandContext& ctx);
  Result<Monitor> Get(const std::string& id);
  Result<std::vector<Monitor>> List(const std::optional<std::set<std::string>>& projects);
  // "stop", "resume" or "resolve", with a reason.
  Result<Monitor> Act(const std::string& id, const std::string& action, const std::string& reason,
                      const store::CommandContext& ctx);
  Result<std::vector<Evaluation>> Evaluations(const std::string& id, int64_t after_id, int limit);
  // Evaluations of every monitor that ended in [from_us, to_us), oldest first.
  Result<std::vector<Evaluation>> EvaluationsBetween(int64_t from_us, int64_t to_us);

  // Ground truth for earlier predictions of `endpoint`. A label may arrive
  // before or long after its prediction's sample is stored; windows already
  // evaluated have their performance recomputed on the next cycle (event
  // monitor.performance_updated).
  Result<FeedbackResult> RecordFeedback(const std::string& endpoint,
                                        const std::vector<FeedbackItem>& items,
                                        const store::CommandContext& ctx);

  // One pass at `now_us`: follows endpoints' production versions, closes and
  // evaluates due windows, recomputes performance for late labels. Start()
  // runs it every cycle_interval; tests call it directly.
  Status RunCycle(int64_t now_us);
  void Start();
  void Stop();

 private:
  struct State;
  Monitoring(store::Database& db, store::EventLog& log, store::Lifecycles& lifecycles,
             registry::Registry& registry, artifacts::ArtifactStore* artifacts,
             MonitoringOptions options);
  Status Follow(int64_t now_us);
  Status EvaluateDue(Monitor& m, int64_t now_us);
  Status UpdateLateLabels(const Monitor& m, int64_t now_us);
  Result<Json> Performance(const Monitor& m, int64_t from_sample, int64_t to_sample,
                           int64_t* labeled);
  Status SaveMonitor(const Monitor& m);
  void Export(const Monitor& m, const Evaluation& e);

  store::Database& db_;
  store::EventLog& log_;
  store::Lifecycles& lifecycles_;
  registry::Registry& registry_;
  artifacts::ArtifactStore* artifacts_;
  MonitoringOptions options_;
  std::unique_ptr<State> state_;
};

class Alerts;
// /api/v1/monitors, /api/v1/feedback, /api/v1/alerts (empty without `alerts`),
// /api/v1/models/{name}/versions/{v}/profile.
Status RegisterRoutes(http::Router& router, Monitoring& monitoring, Alerts* alerts,
                      const auth::Auth& auth);

// ---------------------------------------------------------------------------
// Alerts: sent to Alertmanager (API v2) and recorded as events
// (alert.firing, alert.resolved) that webhooks subscribers also receive.

struct AlertRequest {
  std::string key;  // identity: the same key updates one alert
  std::string rule, subject, severity = "warning", summary, description;
  std::map<std::string, std::string> labels;
};

struct Alert {
  std::string key, rule, subject, severity, summary, description, state;  // firing | resolved
  std::map<std::string, std::string> labels;
  int64_t starts_us = 0, ends_us = 0, last_sent_us = 0;
  std::string send_error;  // the last delivery failure, "" when delivered
  Json ToJson() const;
};

struct AlertsOptions {
  std::string alertmanager_url;  // "" = events only
  std::string generator_url;     // shown in Alertmanager as the source
  std::chrono::seconds resend_interval{60};
  std::chrono::milliseconds timeout{5000};
};

class Alerts {
 public:
  Alerts(store::Database& db, store::EventLog& log, AlertsOptions options);
  // Raises (or refreshes) an alert and sends it. An Alertmanager that cannot
  // be reached is an error (the caller retries); the alert stays recorded.
  Result<Alert> Fire(const AlertRequest& request, const store::CommandContext& ctx);
  // Sends the alert as resolved (endsAt = now). No-op for an unknown or
  // already resolved key.
  Status Resolve(const std::string& key, const store::CommandContext& ctx);
  Result<std::vector<Alert>> List(bool firing_only);
  // Re-sends firing alerts older than resend_interval (Alertmanager forgets
  // alerts that are not repeated) and retries failed deliveries.
  Status Resend(int64_t now_us);

 private:
  Status Send(const Alert& alert, int64_t now_us);
  void CountFiring();
  store::Database& db_;
  store::EventLog& log_;
  AlertsOptions options_;
};

}  // namespace kervan::monitoring

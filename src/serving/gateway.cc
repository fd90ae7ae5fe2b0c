// The inference gateway: routing table, loaded versions, the request path,
// shadow mirroring, statistics, samples and the OIP / JSON-rows routes.
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "http/asio.h"
#include "serving/serving.h"

namespace kervan::serving {
namespace {

using Clock = std::chrono::steady_clock;

const std::vector<double>& InferenceBuckets() {
  static const std::vector<double> kBuckets = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                               0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                               0.5,     1,      2.5,     5};
  return kBuckets;
}

struct Families {
  core::Family<core::Counter>& requests = core::GlobalMetrics().AddCounter(
      "kervan_inference_requests_total",
      "Inference requests by endpoint, model version, side (stable, candidate, shadow) and "
      "outcome (ok, error, bad_request)",
      {"endpoint", "model", "version", "side", "outcome"});
  core::Family<core::Histogram>& duration = core::GlobalMetrics().AddHistogram(
      "kervan_inference_request_duration_seconds",
      "Time from a request's arrival at the gateway to its answer, by endpoint and model version",
      InferenceBuckets(), {"endpoint", "model", "version"});
  core::Family<core::Gauge>& in_flight = core::GlobalMetrics().AddGauge(
      "kervan_inference_in_flight", "Inference requests being answered, by endpoint and version",
      {"endpoint", "model", "version"});
  core::Family<core::Counter>& mirror_dropped = core::GlobalMetrics().AddCounter(
      "kervan_inference_mirror_dropped_total",
      "Requests that shadow traffic should have mirrored but the mirror queue was full",
      {"endpoint"});
  core::Family<core::Counter>& samples_dropped = core::GlobalMetrics().AddCounter(
      "kervan_inference_samples_dropped_total",
      "Request samples dropped because the sample queue was full", {"endpoint"});
};

Families& Metrics() {
  static Families f;
  return f;
}

// Metric children of one version on one endpoint, looked up once per table.
struct VersionMetrics {
  core::Counter* ok = nullptr;
  core::Counter* error = nullptr;
  core::Counter* bad_request = nullptr;
  core::Counter* shadow_ok = nullptr;
  core::Counter* shadow_error = nullptr;
  core::Histogram* duration = nullptr;
  core::Gauge* in_flight = nullptr;

  VersionMetrics(const std::string& endpoint, const std::string& model, int64_t version,
                 const std::string& side) {
    auto& m = Metrics();
    std::string v = std::to_string(version);
    ok = &m.requests.With({endpoint, model, v, side, "ok"});
    error = &m.requests.With({endpoint, model, v, side, "error"});
    bad_request = &m.requests.With({endpoint, model, v, side, "bad_request"});
    shadow_ok = &m.requests.With({endpoint, model, v, "shadow", "ok"});
    shadow_error = &m.requests.With({endpoint, model, v, "shadow", "error"});
    duration = &m.duration.With({endpoint, model, v});
    in_flight = &m.in_flight.With({endpoint, model, v});
  }
};

struct LoadedVersion {
  std::string model;
  int64_t version = 0;
  std::shared_ptr<ModelRuntime> runtime;  // null when loading failed
  std::string error;
};

struct Served {
  std::shared_ptr<LoadedVersion> loaded;
  std::shared_ptr<VersionMetrics> metrics;
  std::string side;  // "stable" | "candidate" | "previous"
  explicit operator bool() const { return loaded != nullptr; }
};

struct EndpointState {
  RouteEntry entry;
  Served stable, candidate, previous;
};

struct Snapshot {
  int64_t revision = 0;
  std::map<std::string, std::shared_ptr<const EndpointState>> endpoints;
};

double Uniform() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// Whether the candidate's answer agrees with the stable one, row by row:
// the same class for scores in [0, 1] (threshold 0.5), otherwise equal
// within 1e-6 relative.
bool Agrees(const Prediction& stable, const Prediction& candidate) {
  if (stable.rows != candidate.rows || stable.per_row != candidate.per_row)
    return false;
  for (int64_t r = 0; r < stable.rows; ++r) {
    double a = stable.first(r), b = candidate.first(r);
    if (a >= 0 && a <= 1 && b >= 0 && b <= 1) {
      if ((a >= 0.5) != (b >= 0.5))
        return false;
    } else if (std::fabs(a - b) > 1e-6 * std::max(1.0, std::fabs(a))) {
      return false;
    }
  }
  return true;
}

Json PredictionsJson(const Prediction& p) {
  Json out = Json::array();
  for (int64_t r = 0; r < p.rows; ++r) {
    if (p.per_row == 1) {
      out.push_back(p.values[static_cast<size_t>(r)]);
    } else {
      Json row = Json::array();
      for (int64_t c = 0; c < p.per_row; ++c)
        row.push_back(p.values[static_cast<size_t>(r * p.per_row + c)]);
      out.push_back(std::move(row));
    }
  }
  return out;
}

Json RowsJson(const Batch& b) {
  Json rows = Json::array();
  for (int64_t r = 0; r < b.rows; ++r) {
    Json row = Json::array();
    for (int64_t c = 0; c < b.cols; ++c) {
      float v = b.values[static_cast<size_t>(r * b.cols + c)];
      row.push_back(std::isnan(v) ? Json(nullptr) : Json(v));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

struct Gateway::Impl {
  GatewayOptions options;

  std::mutex apply_mu;  // serializes Apply
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<LoadedVersion>> loaded;

  mutable std::mutex snapshot_mu;
  std::shared_ptr<const Snapshot> snapshot = std::make_shared<Snapshot>();

  std::mutex stats_mu;
  std::map<std::pair<std::string, Side>, SideStats> stats;

  std::mutex sample_mu;
  std::vector<Sample> samples;

  std::unique_ptr<http::asio::thread_pool> mirror_pool;
  std::atomic<int64_t> mirror_pending{0};

  std::mutex flush_mu;
  std::condition_variable flush_cv;
  bool stopping = false;
  std::thread flusher;

  std::shared_ptr<const Snapshot> Current() const {
    std::lock_guard lock(snapshot_mu);
    return snapshot;
  }

  void Record(const std::string& rollout_id, Side side, bool error, double micros,
              const Prediction* p, std::optional<bool> agreed) {
    if (rollout_id.empty())
      return;
    std::lock_guard lock(stats_mu);
    SideStats& s = stats[{rollout_id, side}];
    ++s.requests;
    if (error)
      ++s.errors;
    s.latency.Observe(micros);
    if (p != nullptr) {
      for (int64_t r = 0; r < p->rows; ++r)
        s.outputs.Observe(p->first(r));
    }
    if (agreed) {
      ++s.compared;
      if (*agreed)
        ++s.agreed;
    }
  }

  void Keep(Sample sample) {
    std::lock_guard lock(sample_mu);
    if (static_cast<int64_t>(samples.size()) >= options.max_sample_queue) {
      Metrics().samples_dropped.With({sample.endpoint}).Inc();
      return;
    }
    samples.push_back(std::move(sample));
  }

  void Flush() {
    std::vector<Sample> batch;
    {
      std::lock_guard lock(sample_mu);
      batch.swap(samples);
    }
    if (!batch.empty() && options.sample_sink)
      options.sample_sink(std::move(batch));
    if (options.stats_sink) {
      std::vector<StatsReport> reports;
      {
        std::lock_guard lock(stats_mu);
        for (auto& [key, s] : stats)
          reports.push_back({.rollout_id = key.first, .side = key.second, .stats = std::move(s)});
        stats.clear();
      }
      if (!reports.empty())
        options.stats_sink(std::move(reports));
    }
  }

  void Mirror(std::shared_ptr<const EndpointState> ep, Batch batch, Prediction stable,
              std::string request_id) {
    if (!mirror_pool || mirror_pending.load() >= options.max_mirror_queue) {
      Metrics().mirror_dropped.With({ep->entry.endpoint}).Inc();
      return;
    }
    ++mirror_pending;
    http::asio::post(
        *mirror_pool, [this, ep = std::move(ep), batch = std::move(batch),
                       stable = std::move(stable), request_id = std::move(request_id)]() {
          const Served& c = ep->candidate;
          auto start = Clock::now();
          Result<Prediction> p = c.loaded->runtime
                                     ? c.loaded->runtime->Predict(batch)
                                     : Result<Prediction>(core::Unavailable(c.loaded->error));
          double micros = std::chrono::duration<double, std::micro>(Clock::now() - start).count();
          if (p) {
            c.metrics->shadow_ok->Inc();
            Record(ep->entry.rollout_id, Side::kCandidate, false, micros, &*p, Agrees(stable, *p));
          } else {
            c.metrics->shadow_error->Inc();
            Record(ep->entry.rollout_id, Side::kCandidate, true, micros, nullptr, false);
          }
          if (Uniform() * 100.0 < ep->entry.sample_percent) {
            Keep({.endpoint = ep->entry.endpoint,
                  .model = ep->entry.model,
                  .version = c.loaded->version,
                  .rollout_id = ep->entry.rollout_id,
                  .side = "shadow",
                  .request_id = request_id,
                  .time_us = core::NowMicros(),
                  .input = RowsJson(batch),
                  .output = p ? PredictionsJson(*p) : Json(nullptr),
                  .latency_us = static_cast<int64_t>(micros),
                  .error = p ? "" : p.error().message});
          }
          --mirror_pending;
        });
  }
};

Gateway::Gateway(GatewayOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
}

Gateway::~Gateway() {
  Stop();
}

void Gateway::Start() {
  std::lock_guard lock(impl_->flush_mu);
  if (impl_->flusher.joinable())
    return;
  impl_->stopping = false;
  impl_->mirror_pool =
      std::make_unique<http::asio::thread_pool>(std::max(1, impl_->options.mirror_threads));
  impl_->flusher = std::thread([this] {
    std::unique_lock lock(impl_->flush_mu);
    while (!impl_->stopping) {
      impl_->flush_cv.wait_for(lock, impl_->options.flush_interval);
      lock.unlock();
      impl_->Flush();
      lock.lock();
    }
  });
}

void Gateway::Stop() {
  {
    std::lock_guard lock(impl_->flush_mu);
    if (!impl_->flusher.joinable())
      return;
    impl_->stopping = true;
  }
  impl_->flush_cv.notify_all();
  impl_->flusher.join();
  if (impl_->mirror_pool) {
    impl_->mirror_pool->join();
    impl_->mirror_pool.reset();
  }
  impl_->Flush();
}

void Gateway::Apply(const RoutingTable& table) {
  std::lock_guard lock(impl_->apply_mu);
  auto next = std::make_shared<Snapshot>();
  next->revision = table.revision;
  std::map<std::pair<std::string, int64_t>, std::shared_ptr<LoadedVersion>> keep;
  auto serve = [&](const RouteEntry& e, int64_t version, const std::string& side) -> Served {
    if (version <= 0)
      return {};
    auto key = std::make_pair(e.model, version);
    std::shared_ptr<LoadedVersion> lv;
    if (auto it = keep.find(key); it != keep.end()) {
      lv = it->second;
    } else if (auto old = impl_->loaded.find(key);
               old != impl_->loaded.end() && old->second->runtime) {
      lv = old->second;
    } else {
      lv = std::make_shared<LoadedVersion>();
      lv->model = e.model;
      lv->version = version;
      auto runtime = impl_->options.loader
                         ? impl_->options.loader(e.model, version)
                         : Result<std::shared_ptr<ModelRuntime>>(
                               core::Unavailable("the gateway has no model loader"));
      if (runtime) {
        lv->runtime = std::move(runtime).value();
        core::LogInfo(
            fmt::format("loaded {} version {} ({})", e.model, version, lv->runtime->kind()),
            {{"event.action", "serving.model_loaded"}});
      } else {
        lv->error = fmt::format("{} version {} did not load: {}", e.model, version,
                                runtime.error().message);
        core::LogError(lv->error, {{"event.action", "serving.model_load_failed"}});
      }
    }
    keep[key] = lv;
    return {.loaded = lv,
            .metrics = std::make_shared<VersionMetrics>(e.endpoint, e.model, version, side),
            .side = side};
  };
  for (const auto& [name, entry] : table.endpoints) {
    auto ep = std::make_shared<EndpointState>();
    ep->entry = entry;
    ep->stable = serve(entry, entry.stable, "stable");
    ep->candidate = serve(entry, entry.candidate, "candidate");
    ep->previous = serve(entry, entry.previous, "previous");
    next->endpoints[name] = std::move(ep);
  }
  impl_->loaded = std::move(keep);
  std::lock_guard snap(impl_->snapshot_mu);
  impl_->snapshot = std::move(next);
}

int64_t Gateway::revision() const {
  return impl_->Current()->revision;
}

Json Gateway::Describe() const {
  auto snap = impl_->Current();
  Json out = Json::object();
  auto describe = [](const Served& s) -> Json {
    if (!s)
      return nullptr;
    Json j{{"version", s.loaded->version},
           {"kind", s.loaded->runtime ? Json(s.loaded->runtime->kind()) : Json(nullptr)}};
    if (!s.loaded->error.empty())
      j["error"] = s.loaded->error;
    return j;
  };
  for (const auto& [name, ep] : snap->endpoints) {
    out[name] = {{"stable", describe(ep->stable)},
                 {"candidate", describe(ep->candidate)},
                 {"previous", describe(ep->previous)},
                 {"rule", ep->entry.ToJson()["rule"]}};
  }
  return out;
}

InferResponse Gateway::Infer(const InferRequest& request) {
  auto start = Clock::now();
  const http::Request& req = *request.http;
  auto snap = impl_->Current();
  auto it = snap->endpoints.find(request.endpoint);
  if (it == snap->endpoints.end()) {
    return {.response = http::Response::FromError(Missing(
                fmt::format("endpoint \"{}\" is not served here (deploy a model version to it)",
                            request.endpoint)))};
  }
  std::shared_ptr<const EndpointState> ep = it->second;
  const Served* served = &ep->stable;
  bool mirror = false;
  if (request.version > 0) {
    served = nullptr;
    for (const Served* s : {&ep->stable, &ep->candidate, &ep->previous}) {
      if (*s && s->loaded->version == request.version) {
        served = s;
        break;
      }
    }
    if (served == nullptr) {
      return {.response = http::Response::FromError(
                  Missing(fmt::format("endpoint \"{}\" does not serve version {} (it serves {})",
                                      request.endpoint, request.version,
                                      ep->entry.stable > 0 ? std::to_string(ep->entry.stable)
                                                           : std::string("nothing yet")),
                          "version"))};
    }
  } else if (request.preview) {
    if (!ep->candidate) {
      return {.response = http::Response::FromError(Missing(
                  fmt::format("endpoint \"{}\" has no candidate to preview (no rollout is active)",
                              request.endpoint)))};
    }
    served = &ep->candidate;
  } else if (ep->candidate) {
    std::string key = req.Header("X-Kervan-Route-Key");
    RouteDecision d = DecideRoute(
        ep->entry.rule, key, [&req](std::string_view name) { return req.Header(name); }, Uniform());
    served = d.target == Target::kCandidate ? &ep->candidate : &ep->stable;
    mirror = d.mirror;
  }
  if (!*served) {
    return {.response = http::Response::FromError(core::Unavailable(
                fmt::format("endpoint \"{}\" has no version to serve yet", request.endpoint)))};
  }
  const LoadedVersion& lv = *served->loaded;
  VersionMetrics& m = *served->metrics;
  std::optional<Side> side;
  if (served == &ep->stable)
    side = Side::kStable;
  else if (served == &ep->candidate)
    side = Side::kCandidate;
  InferResponse out{.version = lv.version, .side = served->side};
  auto finish = [&](http::Response r) {
    r.headers.push_back({"X-Kervan-Model-Version", std::to_string(lv.version)});
    r.headers.push_back({"X-Kervan-Route", served->side});
    out.response = std::move(r);
    return out;
  };
  auto elapsed_us = [&] {
    return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
  };

  if (!lv.runtime) {
    m.error->Inc();
    if (side)
      impl_->Record(ep->entry.rollout_id, *side, true, elapsed_us(), nullptr, std::nullopt);
    return finish(http::Response::FromError(core::Unavailable(lv.error)));
  }
  Json body = Json::parse(req.body, nullptr, false);
  Result<Batch> batch =
      body.is_discarded()
          ? Result<Batch>(core::InvalidArgument("the request body is not valid JSON", "body"))
      : request.format == InferRequest::Format::kOip
          ? ParseOipRequest(body, lv.runtime->schema(), impl_->options.max_rows)
          : ParseInstances(body, lv.runtime->schema(), impl_->options.max_rows);
  if (!batch) {
    m.bad_request->Inc();
    return finish(http::Response::FromError(batch.error()));
  }
  m.in_flight->Add(1);
  Result<Prediction> p = lv.runtime->Predict(*batch);
  m.in_flight->Add(-1);
  double micros = elapsed_us();
  m.duration->Observe(micros / 1e6);
  if (!p) {
    m.error->Inc();
    if (side)
      impl_->Record(ep->entry.rollout_id, *side, true, micros, nullptr, std::nullopt);
    core::Error e = p.error();
    if (e.code != core::ErrorCode::kUnavailable && e.code != core::ErrorCode::kDeadlineExceeded)
      e.code = core::ErrorCode::kInternal;
    e.message = fmt::format("{} version {} failed: {}", lv.model, lv.version, e.message);
    return finish(http::Response::FromError(e));
  }
  m.ok->Inc();
  if (side)
    impl_->Record(ep->entry.rollout_id, *side, false, micros, &*p, std::nullopt);
  if (mirror && ep->candidate)
    impl_->Mirror(ep, *batch, *p, req.request_id);
  if (Uniform() * 100.0 < ep->entry.sample_percent) {
    impl_->Keep({.endpoint = ep->entry.endpoint,
                 .model = lv.model,
                 .version = lv.version,
                 .rollout_id = ep->entry.rollout_id,
                 .side = served->side,
                 .request_id = req.request_id,
                 .time_us = core::NowMicros(),
                 .input = RowsJson(*batch),
                 .output = PredictionsJson(*p),
                 .latency_us = static_cast<int64_t>(micros)});
  }
  if (request.format == InferRequest::Format::kOip) {
    std::string id;
    if (body.contains("id") && body["id"].is_string())
      id = body["id"].get<std::string>();
    return finish(http::Response::Json(
        200, OipResponse(ep->entry.endpoint, std::to_string(lv.version), id, *p)));
  }
  return finish(http::Response::Json(200, {{"predictions", PredictionsJson(*p)},
                                           {"model", lv.model},
                                           {"model_version", std::to_string(lv.version)}}));
}

Result<Json> Gateway::ModelMetadata(const std::string& endpoint, int64_t version) {
  auto snap = impl_->Current();
  auto it = snap->endpoints.find(endpoint);
  if (it == snap->endpoints.end())
    return Missing(fmt::format("endpoint \"{}\" is not served here", endpoint));
  const EndpointState& ep = *it->second;
  const Served* served = version > 0 ? nullptr : &ep.stable;
  Json versions = Json::array();
  for (const Served* s : {&ep.stable, &ep.candidate, &ep.previous}) {
    if (!*s)
      continue;
    versions.push_back(std::to_string(s->loaded->version));
    if (version > 0 && s->loaded->version == version)
      served = s;
  }
  if (served == nullptr || !*served)
    return Missing(fmt::format("endpoint \"{}\" does not serve version {}", endpoint, version));
  Json out{{"name", endpoint}, {"versions", versions}, {"model", ep.entry.model}};
  if (!served->loaded->runtime) {
    out["platform"] = nullptr;
    out["error"] = served->loaded->error;
    return out;
  }
  const InputSchema& schema = served->loaded->runtime->schema();
  out["platform"] = served->loaded->runtime->kind() == "xgboost" ? "xgboost_json" : "oip_http";
  Json inputs = Json::array();
  inputs.push_back({{"name", "input-0"},
                    {"datatype", "FP32"},
                    {"shape", Json::array({-1, schema.num_features})}});
  out["inputs"] = inputs;
  out["features"] = schema.ToJson()["inputs"];
  out["outputs"] =
      Json::array({Json{{"name", "predict"}, {"datatype", "FP32"}, {"shape", Json::array({-1})}}});
  return out;
}

bool Gateway::AnswersInProcess(const std::string& endpoint) const {
  auto snap = impl_->Current();
  auto it = snap->endpoints.find(endpoint);
  if (it == snap->endpoints.end())
    return true;  // a 404, answered at once
  for (const Served* s : {&it->second->stable, &it->second->candidate, &it->second->previous}) {
    if (*s && s->loaded->runtime && s->loaded->runtime->kind() != "xgboost")
      return false;
  }
  return true;
}

bool Gateway::ModelReady(const std::string& endpoint, int64_t version) {
  auto snap = impl_->Current();
  auto it = snap->endpoints.find(endpoint);
  if (it == snap->endpoints.end())
    return false;
  for (const Served* s : {&it->second->stable, &it->second->candidate, &it->second->previous}) {
    if (*s && (version == 0 ? s == &it->second->stable : s->loaded->version == version))
      return s->loaded->runtime != nullptr;
  }
  return false;
}

std::vector<StatsReport> Gateway::DrainStats() {
  std::vector<StatsReport> reports;
  std::lock_guard lock(impl_->stats_mu);
  for (auto& [key, s] : impl_->stats)
    reports.push_back({.rollout_id = key.first, .side = key.second, .stats = std::move(s)});
  impl_->stats.clear();
  return reports;
}

// ---------------------------------------------------------------------------
// Routes

namespace {

// The Open Inference Protocol's error body: {"error": "<message>"}, with
// Kervan's code, field and request id beside it.
http::Response OipError(const http::Response& r) {
  if (r.status < 400)
    return r;
  Json env = Json::parse(r.body, nullptr, false);
  if (env.is_discarded() || !env.contains("error") || !env["error"].is_object())
    return r;
  Json out{{"error", env["error"].value("message", "error")},
           {"code", env["error"].value("code", "")}};
  if (env["error"].contains("field"))
    out["field"] = env["error"]["field"];
  http::Response o = http::Response::Json(r.status, out);
  o.headers = r.headers;
  return o;
}

Result<int64_t> VersionParam(const http::Request& req) {
  const std::string& text = req.Param("version");
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || v <= 0) {
    return core::InvalidArgument(
        fmt::format("path parameter \"version\": must be a positive integer, got \"{}\"", text),
        "version");
  }
  return v;
}

}  // namespace

Status RegisterGatewayRoutes(http::Router& router, Gateway& gateway) {
  const std::string predict = "serving.predict";
  auto oip = [&gateway](const http::Request& req, int64_t version) {
    InferResponse r = gateway.Infer({.format = InferRequest::Format::kOip,
                                     .endpoint = req.Param("name"),
                                     .version = version,
                                     .http = &req});
    return OipError(r.response);
  };
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/v2/health/live",
                              .handler =
                                  [](const http::Request&) {
                                    return http::Response::Json(200, {{"live", true}});
                                  },
                              .blocking = false,
                              .public_route = true}));
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/v2/health/ready",
                              .handler =
                                  [](const http::Request&) {
                                    return http::Response::Json(200, {{"ready", true}});
                                  },
                              .blocking = false,
                              .public_route = true}));
  RETURN_IF_ERROR(router.Add(
      {.method = "GET",
       .pattern = "/v2",
       .handler =
           [](const http::Request&) {
             return http::Response::Json(
                 200, {{"name", "kervan"}, {"version", "0.1.0"}, {"extensions", Json::array()}});
           },
       .blocking = false,
       .permission = predict}));
  auto metadata = [&gateway](const http::Request& req, int64_t version) {
    return OipError(http::Response::FromResult(gateway.ModelMetadata(req.Param("name"), version)));
  };
  auto ready = [&gateway](const http::Request& req, int64_t version) {
    bool ok = gateway.ModelReady(req.Param("name"), version);
    return http::Response::Json(ok ? 200 : 503, {{"name", req.Param("name")}, {"ready", ok}});
  };
  auto versioned = [](auto fn) {
    return [fn](const http::Request& req) {
      auto v = VersionParam(req);
      if (!v)
        return OipError(http::Response::FromError(v.error()));
      return fn(req, *v);
    };
  };
  RETURN_IF_ERROR(
      router.Add({.method = "GET",
                  .pattern = "/v2/models/{name}",
                  .handler = [metadata](const http::Request& req) { return metadata(req, 0); },
                  .blocking = false,
                  .permission = predict}));
  RETURN_IF_ERROR(
      router.Add({.method = "GET",
                  .pattern = "/v2/models/{name}/ready",
                  .handler = [ready](const http::Request& req) { return ready(req, 0); },
                  .blocking = false,
                  .permission = predict}));
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/v2/models/{name}/versions/{version}",
                              .handler = versioned(metadata),
                              .blocking = false,
                              .permission = predict}));
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/v2/models/{name}/versions/{version}/ready",
                              .handler = versioned(ready),
                              .blocking = false,
                              .permission = predict}));
  // In-process models answer on the I/O thread; HTTP upstreams on the pool.
  auto in_process = [&gateway](const http::Request& req) {
    return gateway.AnswersInProcess(req.Param("name"));
  };
  RETURN_IF_ERROR(router.Add({.method = "POST",
                              .pattern = "/v2/models/{name}/infer",
                              .handler = [oip](const http::Request& req) { return oip(req, 0); },
                              .permission = predict,
                              .run_inline_when = in_process}));
  RETURN_IF_ERROR(router.Add({.method = "POST",
                              .pattern = "/v2/models/{name}/versions/{version}/infer",
                              .handler = versioned(oip),
                              .permission = predict,
                              .run_inline_when = in_process}));
  RETURN_IF_ERROR(router.Add({.method = "POST",
                              .pattern = "/v1/endpoints/{name}/predict",
                              .handler =
                                  [&gateway](const http::Request& req) {
                                    return gateway
                                        .Infer({.format = InferRequest::Format::kInstances,
                                                .endpoint = req.Param("name"),
                                                .http = &req})
                                        .response;
                                  },
                              .permission = predict,
                              .run_inline_when = in_process}));
  RETURN_IF_ERROR(router.Add({.method = "POST",
                              .pattern = "/v1/endpoints/{name}/preview/predict",
                              .handler =
                                  [&gateway](const http::Request& req) {
                                    return gateway
                                        .Infer({.format = InferRequest::Format::kInstances,
                                                .endpoint = req.Param("name"),
                                                .preview = true,
                                                .http = &req})
                                        .response;
                                  },
                              .permission = predict,
                              .run_inline_when = in_process}));
  return core::Ok();
}

}  // namespace kervan::serving

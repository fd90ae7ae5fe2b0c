// The monitoring API: /api/v1/monitors, /api/v1/feedback, /api/v1/alerts and
// reference profiles under /api/v1/models/{name}/versions/{version}/profile.
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "monitoring/monitoring.h"

namespace kervan::monitoring {
namespace {

using http::JsonRoute;
using http::Request;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

Result<int64_t> PathVersion(const Request& req) {
  const std::string& text = req.Param("version");
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1) {
    return core::InvalidArgument(
        fmt::format("path parameter \"version\": must be a positive integer, got \"{}\"", text),
        "version");
  }
  return v;
}

class Api {
 public:
  Api(Monitoring& monitoring, Alerts* alerts, const auth::Auth& auth)
      : m_(monitoring), alerts_(alerts), auth_(auth) {}

  Result<Monitor> Readable(const Request& req, std::string_view permission) {
    ASSIGN_OR_RETURN(Monitor m, m_.Get(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, m.project));
    return m;
  }

  Result<Json> List(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(auto list, m_.List(auth_.ProjectsWith(req.actor, "monitor.read")));
    Json items = Json::array();
    for (const auto& m : list)
      items.push_back(m.ToJson());
    return Json{{"monitors", items}};
  }

  Result<Json> Get(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Monitor m, Readable(req, "monitor.read"));
    return m.ToJson();
  }

  // PUT /api/v1/monitors/{id}: {"config": {...}} creates or reconfigures the
  // endpoint's monitor.
  Result<Json> Configure(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(Json config_json, r.OptionalObject("config"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(MonitorConfig config,
                     MonitorConfig::FromJson(config_json, "config.", m_.default_config()));
    // Who may manage the endpoint's project may configure its monitor.
    ASSIGN_OR_RETURN(std::string project, m_.EndpointProject(req.Param("id")));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "monitor.manage", project));
    ASSIGN_OR_RETURN(Monitor m, m_.Configure(req.Param("id"), config, Context(req)));
    return m.ToJson();
  }

  Result<Json> Act(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
    ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(Monitor m, Readable(req, "monitor.manage"));
    ASSIGN_OR_RETURN(Monitor out,
                     m_.Act(m.id, req.Param("action"), reason.value_or(""), Context(req)));
    return out.ToJson();
  }

  Result<Json> Evaluations(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"after", "limit"}));
    ASSIGN_OR_RETURN(int64_t after, req.QueryInt("after", 0, 0, INT64_MAX));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
    ASSIGN_OR_RETURN(Monitor m, Readable(req, "monitor.read"));
    ASSIGN_OR_RETURN(auto list, m_.Evaluations(m.id, after, static_cast<int>(limit)));
    Json items = Json::array();
    int64_t last = after;
    for (const auto& e : list) {
      items.push_back(e.ToJson());
      last = e.id;
    }
    return Json{{"evaluations", items}, {"next_after", last}};
  }

  // POST /api/v1/feedback: {"endpoint": E, "items": [{"request_id", "label"}]}
  // or one item inline: {"endpoint", "request_id", "label"}.
  Result<Json> Feedback(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(Json body, req.JsonBody());
    if (!body.is_object())
      return core::InvalidArgument("body: must be a JSON object", "body");
    for (const auto& [k, v] : body.items()) {
      if (k != "endpoint" && k != "items" && k != "request_id" && k != "label") {
        return core::InvalidArgument(
            fmt::format("field \"{}\": unknown; feedback takes endpoint and items (or one "
                        "request_id and label)",
                        k),
            k);
      }
    }
    if (!body.contains("endpoint") || !body["endpoint"].is_string())
      return core::InvalidArgument("field \"endpoint\": is required (a string)", "endpoint");
    std::string endpoint = body["endpoint"].get<std::string>();
    std::vector<FeedbackItem> items;
    auto take = [&](const Json& item, const std::string& prefix) -> Status {
      for (const auto& [k, v] : item.items()) {
        if (k != "request_id" && k != "label" && !prefix.empty()) {
          return core::InvalidArgument(fmt::format("field \"{}{}\": unknown", prefix, k),
                                       prefix + k);
        }
      }
      if (!item.contains("request_id") || !item["request_id"].is_string()) {
        return core::InvalidArgument(
            fmt::format("field \"{}request_id\": is required (a string)", prefix),
            prefix + "request_id");
      }
      if (!item.contains("label")) {
        return core::InvalidArgument(fmt::format("field \"{}label\": is required", prefix),
                                     prefix + "label");
      }
      items.push_back(
          {.request_id = item["request_id"].get<std::string>(), .label = item["label"]});
      return core::Ok();
    };
    if (body.contains("items")) {
      if (body.contains("request_id") || body.contains("label")) {
        return core::InvalidArgument(
            "field \"items\": give either items or one request_id and label, not both", "items");
      }
      const Json& list = body["items"];
      if (!list.is_array())
        return core::InvalidArgument("field \"items\": must be an array", "items");
      if (list.size() > 10000)
        return core::InvalidArgument("field \"items\": at most 10000 items per request", "items");
      for (size_t i = 0; i < list.size(); ++i) {
        std::string prefix = fmt::format("items[{}].", i);
        if (!list[i].is_object()) {
          return core::InvalidArgument(fmt::format("field \"items[{}]\": must be an object", i),
                                       fmt::format("items[{}]", i));
        }
        RETURN_IF_ERROR(take(list[i], prefix));
      }
    } else {
      RETURN_IF_ERROR(take(body, ""));
    }
    if (items.empty())
      return core::InvalidArgument("field \"items\": at least one label is required", "items");
    for (size_t i = 0; i < items.size(); ++i) {
      std::string field = body.contains("items") ? fmt::format("items[{}]", i) : "";
      const Json& label = items[i].label;
      bool ok = label.is_number() && std::isfinite(label.get<double>());
      if (label.is_array()) {
        ok = !label.empty();
        for (const auto& v : label)
          ok = ok && v.is_number() && std::isfinite(v.get<double>());
      }
      if (!ok) {
        std::string f = field.empty() ? "label" : field + ".label";
        return core::InvalidArgument(
            fmt::format("field \"{}\": must be a number or a non-empty array of numbers", f), f);
      }
      if (items[i].request_id.empty() || items[i].request_id.size() > 200) {
        std::string f = field.empty() ? "request_id" : field + ".request_id";
        return core::InvalidArgument(fmt::format("field \"{}\": must be 1-200 characters", f), f);
      }
    }
    ASSIGN_OR_RETURN(Monitor m, m_.Get(endpoint));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "feedback.write", m.project));
    ASSIGN_OR_RETURN(FeedbackResult result, m_.RecordFeedback(endpoint, items, Context(req)));
    return Json{{"accepted", result.accepted}, {"matched", result.matched}};
  }

  Result<Json> GetProfile(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({}));
    ASSIGN_OR_RETURN(int64_t version, PathVersion(req));
    const std::string& model = req.Param("name");
    ASSIGN_OR_RETURN(std::string project, ModelProject(model, version));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "registry.read", project));
    ASSIGN_OR_RETURN(Profile p, m_.GetProfile(model, version));
    return p.ToJson();
  }

  // PUT .../profile with the training data as CSV (header row) in the body.
  Result<Json> SetProfile(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"source"}));
    ASSIGN_OR_RETURN(int64_t version, PathVersion(req));
    const std::string& model = req.Param("name");
    ASSIGN_OR_RETURN(std::string project, ModelProject(model, version));
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "registry.write", project));
    if (req.body.empty())
      return core::InvalidArgument("body: the reference data as CSV is required", "body");
    std::string source = req.QueryOr("source", "");
    std::string csv = req.body;
    // Also {"csv": "...", "source": "..."}, for clients that only send JSON.
    if (req.body.front() == '{') {
      ASSIGN_OR_RETURN(Json body, req.JsonBody());
      ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
      ASSIGN_OR_RETURN(csv, r.RequiredString("csv"));
      ASSIGN_OR_RETURN(auto s, r.OptionalString("source"));
      RETURN_IF_ERROR(r.Finish());
      if (s)
        source = *s;
    }
    ASSIGN_OR_RETURN(Profile p, m_.SetProfile(model, version, csv,
                                              source.empty() ? "upload" : source, Context(req)));
    Json out = p.ToJson();
    // The samples are for evaluation; the answer summarises.
    for (auto& f : out["features"])
      f.erase("sample");
    return out;
  }

  Result<Json> ListAlerts(const Request& req) {
    RETURN_IF_ERROR(req.CheckQuery({"state"}));
    std::string state = req.QueryOr("state", "");
    if (!state.empty() && state != "firing") {
      return core::InvalidArgument(
          fmt::format("query parameter \"state\": must be firing, got \"{}\"", state), "state");
    }
    // Alerts carry no project: reading them needs a global binding.
    RETURN_IF_ERROR(auth_.AuthorizeIn(req.actor, "monitor.read", ""));
    Json items = Json::array();
    if (alerts_) {
      ASSIGN_OR_RETURN(auto list, alerts_->List(state == "firing"));
      for (const auto& a : list)
        items.push_back(a.ToJson());
    }
    return Json{{"alerts", items}};
  }

 private:
  Result<std::string> ModelProject(const std::string& model, int64_t version) {
    return m_.VersionProject(model, version);
  }

  Monitoring& m_;
  Alerts* alerts_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterRoutes(http::Router& router, Monitoring& monitoring, Alerts* alerts,
                      const auth::Auth& auth) {
  auto api = std::make_shared<Api>(monitoring, alerts, auth);
  auto bind = [api](Result<Json> (Api::*fn)(const Request&)) {
    return [api, fn](const Request& req) { return ((*api).*fn)(req); };
  };
  RETURN_IF_ERROR(
      router.Add(JsonRoute("GET", "/api/v1/monitors", "monitor.read", bind(&Api::List))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("GET", "/api/v1/monitors/{id}", "monitor.read", bind(&Api::Get))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("PUT", "/api/v1/monitors/{id}", "monitor.manage", bind(&Api::Configure))));
  RETURN_IF_ERROR(router.Add(JsonRoute("GET", "/api/v1/monitors/{id}/evaluations", "monitor.read",
                                       bind(&Api::Evaluations))));
  RETURN_IF_ERROR(router.Add(
      JsonRoute("POST", "/api/v1/monitors/{id}/{action}", "monitor.manage", bind(&Api::Act))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("POST", "/api/v1/feedback", "feedback.write", bind(&Api::Feedback))));
  RETURN_IF_ERROR(router.Add(JsonRoute("GET", "/api/v1/models/{name}/versions/{version}/profile",
                                       "registry.read", bind(&Api::GetProfile))));
  RETURN_IF_ERROR(router.Add(JsonRoute("PUT", "/api/v1/models/{name}/versions/{version}/profile",
                                       "registry.write", bind(&Api::SetProfile))));
  RETURN_IF_ERROR(
      router.Add(JsonRoute("GET", "/api/v1/alerts", "monitor.read", bind(&Api::ListAlerts))));
  return core::Ok();
}

}  // namespace kervan::monitoring

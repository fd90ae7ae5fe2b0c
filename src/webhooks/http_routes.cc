// The /api/v1/webhooks routes.
#include <algorithm>

#include <fmt/format.h>

#include "webhooks/webhooks.h"

namespace kervan::webhooks {
namespace {

using http::Request;
using http::Response;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

SubscriptionId IdParam(const Request& req) {
  return SubscriptionId(req.Param("id"));
}

// The create body; unknown fields are refused.
Result<NewSubscription> ParseCreate(const Request& req) {
  ASSIGN_OR_RETURN(Json body, req.JsonBody());
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
  NewSubscription out;
  if (!r.Has("event_types")) {
    return core::InvalidArgument(
        "field \"event_types\": required (a list of event types, \"prefix.*\" or \"*\")",
        "event_types");
  }
  ASSIGN_OR_RETURN(Json types, r.OptionalArray("event_types"));
  for (size_t i = 0; i < types.size(); ++i) {
    const Json& t = types[i];
    if (!t.is_string()) {
      std::string field = fmt::format("event_types[{}]", i);
      return core::InvalidArgument(
          fmt::format("field \"{}\": must be a string, got {}", field, core::JsonTypeName(t)),
          field);
    }
    out.event_types.push_back(t.get<std::string>());
  }
  ASSIGN_OR_RETURN(out.url, r.RequiredString("url"));
  ASSIGN_OR_RETURN(auto project, r.OptionalString("project"));
  ASSIGN_OR_RETURN(auto description, r.OptionalString("description"));
  ASSIGN_OR_RETURN(auto secret, r.OptionalString("secret"));
  ASSIGN_OR_RETURN(auto active, r.OptionalBool("active"));
  RETURN_IF_ERROR(r.Finish());
  if (secret && secret->empty()) {
    // Leave "secret" out to get a generated one; an explicit "" is a mistake.
    return core::InvalidArgument(
        "field \"secret\": must not be empty (omit it to have one generated)", "secret");
  }
  out.project = project.value_or("");
  out.description = description.value_or("");
  out.secret = secret.value_or("");
  out.active = active.value_or(true);
  return out;
}

// The subscription `id`, once the caller holds `permission` in its project.
Result<Subscription> Authorized(Webhooks& w, const auth::Auth& a, const Request& req,
                                std::string_view permission) {
  ASSIGN_OR_RETURN(Subscription s, w.Get(IdParam(req)));
  RETURN_IF_ERROR(a.AuthorizeIn(req.actor, permission, s.project));
  return s;
}

Result<Json> CreateRoute(Webhooks& w, const auth::Auth& a, const Request& req) {
  RETURN_IF_ERROR(req.CheckQuery({}));
  ASSIGN_OR_RETURN(NewSubscription request, ParseCreate(req));
  RETURN_IF_ERROR(a.AuthorizeIn(req.actor, "webhook.write", request.project));
  ASSIGN_OR_RETURN(CreatedSubscription created, w.Create(std::move(request), Context(req)));
  return created.ToJson();
}

Result<Json> ListRoute(Webhooks& w, const auth::Auth& a, const Request& req) {
  RETURN_IF_ERROR(req.CheckQuery({"after", "limit"}));
  ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
  ASSIGN_OR_RETURN(
      auto list, w.List({.after_id = req.QueryOr("after", ""), .limit = static_cast<int>(limit)}));
  // Only the caller's projects (all of them with a global binding); the
  // cursor still advances past hidden ones.
  auto visible = a.ProjectsWith(req.actor, "webhook.read");
  Json items = Json::array();
  for (const auto& s : list) {
    if (!visible || (!s.project.empty() && visible->contains(s.project)))
      items.push_back(s.ToJson());
  }
  Json out = {{"items", items}};
  if (static_cast<int64_t>(list.size()) == limit)
    out["next_after"] = list.back().id.value();
  return out;
}

Result<Json> ListDeliveriesRoute(Webhooks& w, const auth::Auth& a, const Request& req) {
  RETURN_IF_ERROR(req.CheckQuery({"status", "after", "limit"}));
  RETURN_IF_ERROR(Authorized(w, a, req, "webhook.read"));
  ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
  DeliveryListQuery q{.after_id = req.QueryOr("after", ""), .limit = static_cast<int>(limit)};
  if (std::string status = req.QueryOr("status", ""); !status.empty()) {
    q.status = ParseDeliveryStatus(status);
    if (!q.status) {
      return core::InvalidArgument(
          fmt::format("query parameter \"status\": must be pending, delivered or failed, got "
                      "\"{}\"",
                      status),
          "status");
    }
  }
  ASSIGN_OR_RETURN(auto list, w.ListDeliveries(IdParam(req), q));
  Json items = Json::array();
  for (const auto& d : list)
    items.push_back(d.ToJson());
  Json out = {{"items", items}};
  if (static_cast<int64_t>(list.size()) == limit)
    out["next_after"] = list.back().id.value();
  return out;
}

}  // namespace

Status RegisterRoutes(http::Router& router, Webhooks& w, const auth::Auth& a) {
  auto add = [&](std::string method, std::string pattern, std::string permission,
                 std::function<Result<Json>(const Request&)> fn, int ok_status = 200) {
    return router.Add(
        {.method = std::move(method),
         .pattern = std::move(pattern),
         .handler = [fn = std::move(fn), ok_status](
                        const Request& req) { return Response::FromResult(fn(req), ok_status); },
         .blocking = true,
         .permission = std::move(permission)});
  };
  constexpr std::string_view kRead = "webhook.read";
  constexpr std::string_view kWrite = "webhook.write";
  auto read = std::string(kRead);
  auto write = std::string(kWrite);

  RETURN_IF_ERROR(add(
      "POST", "/api/v1/webhooks", write,
      [&w, &a](const Request& req) { return CreateRoute(w, a, req); }, 201));
  RETURN_IF_ERROR(add("GET", "/api/v1/webhooks", read,
                      [&w, &a](const Request& req) { return ListRoute(w, a, req); }));
  RETURN_IF_ERROR(
      add("GET", "/api/v1/webhooks/{id}", read, [&w, &a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        ASSIGN_OR_RETURN(Subscription s, Authorized(w, a, req, "webhook.read"));
        return s.ToJson();
      }));
  RETURN_IF_ERROR(
      add("DELETE", "/api/v1/webhooks/{id}", write, [&w, &a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        RETURN_IF_ERROR(Authorized(w, a, req, "webhook.write"));
        RETURN_IF_ERROR(w.Delete(IdParam(req), Context(req)));
        return Json{{"id", req.Param("id")}, {"deleted", true}};
      }));
  for (bool active : {false, true}) {
    RETURN_IF_ERROR(
        add("POST", active ? "/api/v1/webhooks/{id}/resume" : "/api/v1/webhooks/{id}/pause", write,
            [&w, &a, active](const Request& req) -> Result<Json> {
              RETURN_IF_ERROR(req.CheckQuery({}));
              RETURN_IF_ERROR(Authorized(w, a, req, "webhook.write"));
              ASSIGN_OR_RETURN(Subscription s, w.SetActive(IdParam(req), active, Context(req)));
              return s.ToJson();
            }));
  }
  RETURN_IF_ERROR(add(
      "POST", "/api/v1/webhooks/{id}/ping", write,
      [&w, &a](const Request& req) -> Result<Json> {
        RETURN_IF_ERROR(req.CheckQuery({}));
        RETURN_IF_ERROR(Authorized(w, a, req, "webhook.write"));
        ASSIGN_OR_RETURN(store::Event e, w.Ping(IdParam(req), Context(req)));
        return Json{{"event", e.ToJson()}};
      },
      202));
  RETURN_IF_ERROR(add("GET", "/api/v1/webhooks/{id}/deliveries", read,
                      [&w, &a](const Request& req) { return ListDeliveriesRoute(w, a, req); }));
  RETURN_IF_ERROR(add("GET", "/api/v1/webhooks/{id}/deliveries/{delivery_id}", read,
                      [&w, &a](const Request& req) -> Result<Json> {
                        RETURN_IF_ERROR(req.CheckQuery({}));
                        RETURN_IF_ERROR(Authorized(w, a, req, "webhook.read"));
                        ASSIGN_OR_RETURN(
                            Delivery d,
                            w.GetDelivery(IdParam(req), DeliveryId(req.Param("delivery_id"))));
                        return d.ToJson(/*with_attempts=*/true);
                      }));
  return core::Ok();
}

}  // namespace kervan::webhooks

#include "app/routes.h"

#include <set>

#include <fmt/format.h>

namespace kervan::app {
namespace {

namespace asio = http::asio;

using core::Json;
using core::Result;
using http::Request;
using http::Response;

constexpr std::string_view kVersion = "0.1.0";

// Rejects query parameters a route does not know, so a typo ("limt=5") is an
// error rather than silently ignored.
core::Status CheckQuery(const Request& req, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, _] : req.query) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string names;
      for (auto a : allowed)
        names += (names.empty() ? "" : ", ") + std::string(a);
      return core::InvalidArgument(fmt::format("query parameter \"{}\": unknown (allowed: {})", key,
                                               names.empty() ? "none" : names),
                                   key);
    }
  }
  return core::Ok();
}

store::CommandContext Context(const Request& req) {
  return {req.actor, req.request_id, ""};
}

Json EventsJson(const std::vector<store::Event>& events) {
  Json out = Json::array();
  for (const auto& e : events)
    out.push_back(e.ToJson());
  return out;
}

Result<store::EventQuery> EventQueryFrom(const Request& req) {
  store::EventQuery q;
  ASSIGN_OR_RETURN(q.after_seq, req.QueryInt("after", 0, 0, INT64_MAX));
  ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
  q.limit = static_cast<int>(limit);
  q.subject_kind = req.QueryOr("kind", "");
  q.subject_id = req.QueryOr("id", "");
  q.type = req.QueryOr("type", "");
  q.actor = req.QueryOr("actor", "");
  return q;
}

// ---- lifecycles and entities ----------------------------------------------

Result<Json> CreateEntity(Services& s, const Request& req) {
  RETURN_IF_ERROR(CheckQuery(req, {}));
  ASSIGN_OR_RETURN(Json body, req.JsonBody());
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
  ASSIGN_OR_RETURN(auto id, r.OptionalString("id"));
  if (id && id->empty()) {
    // Leave "id" out to get a generated one; an explicit "" is a mistake.
    return core::InvalidArgument("field \"id\": must not be empty (omit it to generate one)", "id");
  }
  ASSIGN_OR_RETURN(Json data, r.OptionalObject("data"));
  RETURN_IF_ERROR(r.Finish());
  ASSIGN_OR_RETURN(store::Entity e,
                   s.lifecycles.Create(req.Param("kind"), id.value_or(""), data, Context(req)));
  return e.ToJson();
}

Result<Json> TransitionEntity(Services& s, const Request& req) {
  RETURN_IF_ERROR(CheckQuery(req, {}));
  ASSIGN_OR_RETURN(Json body, req.JsonBody());
  ASSIGN_OR_RETURN(auto r, core::ObjectReader::Of(body));
  ASSIGN_OR_RETURN(std::string transition, r.RequiredString("transition"));
  ASSIGN_OR_RETURN(auto reason, r.OptionalString("reason"));
  ASSIGN_OR_RETURN(Json data, r.OptionalObject("data"));
  RETURN_IF_ERROR(r.Finish());
  core::TransitionRequest t{
      .transition = transition, .reason = reason.value_or(""), .request_data = &data};
  ASSIGN_OR_RETURN(store::Entity e,
                   s.lifecycles.Transition(req.Param("kind"), req.Param("id"), t, Context(req)));
  return e.ToJson();
}

Result<Json> ListEntities(Services& s, const Request& req) {
  RETURN_IF_ERROR(CheckQuery(req, {"state", "after", "limit"}));
  ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", 100, 1, 1000));
  ASSIGN_OR_RETURN(auto list, s.lifecycles.List({.kind = req.Param("kind"),
                                                 .state = req.QueryOr("state", ""),
                                                 .after_id = req.QueryOr("after", ""),
                                                 .limit = static_cast<int>(limit)}));
  Json items = Json::array();
  for (const auto& e : list)
    items.push_back(e.ToJson());
  Json out = {{"items", items}};
  if (static_cast<int64_t>(list.size()) == limit)
    out["next_after"] = list.back().id;
  return out;
}

Result<Json> EntityHistory(Services& s, const Request& req) {
  RETURN_IF_ERROR(CheckQuery(req, {"after", "limit"}));
  ASSIGN_OR_RETURN(store::Entity e, s.lifecycles.Get(req.Param("kind"), req.Param("id")));
  ASSIGN_OR_RETURN(store::EventQuery q, EventQueryFrom(req));
  q.subject_kind = e.kind;
  q.subject_id = e.id;
  ASSIGN_OR_RETURN(auto events, s.log.Read(q));
  return Json{{"entity", e.ToJson()}, {"events", EventsJson(events)}};
}

Result<Json> LifecycleJson(Services& s, const std::string& kind) {
  const core::StateMachine* m = s.lifecycles.Find(kind);
  if (m == nullptr)
    return core::NotFound(fmt::format("unknown entity kind \"{}\"", kind));
  return m->Describe();
}

// ---- events ----------------------------------------------------------------

Result<Json> ListEvents(Services& s, const Request& req) {
  RETURN_IF_ERROR(CheckQuery(req, {"after", "limit", "kind", "id", "type", "actor", "wait"}));
  ASSIGN_OR_RETURN(store::EventQuery q, EventQueryFrom(req));
  ASSIGN_OR_RETURN(int64_t wait_s, req.QueryInt("wait", 0, 0, 60));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
  std::vector<store::Event> events;
  for (;;) {
    int64_t head = s.log.head_seq();
    ASSIGN_OR_RETURN(events, s.log.Read(q));
    if (!events.empty() || wait_s == 0)
      break;
    // Long-poll: nothing matched yet; skip what we have seen and wait.
    q.after_seq = std::max(q.after_seq, head);
    if (!s.log.WaitForNewer(head, deadline))
      break;
  }
  Json out = {{"events", EventsJson(events)}, {"head_seq", s.log.head_seq()}};
  out["next_after"] = events.empty() ? q.after_seq : events.back().seq;
  return out;
}

asio::awaitable<void> StreamEvents(Services& s, asio::thread_pool& pool, const Request& req,
                                   http::SseStream& stream) {
  if (auto st = CheckQuery(req, {"after", "kind", "id", "type", "actor"}); !st) {
    stream.Fail(st.error());
    co_return;
  }
  auto q = EventQueryFrom(req);
  if (!q) {
    stream.Fail(q.error());
    co_return;
  }
  // A reconnecting EventSource sends the last id it saw; it wins over ?after.
  std::string last_id = req.Header("Last-Event-ID");
  if (!last_id.empty()) {
    char* end = nullptr;
    long long v = std::strtoll(last_id.c_str(), &end, 10);
    if (*end != '\0' || v < 0) {
      stream.Fail(core::InvalidArgument(
          fmt::format("header \"Last-Event-ID\": must be an event seq, got \"{}\"", last_id),
          "Last-Event-ID"));
      co_return;
    }
    q->after_seq = v;
  }
  q->limit = 500;
  uint64_t seen = s.commits.generation();
  while (stream.open()) {
    store::EventQuery query = *q;
    // By reference: `query` outlives the co_await, and g++ 12 corrupts a closure temporary that
    // holds strings when it is a co_await operand's argument (double free on the pool thread).
    auto events = co_await http::Offload(pool, [&s, &query] { return s.log.Read(query); });
    if (!events) {
      core::LogWarn("event stream read failed: " + events.error().message,
                    {{"event.action", "events.stream_failed"}});
      co_return;
    }
    for (const auto& e : *events) {
      if (!co_await stream.Send(std::to_string(e.seq), e.type, e.ToJson().dump()))
        co_return;
      q->after_seq = e.seq;
    }
    if (events->size() == static_cast<size_t>(q->limit))
      continue;  // more to catch up on
    if (!events->empty())
      continue;
    // Caught up: sleep until the next commit; a comment every 15 s keeps
    // proxies from closing an idle stream.
    if (!co_await stream.Wait(s.commits, std::chrono::seconds(15), &seen)) {
      if (!stream.open() || !co_await stream.Comment("keep-alive"))
        co_return;
    }
  }
}

}  // namespace

core::Status RegisterRoutes(http::Router& router, Services& s) {
  auto json_route = [&](std::string method, std::string pattern, std::string permission,
                        std::function<Result<Json>(const Request&)> fn,
                        int ok_status = 200) -> core::Status {
    return router.Add(
        {.method = std::move(method),
         .pattern = std::move(pattern),
         .handler = [fn = std::move(fn), ok_status](
                        const Request& req) { return Response::FromResult(fn(req), ok_status); },
         .blocking = true,
         .permission = std::move(permission)});
  };

  // Probes and metrics: the only routes without a permission.
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/healthz",
                              .handler =
                                  [](const Request&) {
                                    return Response::Json(200, {{"status", "ok"}});
                                  },
                              .blocking = false,
                              .public_route = true}));
  RETURN_IF_ERROR(router.Add(
      {.method = "GET",
       .pattern = "/readyz",
       .handler =
           [&s](const Request&) {
             auto current = store::MigrationsCurrent(s.db);
             if (!current) {
               return Response::Json(
                   503, {{"status", "unavailable"}, {"store", current.error().message}});
             }
             if (!*current) {
               return Response::Json(
                   503, {{"status", "unavailable"}, {"store", "migrations not applied"}});
             }
             return Response::Json(200, {{"status", "ready"},
                                         {"store", std::string(store::DialectName(s.db.dialect()))},
                                         {"head_seq", s.log.head_seq()}});
           },
       .blocking = true,
       .public_route = true}));
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/metrics",
                              .handler =
                                  [](const Request&) {
                                    return Response::Text(
                                        200, core::GlobalMetrics().Render(),
                                        "text/plain; version=0.0.4; charset=utf-8");
                                  },
                              .blocking = true,
                              .public_route = true}));

  // A small, constant, in-memory answer: also what the HTTP benchmark hits.
  RETURN_IF_ERROR(router.Add(
      {.method = "GET",
       .pattern = "/api/v1/version",
       .handler =
           [body =
                Json{{"name", "kervan"}, {"version", kVersion}, {"api", "v1"}, {"build", "release"}}
                    .dump()](const Request&) {
             return Response{.status = 200, .content_type = "application/json", .body = body};
           },
       .blocking = false,
       .permission = "system.read"}));

  RETURN_IF_ERROR(json_route("GET", "/api/v1/lifecycles", "lifecycle.read",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(CheckQuery(req, {}));
                               Json items = Json::array();
                               for (const auto* m : s.lifecycles.All())
                                 items.push_back(m->Describe());
                               return Json{{"items", items}};
                             }));
  RETURN_IF_ERROR(
      json_route("GET", "/api/v1/lifecycles/{kind}", "lifecycle.read",
                 [&s](const Request& req) { return LifecycleJson(s, req.Param("kind")); }));
  RETURN_IF_ERROR(json_route("GET", "/api/v1/entities/{kind}", "entity.read",
                             [&s](const Request& req) { return ListEntities(s, req); }));
  RETURN_IF_ERROR(json_route(
      "POST", "/api/v1/entities/{kind}", "entity.create",
      [&s](const Request& req) { return CreateEntity(s, req); }, 201));
  RETURN_IF_ERROR(json_route("GET", "/api/v1/entities/{kind}/{id}", "entity.read",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(CheckQuery(req, {}));
                               ASSIGN_OR_RETURN(
                                   auto e, s.lifecycles.Get(req.Param("kind"), req.Param("id")));
                               return e.ToJson();
                             }));
  RETURN_IF_ERROR(json_route("POST", "/api/v1/entities/{kind}/{id}/transitions",
                             "entity.transition",
                             [&s](const Request& req) { return TransitionEntity(s, req); }));
  RETURN_IF_ERROR(json_route("GET", "/api/v1/entities/{kind}/{id}/events", "event.read",
                             [&s](const Request& req) { return EntityHistory(s, req); }));

  RETURN_IF_ERROR(json_route("GET", "/api/v1/events", "event.read",
                             [&s](const Request& req) { return ListEvents(s, req); }));
  RETURN_IF_ERROR(router.AddStream(
      {.method = "GET",
       .pattern = "/api/v1/events/stream",
       .handler = [&s](const Request& req, http::SseStream& stream) -> asio::awaitable<void> {
         return StreamEvents(s, s.stream_pool, req, stream);
       },
       .permission = "event.read"}));
  RETURN_IF_ERROR(json_route("POST", "/api/v1/audit/verify", "audit.verify",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(CheckQuery(req, {}));
                               ASSIGN_OR_RETURN(auto report, s.log.Verify());
                               return report.ToJson();
                             }));
  return core::Ok();
}

}  // namespace kervan::app

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
  q.project = req.QueryOr("project", "");
  return q;
}

// The raw event log spans projects: reading it needs event.read globally, or
// in the project named by ?project= (then only that project's events).
core::Status CheckEventScope(const Services& s, const Request& req, const store::EventQuery& q) {
  auto allowed = s.auth.AuthorizeIn(req.actor, "event.read", q.project);
  if (allowed || !q.project.empty())
    return allowed;
  core::Error e = allowed.error();
  e.message += "; or pass ?project=<one of your projects>";
  return e;
}

// The entities projection carries no project: reading it needs a global
// entity.read (project members use their module's API, e.g. /api/v1/models).
core::Status CheckEntityScope(const Services& s, const Request& req) {
  return s.auth.AuthorizeIn(req.actor, "entity.read", "");
}

// ---- lifecycles and entities ----------------------------------------------

Result<Json> ListEntities(Services& s, const Request& req) {
  RETURN_IF_ERROR(req.CheckQuery({"state", "after", "limit"}));
  RETURN_IF_ERROR(CheckEntityScope(s, req));
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
  RETURN_IF_ERROR(req.CheckQuery({"after", "limit"}));
  RETURN_IF_ERROR(CheckEntityScope(s, req));
  RETURN_IF_ERROR(s.auth.AuthorizeIn(req.actor, "event.read", ""));
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
  RETURN_IF_ERROR(
      req.CheckQuery({"after", "limit", "kind", "id", "type", "actor", "project", "wait"}));
  ASSIGN_OR_RETURN(store::EventQuery q, EventQueryFrom(req));
  RETURN_IF_ERROR(CheckEventScope(s, req, q));
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

// ---- audit -------------------------------------------------------------------

Result<int64_t> TimeParam(const Request& req, const std::string& key) {
  std::string text = req.QueryOr(key, "");
  if (text.empty())
    return int64_t{0};
  auto us = core::ParseRfc3339(text);
  if (!us) {
    return core::InvalidArgument(
        fmt::format("query parameter \"{}\": \"{}\" is not an RFC 3339 time "
                    "(e.g. 2026-11-27T10:00:00Z)",
                    key, text),
        key);
  }
  return *us;
}

// GET /api/v1/audit: the event log filtered for auditors; format=jsonl is
// the export (one event per line, X-Kervan-Next-After for the next page).
http::Response Audit(Services& s, const Request& req) {
  auto run = [&]() -> Result<std::pair<std::vector<store::Event>, store::EventQuery>> {
    RETURN_IF_ERROR(req.CheckQuery(
        {"kind", "id", "actor", "type", "project", "since", "until", "after", "limit", "format"}));
    std::string format = req.QueryOr("format", "json");
    if (format != "json" && format != "jsonl") {
      return core::InvalidArgument(
          fmt::format("query parameter \"format\": must be json or jsonl, got \"{}\"", format),
          "format");
    }
    store::EventQuery q;
    ASSIGN_OR_RETURN(q.after_seq, req.QueryInt("after", 0, 0, INT64_MAX));
    ASSIGN_OR_RETURN(int64_t limit, req.QueryInt("limit", format == "jsonl" ? 10000 : 100, 1,
                                                 format == "jsonl" ? 10000 : 1000));
    q.limit = static_cast<int>(limit);
    q.subject_kind = req.QueryOr("kind", "");
    q.subject_id = req.QueryOr("id", "");
    q.actor = req.QueryOr("actor", "");
    q.project = req.QueryOr("project", "");
    std::string type = req.QueryOr("type", "");
    // "model_version.*" (or "model_version.") selects every model_version event.
    if (type.ends_with(".*"))
      q.type_prefix = type.substr(0, type.size() - 1);
    else if (type.ends_with("."))
      q.type_prefix = type;
    else
      q.type = type;
    ASSIGN_OR_RETURN(q.since_us, TimeParam(req, "since"));
    ASSIGN_OR_RETURN(q.until_us, TimeParam(req, "until"));
    if (q.since_us && q.until_us && q.until_us <= q.since_us) {
      return core::InvalidArgument("query parameter \"until\": must be after \"since\"", "until");
    }
    // A project-scoped auditor sees only its projects' events.
    if (auto projects = s.auth.ProjectsWith(req.actor, "audit.read")) {
      if (q.project.empty() || !projects->contains(q.project)) {
        return core::PermissionDenied(
            q.project.empty()
                ? fmt::format("{} holds audit.read only in some projects: pass ?project=",
                              req.actor)
                : fmt::format("{} lacks permission \"audit.read\" in project \"{}\"", req.actor,
                              q.project),
            q.project.empty() ? Json{{"permission", "audit.read"}, {"principal", req.actor}}
                              : Json{{"permission", "audit.read"},
                                     {"principal", req.actor},
                                     {"project", q.project}});
      }
    }
    ASSIGN_OR_RETURN(auto events, s.log.Read(q));
    return std::make_pair(std::move(events), q);
  };
  auto result = run();
  if (!result)
    return http::Response::FromError(result.error());
  auto& [events, q] = *result;
  int64_t next = events.empty() ? q.after_seq : events.back().seq;
  if (req.QueryOr("format", "json") == "jsonl") {
    std::string body;
    for (const auto& e : events) {
      body += e.ToJson().dump();
      body += '\n';
    }
    http::Response r = http::Response::Text(200, std::move(body), "application/x-ndjson");
    r.headers.emplace_back("X-Kervan-Next-After", std::to_string(next));
    r.headers.emplace_back("X-Kervan-Count", std::to_string(events.size()));
    return r;
  }
  Json out = {{"events", EventsJson(events)}, {"next_after", next}};
  out["complete"] = static_cast<int>(events.size()) < q.limit;
  return http::Response::Json(200, out);
}

asio::awaitable<void> StreamEvents(Services& s, asio::thread_pool& pool, const Request& req,
                                   http::SseStream& stream) {
  if (auto st = req.CheckQuery({"after", "kind", "id", "type", "actor", "project"}); !st) {
    stream.Fail(st.error());
    co_return;
  }
  auto q = EventQueryFrom(req);
  if (!q) {
    stream.Fail(q.error());
    co_return;
  }
  if (auto st = CheckEventScope(s, req, *q); !st) {
    stream.Fail(st.error());
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

core::Status CheckRoutePermissions(const http::Router& router) {
  for (const auto& r : router.Routes()) {
    if (!r.public_route && !auth::IsKnownPermission(r.permission)) {
      return core::InvalidArgument(
          fmt::format("route {} {} declares unknown permission \"{}\" (see src/auth/"
                      "permissions.cc)",
                      r.method, r.pattern, r.permission),
          "permission");
    }
  }
  return core::Ok();
}

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

  // The route table itself (read at request time, after every module added
  // its routes): for docs, the CLI and the RBAC matrix test.
  RETURN_IF_ERROR(json_route("GET", "/api/v1/routes", "self.read",
                             [&router](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(req.CheckQuery({}));
                               Json items = Json::array();
                               for (const auto& r : router.Routes()) {
                                 items.push_back({{"method", r.method},
                                                  {"pattern", r.pattern},
                                                  {"permission", r.permission},
                                                  {"public", r.public_route},
                                                  {"stream", r.stream}});
                               }
                               return Json{{"items", items}};
                             }));
  RETURN_IF_ERROR(json_route("GET", "/api/v1/lifecycles", "lifecycle.read",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(req.CheckQuery({}));
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
  RETURN_IF_ERROR(json_route("GET", "/api/v1/entities/{kind}/{id}", "entity.read",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(req.CheckQuery({}));
                               RETURN_IF_ERROR(CheckEntityScope(s, req));
                               ASSIGN_OR_RETURN(
                                   auto e, s.lifecycles.Get(req.Param("kind"), req.Param("id")));
                               return e.ToJson();
                             }));
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
  RETURN_IF_ERROR(router.Add({.method = "GET",
                              .pattern = "/api/v1/audit",
                              .handler = [&s](const Request& req) { return Audit(s, req); },
                              .blocking = true,
                              .permission = "audit.read"}));
  RETURN_IF_ERROR(json_route("POST", "/api/v1/audit/verify", "audit.verify",
                             [&s](const Request& req) -> Result<Json> {
                               RETURN_IF_ERROR(req.CheckQuery({}));
                               ASSIGN_OR_RETURN(auto report, s.log.Verify());
                               return report.ToJson();
                             }));
  return core::Ok();
}

}  // namespace kervan::app

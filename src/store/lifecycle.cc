#include "store/lifecycle.h"

#include <mutex>

#include <fmt/format.h>

namespace kervan::store {
namespace {

constexpr std::string_view kEntityColumns =
    "kind, id, state, data, created_seq, updated_seq, created_us, updated_us";

Entity EntityFromRow(const Row& r) {
  Entity e;
  e.kind = r.Text(0);
  e.id = r.Text(1);
  e.state = r.Text(2);
  e.data = Json::parse(r.Text(3), nullptr, false);
  if (e.data.is_discarded())
    e.data = Json::object();
  e.created_seq = r.Int(4);
  e.updated_seq = r.Int(5);
  e.created_us = r.Int(6);
  e.updated_us = r.Int(7);
  return e;
}

Result<std::optional<Entity>> Load(Connection& conn, const std::string& kind,
                                   const std::string& id) {
  ASSIGN_OR_RETURN(
      Rows rows,
      conn.Query(fmt::format("SELECT {} FROM entities WHERE kind = ? AND id = ?", kEntityColumns),
                 {kind, id}));
  if (rows.empty())
    return std::optional<Entity>();
  return std::optional<Entity>(EntityFromRow(rows[0]));
}

// Applies one lifecycle event to the projection. Used both by live commands
// (through the event the command is about to append) and by rebuild, so the
// two can never disagree. `seq`/`time_us` are those of the event.
Status ApplyToProjection(Connection& conn, const std::string& kind, const std::string& id,
                         const std::string& type, const Json& data, int64_t seq, int64_t time_us) {
  if (type == kind + ".created") {
    RETURN_IF_ERROR(conn.Exec(
        fmt::format("INSERT INTO entities ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", kEntityColumns),
        {kind, id, data.value("state", ""), core::CanonicalJson(data.value("data", Json::object())),
         seq, seq, time_us, time_us}));
    return core::Ok();
  }
  if (data.contains("to")) {
    RETURN_IF_ERROR(conn.Exec(
        "UPDATE entities SET state = ?, updated_seq = ?, updated_us = ? WHERE kind = ? AND id = ?",
        {data.value("to", ""), seq, time_us, kind, id}));
  }
  return core::Ok();
}

}  // namespace

Json Entity::ToJson() const {
  return {{"kind", kind},
          {"id", id},
          {"state", state},
          {"data", data},
          {"created_seq", created_seq},
          {"updated_seq", updated_seq},
          {"created_at", core::FormatRfc3339(created_us)},
          {"updated_at", core::FormatRfc3339(updated_us)}};
}

Status ValidateEntityId(const std::string& id) {
  if (id.empty() || id.size() > 200) {
    return core::InvalidArgument(
        fmt::format("field \"id\": must be 1 to 200 characters, got {}", id.size()), "id");
  }
  for (char c : id) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
              c == ':' || c == '@';
    if (!ok) {
      return core::InvalidArgument(
          fmt::format(
              "field \"id\": character '{}' is not allowed (use letters, digits, . _ - : @)", c),
          "id");
    }
  }
  if (id.find("..") != std::string::npos) {
    return core::InvalidArgument("field \"id\": must not contain \"..\"", "id");
  }
  return core::Ok();
}

Status Lifecycles::Register(core::StateMachine machine) {
  std::unique_lock lock(mu_);
  std::string kind = machine.kind();
  if (machines_.contains(kind)) {
    return core::AlreadyExists(
        fmt::format("state machine for kind \"{}\" already registered", kind));
  }
  machines_[kind] = std::make_unique<core::StateMachine>(std::move(machine));
  return core::Ok();
}

const core::StateMachine* Lifecycles::Find(const std::string& kind) const {
  std::shared_lock lock(mu_);
  auto it = machines_.find(kind);
  return it == machines_.end() ? nullptr : it->second.get();
}

std::vector<const core::StateMachine*> Lifecycles::All() const {
  std::shared_lock lock(mu_);
  std::vector<const core::StateMachine*> out;
  for (const auto& [_, m] : machines_)
    out.push_back(m.get());
  return out;
}

Result<Entity> Lifecycles::CreateIn(CommandTx& tx, const std::string& kind, std::string id,
                                    Json data, const CommandContext& ctx, Event* appended) const {
  const core::StateMachine* machine = Find(kind);
  if (machine == nullptr)
    return core::NotFound(fmt::format("unknown entity kind \"{}\"", kind));
  if (id.empty())
    id = core::NewUuidV7();
  if (data.is_null())
    data = Json::object();
  RETURN_IF_ERROR(ValidateEntityId(id));
  if (!data.is_object())
    return core::InvalidArgument("field \"data\": must be an object", "data");
  ASSIGN_OR_RETURN(auto existing, Load(tx.conn(), kind, id));
  if (existing)
    return core::AlreadyExists(fmt::format("{} \"{}\" already exists", kind, id));

  ASSIGN_OR_RETURN(Event ev,
                   tx.Append({.type = kind + ".created",
                              .subject_kind = kind,
                              .subject_id = id,
                              .actor = ctx.actor,
                              .reason = "",
                              .correlation_id = ctx.correlation_id,
                              .causation_id = ctx.causation_id,
                              .project = ctx.project,
                              .data = {{"state", machine->initial_state()}, {"data", data}}}));
  if (appended != nullptr)
    *appended = ev;
  RETURN_IF_ERROR(ApplyToProjection(tx.conn(), kind, id, ev.type,
                                    {{"state", machine->initial_state()}, {"data", data}}, ev.seq,
                                    ev.time_us));
  return Entity{kind, id, machine->initial_state(), data, ev.seq, ev.seq, ev.time_us, ev.time_us};
}

Result<Entity> Lifecycles::TransitionIn(CommandTx& tx, const std::string& kind,
                                        const std::string& id,
                                        const core::TransitionRequest& request,
                                        const CommandContext& ctx, Event* appended) const {
  const core::StateMachine* machine = Find(kind);
  if (machine == nullptr)
    return core::NotFound(fmt::format("unknown entity kind \"{}\"", kind));
  ASSIGN_OR_RETURN(auto loaded, Load(tx.conn(), kind, id));
  if (!loaded)
    return core::NotFound(fmt::format("{} \"{}\" not found", kind, id));
  Entity e = std::move(*loaded);
  ASSIGN_OR_RETURN(const core::TransitionSpec* t, machine->Check(e.state, request, e.data));

  Json data = {{"transition", t->name},
               {"from", e.state},
               {"to", t->to},
               {"data", request.request_data ? *request.request_data : Json::object()}};
  ASSIGN_OR_RETURN(Event ev, tx.Append({.type = kind + "." + t->event,
                                        .subject_kind = kind,
                                        .subject_id = id,
                                        .actor = ctx.actor,
                                        .reason = request.reason,
                                        .correlation_id = ctx.correlation_id,
                                        .causation_id = ctx.causation_id,
                                        .project = ctx.project,
                                        .data = data}));
  if (appended != nullptr)
    *appended = ev;
  RETURN_IF_ERROR(ApplyToProjection(tx.conn(), kind, id, ev.type, data, ev.seq, ev.time_us));
  e.state = t->to;
  e.updated_seq = ev.seq;
  e.updated_us = ev.time_us;
  return e;
}

Result<Entity> Lifecycles::Create(const std::string& kind, std::string id, Json data,
                                  const CommandContext& ctx) {
  Entity out;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(out, CreateIn(tx, kind, id, data, ctx));
    return core::Ok();
  }));
  return out;
}

Result<Entity> Lifecycles::Transition(const std::string& kind, const std::string& id,
                                      const core::TransitionRequest& request,
                                      const CommandContext& ctx) {
  Entity out;
  RETURN_IF_ERROR(log_.Execute([&](CommandTx& tx) -> Status {
    ASSIGN_OR_RETURN(out, TransitionIn(tx, kind, id, request, ctx));
    return core::Ok();
  }));
  return out;
}

Result<Entity> Lifecycles::Get(const std::string& kind, const std::string& id) {
  if (Find(kind) == nullptr)
    return core::NotFound(fmt::format("unknown entity kind \"{}\"", kind));
  ASSIGN_OR_RETURN(PooledConnection conn, log_.database().Acquire());
  ASSIGN_OR_RETURN(auto e, Load(*conn, kind, id));
  if (!e)
    return core::NotFound(fmt::format("{} \"{}\" not found", kind, id));
  return std::move(*e);
}

Result<std::vector<Entity>> Lifecycles::List(const EntityListQuery& q) {
  if (Find(q.kind) == nullptr) {
    return core::NotFound(fmt::format("unknown entity kind \"{}\"", q.kind));
  }
  std::string sql =
      fmt::format("SELECT {} FROM entities WHERE kind = ? AND id > ?", kEntityColumns);
  std::vector<Value> params{q.kind, q.after_id};
  if (!q.state.empty()) {
    sql += " AND state = ?";
    params.emplace_back(q.state);
  }
  sql += " ORDER BY id LIMIT ?";
  params.emplace_back(int64_t{std::clamp(q.limit, 1, 1000)});
  ASSIGN_OR_RETURN(PooledConnection conn, log_.database().Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<Entity> out;
  for (const Row& r : rows)
    out.push_back(EntityFromRow(r));
  return out;
}

Result<int64_t> Lifecycles::RebuildProjection() {
  int64_t replayed = 0;
  auto kinds = All();
  auto r = log_.Execute([&](CommandTx& tx) -> Status {
    Connection& conn = tx.conn();
    replayed = 0;
    for (const auto* m : kinds) {
      RETURN_IF_ERROR(conn.Exec("DELETE FROM entities WHERE kind = ?", {m->kind()}));
    }
    int64_t after = 0;
    for (;;) {
      ASSIGN_OR_RETURN(Rows rows,
                       conn.Query("SELECT seq, time_us, type, subject_kind, subject_id, "
                                  "data FROM events WHERE seq > ? ORDER BY seq LIMIT 2000",
                                  {after}));
      if (rows.empty())
        break;
      for (const Row& row : rows) {
        after = row.Int(0);
        std::string kind = row.Text(3);
        if (Find(kind) == nullptr)
          continue;
        Json data = Json::parse(row.Text(5), nullptr, false);
        if (data.is_discarded()) {
          return core::Internal(fmt::format("event {} has unparseable data", after));
        }
        RETURN_IF_ERROR(
            ApplyToProjection(conn, kind, row.Text(4), row.Text(2), data, row.Int(0), row.Int(1)));
        ++replayed;
      }
    }
    return core::Ok();
  });
  if (!r)
    return std::move(r).error();
  return replayed;
}

}  // namespace kervan::store

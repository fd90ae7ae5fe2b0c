// Lifecycles: entities that move through a declared state machine. Creating
// an entity or applying a transition is a command on the event log: the
// `entities` projection row and the event land in one transaction. The
// projection can be rebuilt from the log at any time and must come out the
// same. Part of store's public header (store/store.h).
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "core/core.h"
#include "store/event_log.h"

namespace kervan::store {

// Who asks, and in answer to what.
struct CommandContext {
  std::string actor;           // authenticated principal or "system:<module>"
  std::string correlation_id;  // request id
  std::string causation_id;    // event that triggered this, if automated
  std::string project;         // project the subject belongs to ("" = global)
};

struct Entity {
  std::string kind, id, state;
  Json data = Json::object();
  int64_t created_seq = 0, updated_seq = 0;
  int64_t created_us = 0, updated_us = 0;

  Json ToJson() const;  // times as RFC 3339
};

struct EntityListQuery {
  std::string kind;
  std::string state;     // empty: any
  std::string after_id;  // keyset pagination
  int limit = 100;
};

class Lifecycles {
 public:
  explicit Lifecycles(EventLog& log) : log_(log) {}

  // Declares a kind. kAlreadyExists if the kind is registered twice.
  Status Register(core::StateMachine machine);
  const core::StateMachine* Find(const std::string& kind) const;
  std::vector<const core::StateMachine*> All() const;

  // Creates an entity in its machine's initial state; event "<kind>.created"
  // with data {"state", "data"}. `id` empty: a UUIDv7 is assigned. Errors:
  // kNotFound (kind), kInvalidArgument (id), kAlreadyExists (id taken).
  Result<Entity> Create(const std::string& kind, std::string id, Json data,
                        const CommandContext& ctx);

  // Applies a named transition; event "<kind>.<transition event>" with data
  // {"transition", "from", "to", "data"} and the request's reason. Errors
  // from StateMachine::Check (409 with allowed transitions, reason required,
  // guard refusal) or kNotFound.
  Result<Entity> Transition(const std::string& kind, const std::string& id,
                            const core::TransitionRequest& request, const CommandContext& ctx);

  // Building blocks for a module's own command that also changes its own
  // tables: call inside EventLog::Execute; they append the event and update
  // the projection in that command's transaction.
  // `appended` (optional) receives the event written, e.g. to name it as
  // the causation of events that follow in the same command.
  Result<Entity> CreateIn(CommandTx& tx, const std::string& kind, std::string id, Json data,
                          const CommandContext& ctx, Event* appended = nullptr) const;
  Result<Entity> TransitionIn(CommandTx& tx, const std::string& kind, const std::string& id,
                              const core::TransitionRequest& request, const CommandContext& ctx,
                              Event* appended = nullptr) const;

  // Reads the committed projection.
  Result<Entity> Get(const std::string& kind, const std::string& id);
  Result<std::vector<Entity>> List(const EntityListQuery& query);

  // Deletes the projection rows of every registered kind and replays the
  // event log into them, in one transaction through the event log's writer
  // (so no command interleaves). Returns the number of events replayed.
  Result<int64_t> RebuildProjection();

 private:
  EventLog& log_;
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<core::StateMachine>> machines_;
};

// Ids of entities: 1..200 chars of [A-Za-z0-9._:@-], without "..".
Status ValidateEntityId(const std::string& id);

}  // namespace kervan::store

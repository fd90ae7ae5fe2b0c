// The search filter language: MLflow's search grammar (SearchUtils and its
// subclasses in mlflow/utils/search_utils.py), parsed once here so that run,
// experiment and registry searches and the rule engine agree on it.
//
//   filter     := <empty> | clause { AND clause }          AND, OR: any case
//   clause     := identifier op value | identifier IS [NOT] NULL
//   identifier := key                                       an attribute
//               | prefix "." key
//   prefix     := metrics | metric | params | param | parameters | parameter
//               | tags | tag | attributes | attribute | attr | run
//               | datasets | dataset | data                 (may be `quoted`)
//   key        := word | `any text` | "any text"           after a prefix, an
//                                                           unquoted key may
//                                                           hold dots
//   op         := = | != | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
//   value      := 'string' | "string" | number | ( 'string' { , 'string' } [,] )
//
// The parser checks what MLflow checks regardless of the searched entity:
// which operators each prefix takes and which kind of value each operator
// needs. It does not know which attributes a run, an experiment or a model
// version has: callers check attribute keys with Validate() and a Schema.
// docs/search.md describes the language and where it differs from MLflow.
//
// Everything here is a pure function of its arguments: thread-safe, no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/json.h"
#include "core/result.h"

namespace kervan::core::filter {

// kData: a field of an event's data ("data.action", "data.metrics.auc"), for
// rules and pipeline event triggers; searches of runs and models refuse it.
enum class Entity { kMetric, kParam, kTag, kAttribute, kDataset, kData };
enum class Op { kEq, kNe, kLt, kLe, kGt, kGe, kLike, kILike, kIn, kNotIn, kIsNull, kIsNotNull };

// The canonical prefix: "metrics", "params", "tags", "attributes", "datasets",
// "data".
std::string_view EntityName(Entity entity);
// The operator as written: "=", "<=", "LIKE", "NOT IN", "IS NOT NULL".
std::string_view OpText(Op op);

// One `identifier op value` clause. Exactly one kind of value is set:
//  - numeric: `number`, `text` (the literal as written, e.g. "1e3") and,
//    when the literal is an integer that fits, `int64` (exact comparisons of
//    int64 attributes such as start_time in milliseconds);
//  - a string: `text`, with quotes removed and escapes resolved;
//  - IN / NOT IN: `list`, one or more strings;
//  - IS NULL / IS NOT NULL: nothing.
struct Comparison {
  Entity entity = Entity::kAttribute;
  std::string key;  // without prefix or quotes: "mlflow.user", "my metric"
  Op op = Op::kEq;
  bool numeric = false;
  double number = 0;
  std::optional<std::int64_t> int64;
  std::string text;
  std::vector<std::string> list;
  std::size_t offset = 0;  // byte offset of the clause in the parsed text, for messages

  bool operator==(const Comparison&) const = default;
};

// Clauses in the order written; a thing matches when every clause matches.
struct Filter {
  std::vector<Comparison> clauses;
  bool empty() const { return clauses.empty(); }
};

// Parses a filter. "" or only whitespace gives an empty filter (matches all).
// Errors are kInvalidArgument with field "filter" and a message that names
// the problem and its byte offset, e.g.
//   filter: expected a comparison operator after "metrics.auc" at offset 12, found "0.9"
Result<Filter> Parse(std::string_view text);

// One order_by clause: `identifier [ASC | DESC]`, ascending by default.
struct OrderBy {
  Entity entity = Entity::kAttribute;
  std::string key;
  bool ascending = true;
};

// Parses "metrics.auc DESC", "start_time", "name ASC", "metrics.`my metric`".
// Dataset fields cannot be ordered by. Errors are kInvalidArgument with field
// "order_by".
Result<OrderBy> ParseOrderBy(std::string_view text);

// The filter as canonical text that Parse() reads back to the same clauses:
// every identifier prefixed ("attributes.name"), operators in upper case,
// strings single-quoted, numbers as written, clauses joined by " AND ".
std::string Format(const Filter& filter);

// SQL LIKE: `%` matches any run of characters (none included), `_` exactly
// one character, `\` makes the next character literal (a trailing `\` is a
// literal backslash); everything else matches itself. A character is a UTF-8
// code point; a byte that is not valid UTF-8 counts as one character.
// case_insensitive (ILIKE) folds ASCII, Latin-1, Latin Extended-A, Greek and
// Cyrillic letters; other characters compare exactly. Runs in
// O(value * pattern) time at worst, never exponential.
bool Like(std::string_view value, std::string_view pattern, bool case_insensitive);

// What an entity holds under a clause's key: nothing (absent), a number, an
// exact integer, or a string.
using FieldValue = std::variant<std::monostate, double, std::int64_t, std::string>;

// Evaluates one clause against a value, as MLflow's in-memory search does:
//  - IS NULL matches an absent value, IS NOT NULL a present one; any other
//    operator never matches an absent value (not even != or NOT IN);
//  - numbers compare numerically (int64 with an integer literal exactly; NaN
//    matches only !=); strings compare byte-wise, LIKE/ILIKE via Like();
//  - a number never matches a string clause and a string never matches a
//    numeric one.
// Datasets: MLflow matches when any of a run's dataset inputs matches; call
// this once per dataset input and combine.
bool Matches(const Comparison& clause, const FieldValue& value);

// The value at a dotted path in a JSON document ("metrics.auc" reads
// {"metrics": {"auc": 0.9}}), as data.<path> clauses see it: integers as
// int64, other numbers as double, strings as is, booleans as "true" /
// "false", null or a missing key as absent, arrays and objects as compact
// JSON text.
FieldValue JsonField(const nlohmann::json& document, std::string_view dotted_path);

// Looks up the value a clause is about (its entity and key).
using FieldLookup = std::function<FieldValue(const Comparison& clause)>;
// True when every clause matches (an empty filter matches everything).
bool Matches(const Filter& filter, const FieldLookup& lookup);

// An attribute a search accepts.
struct AttributeKey {
  std::string_view name;  // "start_time"
  bool numeric = false;   // compared with numbers (= != < <= > >=), else quoted strings
  bool in_list = false;   // string attribute that also takes IN / NOT IN, e.g. run_id
};

// What one search (runs, experiments, model versions...) accepts. Views only:
// the arrays it points at must outlive it (usually they are constexpr).
struct Schema {
  std::span<const Entity> entities;          // prefixes the search accepts
  std::span<const AttributeKey> attributes;  // attribute keys and their value kinds
};

// Checks a parsed filter against what a search accepts: each clause's prefix,
// each attribute key, whether that attribute compares with numbers or strings,
// and IN lists. kInvalidArgument with field "filter" naming the clause.
Status Validate(const Filter& filter, const Schema& schema);
// The same for an order_by clause (prefix and attribute key), field "order_by".
Status Validate(const OrderBy& order_by, const Schema& schema);

}  // namespace kervan::core::filter

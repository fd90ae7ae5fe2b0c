// Run and experiment search: core's filter language translated to SQL over
// the tracking tables (one statement per page, plus the run data loads).
//
// Metric clauses compare a run's latest value (latest_metrics), as MLflow.
// Missing values never match a comparison and sort last in either direction.
// LIKE is case-sensitive and ILIKE case-insensitive on both backends (SQLite
// runs LIKE as GLOB, ILIKE as LOWER() LIKE LOWER()).
#include <array>
#include <charconv>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "tracking/internal.h"
#include "tracking/tracking.h"

namespace kervan::tracking {
namespace {

namespace f = core::filter;
using store::Dialect;
using store::Rows;
using store::Value;

constexpr std::array kRunEntities = {f::Entity::kMetric, f::Entity::kParam, f::Entity::kTag,
                                     f::Entity::kAttribute, f::Entity::kDataset};
constexpr std::array kRunAttributes = {
    f::AttributeKey{.name = "run_id", .in_list = true},
    f::AttributeKey{.name = "run_name"},
    f::AttributeKey{.name = "status"},
    f::AttributeKey{.name = "user_id"},
    f::AttributeKey{.name = "artifact_uri"},
    f::AttributeKey{.name = "start_time", .numeric = true},
    f::AttributeKey{.name = "end_time", .numeric = true},
    f::AttributeKey{.name = "created", .numeric = true},
    f::AttributeKey{.name = "Created", .numeric = true},
    f::AttributeKey{.name = "lifecycle_stage"},
};
constexpr f::Schema kRunSchema{kRunEntities, kRunAttributes};

constexpr std::array kExperimentEntities = {f::Entity::kTag, f::Entity::kAttribute};
constexpr std::array kExperimentAttributes = {
    f::AttributeKey{.name = "name"},
    f::AttributeKey{.name = "experiment_id", .in_list = true},
    f::AttributeKey{.name = "creation_time", .numeric = true},
    f::AttributeKey{.name = "last_update_time", .numeric = true},
};
constexpr f::Schema kExperimentSchema{kExperimentEntities, kExperimentAttributes};

std::string RunColumn(std::string_view attribute) {
  if (attribute == "run_id")
    return "r.run_uuid";
  if (attribute == "run_name")
    return "r.name";
  if (attribute == "created" || attribute == "Created")
    return "r.start_time";
  return "r." + std::string(attribute);
}

// SQL LIKE pattern -> SQLite GLOB pattern (case-sensitive): % -> *, _ -> ?,
// GLOB's own metacharacters bracketed, a backslash escapes the next char.
std::string LikeToGlob(std::string_view like) {
  std::string out;
  for (size_t i = 0; i < like.size(); ++i) {
    char c = like[i];
    if (c == '\\' && i + 1 < like.size()) {
      char n = like[++i];
      if (n == '*' || n == '?' || n == '[')
        out += fmt::format("[{}]", n);
      else
        out += n;
    } else if (c == '%') {
      out += '*';
    } else if (c == '_') {
      out += '?';
    } else if (c == '*' || c == '?' || c == '[') {
      out += fmt::format("[{}]", c);
    } else {
      out += c;
    }
  }
  return out;
}

// Appends "<column> <op> <value>" for a string or numeric comparison.
void Compare(Dialect dialect, const std::string& column, const f::Comparison& c, std::string& sql,
             std::vector<Value>& params) {
  switch (c.op) {
    case f::Op::kLike:
      if (dialect == Dialect::kSqlite) {
        sql += column + " GLOB ?";
        params.emplace_back(LikeToGlob(c.text));
      } else {
        sql += column + " LIKE ?";
        params.emplace_back(c.text);
      }
      return;
    case f::Op::kILike:
      if (dialect == Dialect::kSqlite)
        sql += "LOWER(" + column + ") LIKE LOWER(?) ESCAPE '\\'";
      else
        sql += column + " ILIKE ?";
      params.emplace_back(c.text);
      return;
    case f::Op::kIn:
    case f::Op::kNotIn:
      sql += fmt::format("{} {} ({})", column, c.op == f::Op::kIn ? "IN" : "NOT IN",
                         internal::Placeholders(c.list.size()));
      for (const auto& v : c.list)
        params.emplace_back(v);
      return;
    case f::Op::kIsNull:
      sql += column + " IS NULL";
      return;
    case f::Op::kIsNotNull:
      sql += column + " IS NOT NULL";
      return;
    default:
      break;
  }
  sql += fmt::format("{} {} ?", column, f::OpText(c.op) == "!=" ? "<>" : f::OpText(c.op));
  if (c.numeric) {
    if (c.int64)
      params.emplace_back(*c.int64);
    else
      params.emplace_back(c.number);
  } else {
    params.emplace_back(c.text);
  }
}

// A clause about a key/value table (params, tags): EXISTS for comparisons,
// NOT EXISTS for IS NULL.
void KeyValueClause(Dialect dialect, std::string_view table, std::string_view owner,
                    std::string_view owner_column, const f::Comparison& c, std::string& sql,
                    std::vector<Value>& params) {
  if (c.op == f::Op::kIsNull || c.op == f::Op::kIsNotNull) {
    sql += fmt::format("{}EXISTS (SELECT 1 FROM {} x WHERE x.{} = {} AND x.key = ?)",
                       c.op == f::Op::kIsNull ? "NOT " : "", table, owner, owner_column);
    params.emplace_back(c.key);
    return;
  }
  sql += fmt::format("EXISTS (SELECT 1 FROM {} x WHERE x.{} = {} AND x.key = ? AND ", table, owner,
                     owner_column);
  params.emplace_back(c.key);
  Compare(dialect, "x.value", c, sql, params);
  sql += ")";
}

struct RunQuery {
  std::string joins;
  std::string where;
  std::vector<Value> join_params;  // bound first: the joins come before WHERE
  std::vector<Value> where_params;
  std::string order;
  // Metric key -> alias of an inner join on latest_metrics that a filter
  // clause already requires (is_nan = 0), for ordering by the same metric.
  std::map<std::string, std::string> metric_joins;
};

// Metric comparisons are inner joins on latest_metrics with the comparison
// in the join condition, so the planner may drive the query from the
// (key, value) index; ordering by a filtered metric reuses its join and then
// reads that index in order instead of sorting every match.
Status AddRunClause(Dialect dialect, const f::Comparison& c, RunQuery& q) {
  if (c.entity == f::Entity::kMetric && c.op != f::Op::kIsNull && c.op != f::Op::kIsNotNull) {
    std::string alias = fmt::format("m{}", q.metric_joins.size() + q.join_params.size());
    q.joins += fmt::format(
        " JOIN latest_metrics {0} ON {0}.run_pk = r.run_pk AND {0}.key = ? AND {0}.is_nan = 0 "
        "AND ",
        alias);
    q.join_params.emplace_back(c.key);
    Compare(dialect, alias + ".value", c, q.joins, q.join_params);
    q.metric_joins.emplace(c.key, alias);
    return core::Ok();
  }
  q.where += " AND ";
  switch (c.entity) {
    case f::Entity::kMetric:
      q.where += fmt::format(
          "{}EXISTS (SELECT 1 FROM latest_metrics m WHERE m.run_pk = r.run_pk AND m.key = ?)",
          c.op == f::Op::kIsNull ? "NOT " : "");
      q.where_params.emplace_back(c.key);
      return core::Ok();
    case f::Entity::kParam:
      KeyValueClause(dialect, "run_params", "run_pk", "r.run_pk", c, q.where, q.where_params);
      return core::Ok();
    case f::Entity::kTag:
      KeyValueClause(dialect, "run_tags", "run_pk", "r.run_pk", c, q.where, q.where_params);
      return core::Ok();
    case f::Entity::kDataset: {
      if (c.key != "name" && c.key != "digest" && c.key != "context") {
        return core::InvalidArgument(
            fmt::format("Invalid dataset key '{}': expected name, digest or context", c.key),
            "filter");
      }
      q.where += "EXISTS (SELECT 1 FROM run_inputs i WHERE i.run_pk = r.run_pk AND ";
      Compare(dialect, "i." + c.key, c, q.where, q.where_params);
      q.where += ")";
      return core::Ok();
    }
    case f::Entity::kAttribute:
      Compare(dialect, RunColumn(c.key), c, q.where, q.where_params);
      return core::Ok();
    case f::Entity::kData:  // refused by the run schema before this point
      return core::InvalidArgument("filter: data fields are not supported by run search", "filter");
  }
  return core::Ok();
}

Status AddRunOrder(const f::OrderBy& o, size_t index, RunQuery& q) {
  const char* dir = o.ascending ? "ASC" : "DESC";
  if (!q.order.empty())
    q.order += ", ";
  if (o.entity == f::Entity::kAttribute) {
    q.order += fmt::format("{} {}", RunColumn(o.key), dir);
    return core::Ok();
  }
  std::string alias = fmt::format("o{}", index);
  if (o.entity == f::Entity::kMetric) {
    if (auto it = q.metric_joins.find(o.key); it != q.metric_joins.end()) {
      q.order += fmt::format("{}.value {}", it->second, dir);
    } else {
      q.joins += fmt::format(
          " LEFT JOIN latest_metrics {0} ON {0}.run_pk = r.run_pk AND {0}.key = ?", alias);
      q.join_params.emplace_back(o.key);
      // MLflow's order in both directions: numbers, then NaN, then missing.
      q.order += fmt::format(
          "CASE WHEN {0}.run_pk IS NULL THEN 2 WHEN {0}.is_nan = 1 THEN 1 ELSE 0 END, {0}.value "
          "{1}",
          alias, dir);
    }
    return core::Ok();
  }
  if (o.entity == f::Entity::kParam || o.entity == f::Entity::kTag) {
    q.joins += fmt::format(" LEFT JOIN {1} {0} ON {0}.run_pk = r.run_pk AND {0}.key = ?", alias,
                           o.entity == f::Entity::kParam ? "run_params" : "run_tags");
    q.join_params.emplace_back(o.key);
    q.order +=
        fmt::format("CASE WHEN {0}.value IS NULL THEN 1 ELSE 0 END, {0}.value {1}", alias, dir);
    return core::Ok();
  }
  return core::InvalidArgument("Invalid order_by: datasets cannot be ordered by", "order_by");
}

Result<int64_t> ExperimentIdValue(const std::string& id) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
  if (id.empty() || ec != std::errc() || end != id.data() + id.size()) {
    return core::InvalidArgument(
        fmt::format("Invalid value \"{}\" for parameter 'experiment_ids': experiment ids are "
                    "integers",
                    id),
        "experiment_ids");
  }
  return v;
}

std::string LifecycleWhere(ViewType view, std::string_view column) {
  switch (view) {
    case ViewType::kActiveOnly:
      return fmt::format(" AND {} = 'active'", column);
    case ViewType::kDeletedOnly:
      return fmt::format(" AND {} = 'deleted'", column);
    case ViewType::kAll:
      break;
  }
  return "";
}

Status CheckMaxResults(int64_t max_results) {
  if (max_results < 1 || max_results > kMaxSearchResults) {
    return core::InvalidArgument(
        fmt::format("Invalid value {} for parameter 'max_results' supplied. It must be between 1 "
                    "and {}.",
                    max_results, kMaxSearchResults),
        "max_results");
  }
  return core::Ok();
}

}  // namespace

Result<SearchRunsResult> Tracking::SearchRuns(const SearchRunsRequest& request) {
  RETURN_IF_ERROR(CheckMaxResults(request.max_results));
  ASSIGN_OR_RETURN(f::Filter filter, f::Parse(request.filter));
  RETURN_IF_ERROR(f::Validate(filter, kRunSchema));
  std::vector<f::OrderBy> order_by;
  for (const auto& text : request.order_by) {
    ASSIGN_OR_RETURN(f::OrderBy o, f::ParseOrderBy(text));
    RETURN_IF_ERROR(f::Validate(o, kRunSchema));
    order_by.push_back(std::move(o));
  }
  SearchRunsResult result;
  if (request.experiment_ids.empty())
    return result;

  const Dialect dialect = db_.dialect();
  RunQuery q;
  std::vector<Value> experiment_ids;
  for (const auto& id : request.experiment_ids) {
    ASSIGN_OR_RETURN(int64_t v, ExperimentIdValue(id));
    experiment_ids.emplace_back(v);
  }
  q.where = fmt::format("r.experiment_id IN ({})", internal::Placeholders(experiment_ids.size()));
  q.where_params = experiment_ids;
  q.where += LifecycleWhere(request.view, "r.lifecycle_stage");
  for (const auto& c : filter.clauses)
    RETURN_IF_ERROR(AddRunClause(dialect, c, q));
  bool by_start_time = false;
  for (size_t i = 0; i < order_by.size(); ++i) {
    RETURN_IF_ERROR(AddRunOrder(order_by[i], i, q));
    by_start_time |=
        order_by[i].entity == f::Entity::kAttribute && RunColumn(order_by[i].key) == "r.start_time";
  }
  // MLflow's tie-breakers: start_time DESC (unless ordered by it), run_uuid.
  if (!by_start_time)
    q.order += q.order.empty() ? "r.start_time DESC" : ", r.start_time DESC";
  q.order += ", r.run_uuid ASC";

  // internal::kRunColumns, qualified for the joins: "r.run_pk, r.run_uuid, ...".
  std::string columns = "r.";
  for (char c : internal::kRunColumns)
    columns += c == ' ' ? std::string_view(" r.") : std::string_view(&c, 1);
  std::string sql = fmt::format("SELECT {} FROM runs r{} WHERE {} ORDER BY {} LIMIT ? OFFSET ?",
                                columns, q.joins, q.where, q.order);
  std::vector<Value> params = q.join_params;
  params.insert(params.end(), q.where_params.begin(), q.where_params.end());
  params.emplace_back(request.max_results);
  params.emplace_back(request.offset);

  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  std::vector<internal::RunRow> run_rows;
  run_rows.reserve(rows.size());
  for (const auto& row : rows)
    run_rows.push_back(internal::RunFromRow(row));
  ASSIGN_OR_RETURN(result.runs, internal::LoadRunData(*conn, std::move(run_rows), &db_));
  if (static_cast<int64_t>(result.runs.size()) == request.max_results)
    result.next_offset = request.offset + request.max_results;
  return result;
}

Result<SearchExperimentsResult> Tracking::SearchExperiments(
    const SearchExperimentsRequest& request) {
  RETURN_IF_ERROR(CheckMaxResults(request.max_results));
  ASSIGN_OR_RETURN(f::Filter filter, f::Parse(request.filter));
  RETURN_IF_ERROR(f::Validate(filter, kExperimentSchema));
  const Dialect dialect = db_.dialect();
  std::string where = "1 = 1" + LifecycleWhere(request.view, "e.lifecycle_stage");
  std::vector<Value> params;
  if (request.projects) {
    if (request.projects->empty())
      return SearchExperimentsResult{};
    where +=
        fmt::format(" AND e.project IN ({})", internal::Placeholders(request.projects->size()));
    for (const auto& p : *request.projects)
      params.emplace_back(p);
  }
  for (const auto& c : filter.clauses) {
    where += " AND ";
    if (c.entity == f::Entity::kTag) {
      KeyValueClause(dialect, "experiment_tags", "experiment_id", "e.experiment_id", c, where,
                     params);
    } else if (c.key == "experiment_id") {
      // Ids are integers in the table and strings on the wire.
      Compare(dialect, "CAST(e.experiment_id AS TEXT)", c, where, params);
    } else {
      Compare(dialect, "e." + c.key, c, where, params);
    }
  }
  std::string order;
  bool by_id = false;
  for (const auto& text : request.order_by) {
    ASSIGN_OR_RETURN(f::OrderBy o, f::ParseOrderBy(text));
    RETURN_IF_ERROR(f::Validate(o, kExperimentSchema));
    if (o.entity != f::Entity::kAttribute) {
      return core::InvalidArgument(
          fmt::format("Invalid order_by clause '{}': experiments can be ordered by name, "
                      "experiment_id, creation_time or last_update_time",
                      text),
          "order_by");
    }
    if (!order.empty())
      order += ", ";
    order += fmt::format("e.{} {}", o.key, o.ascending ? "ASC" : "DESC");
    by_id |= o.key == "experiment_id";
  }
  // MLflow's default: creation_time DESC; experiment_id breaks ties.
  if (order.empty())
    order = "e.creation_time DESC";
  if (!by_id)
    order += ", e.experiment_id ASC";
  std::string columns;
  for (std::string_view c : {"experiment_id", "name", "artifact_location", "lifecycle_stage",
                             "creation_time", "last_update_time", "project"}) {
    columns += columns.empty() ? "e." : ", e.";
    columns += c;
  }
  std::string sql = fmt::format(
      "SELECT {} FROM experiments e WHERE {} ORDER BY {} LIMIT ? OFFSET ?", columns, where, order);
  params.emplace_back(request.max_results);
  params.emplace_back(request.offset);
  ASSIGN_OR_RETURN(auto conn, db_.Acquire());
  ASSIGN_OR_RETURN(Rows rows, conn->Query(sql, params));
  SearchExperimentsResult result;
  for (const auto& row : rows)
    result.experiments.push_back(internal::ExperimentFromRow(row));
  RETURN_IF_ERROR(internal::LoadExperimentTags(*conn, result.experiments));
  if (static_cast<int64_t>(result.experiments.size()) == request.max_results)
    result.next_offset = request.offset + request.max_results;
  return result;
}

}  // namespace kervan::tracking

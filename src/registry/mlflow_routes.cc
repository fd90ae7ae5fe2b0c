// The MLflow Model Registry REST API 2.0 (mlflow/protos/model_registry.proto)
// over Kervan's registry: registered-models/... and model-versions/... under
// /api/2.0/mlflow and /ajax-api/2.0/mlflow. docs/registry.md "MLflow model
// registry" describes the mapping and where Kervan differs from MLflow.
//
// Every handler checks its permission in the model's project (the access
// guard only knows the caller holds it somewhere); searches only see the
// projects the caller can read.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include "registry/registry.h"
#include "tracking/tracking.h"

namespace kervan::registry {
namespace {

namespace mlflow = tracking::mlflow;
namespace filter = core::filter;
using http::Request;

// Reasons recorded in the events when the MLflow request gives none.
constexpr std::string_view kAliasSetReason = "set through the MLflow API";
constexpr std::string_view kAliasDeletedReason = "deleted through the MLflow API";
constexpr std::string_view kDeletedReason = "deleted through the MLflow API";

// MLflow's limits (mlflow/store/model_registry/__init__.py, utils/validation.py).
constexpr int64_t kModelsDefaultResults = 100;
constexpr int64_t kModelsMaxResults = 1000;
constexpr int64_t kVersionsMaxResults = 200000;  // also the proto's default
constexpr size_t kMaxTagKey = 250;
constexpr size_t kMaxTagValue = 5000;

store::CommandContext Context(const Request& req) {
  return {.actor = req.actor, .correlation_id = req.request_id};
}

int64_t Millis(int64_t us) {
  return us / 1000;
}

core::Error ModelNotFound(const std::string& name) {
  return core::NotFound(fmt::format("Registered Model with name={} not found", name));
}

core::Error VersionNotFound(const std::string& name, int64_t version) {
  return core::NotFound(
      fmt::format("Model Version (name={}, version={}) not found", name, version));
}

// The request's reason ("reason", or "comment" as Databricks' transition
// requests call it), else `def`.
std::string ReasonOr(const Json& args, std::string_view def) {
  for (std::string_view key : {"reason", "comment"}) {
    std::string r = mlflow::OptionalString(args, key);
    if (!core::IsBlankReason(r))
      return r;
  }
  return std::string(def);
}

Result<int64_t> VersionArg(const Json& args) {
  ASSIGN_OR_RETURN(std::string text, mlflow::RequiredString(args, "version"));
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1) {
    return core::InvalidArgument(
        fmt::format("Invalid value '{}' for parameter 'version' supplied: a model version is a "
                    "positive integer",
                    text),
        "version");
  }
  return v;
}

Result<bool> BoolArg(const Json& args, std::string_view field) {
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return false;
  if (it->is_boolean())
    return it->get<bool>();
  if (it->is_string()) {
    std::string s = it->get<std::string>();
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (s == "true")
      return true;
    if (s == "false")
      return false;
  }
  return core::InvalidArgument(
      fmt::format("Invalid value {} for parameter '{}' supplied: expected true or false",
                  it->dump(), field),
      std::string(field));
}

Status CheckTag(const std::string& key, const std::string& value, const std::string& field) {
  if (key.empty() || key.size() > kMaxTagKey) {
    return core::InvalidArgument(
        fmt::format("Invalid value for parameter '{}': tag keys must be 1-{} characters, got {}",
                    field, kMaxTagKey, key.size()),
        field);
  }
  if (value.size() > kMaxTagValue) {
    return core::InvalidArgument(
        fmt::format("Invalid value for parameter '{}': tag values are at most {} characters, "
                    "got {}",
                    field, kMaxTagValue, value.size()),
        field);
  }
  return core::Ok();
}

// [{"key", "value"}] -> map (a later key wins, as MLflow's dict).
Result<std::map<std::string, std::string>> TagList(const Json& args, std::string_view field) {
  std::map<std::string, std::string> out;
  auto it = args.find(field);
  if (it == args.end() || it->is_null())
    return out;
  if (!it->is_array()) {
    return core::InvalidArgument(
        fmt::format("Invalid value for parameter '{}': expected a list of {{key, value}}", field),
        std::string(field));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& item = (*it)[i];
    std::string name = fmt::format("{}[{}]", field, i);
    if (!item.is_object())
      return core::InvalidArgument(fmt::format("{}: expected {{key, value}}", name), name);
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(item, "key"));
    auto v = item.find("value");
    std::string value;
    if (v != item.end() && v->is_string())
      value = v->get<std::string>();
    else if (v != item.end() && !v->is_null())
      return core::InvalidArgument(fmt::format("{}.value: expected a string", name), name);
    RETURN_IF_ERROR(CheckTag(key, value, name));
    out[key] = value;
  }
  return out;
}

// MLflow reserves "v<digits>" alias names (they read as version references).
Status CheckAliasName(const std::string& alias) {
  if (alias.size() > 1 && (alias[0] == 'v' || alias[0] == 'V') &&
      std::all_of(alias.begin() + 1, alias.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; })) {
    return core::InvalidArgument(
        fmt::format("Invalid value for parameter 'alias': version alias name '{}' is reserved",
                    alias),
        "alias");
  }
  return ValidateAliasName(alias, "alias");
}

Result<std::string> StageArg(const std::string& text) {
  auto stage = CanonicalStage(text);
  if (!stage) {
    return core::InvalidArgument(
        fmt::format("Invalid Model Version stage: {}. Value must be one of None, Staging, "
                    "Production, Archived.",
                    text),
        "stage");
  }
  return *stage;
}

// ---- JSON shapes (MLflow's ModelVersion and RegisteredModel messages) ----

Json KeyValueTags(const std::map<std::string, std::string>& tags) {
  return mlflow::KeyValues(
      std::vector<std::pair<std::string, std::string>>(tags.begin(), tags.end()));
}

// Unset and empty fields are left out, as MLflow's server leaves them out.
Json VersionJson(const ModelVersion& v) {
  Json j = {{"name", v.model},
            {"version", std::to_string(v.version)},
            {"creation_timestamp", Millis(v.created_us)},
            {"last_updated_timestamp", Millis(v.updated_us)}};
  if (!v.created_by.empty())
    j["user_id"] = v.created_by;
  j["current_stage"] = v.stage;
  if (!v.description.empty())
    j["description"] = v.description;
  std::string source = v.source.empty() ? v.artifact_uri : v.source;
  if (!source.empty())
    j["source"] = source;
  if (!v.source_run_id.empty())
    j["run_id"] = v.source_run_id;
  // Registration is complete once the request returns; the lifecycle state
  // the gate decided is Kervan's own and rides along in status_message.
  j["status"] = "READY";
  j["status_message"] = "kervan state: " + v.state;
  if (!v.tags.empty())
    j["tags"] = KeyValueTags(v.tags);
  if (!v.run_link.empty())
    j["run_link"] = v.run_link;
  if (!v.aliases.empty())
    j["aliases"] = v.aliases;
  return j;
}

Json ModelJson(const RegisteredModel& m, const std::vector<ModelVersion>& latest) {
  Json j = {{"name", m.name},
            {"creation_timestamp", Millis(m.created_us)},
            {"last_updated_timestamp", Millis(m.updated_us)}};
  if (!m.description.empty())
    j["description"] = m.description;
  if (!latest.empty()) {
    Json versions = Json::array();
    for (const auto& v : latest)
      versions.push_back(VersionJson(v));
    j["latest_versions"] = std::move(versions);
  }
  if (!m.tags.empty())
    j["tags"] = KeyValueTags(m.tags);
  if (!m.aliases.empty()) {
    Json aliases = Json::array();
    for (const auto& [alias, version] : m.aliases)
      aliases.push_back({{"alias", alias}, {"version", std::to_string(version)}});
    j["aliases"] = std::move(aliases);
  }
  return j;
}

// ---- searches ----

constexpr filter::Entity kSearchEntities[] = {filter::Entity::kAttribute, filter::Entity::kTag};
constexpr filter::AttributeKey kModelAttributes[] = {{.name = "name"}};
constexpr filter::AttributeKey kVersionAttributes[] = {{.name = "name"},
                                                       {.name = "version_number", .numeric = true},
                                                       {.name = "run_id", .in_list = true},
                                                       {.name = "source_path"}};

Result<filter::Filter> ParseFilter(const Json& args, const filter::Schema& schema) {
  std::string text = mlflow::OptionalString(args, "filter");
  ASSIGN_OR_RETURN(filter::Filter f, filter::Parse(text));
  RETURN_IF_ERROR(filter::Validate(f, schema));
  // What MLflow's registry stores compare (sqlalchemy_store.py): strings and
  // tags with = != LIKE ILIKE, run_id also IN, version_number numerically.
  for (const auto& c : f.clauses) {
    bool ok = false;
    switch (c.op) {
      case filter::Op::kEq:
      case filter::Op::kNe:
        ok = true;
        break;
      case filter::Op::kLike:
      case filter::Op::kILike:
        ok = !c.numeric;
        break;
      case filter::Op::kIn:
        ok = c.entity == filter::Entity::kAttribute && c.key == "run_id";
        break;
      case filter::Op::kLt:
      case filter::Op::kLe:
      case filter::Op::kGt:
      case filter::Op::kGe:
        ok = c.numeric;
        break;
      case filter::Op::kNotIn:
      case filter::Op::kIsNull:
      case filter::Op::kIsNotNull:
        break;
    }
    if (!ok) {
      return core::InvalidArgument(
          fmt::format("Invalid comparator for {} '{}': {}",
                      c.entity == filter::Entity::kTag ? "tag" : "attribute", c.key,
                      filter::OpText(c.op)),
          "filter");
    }
  }
  return f;
}

Result<std::vector<filter::OrderBy>> ParseOrderBy(const Json& args,
                                                  std::initializer_list<std::string_view> keys,
                                                  std::string_view valid) {
  ASSIGN_OR_RETURN(std::vector<std::string> clauses, mlflow::StringList(args, "order_by"));
  std::vector<filter::OrderBy> out;
  std::vector<std::string> seen;
  for (const auto& text : clauses) {
    ASSIGN_OR_RETURN(filter::OrderBy o, filter::ParseOrderBy(text));
    bool known = o.entity == filter::Entity::kAttribute &&
                 std::find(keys.begin(), keys.end(), o.key) != keys.end();
    if (!known) {
      return core::InvalidArgument(
          fmt::format("Invalid order by key '{}' specified. Valid keys are {}", o.key, valid),
          "order_by");
    }
    std::string field = o.key == "timestamp" ? "last_updated_timestamp" : o.key;
    if (std::find(seen.begin(), seen.end(), field) != seen.end()) {
      return core::InvalidArgument(
          fmt::format("`order_by` contains duplicate fields: {}", Json(clauses).dump()),
          "order_by");
    }
    seen.push_back(field);
    out.push_back(std::move(o));
  }
  return out;
}

Result<int64_t> MaxResults(const Json& args, int64_t def, int64_t max) {
  ASSIGN_OR_RETURN(auto n, mlflow::OptionalInt64(args, "max_results"));
  int64_t v = n.value_or(def);
  if (v > max) {
    return core::InvalidArgument(
        fmt::format("Invalid value for request parameter max_results. It must be at most {}, "
                    "but got value {}",
                    max, v),
        "max_results");
  }
  if (v < 1) {
    return core::InvalidArgument(
        fmt::format("Invalid value for max_results. It must be a positive integer, but got {}", v),
        "max_results");
  }
  return v;
}

Result<int64_t> PageOffset(const Json& args) {
  std::string token = mlflow::OptionalString(args, "page_token");
  if (token.empty())
    return 0;
  return mlflow::DecodePageToken(token);
}

// ---- sources ----

// "s3", "runs", "file"...; "" for a plain path (and for "C:\..." drives).
std::string SchemeOf(std::string_view uri) {
  size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon < 2)
    return "";
  for (size_t i = 0; i < colon; ++i) {
    char c = uri[i];
    bool ok = std::isalpha(static_cast<unsigned char>(c)) != 0 ||
              (i > 0 && (std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '+' || c == '-' ||
                         c == '.'));
    if (!ok)
      return "";
  }
  std::string scheme(uri.substr(0, colon));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return scheme;
}

// MLflow refuses sources whose path walks elsewhere ("..", "." segments,
// NUL), also when percent-encoded (handlers.py
// _validate_non_local_source_contains_relative_paths).
Status CheckSourcePath(const std::string& source) {
  std::string decoded = source;
  for (int i = 0; i < 8; ++i) {
    std::string next = http::PercentDecode(decoded, /*plus_is_space=*/true);
    if (next == decoded)
      break;
    decoded = std::move(next);
  }
  bool bad = decoded.find('\0') != std::string::npos;
  size_t start = 0;
  while (!bad && start <= decoded.size()) {
    size_t end = decoded.find('/', start);
    if (end == std::string::npos)
      end = decoded.size();
    std::string_view segment(decoded.data() + start, end - start);
    bad = segment == ".." || segment == ".";
    start = end + 1;
  }
  if (bad) {
    return core::InvalidArgument(
        fmt::format("Invalid model version source: '{}'. If supplying a source as an http, "
                    "https, local file path, ftp, objectstore, or mlflow-artifacts uri, an "
                    "absolute path must be provided without relative path references present. "
                    "Please provide an absolute path.",
                    source),
        "source");
  }
  return core::Ok();
}

// The filesystem path of a local source: "file:///x" and "file:/x" -> "/x".
std::string LocalPath(const std::string& uri) {
  if (SchemeOf(uri) != "file")
    return uri;
  std::string rest = uri.substr(5);
  if (rest.rfind("//", 0) == 0) {
    size_t slash = rest.find('/', 2);  // file://host/path: the host is dropped
    rest = slash == std::string::npos ? "/" : rest.substr(slash);
  }
  return rest;
}

struct ResolvedSource {
  std::string artifact_uri;
  std::string run_id;
};

class Api {
 public:
  Api(Registry& registry, tracking::Tracking* tracking, const auth::Auth& auth)
      : registry_(registry), tracking_(tracking), auth_(auth) {}

  // The model named by args "name", once the caller holds `permission` in
  // its project.
  Result<RegisteredModel> Model(const Request& req, const Json& args, std::string_view permission) {
    ASSIGN_OR_RETURN(std::string name, mlflow::RequiredString(args, "name"));
    return ModelNamed(req, name, permission);
  }

  Result<RegisteredModel> ModelNamed(const Request& req, const std::string& name,
                                     std::string_view permission) {
    auto m = registry_.GetModel(name);
    if (!m) {
      if (m.error().code == core::ErrorCode::kNotFound)
        return ModelNotFound(name);
      return std::move(m).error();
    }
    RETURN_IF_ERROR(auth_.Authorize(req.actor, permission, m->project));
    return std::move(m).value();
  }

  // The version named by args "name" and "version".
  Result<ModelVersion> Version(const Request& req, const Json& args, std::string_view permission) {
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, permission));
    ASSIGN_OR_RETURN(int64_t version, VersionArg(args));
    auto v = registry_.GetVersion(m.name, version);
    if (!v) {
      if (v.error().code == core::ErrorCode::kNotFound)
        return VersionNotFound(m.name, version);
      return std::move(v).error();
    }
    return std::move(v).value();
  }

  Result<Json> ModelResponse(const std::string& name) {
    ASSIGN_OR_RETURN(RegisteredModel m, registry_.GetModel(name));
    ASSIGN_OR_RETURN(auto latest, registry_.LatestVersions(name, {}));
    return Json{{"registered_model", ModelJson(m, latest)}};
  }

  // --- registered models ---

  Result<Json> CreateModel(const Request& req, const Json& args) {
    CreateModelRequest c;
    ASSIGN_OR_RETURN(c.name, mlflow::RequiredString(args, "name"));
    RETURN_IF_ERROR(ValidateModelName(c.name, "name"));
    ASSIGN_OR_RETURN(c.tags, TagList(args, "tags"));
    c.description = mlflow::OptionalString(args, "description");
    c.project = "default";
    if (auto it = c.tags.find(std::string(tracking::kProjectTag)); it != c.tags.end()) {
      c.project = it->second;
      std::string field = fmt::format("tags.{}", tracking::kProjectTag);
      RETURN_IF_ERROR(auth::ValidateProjectName(c.project, field));
      if (!auth_.GetProject(c.project)) {
        return core::InvalidArgument(
            fmt::format("Invalid value for parameter '{}': project \"{}\" does not exist", field,
                        c.project),
            field);
      }
    }
    RETURN_IF_ERROR(auth_.Authorize(req.actor, "registry.write", c.project));
    auto created = registry_.CreateModel(c, Context(req));
    if (!created) {
      if (created.error().code == core::ErrorCode::kAlreadyExists) {
        return core::AlreadyExists(
            fmt::format("Registered Model (name={}) already exists.", c.name));
      }
      return std::move(created).error();
    }
    return Json{{"registered_model", ModelJson(*created, {})}};
  }

  Result<Json> GetModel(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.read"));
    return ModelResponse(m.name);
  }

  Result<Json> RenameModel(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string new_name, mlflow::RequiredString(args, "new_name"));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.write"));
    auto renamed = registry_.RenameModel(m.name, new_name, Context(req));
    if (!renamed) {
      if (renamed.error().code == core::ErrorCode::kAlreadyExists) {
        return core::AlreadyExists(
            fmt::format("Registered Model (name={}) already exists.", new_name));
      }
      return std::move(renamed).error();
    }
    return ModelResponse(new_name);
  }

  Result<Json> UpdateModel(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.write"));
    // As MLflow: an update without a description clears it.
    std::string description = mlflow::OptionalString(args, "description");
    RETURN_IF_ERROR(registry_.UpdateModel(m.name, description, std::nullopt, Context(req)));
    return ModelResponse(m.name);
  }

  Result<Json> DeleteModel(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.configure"));
    RETURN_IF_ERROR(registry_.DeleteModel(m.name, ReasonOr(args, kDeletedReason), Context(req)));
    return Json::object();
  }

  Result<Json> SearchModels(const Request& req, const Json& args) {
    ModelSearchRequest s;
    ASSIGN_OR_RETURN(s.filter, ParseFilter(args, {kSearchEntities, kModelAttributes}));
    ASSIGN_OR_RETURN(s.max_results, MaxResults(args, kModelsDefaultResults, kModelsMaxResults));
    ASSIGN_OR_RETURN(
        s.order_by,
        ParseOrderBy(args, {"name", "timestamp", "last_updated_timestamp", "creation_timestamp"},
                     "'['name', 'last_updated_timestamp', 'creation_timestamp']'"));
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    s.projects = auth_.ProjectsWith(req.actor, "registry.read");
    ASSIGN_OR_RETURN(auto page, registry_.SearchModels(s));
    Json out = Json::object();
    if (!page.items.empty()) {
      Json models = Json::array();
      for (const auto& m : page.items) {
        auto latest = registry_.LatestVersions(m.name, {});
        if (!latest && latest.error().code != core::ErrorCode::kNotFound)
          return std::move(latest).error();
        models.push_back(ModelJson(m, latest ? *latest : std::vector<ModelVersion>{}));
      }
      out["registered_models"] = std::move(models);
    }
    if (page.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*page.next_offset);
    return out;
  }

  Result<Json> GetLatestVersions(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::vector<std::string> requested, mlflow::StringList(args, "stages"));
    std::vector<std::string> stages;
    for (const auto& s : requested) {
      ASSIGN_OR_RETURN(std::string stage, StageArg(s));
      stages.push_back(std::move(stage));
    }
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.read"));
    ASSIGN_OR_RETURN(auto latest, registry_.LatestVersions(m.name, stages));
    Json out = Json::object();
    if (!latest.empty()) {
      Json versions = Json::array();
      for (const auto& v : latest)
        versions.push_back(VersionJson(v));
      out["model_versions"] = std::move(versions);
    }
    return out;
  }

  Result<Json> SetModelTag(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    std::string value = mlflow::OptionalString(args, "value");
    RETURN_IF_ERROR(CheckTag(key, value, "key"));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.write"));
    if (key == tracking::kProjectTag && value != m.project) {
      return core::InvalidArgument(
          fmt::format("Invalid value for parameter 'value': tag \"{}\" names the model's project "
                      "(\"{}\"), which is fixed at creation",
                      key, m.project),
          "value");
    }
    RETURN_IF_ERROR(registry_.SetModelTag(m.name, key, value, Context(req)));
    return Json::object();
  }

  Result<Json> DeleteModelTag(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.write"));
    if (key == tracking::kProjectTag && m.tags.contains(key)) {
      return core::InvalidArgument(
          fmt::format("Invalid value for parameter 'key': tag \"{}\" names the model's project "
                      "(\"{}\") and cannot be deleted",
                      key, m.project),
          "key");
    }
    RETURN_IF_ERROR(registry_.DeleteModelTag(m.name, key, Context(req)));
    return Json::object();
  }

  // --- aliases ---

  Result<Json> SetAlias(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string alias, mlflow::RequiredString(args, "alias"));
    RETURN_IF_ERROR(CheckAliasName(alias));
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.alias"));
    if (std::find(v.aliases.begin(), v.aliases.end(), alias) != v.aliases.end())
      return Json::object();  // already there: nothing to record
    RETURN_IF_ERROR(registry_.SetAlias(v.model, alias, v.version, ReasonOr(args, kAliasSetReason),
                                       Context(req)));
    return Json::object();
  }

  Result<Json> DeleteAlias(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string alias, mlflow::RequiredString(args, "alias"));
    RETURN_IF_ERROR(CheckAliasName(alias));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.alias"));
    if (!m.aliases.contains(alias))
      return Json::object();  // MLflow: deleting an absent alias is not an error
    RETURN_IF_ERROR(
        registry_.DeleteAlias(m.name, alias, ReasonOr(args, kAliasDeletedReason), Context(req)));
    return Json::object();
  }

  Result<Json> GetAlias(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string alias, mlflow::RequiredString(args, "alias"));
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.read"));
    auto it = m.aliases.find(alias);
    if (it == m.aliases.end()) {
      return core::InvalidArgument(fmt::format("Registered model alias {} not found.", alias),
                                   "alias");
    }
    ASSIGN_OR_RETURN(ModelVersion v, registry_.GetVersion(m.name, it->second));
    return Json{{"model_version", VersionJson(v)}};
  }

  // --- model versions ---

  // Where `source` points, and the run it names (see docs/registry.md).
  Result<ResolvedSource> Resolve(const Request& req, const std::string& source,
                                 const std::string& run_id) {
    std::string scheme = SchemeOf(source);
    if (scheme == "runs") {
      // runs:/<run_id>/<path>
      std::string rest = source.substr(5);
      while (!rest.empty() && rest.front() == '/')
        rest.erase(0, 1);
      size_t slash = rest.find('/');
      std::string id = rest.substr(0, slash);
      std::string path = slash == std::string::npos ? "" : rest.substr(slash + 1);
      while (!path.empty() && path.back() == '/')
        path.pop_back();
      if (id.empty()) {
        return core::InvalidArgument(
            fmt::format("Invalid model version source: '{}': a runs:/ URI is "
                        "runs:/<run_id>/<path>",
                        source),
            "source");
      }
      if (!run_id.empty() && run_id != id) {
        return core::InvalidArgument(
            fmt::format("Invalid value for parameter 'run_id': \"{}\" differs from the run "
                        "\"{}\" named by source '{}'",
                        run_id, id, source),
            "run_id");
      }
      RETURN_IF_ERROR(CheckSourcePath(path));
      if (tracking_ == nullptr) {
        return core::FailedPrecondition(fmt::format(
            "source '{}' names a run, but this server has no tracking module to resolve it",
            source));
      }
      ASSIGN_OR_RETURN(tracking::RunInfo run, tracking_->GetRunInfo(id));
      RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", run.project));
      std::string uri = run.artifact_uri;
      while (!uri.empty() && uri.back() == '/')
        uri.pop_back();
      if (!path.empty())
        uri += "/" + path;
      return ResolvedSource{uri, id};
    }
    if (scheme == "models")
      return ResolveModelsUri(req, source, run_id);
    if (scheme.empty() || scheme == "file") {
      // MLflow: a local path must lie inside the artifact directory of the
      // (local) run named by run_id.
      bool inside = false;
      if (!run_id.empty() && tracking_ != nullptr) {
        auto run = tracking_->GetRunInfo(run_id);
        std::string root = run ? run->artifact_uri : "";
        std::string root_scheme = SchemeOf(root);
        if (!root.empty() && (root_scheme.empty() || root_scheme == "file")) {
          RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", run->project));
          std::string dir = LocalPath(root);
          while (dir.size() > 1 && dir.back() == '/')
            dir.pop_back();
          std::string path = LocalPath(source);
          inside = CheckSourcePath(path) &&
                   (path == dir || path.rfind(dir.back() == '/' ? dir : dir + "/", 0) == 0);
        }
      }
      if (!inside) {
        return core::InvalidArgument(
            fmt::format("Invalid model version source: '{}'. To use a local path as a model "
                        "version source, the run_id request parameter has to be specified and "
                        "the local path has to be contained within the artifact directory of the "
                        "run specified by the run_id.",
                        source),
            "source");
      }
      return ResolvedSource{source, run_id};
    }
    RETURN_IF_ERROR(CheckSourcePath(source));
    return ResolvedSource{source, run_id};
  }

  // models:/<name>/<version | stage | latest> and models:/<name>@<alias>:
  // the artifacts of that version (MLflow resolves the version form).
  Result<ResolvedSource> ResolveModelsUri(const Request& req, const std::string& source,
                                          const std::string& run_id) {
    std::string rest = source.substr(7);
    while (!rest.empty() && rest.front() == '/')
      rest.erase(0, 1);
    while (!rest.empty() && rest.back() == '/')
      rest.pop_back();
    std::string name, alias, selector;
    if (size_t at = rest.find('@');
        at != std::string::npos && rest.find('/') == std::string::npos) {
      name = rest.substr(0, at);
      alias = rest.substr(at + 1);
    } else if (size_t slash = rest.find('/'); slash != std::string::npos) {
      name = rest.substr(0, slash);
      selector = rest.substr(slash + 1);
    }
    auto bad = [&] {
      return core::InvalidArgument(
          fmt::format("Invalid model version source: '{}': a models:/ source is "
                      "models:/<name>/<version>, models:/<name>/<stage>, "
                      "models:/<name>/latest or models:/<name>@<alias>",
                      source),
          "source");
    };
    if (name.empty() || (alias.empty() && selector.empty()))
      return bad();
    ASSIGN_OR_RETURN(RegisteredModel m, ModelNamed(req, name, "registry.read"));
    int64_t version = 0;
    if (!alias.empty()) {
      auto it = m.aliases.find(alias);
      if (it == m.aliases.end()) {
        return core::InvalidArgument(fmt::format("Registered model alias {} not found.", alias),
                                     "source");
      }
      version = it->second;
    } else if (selector == "latest") {
      ASSIGN_OR_RETURN(auto latest, registry_.LatestVersions(m.name, {}));
      for (const auto& v : latest)
        version = std::max(version, v.version);
    } else if (auto stage = CanonicalStage(selector)) {
      ASSIGN_OR_RETURN(auto latest, registry_.LatestVersions(m.name, {*stage}));
      if (!latest.empty())
        version = latest.front().version;
    } else {
      auto [end, ec] = std::from_chars(selector.data(), selector.data() + selector.size(), version);
      if (ec != std::errc() || end != selector.data() + selector.size() || version < 1)
        return bad();
    }
    auto v = registry_.GetVersion(m.name, version);
    if (version < 1 || !v) {
      return core::NotFound(
          fmt::format("Unable to fetch model from model URI source artifact location '{}': no "
                      "such version",
                      source));
    }
    return ResolvedSource{v->artifact_uri.empty() ? v->source : v->artifact_uri, run_id};
  }

  Result<Json> CreateVersion(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string source, mlflow::RequiredString(args, "source"));
    RegisterVersionRequest r;
    r.source = source;
    ASSIGN_OR_RETURN(r.tags, TagList(args, "tags"));
    r.run_link = mlflow::OptionalString(args, "run_link");
    r.description = mlflow::OptionalString(args, "description");
    std::string run_id = mlflow::OptionalString(args, "run_id");
    ASSIGN_OR_RETURN(RegisteredModel m, Model(req, args, "registry.write"));
    ASSIGN_OR_RETURN(ResolvedSource resolved, Resolve(req, source, run_id));
    r.artifact_uri = resolved.artifact_uri;
    r.source_run_id = resolved.run_id;
    if (!r.source_run_id.empty() && tracking_ != nullptr) {
      // The gate judges the run's latest metrics. A run this server does not
      // know (e.g. on another tracking server, see run_link) gives none.
      auto run = tracking_->GetRunInfo(r.source_run_id);
      if (run) {
        RETURN_IF_ERROR(auth_.Authorize(req.actor, "tracking.read", run->project));
        ASSIGN_OR_RETURN(auto metrics, tracking_->LatestMetrics(r.source_run_id));
        for (const auto& [k, value] : metrics) {
          if (std::isfinite(value))  // the gate compares finite values only
            r.metrics[k] = value;
        }
      } else if (run.error().code != core::ErrorCode::kNotFound) {
        return std::move(run).error();
      }
    }
    ASSIGN_OR_RETURN(ModelVersion v, registry_.RegisterVersion(m.name, r, Context(req)));
    return Json{{"model_version", VersionJson(v)}};
  }

  Result<Json> GetVersion(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.read"));
    return Json{{"model_version", VersionJson(v)}};
  }

  Result<Json> UpdateVersion(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.write"));
    // As MLflow: an update without a description clears it.
    std::string description = mlflow::OptionalString(args, "description");
    ASSIGN_OR_RETURN(v, registry_.UpdateVersion(v.model, v.version, description, Context(req)));
    return Json{{"model_version", VersionJson(v)}};
  }

  Result<Json> DeleteVersion(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.configure"));
    RETURN_IF_ERROR(
        registry_.DeleteVersion(v.model, v.version, ReasonOr(args, kDeletedReason), Context(req)));
    return Json::object();
  }

  Result<Json> SearchVersions(const Request& req, const Json& args) {
    VersionSearchRequest s;
    ASSIGN_OR_RETURN(s.filter, ParseFilter(args, {kSearchEntities, kVersionAttributes}));
    ASSIGN_OR_RETURN(s.max_results, MaxResults(args, kVersionsMaxResults, kVersionsMaxResults));
    ASSIGN_OR_RETURN(
        s.order_by,
        ParseOrderBy(args,
                     {"name", "version_number", "creation_timestamp", "last_updated_timestamp"},
                     "['name', 'version_number', 'creation_timestamp', 'last_updated_timestamp']"));
    ASSIGN_OR_RETURN(s.offset, PageOffset(args));
    s.projects = auth_.ProjectsWith(req.actor, "registry.read");
    ASSIGN_OR_RETURN(auto page, registry_.SearchVersions(s));
    Json out = Json::object();
    if (!page.items.empty()) {
      Json versions = Json::array();
      for (const auto& v : page.items)
        versions.push_back(VersionJson(v));
      out["model_versions"] = std::move(versions);
    }
    if (page.next_offset)
      out["next_page_token"] = mlflow::EncodePageToken(*page.next_offset);
    return out;
  }

  Result<Json> GetDownloadUri(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.read"));
    return Json{{"artifact_uri", v.artifact_uri.empty() ? v.source : v.artifact_uri}};
  }

  Result<Json> TransitionStage(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string requested, mlflow::RequiredString(args, "stage"));
    ASSIGN_OR_RETURN(std::string stage, StageArg(requested));
    ASSIGN_OR_RETURN(bool archive_existing, BoolArg(args, "archive_existing_versions"));
    // Staging, Production and None are routing labels, like aliases;
    // archiving (this version or the others) is an archive.
    std::string_view permission =
        stage == kStageArchived ? "model_version.archive" : "registry.alias";
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, permission));
    if (archive_existing)
      RETURN_IF_ERROR(auth_.Authorize(req.actor, "model_version.archive", v.project));
    std::string reason = ReasonOr(args, "MLflow transition-stage to " + stage);
    ASSIGN_OR_RETURN(
        v, registry_.SetStage(v.model, v.version, stage, archive_existing, reason, Context(req)));
    return Json{{"model_version", VersionJson(v)}};
  }

  Result<Json> SetVersionTag(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    std::string value = mlflow::OptionalString(args, "value");
    RETURN_IF_ERROR(CheckTag(key, value, "key"));
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.write"));
    RETURN_IF_ERROR(registry_.SetVersionTag(v.model, v.version, key, value, Context(req)));
    return Json::object();
  }

  Result<Json> DeleteVersionTag(const Request& req, const Json& args) {
    ASSIGN_OR_RETURN(std::string key, mlflow::RequiredString(args, "key"));
    ASSIGN_OR_RETURN(ModelVersion v, Version(req, args, "registry.write"));
    RETURN_IF_ERROR(registry_.DeleteVersionTag(v.model, v.version, key, Context(req)));
    return Json::object();
  }

 private:
  Registry& registry_;
  tracking::Tracking* tracking_;
  const auth::Auth& auth_;
};

}  // namespace

Status RegisterMlflowRoutes(http::Router& router, Registry& registry, tracking::Tracking* tracking,
                            const auth::Auth& auth) {
  auto api = std::make_shared<Api>(registry, tracking, auth);
  auto route = [&](const std::string& method, std::string_view path, const std::string& permission,
                   Result<Json> (Api::*fn)(const Request&, const Json&),
                   std::initializer_list<std::string_view> repeated = {}) {
    return mlflow::AddRoute(
        router, method, path, permission,
        [api, fn](const Request& req, const Json& args) { return ((*api).*fn)(req, args); },
        repeated);
  };
  const std::string rm = "registered-models/";
  const std::string mv = "model-versions/";
  RETURN_IF_ERROR(route("POST", rm + "create", "registry.write", &Api::CreateModel));
  RETURN_IF_ERROR(route("GET", rm + "get", "registry.read", &Api::GetModel));
  RETURN_IF_ERROR(route("POST", rm + "rename", "registry.write", &Api::RenameModel));
  RETURN_IF_ERROR(route("PATCH", rm + "update", "registry.write", &Api::UpdateModel));
  RETURN_IF_ERROR(route("DELETE", rm + "delete", "registry.configure", &Api::DeleteModel));
  RETURN_IF_ERROR(route("GET", rm + "search", "registry.read", &Api::SearchModels, {"order_by"}));
  for (const char* method : {"POST", "GET"}) {
    RETURN_IF_ERROR(route(method, rm + "get-latest-versions", "registry.read",
                          &Api::GetLatestVersions, {"stages"}));
  }
  RETURN_IF_ERROR(route("POST", rm + "set-tag", "registry.write", &Api::SetModelTag));
  RETURN_IF_ERROR(route("DELETE", rm + "delete-tag", "registry.write", &Api::DeleteModelTag));
  RETURN_IF_ERROR(route("POST", rm + "alias", "registry.alias", &Api::SetAlias));
  RETURN_IF_ERROR(route("DELETE", rm + "alias", "registry.alias", &Api::DeleteAlias));
  RETURN_IF_ERROR(route("GET", rm + "alias", "registry.read", &Api::GetAlias));

  RETURN_IF_ERROR(route("POST", mv + "create", "registry.write", &Api::CreateVersion));
  RETURN_IF_ERROR(route("GET", mv + "get", "registry.read", &Api::GetVersion));
  RETURN_IF_ERROR(route("PATCH", mv + "update", "registry.write", &Api::UpdateVersion));
  RETURN_IF_ERROR(route("DELETE", mv + "delete", "registry.configure", &Api::DeleteVersion));
  RETURN_IF_ERROR(route("GET", mv + "search", "registry.read", &Api::SearchVersions, {"order_by"}));
  RETURN_IF_ERROR(route("GET", mv + "get-download-uri", "registry.read", &Api::GetDownloadUri));
  RETURN_IF_ERROR(route("POST", mv + "transition-stage", "registry.alias", &Api::TransitionStage));
  RETURN_IF_ERROR(route("POST", mv + "set-tag", "registry.write", &Api::SetVersionTag));
  RETURN_IF_ERROR(route("DELETE", mv + "delete-tag", "registry.write", &Api::DeleteVersionTag));
  return core::Ok();
}

}  // namespace kervan::registry

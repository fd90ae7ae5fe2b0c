// Rules: spec parsing, condition evaluation and the `for` / cooldown state.
#include "rules/rule.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

namespace kervan::rules {
namespace {

using core::filter::Entity;

// YAML -> JSON, remembering the line each path starts on for messages.
struct Converted {
  Json value;
  std::map<std::string, int> lines;
};

Json ScalarToJson(const YAML::Node& node) {
  const std::string& text = node.Scalar();
  if (node.Tag() == "!")  // quoted: always a string
    return text;
  if (text == "true" || text == "True" || text == "TRUE")
    return true;
  if (text == "false" || text == "False" || text == "FALSE")
    return false;
  if (text == "null" || text == "~" || text.empty())
    return nullptr;
  int64_t i = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), i);
  if (ec == std::errc() && p == text.data() + text.size())
    return i;
  double d = 0;
  auto [q, ec2] = std::from_chars(text.data(), text.data() + text.size(), d);
  if (ec2 == std::errc() && q == text.data() + text.size() && std::isfinite(d))
    return d;
  return text;
}

Json Convert(const YAML::Node& node, const std::string& path, std::map<std::string, int>& lines) {
  lines[path] = node.Mark().line + 1;
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      Json out = Json::object();
      for (const auto& kv : node) {
        std::string key = kv.first.Scalar();
        out[key] = Convert(kv.second, path.empty() ? key : path + "." + key, lines);
      }
      return out;
    }
    case YAML::NodeType::Sequence: {
      Json out = Json::array();
      for (size_t i = 0; i < node.size(); ++i)
        out.push_back(Convert(node[i], fmt::format("{}[{}]", path, i), lines));
      return out;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(node);
    default:
      return nullptr;
  }
}

class Checker {
 public:
  explicit Checker(const Converted& c) : c_(c) {}

  core::Error At(const std::string& path, std::string_view what) const {
    // The nearest path with a known line: the field itself or its parent.
    std::string p = path;
    while (!p.empty() && !c_.lines.count(p)) {
      size_t cut = p.find_last_of(".[");
      p = cut == std::string::npos ? "" : p.substr(0, cut);
    }
    auto it = c_.lines.find(p);
    int line = it == c_.lines.end() ? 1 : it->second;
    return core::InvalidArgument(fmt::format("{} (line {}): {}", path, line, what), path);
  }

 private:
  const Converted& c_;
};

constexpr std::string_view kRuleNameRule = "[a-z0-9][a-z0-9._-]{0,99}";

bool IsRuleName(std::string_view s) {
  if (s.empty() || s.size() > 100)
    return false;
  auto ok = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok(s[0]))
    return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return ok(c) || c == '.' || c == '_' || c == '-'; });
}

bool IsEventPattern(std::string_view s) {
  if (s.empty() || s.size() > 200)
    return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '*';
  });
}

// Parameters each action type takes: name -> kind ("string", "int_or_string",
// "object", "bool", "actions").
const std::map<std::string, std::string>& ParamKinds(ActionType type) {
  static const std::map<ActionType, std::map<std::string, std::string>> kKinds = {
      {ActionType::kStartPipeline,
       {{"pipeline", "string!"}, {"params", "object"}, {"no_cache", "bool"}}},
      {ActionType::kPauseRollout, {{"endpoint", "string!"}}},
      {ActionType::kResumeRollout, {{"endpoint", "string!"}}},
      {ActionType::kAbortRollout, {{"endpoint", "string!"}}},
      {ActionType::kRollback, {{"endpoint", "string!"}}},
      {ActionType::kMoveAlias,
       {{"model", "string!"}, {"alias", "string!"}, {"version", "int_or_string!"}}},
      {ActionType::kDeploy,
       {{"endpoint", "string"},
        {"model", "string!"},
        {"version", "int_or_string!"},
        {"strategy", "object"}}},
      {ActionType::kAlert,
       {{"severity", "string"},
        {"summary", "string!"},
        {"description", "string"},
        {"labels", "object"}}},
      {ActionType::kApproval, {{"summary", "string!"}, {"actions", "actions!"}}},
  };
  return kKinds.at(type);
}

Result<std::vector<ActionSpec>> ParseActions(const Json& list, const std::string& path,
                                             const Checker& at, bool nested);

Result<ActionSpec> ParseAction(const Json& item, const std::string& path, const Checker& at,
                               bool nested) {
  if (!item.is_object() || item.size() != 1) {
    return at.At(path,
                 "an action is a map with one key, its type (start_pipeline, pause_rollout, "
                 "resume_rollout, abort_rollout, rollback, move_alias, deploy, alert, approval)");
  }
  const std::string& type_name = item.begin().key();
  auto type = ParseActionType(type_name);
  if (!type) {
    return at.At(path + "." + type_name,
                 "unknown action type; expected start_pipeline, pause_rollout, resume_rollout, "
                 "abort_rollout, rollback, move_alias, deploy, alert or approval");
  }
  if (nested && *type == ActionType::kApproval)
    return at.At(path + "." + type_name, "an approval cannot contain another approval");
  std::string base = path + "." + type_name;
  const Json& params = item.begin().value();
  if (!params.is_object())
    return at.At(base, "the action's parameters must be a map");
  const auto& kinds = ParamKinds(*type);
  for (const auto& [key, value] : params.items()) {
    if (!kinds.count(key)) {
      std::string known;
      for (const auto& [k, v] : kinds)
        known += (known.empty() ? "" : ", ") + k;
      return at.At(base + "." + key,
                   fmt::format("unknown parameter; {} takes {}", type_name, known));
    }
  }
  for (const auto& [key, kind_text] : kinds) {
    bool required = kind_text.back() == '!';
    std::string kind = required ? kind_text.substr(0, kind_text.size() - 1) : kind_text;
    std::string field = base + "." + key;
    if (!params.contains(key)) {
      if (required)
        return at.At(base, fmt::format("missing required parameter \"{}\"", key));
      continue;
    }
    const Json& v = params[key];
    if (kind == "string" && (!v.is_string() || v.get<std::string>().empty()))
      return at.At(field, "must be a non-empty string");
    if (kind == "int_or_string" && !(v.is_number_integer() || v.is_string()))
      return at.At(field, "must be an integer or a {{placeholder}} string");
    if (kind == "object" && !v.is_object())
      return at.At(field, "must be a map");
    if (kind == "bool" && !v.is_boolean())
      return at.At(field, "must be true or false");
    if (kind == "actions") {
      ASSIGN_OR_RETURN(auto inner, ParseActions(v, field, at, true));
      if (inner.empty())
        return at.At(field, "an approval needs at least one action to run once approved");
    }
  }
  if (*type == ActionType::kAlert && params.contains("severity")) {
    std::string s = params["severity"].get<std::string>();
    if (s != "critical" && s != "warning" && s != "info")
      return at.At(base + ".severity", "must be critical, warning or info");
  }
  if (*type == ActionType::kStartPipeline && params.contains("params")) {
    for (const auto& [k, v] : params["params"].items()) {
      if (!v.is_string() && !v.is_number() && !v.is_boolean())
        return at.At(base + ".params." + k, "a pipeline parameter must be a scalar");
    }
  }
  return ActionSpec{.type = *type, .params = params};
}

Result<std::vector<ActionSpec>> ParseActions(const Json& list, const std::string& path,
                                             const Checker& at, bool nested) {
  if (!list.is_array())
    return at.At(path, "must be a list of actions");
  std::vector<ActionSpec> out;
  for (size_t i = 0; i < list.size(); ++i) {
    ASSIGN_OR_RETURN(auto a, ParseAction(list[i], fmt::format("{}[{}]", path, i), at, nested));
    out.push_back(std::move(a));
  }
  return out;
}

core::filter::FieldValue Lookup(const Observation& obs, const core::filter::Comparison& c) {
  switch (c.entity) {
    case Entity::kData:
      return core::filter::JsonField(obs.data, c.key);
    case Entity::kMetric: {
      auto it = obs.metrics.find(c.key);
      if (it == obs.metrics.end())
        return {};
      return it->second;
    }
    case Entity::kAttribute: {
      auto it = obs.attributes.find(c.key);
      if (it == obs.attributes.end())
        return {};
      return it->second;
    }
    default:
      return {};
  }
}

std::string ValueText(const core::filter::FieldValue& v) {
  if (std::holds_alternative<double>(v)) {
    double d = std::get<double>(v);
    return fmt::format("{}", d);
  }
  if (std::holds_alternative<int64_t>(v))
    return std::to_string(std::get<int64_t>(v));
  if (std::holds_alternative<std::string>(v))
    return std::get<std::string>(v);
  return "";
}

}  // namespace

std::string_view ActionTypeName(ActionType type) {
  switch (type) {
    case ActionType::kStartPipeline:
      return "start_pipeline";
    case ActionType::kPauseRollout:
      return "pause_rollout";
    case ActionType::kResumeRollout:
      return "resume_rollout";
    case ActionType::kAbortRollout:
      return "abort_rollout";
    case ActionType::kRollback:
      return "rollback";
    case ActionType::kMoveAlias:
      return "move_alias";
    case ActionType::kDeploy:
      return "deploy";
    case ActionType::kAlert:
      return "alert";
    case ActionType::kApproval:
      return "approval";
  }
  return "?";
}

std::optional<ActionType> ParseActionType(std::string_view name) {
  for (ActionType t :
       {ActionType::kStartPipeline, ActionType::kPauseRollout, ActionType::kResumeRollout,
        ActionType::kAbortRollout, ActionType::kRollback, ActionType::kMoveAlias,
        ActionType::kDeploy, ActionType::kAlert, ActionType::kApproval}) {
    if (ActionTypeName(t) == name)
      return t;
  }
  return std::nullopt;
}

Json ActionSpec::ToJson() const {
  return Json{{std::string(ActionTypeName(type)), params}};
}

bool RuleSpec::MatchesEventType(std::string_view type) const {
  for (const auto& e : events) {
    if (e == "*" || e == type)
      return true;
    if (!e.empty() && e.back() == '.' && type.substr(0, e.size()) == e)
      return true;
  }
  return false;
}

Json RuleSpec::ToJson() const {
  Json on = Json::object();
  if (!events.empty())
    on["events"] = events;
  if (every_ms > 0)
    on["every_ms"] = every_ms;
  Json actions_json = Json::array();
  for (const auto& a : actions)
    actions_json.push_back(a.ToJson());
  Json out = {{"name", name},
              {"description", description},
              {"project", project},
              {"on", on},
              {"when", core::filter::Format(when)},
              {"for", for_count},
              {"cooldown_ms", cooldown_ms},
              {"dry_run", dry_run},
              {"actions", actions_json}};
  if (for_ms > 0)
    out["for_ms"] = for_ms;
  return out;
}

Result<int64_t> ParseDurationMs(std::string_view text, std::string_view field) {
  auto bad = [&] {
    return core::InvalidArgument(
        fmt::format("{}: \"{}\" is not a duration (e.g. 30s, 5m, 2h, 1d, 250ms)", field, text),
        std::string(field));
  };
  if (text.empty())
    return bad();
  size_t split = 0;
  while (split < text.size() && (std::isdigit(static_cast<unsigned char>(text[split])) != 0))
    ++split;
  if (split == 0)
    return bad();
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + split, n);
  if (ec != std::errc() || n < 0 || n > 1'000'000'000)
    return bad();
  std::string_view unit = text.substr(split);
  int64_t scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  else if (unit == "d")
    scale = 86'400'000;
  else
    return bad();
  return n * scale;
}

Result<RuleSpec> ParseRule(std::string_view yaml) {
  Converted c;
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsMap())
      return core::InvalidArgument("rule: the YAML document must be a map", "rule");
    c.value = Convert(root, "", c.lines);
  } catch (const YAML::Exception& e) {
    return core::InvalidArgument(fmt::format("rule (line {}, column {}): malformed YAML: {}",
                                             e.mark.line + 1, e.mark.column + 1, e.msg),
                                 "rule");
  }
  Checker at(c);
  const Json& doc = c.value;
  static const std::set<std::string> kKeys = {"name", "description", "project", "on",     "when",
                                              "for",  "cooldown",    "dry_run", "actions"};
  for (const auto& [k, v] : doc.items()) {
    if (!kKeys.count(k)) {
      return at.At(k,
                   "unknown key; a rule has name, description, project, on, when, for, cooldown, "
                   "dry_run and actions");
    }
  }
  RuleSpec r;
  if (!doc.contains("name") || !doc["name"].is_string())
    return at.At("name", "is required (a string)");
  r.name = doc["name"].get<std::string>();
  if (!IsRuleName(r.name))
    return at.At("name", fmt::format("\"{}\" must match {}", r.name, kRuleNameRule));
  if (doc.contains("description")) {
    if (!doc["description"].is_string())
      return at.At("description", "must be a string");
    r.description = doc["description"].get<std::string>();
  }
  if (doc.contains("project")) {
    if (!doc["project"].is_string())
      return at.At("project", "must be a string");
    r.project = doc["project"].get<std::string>();
  }
  if (!doc.contains("on") || !doc["on"].is_object())
    return at.At("on", "is required: a map with events (a list of event types) and/or every");
  for (const auto& [k, v] : doc["on"].items()) {
    if (k != "events" && k != "every")
      return at.At("on." + k, "unknown key; on takes events and every");
  }
  if (doc["on"].contains("events")) {
    const Json& events = doc["on"]["events"];
    if (!events.is_array())
      return at.At("on.events", "must be a list of event types");
    for (size_t i = 0; i < events.size(); ++i) {
      std::string field = fmt::format("on.events[{}]", i);
      if (!events[i].is_string() || !IsEventPattern(events[i].get<std::string>()))
        return at.At(field,
                     "must be an event type (\"monitor.evaluated\") or prefix (\"monitor.*\")");
      std::string e = events[i].get<std::string>();
      size_t star = e.find('*');
      if (star != std::string::npos) {
        if (star != e.size() - 1 || (e.size() > 1 && e[e.size() - 2] != '.'))
          return at.At(field, "a wildcard may only end a prefix: \"monitor.*\" or \"*\"");
        e.pop_back();  // "monitor.*" -> "monitor."; "*" -> ""
        if (e.empty())
          e = "*";
      }
      r.events.push_back(e);
    }
  }
  if (doc["on"].contains("every")) {
    const Json& every = doc["on"]["every"];
    std::string text = every.is_string()           ? every.get<std::string>()
                       : every.is_number_integer() ? std::to_string(every.get<int64_t>())
                                                   : "";
    auto ms = ParseDurationMs(text, "on.every");
    if (!ms)
      return at.At("on.every", "must be a duration such as 30s, 5m or 1h");
    if (*ms < 1000)
      return at.At("on.every", "must be at least 1s");
    r.every_ms = *ms;
  }
  if (r.events.empty() && r.every_ms == 0)
    return at.At("on", "needs events (a non-empty list) or every (a duration)");
  if (!doc.contains("when") || !doc["when"].is_string())
    return at.At("when", "is required: a condition in the filter language");
  r.when_text = doc["when"].get<std::string>();
  auto when = core::filter::Parse(r.when_text);
  if (!when)
    return at.At("when", when.error().message);
  for (const auto& clause : when->clauses) {
    if (clause.entity != Entity::kData && clause.entity != Entity::kMetric &&
        clause.entity != Entity::kAttribute) {
      return at.At("when", fmt::format("\"{}.{}\": a rule reads attributes, data.<path> and "
                                       "metrics.<name>",
                                       core::filter::EntityName(clause.entity), clause.key));
    }
  }
  r.when = std::move(*when);
  if (doc.contains("for")) {
    const Json& f = doc["for"];
    if (f.is_number_integer()) {
      if (f.get<int64_t>() < 1 || f.get<int64_t>() > 1'000'000)
        return at.At("for", "a count of evaluations must be between 1 and 1000000");
      r.for_count = f.get<int64_t>();
    } else if (f.is_string()) {
      auto ms = ParseDurationMs(f.get<std::string>(), "for");
      if (!ms)
        return at.At("for", "must be a count of evaluations (3) or a duration (5m)");
      r.for_ms = *ms;
    } else {
      return at.At("for", "must be a count of evaluations (3) or a duration (5m)");
    }
  }
  if (doc.contains("cooldown")) {
    const Json& cd = doc["cooldown"];
    std::string text = cd.is_string()           ? cd.get<std::string>()
                       : cd.is_number_integer() ? std::to_string(cd.get<int64_t>())
                                                : "";
    auto ms = ParseDurationMs(text, "cooldown");
    if (!ms)
      return at.At("cooldown", "must be a duration such as 10m");
    r.cooldown_ms = *ms;
  }
  if (doc.contains("dry_run")) {
    if (!doc["dry_run"].is_boolean())
      return at.At("dry_run", "must be true or false");
    r.dry_run = doc["dry_run"].get<bool>();
  }
  if (!doc.contains("actions"))
    return at.At("actions", "is required: a list of actions");
  ASSIGN_OR_RETURN(r.actions, ParseActions(doc["actions"], "actions", at, false));
  if (r.actions.empty())
    return at.At("actions", "needs at least one action");
  return r;
}

Json Observation::ToJson() const {
  Json out = {{"time_us", time_us}, {"subject", subject}};
  if (event_seq > 0)
    out["event_seq"] = event_seq;
  out["attributes"] = attributes;
  if (!data.empty())
    out["data"] = data;
  Json m = Json::object();
  for (const auto& [k, v] : metrics)
    m[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  out["metrics"] = m;
  return out;
}

Applicability Evaluate(const RuleSpec& rule, const Observation& obs) {
  bool reads_values = false, any_present = false;
  for (const auto& clause : rule.when.clauses) {
    if (clause.entity == Entity::kData || clause.entity == Entity::kMetric) {
      reads_values = true;
      if (!std::holds_alternative<std::monostate>(Lookup(obs, clause)))
        any_present = true;
    }
  }
  if (reads_values && !any_present)
    return Applicability::kNotApplicable;
  bool matched = core::filter::Matches(
      rule.when, [&](const core::filter::Comparison& c) { return Lookup(obs, c); });
  return matched ? Applicability::kMatched : Applicability::kNotMatched;
}

StepResult Step(const RuleSpec& rule, ConditionState& state, Applicability applicability,
                int64_t now_us) {
  StepResult out;
  if (applicability == Applicability::kNotApplicable)
    return out;
  if (applicability == Applicability::kNotMatched) {
    state.consecutive = 0;
    state.since_us = 0;
    if (state.alert_active) {
      out.resolve_alert = true;
      state.alert_active = false;
    }
    return out;
  }
  if (state.consecutive == 0)
    state.since_us = now_us;
  ++state.consecutive;
  bool holds = state.consecutive >= rule.for_count &&
               (rule.for_ms == 0 || now_us - state.since_us >= rule.for_ms * 1000);
  if (!holds)
    return out;
  if (state.last_fired_us > 0 && now_us - state.last_fired_us < rule.cooldown_ms * 1000) {
    out.in_cooldown = true;
    return out;
  }
  out.fire = true;
  state.last_fired_us = now_us;
  return out;
}

Result<Json> RenderParams(const Json& params, const Observation& obs) {
  if (params.is_object()) {
    Json out = Json::object();
    for (const auto& [k, v] : params.items()) {
      ASSIGN_OR_RETURN(out[k], RenderParams(v, obs));
    }
    return out;
  }
  if (params.is_array()) {
    Json out = Json::array();
    for (const auto& v : params) {
      ASSIGN_OR_RETURN(Json r, RenderParams(v, obs));
      out.push_back(std::move(r));
    }
    return out;
  }
  if (!params.is_string())
    return params;
  const std::string& text = params.get_ref<const std::string&>();
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t open = text.find("{{", pos);
    if (open == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    size_t close = text.find("}}", open);
    if (close == std::string::npos) {
      out += text.substr(pos);
      break;
    }
    out += text.substr(pos, open - pos);
    std::string key = text.substr(open + 2, close - open - 2);
    key.erase(0, key.find_first_not_of(' '));
    key.erase(key.find_last_not_of(' ') + 1);
    core::filter::FieldValue value;
    core::filter::Comparison c;
    if (key.rfind("data.", 0) == 0) {
      c.entity = Entity::kData;
      c.key = key.substr(5);
    } else if (key.rfind("metrics.", 0) == 0) {
      c.entity = Entity::kMetric;
      c.key = key.substr(8);
    } else {
      c.entity = Entity::kAttribute;
      c.key = key;
    }
    value =
        key == "subject_id" && !obs.attributes.count("subject_id") ? obs.subject : Lookup(obs, c);
    if (std::holds_alternative<std::monostate>(value)) {
      return core::InvalidArgument(
          fmt::format("placeholder {{{{{}}}}} has no value in what the rule saw", key), key);
    }
    out += ValueText(value);
    pos = close + 2;
  }
  return Json(out);
}

}  // namespace kervan::rules

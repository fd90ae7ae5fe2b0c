// Triggers: cron schedules, new dataset versions, events matching a filter,
// and the inbound CI webhook (GitHub, GitLab). Each firing starts a run whose
// `trigger` names its cause; a firing that cannot start one is the event
// pipeline.trigger_failed.
#include <algorithm>

#include <fmt/format.h>

#include "core/crypto.h"
#include "core/filter.h"
#include "pipelines/internal.h"

namespace kervan::pipelines {

using store::CommandContext;
using store::CommandTx;

// ---------------------------------------------------------------- triggers

Result<PipelineRun> Pipelines::StartTriggered(const std::string& pipeline,
                                              const TriggerSpec& trigger, Json cause,
                                              const std::string& causation_id) {
  auto p = GetPipeline(pipeline);
  std::string project = p ? p->project : "";
  StartRunRequest r{.pipeline = pipeline, .params = trigger.params, .trigger = cause};
  auto run = StartRun(r, System(project, "", causation_id));
  if (!run) {
    core::LogWarn(fmt::format("pipelines: a {} trigger of {} could not start a run: {}",
                              TriggerKindName(trigger.kind), pipeline, run.error().message));
    (void)log_.Append({.type = "pipeline.trigger_failed",
                       .subject_kind = "pipeline",
                       .subject_id = pipeline,
                       .actor = std::string(kPipelinesActor),
                       .causation_id = causation_id,
                       .project = project,
                       .data = {{"trigger", cause}, {"error", run.error().message}}});
  }
  return run;
}

Status Pipelines::FireCron(int64_t now) {
  ASSIGN_OR_RETURN(auto pipelines, ListPipelines(std::nullopt));
  for (const auto& p : pipelines) {
    auto version = GetVersion(p.name, 0);
    if (!version)
      continue;
    for (const auto& t : version->spec.triggers) {
      if (t.kind != TriggerSpec::Kind::kCron)
        continue;
      auto schedule = CronSchedule::Parse(t.cron);
      if (!schedule)
        continue;
      int64_t due = 0;
      {
        ASSIGN_OR_RETURN(auto conn, db_.Acquire());
        ASSIGN_OR_RETURN(auto rows, conn->Query("SELECT next_us FROM pipeline_cron_state WHERE "
                                                "pipeline = ? AND schedule = ?",
                                                {p.name, t.cron}));
        if (rows.empty()) {
          // Another server may have inserted it first: then it is there.
          (void)conn->Exec(
              "INSERT INTO pipeline_cron_state (pipeline, schedule, next_us) VALUES (?, ?, ?) "
              "ON CONFLICT (pipeline, schedule) DO NOTHING",
              {p.name, t.cron, schedule->Next(now)});
          continue;
        }
        due = rows[0].Int(0);
        if (due == 0 || due > now)
          continue;
        // One firing for however many were due (a server that was down does
        // not start a burst of runs when it comes back). The update is a
        // compare-and-set: of several servers on one database, only the one
        // that moves next_us fires.
        ASSIGN_OR_RETURN(int64_t moved,
                         conn->Exec("UPDATE pipeline_cron_state SET next_us = ? WHERE pipeline = "
                                    "? AND schedule = ? AND next_us = ?",
                                    {schedule->Next(now), p.name, t.cron, due}));
        if (moved != 1)
          continue;
      }
      (void)StartTriggered(
          p.name, t,
          {{"kind", "cron"}, {"schedule", t.cron}, {"scheduled_for", core::FormatRfc3339(due)}},
          "");
    }
  }
  return core::Ok();
}

namespace {
core::filter::FieldValue EventField(const store::Event& event, const Json& data,
                                    const core::filter::Comparison& c) {
  using core::filter::Entity;
  if (c.entity == Entity::kAttribute) {
    if (c.key == "type")
      return event.type;
    if (c.key == "subject_kind")
      return event.subject_kind;
    if (c.key == "subject_id")
      return event.subject_id;
    if (c.key == "actor")
      return event.actor;
    if (c.key == "project")
      return event.project;
    if (c.key == "reason")
      return event.reason;
    return {};
  }
  if (c.entity != Entity::kData)
    return {};
  return core::filter::JsonField(data, c.key);
}
}  // namespace

Status Pipelines::OnEvent(const store::Event& event) {
  if (event.type == "pipeline.trigger_failed")
    return core::Ok();
  bool dataset_event = event.type == "dataset.version_created";
  Json data = ParseOr(event.data, Json::object());
  // Which pipeline's runs the event is about (none of its own triggers fire on it).
  std::string own_pipeline;
  if (event.subject_kind == kRunKind || event.subject_kind == kStepKind) {
    std::string run_id = event.subject_id.substr(0, event.subject_id.find(':'));
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows,
                     conn->Query("SELECT pipeline FROM pipeline_runs WHERE id = ?", {run_id}));
    if (!rows.empty())
      own_pipeline = rows[0].Text(0);
  }
  ASSIGN_OR_RETURN(auto pipelines, ListPipelines(std::nullopt));
  for (const auto& p : pipelines) {
    auto version = GetVersion(p.name, 0);
    if (!version)
      continue;
    for (const auto& t : version->spec.triggers) {
      if (t.kind == TriggerSpec::Kind::kDataset && dataset_event && event.subject_id == t.dataset) {
        // A pipeline does not retrigger itself with a dataset it produced.
        if (data.contains("source") && data["source"].value("pipeline", "") == p.name)
          continue;
        (void)StartTriggered(p.name, t,
                             {{"kind", "dataset"},
                              {"dataset", t.dataset},
                              {"version", data.value("version", int64_t{0})},
                              {"event_seq", event.seq}},
                             event.id);
        break;
      }
      if (t.kind != TriggerSpec::Kind::kEvent || own_pipeline == p.name)
        continue;
      bool type_matches = !t.event_type.empty() && t.event_type.back() == '.'
                              ? event.type.rfind(t.event_type, 0) == 0
                              : event.type == t.event_type;
      if (!type_matches)
        continue;
      auto filter = core::filter::Parse(t.filter);
      if (!filter)
        continue;
      if (!core::filter::Matches(*filter, [&](const core::filter::Comparison& c) {
            return EventField(event, data, c);
          })) {
        continue;
      }
      (void)StartTriggered(p.name, t,
                           {{"kind", "event"},
                            {"event_type", event.type},
                            {"event_seq", event.seq},
                            {"subject", event.subject_kind + "/" + event.subject_id}},
                           event.id);
      break;
    }
  }
  return core::Ok();
}

// ---------------------------------------------------------------- webhooks

Result<std::string> Pipelines::CreateWebhookSecret(const std::string& name,
                                                   const CommandContext& ctx) {
  ASSIGN_OR_RETURN(Pipeline p, GetPipeline(name));
  if (options_.secret_key.size() != 32)
    return core::FailedPrecondition("this server has no secret key to seal webhook secrets with");
  std::string secret = core::HexEncode(core::RandomBytes(32));
  ASSIGN_OR_RETURN(std::string sealed, core::SealSecret(options_.secret_key, secret));
  CommandContext c = ctx;
  c.project = p.project;
  auto done = log_.Execute([&](CommandTx& tx) -> Status {
    RETURN_IF_ERROR(StatusOf(
        tx.conn().Exec("UPDATE pipelines SET webhook_secret = ?, updated_us = ? WHERE name = ?",
                       {sealed, core::NowMicros(), name})));
    return StatusOf(tx.Append({.type = "pipeline.webhook_secret_created",
                               .subject_kind = "pipeline",
                               .subject_id = name,
                               .actor = ctx.actor,
                               .correlation_id = ctx.correlation_id,
                               .project = p.project}));
  });
  if (!done)
    return done.error();
  return secret;
}

namespace {
std::string Header(const std::map<std::string, std::string>& headers, const std::string& name) {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}
std::string BranchOf(std::string ref) {
  constexpr std::string_view kHeads = "refs/heads/";
  if (ref.rfind(kHeads, 0) == 0)
    ref = ref.substr(kHeads.size());
  return ref;
}
}  // namespace

Result<Pipelines::WebhookOutcome> Pipelines::HandleWebhook(
    const std::string& name, const std::map<std::string, std::string>& headers,
    std::string_view body, const std::string& request_id) {
  ASSIGN_OR_RETURN(Pipeline p, GetPipeline(name));
  std::string sealed;
  {
    ASSIGN_OR_RETURN(auto conn, db_.Acquire());
    ASSIGN_OR_RETURN(auto rows,
                     conn->Query("SELECT webhook_secret FROM pipelines WHERE name = ?", {name}));
    sealed = rows.empty() ? "" : rows[0].Text(0);
  }
  if (sealed.empty())
    return core::Unauthenticated(fmt::format(
        "pipeline \"{}\" has no webhook secret (create one: kervan pipelines webhook-secret {})",
        name, name));
  ASSIGN_OR_RETURN(std::string secret, core::OpenSecret(options_.secret_key, sealed));
  std::string provider, event;
  if (auto sig = Header(headers, "x-hub-signature-256"); !sig.empty()) {
    if (!core::ConstantTimeEquals(sig, "sha256=" + core::HmacSha256Hex(secret, body)))
      return core::Unauthenticated("X-Hub-Signature-256 does not match the body");
    provider = "github";
    event = Header(headers, "x-github-event");
  } else if (auto token = Header(headers, "x-gitlab-token"); !token.empty()) {
    if (!core::ConstantTimeEquals(token, secret))
      return core::Unauthenticated("X-Gitlab-Token is not this pipeline's webhook secret");
    provider = "gitlab";
    event = Header(headers, "x-gitlab-event");  // "Push Hook" -> "push"
    std::transform(event.begin(), event.end(), event.begin(),
                   [](unsigned char c) { return c == ' ' ? '_' : std::tolower(c); });
    if (event.size() > 5 && event.ends_with("_hook"))
      event.resize(event.size() - 5);
  } else {
    return core::Unauthenticated(
        "a webhook needs X-Hub-Signature-256 (GitHub) or X-Gitlab-Token (GitLab)");
  }
  Json payload = Json::parse(body, nullptr, false);
  if (payload.is_discarded() || !payload.is_object())
    return core::InvalidArgument("field \"body\": the webhook body is not a JSON object", "body");
  if (event == "ping")
    return WebhookOutcome{.detail = "pong"};
  std::string branch, commit;
  if (payload.contains("ref") && payload["ref"].is_string()) {
    branch = BranchOf(payload["ref"].get<std::string>());
    commit = payload.value("after", payload.value("checkout_sha", ""));
  } else if (payload.contains("workflow_run") && payload["workflow_run"].is_object()) {
    branch = payload["workflow_run"].value("head_branch", "");
    commit = payload["workflow_run"].value("head_sha", "");
  } else if (payload.contains("object_attributes") && payload["object_attributes"].is_object()) {
    branch = BranchOf(payload["object_attributes"].value("ref", ""));
    commit = payload["object_attributes"].value("sha", "");
  }
  ASSIGN_OR_RETURN(PipelineVersion version, GetVersion(name, 0));
  for (const auto& t : version.spec.triggers) {
    if (t.kind != TriggerSpec::Kind::kWebhook)
      continue;
    auto in = [](const std::vector<std::string>& list, const std::string& v) {
      return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
    };
    if (!in(t.webhook_events, event) || !in(t.branches, branch))
      continue;
    Json cause = {{"kind", "webhook"}, {"provider", provider}, {"event", event},
                  {"branch", branch},  {"commit", commit},     {"request_id", request_id}};
    if (auto delivery = Header(headers, "x-github-delivery"); !delivery.empty())
      cause["delivery"] = delivery;
    ASSIGN_OR_RETURN(PipelineRun run, StartTriggered(name, t, cause, ""));
    return WebhookOutcome{.run = std::move(run), .detail = "started"};
  }
  return WebhookOutcome{
      .detail = fmt::format("no webhook trigger of pipeline \"{}\" matches event \"{}\" on "
                            "branch \"{}\"",
                            name, event, branch)};
}

}  // namespace kervan::pipelines

// Client commands for auditors: the filtered audit log, its JSON-lines
// export, and hash-chain verification.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "app/cli_commands.h"

namespace kervan::app {
namespace {

struct AuditFilters {
  std::string kind, id, actor, type, project, since, until;
  int64_t after = 0;
};

void AddFilterFlags(CLI::App* cmd, AuditFilters& f) {
  cmd->add_option("--kind", f.kind, "subject kind, e.g. model_version, principal, token");
  cmd->add_option("--id", f.id, "subject id, e.g. credit-risk:2");
  cmd->add_option("--by", f.actor, "actor, e.g. user:erin or system:registry");
  cmd->add_option("--type", f.type,
                  "event type: exact (model_version.approved) or a prefix (model_version.*)");
  cmd->add_option("--project", f.project, "only events of this project");
  cmd->add_option("--since", f.since,
                  "from this time: RFC 3339 (2026-11-27T10:00:00Z) or a duration ago (30m, 7d)");
  cmd->add_option("--until", f.until, "before this time (same forms as --since)");
  cmd->add_option("--after", f.after, "only events with seq > N (a cursor)");
}

// The filter query, or a usage error already printed (nullopt).
std::optional<std::vector<std::pair<std::string, std::string>>> FilterQuery(const AuditFilters& f) {
  auto since = TimeFlag(f.since, "--since");
  auto until = since ? TimeFlag(f.until, "--until") : since;
  if (!since || !until) {
    UsageError((!since ? since : until).error().message);
    return std::nullopt;
  }
  return std::vector<std::pair<std::string, std::string>>{
      {"kind", f.kind},       {"id", f.id},
      {"actor", f.actor},     {"type", f.type},
      {"project", f.project}, {"since", *since},
      {"until", *until},      {"after", f.after ? std::to_string(f.after) : ""}};
}

// One short line of what an event's data says: the gate's verdict and the
// failed checks' evidence, a state change, an alias move, a role binding.
std::string Detail(const Json& e) {
  const Json data = e.value("data", Json::object());
  if (!data.is_object())
    return "";
  const Json inner = data.contains("data") && data["data"].is_object() ? data["data"] : Json();
  auto version = [](const Json& v) { return v.is_number() ? "v" + v.dump() : std::string("none"); };
  if (inner.is_object() && inner.contains("checks") && inner["checks"].is_array() &&
      !inner["checks"].empty() && inner["checks"][0].contains("passed")) {
    const Json& checks = inner["checks"];
    std::string failed;
    for (const auto& c : checks) {
      if (c.value("passed", false))
        continue;
      std::string metric = Str(c, "metric");
      std::string what;
      if (!c.contains("value") || !c["value"].is_number()) {
        what = "no metric " + metric;
      } else if (Str(c, "type") == "champion") {
        bool higher = c.value("higher_is_better", true);
        what = fmt::format("{}={} more than {} {} champion {} ({})", metric,
                           Num(c["value"].get<double>()), Num(c.value("max_regression", 0.0)),
                           higher ? "below" : "above", version(c.value("champion_version", Json())),
                           c.value("champion_value", Json()).is_number()
                               ? Num(c["champion_value"].get<double>())
                               : "no value");
      } else {
        what = fmt::format("{}={} not {} {}", metric, Num(c["value"].get<double>()), Str(c, "op"),
                           Num(c.value("threshold", 0.0)));
      }
      failed += (failed.empty() ? "" : "; ") + what;
    }
    if (failed.empty())
      return fmt::format("gate passed ({} of {} checks)", checks.size(), checks.size());
    return "gate failed: " + failed;
  }
  if (data.contains("from") && data.contains("to"))
    return Str(data, "from") + " -> " + Str(data, "to");
  if (data.contains("alias")) {
    return fmt::format("{}: {} -> {}", Str(data, "alias"),
                       version(data.value("previous_version", Json())),
                       data.value("version", Json()).is_number() ? version(data["version"])
                                                                 : std::string("deleted"));
  }
  if (data.contains("role")) {
    std::string project = Str(data, "project");
    return Str(data, "role") + (project.empty() ? " (global)" : " in " + project);
  }
  if (inner.is_object() && inner.contains("metrics") && inner["metrics"].is_object()) {
    std::string metrics;
    for (const auto& [k, v] : inner["metrics"].items())
      metrics += (metrics.empty() ? "" : ", ") + k + "=" +
                 (v.is_number() ? Num(v.get<double>()) : v.dump());
    return metrics;
  }
  if (data.contains("validation") && data["validation"].is_object()) {
    size_t n = data["validation"].value("checks", Json::array()).size();
    return n ? fmt::format("gate of {} check(s)", n) : "no gate";
  }
  if (Str(e, "type") == "token.created")
    return "for " + Str(data, "principal");
  return "";
}

}  // namespace

void AddAuditCommands(CLI::App& app, ClientOptions& o, int& rc) {
  auto* audit = app.add_subcommand(
      "audit", "Query, export and verify the tamper-evident audit trail (the event log)");
  audit->require_subcommand(1);

  // ---- log ----------------------------------------------------------------------
  struct LogArgs {
    AuditFilters filters;
    int64_t limit = 100;
  };
  auto l = std::make_shared<LogArgs>();
  auto* log = audit->add_subcommand(
      "log", "Who did what, when and why: a table of events matching the filters (oldest first)");
  AddClientFlags(log, o);
  AddFilterFlags(log, l->filters);
  log->add_option("--limit", l->limit, "at most N events (1..1000)")->capture_default_str();
  log->callback([&o, &rc, l] {
    auto q = FilterQuery(l->filters);
    if (!q)
      return void(rc = 2);
    q->emplace_back("limit", std::to_string(l->limit));
    auto r = Call(o, "GET", "/api/v1/audit" + Query(*q));
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r))
      return;
    std::vector<std::vector<std::string>> rows;
    for (const auto& e : (*r)["events"]) {
      Json subject = e.value("subject", Json::object());
      rows.push_back({Str(e, "seq"), ShortTime(Str(e, "time")), Str(e, "type"),
                      Str(subject, "kind") + "/" + Str(subject, "id"), Str(e, "actor"), Detail(e),
                      Str(e, "reason")});
    }
    std::cout << Table({"SEQ", "TIME", "TYPE", "SUBJECT", "ACTOR", "DETAIL", "REASON"}, rows);
    if (r->value("complete", true) == false) {
      std::cerr << fmt::format(
          "(more events match: add --after {}, or use `kervan audit export`)\n",
          Str(*r, "next_after"));
    }
  });

  // ---- export --------------------------------------------------------------------
  struct ExportArgs {
    AuditFilters filters;
    int64_t page_size = 10000;
    std::string output_file;
  };
  auto x = std::make_shared<ExportArgs>();
  auto* exp = audit->add_subcommand(
      "export",
      "Export matching events as JSON lines (one event per line, with its hash), paging "
      "through the whole log; progress goes to stderr");
  AddClientFlags(exp, o);
  AddFilterFlags(exp, x->filters);
  exp->add_option("--page-size", x->page_size, "events per request (1..10000)")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  exp->add_option("--output-file", x->output_file,
                  "write here (atomically: to FILE.tmp, renamed when complete) instead of stdout");
  exp->callback([&o, &rc, x] {
    auto q = FilterQuery(x->filters);
    if (!q)
      return void(rc = 2);
    std::ofstream file;
    std::string tmp = x->output_file + ".tmp";
    if (!x->output_file.empty()) {
      file.open(tmp, std::ios::binary | std::ios::trunc);
      if (!file)
        return void(rc = UsageError(fmt::format("--output-file: cannot write \"{}\"", tmp)));
    }
    std::ostream& out = x->output_file.empty() ? std::cout : file;
    int64_t cursor = x->filters.after, total = 0, pages = 0;
    for (;;) {
      auto page = *q;
      for (auto& [k, v] : page) {
        if (k == "after")
          v = cursor ? std::to_string(cursor) : "";
      }
      page.emplace_back("limit", std::to_string(x->page_size));
      page.emplace_back("format", "jsonl");
      auto resp = CallRaw(o, "GET", "/api/v1/audit" + Query(page));
      if (!resp) {
        if (!x->output_file.empty())
          std::remove(tmp.c_str());
        return void(rc = 1);
      }
      int64_t count = 0;
      for (char c : resp->body)
        count += c == '\n';
      out << resp->body;
      if (!out) {
        std::cerr << "error: writing the export failed (disk full?)\n";
        return void(rc = 1);
      }
      std::string next = resp->Header("x-kervan-next-after");
      total += count;
      ++pages;
      if (!next.empty())
        cursor = std::stoll(next);
      std::cerr << fmt::format("audit export: {} events so far (through seq {})\n", total, cursor);
      if (count < x->page_size || next.empty())
        break;
    }
    if (!x->output_file.empty()) {
      file.close();
      std::error_code ec;
      std::filesystem::rename(tmp, x->output_file, ec);
      if (!file || ec) {
        std::cerr << fmt::format("error: cannot finish \"{}\": {}\n", x->output_file,
                                 ec ? ec.message() : "write failed");
        return void(rc = 1);
      }
    }
    std::cerr << fmt::format(
        "audit export: done, {} events in {} page(s){}; resume later with "
        "--after {}\n",
        total, pages, x->output_file.empty() ? "" : " written to " + x->output_file, cursor);
  });

  // ---- verify ---------------------------------------------------------------------
  auto* verify =
      audit->add_subcommand("verify", "Recompute the event log's hash chain on the server's store");
  AddClientFlags(verify, o);
  verify->callback([&o, &rc] {
    auto r = Call(o, "POST", "/api/v1/audit/verify");
    if (!r)
      return void(rc = 1);
    if (PrintedJson(o, *r)) {
    } else if ((*r)["ok"] == true) {
      std::cout << fmt::format("audit verify: OK, {} events, chain intact up to seq {}\n",
                               Str(*r, "checked"), Str(*r, "head_seq"));
    } else {
      std::cout << fmt::format("audit verify: BROKEN at seq {}: {}\n", Str(*r, "first_bad_seq"),
                               Str(*r, "problem"));
    }
    rc = (*r)["ok"] == true ? 0 : 3;
  });
}

}  // namespace kervan::app

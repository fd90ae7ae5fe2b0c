// Rule engine throughput (docs/performance.md, "Monitoring and rules"):
// events per second through 100 rules.
//
//   engine/matching:M      the pure part (rule.h), no I/O: 100 parsed rules,
//                          M of which listen to the event's type
//                          (monitor.evaluated); per event, every listening
//                          rule runs Evaluate + Step on its per-subject
//                          ConditionState (a std::map keyed by subject, as
//                          the replay keeps it). 1,000 pre-built
//                          observations over 50 subjects, each 1 s after
//                          the previous one; conditions as rules are
//                          written (metrics thresholds, subject and state
//                          filters, `for: 3`, `for: 5m`, cooldowns).
//   service/<backend>/...  Rules::OnEvent (rules.h) on a real store: 100
//                          enabled rules submitted through Rules::Submit,
//                          all listening to monitor.evaluated; events are
//                          monitor.evaluated events appended to the event
//                          log beforehand (as tests/rules/rules_test.cc
//                          writes them), 50 subjects, delivered in a loop.
//                          OnEvent parses the event, and every rule whose
//                          condition applies reads its (rule, subject) row
//                          of rule_state; a changed state is written back,
//                          a firing is one durable command (rule.fired +
//                          rule_state + rule_actions, group commit).
//     .../no_fire          no condition matches: reads only.
//     .../fire_10pct       10 of the 100 rules (for: 1, no cooldown,
//                          dry_run: true, so nothing acts) match every
//                          event: 10% of evaluations fire, i.e. 10 durable
//                          commits per event.
//   Backends: sqlite (WAL, synchronous=FULL) in KERVAN_BENCH_DIR (default
//   /var/tmp); postgres when KERVAN_BENCH_PG_DSN (key=value libpq string of a
//   user that may CREATE DATABASE) is set, a fresh database dropped at exit.
//
//   cpu/observation_from_event  a copy of what OnEvent does to the event
//                          before each listening rule's evaluation (parse
//                          its data, collect its metrics), for context.
//
// Counters: items_per_second = events per second (engine: per CPU second;
// service: per wall-clock second); evaluations_per_event (engine) and
// fires_per_event (engine: Step's decisions; service: rule_actions rows
// written, one per dry-run firing).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "core/core.h"
#include "rules/rule.h"
#include "rules/rules.h"
#include "store/store.h"

namespace kervan::rules {
namespace {

namespace fs = std::filesystem;

constexpr int kRules = 100;
constexpr int kSubjects = 50;

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string RandomSuffix() {
  static std::mt19937_64 rng{std::random_device{}()};
  return std::to_string(rng() % 1000000000);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rules_bench: %s\n", what.c_str());
  std::exit(1);
}

// The when/for/cooldown of rule i: ten kinds of condition, thresholds varied.
struct Condition {
  std::string when, for_text, cooldown;
};
Condition ConditionOf(int i) {
  int k = i % 10;
  double t = 0.05 * (i / 10);  // 0 .. 0.45 across the ten rules of a kind
  switch (k) {
    case 0:
      return {fmt::format("metrics.drift_share >= {:.2f}", 0.5 + t), "3", "10m"};
    case 1:
      return {
          fmt::format("metrics.accuracy < {:.2f} and subject_id = 'ep-{}'", 0.9 - t / 2, i % 50),
          "3", "1h"};
    case 2:
      return {"data.to = 'RetrainDecision'", "1", "10m"};
    case 3:
      return {
          fmt::format("type = 'monitor.evaluated' and metrics.rows > {}", 100 + 1000 * (i / 10)),
          "3", "30m"};
    case 4:
      return {fmt::format("metrics.drift_share > {:.2f} and metrics.rows >= 1000", 0.3 + t), "5m",
              "1h"};
    case 5:
      return {fmt::format("metrics.drift.f{} > {:.2f}", i % 5, 0.2 + t), "3", "10m"};
    case 6:
      return {fmt::format("state = 'Monitoring' and metrics.accuracy <= {:.2f}", 0.8 - t / 2), "3",
              "10m"};
    case 7:
      return {
          fmt::format("subject_id IN ('ep-{}', 'ep-{}', 'ep-{}') and metrics.drift_share >= 0.4",
                      i % 50, (i + 1) % 50, (i + 2) % 50),
          "1", "1h"};
    case 8:
      return {fmt::format("metrics.psi > {:.2f}", 0.25 + t), "3", "10m"};
    default:
      return {fmt::format("data.transition = 'evaluated' and metrics.auc < {:.2f}", 0.7 - t / 2),
              "3", "10m"};
  }
}

// Event types the rules that do not listen to monitor.evaluated listen to.
constexpr const char* kOtherEvents[] = {"pipeline.run_finished", "deployment.*", "registry.*",
                                        "rule.fired"};

std::string RuleYaml(int i, const std::string& events, const Condition& c, bool dry_run = false) {
  return fmt::format(R"(name: bench-rule-{:03d}
on:
  events: [{}]
when: "{}"
for: {}
cooldown: {}
dry_run: {}
actions:
  - alert: {{severity: warning, summary: "rule {} on {{{{subject_id}}}}"}}
)",
                     i, events, c.when, c.for_text, c.cooldown, dry_run ? "true" : "false", i);
}

// A monitor's numbers as the monitoring module reports them.
Json Metrics(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  Json m = {{"drift_share", u(rng)},
            {"accuracy", 0.7 + 0.3 * u(rng)},
            {"rows", static_cast<int64_t>(200 + 9800 * u(rng))},
            {"psi", 0.4 * u(rng)},
            {"auc", 0.6 + 0.4 * u(rng)}};
  for (int f = 0; f < 5; ++f)
    m[fmt::format("drift.f{}", f)] = 0.5 * u(rng);
  return m;
}

// What FromEvent (rules.cc) makes of a monitor.evaluated event.
Observation ObservationOf(int n, std::mt19937_64& rng) {
  Observation obs;
  obs.event_seq = n + 1;
  obs.subject = fmt::format("ep-{}", n % kSubjects);
  Json metrics = Metrics(rng);
  obs.data = {{"transition", "evaluated"},
              {"from", "Evaluating"},
              {"to", "Monitoring"},
              {"data", {{"metrics", metrics}}}};
  obs.attributes = {{"type", "monitor.evaluated"}, {"subject_kind", "monitor"},
                    {"subject_id", obs.subject},   {"actor", "system:monitoring"},
                    {"project", "default"},        {"reason", ""},
                    {"state", "Monitoring"}};
  for (const auto& [k, v] : metrics.items())
    obs.metrics[k] = v.get<double>();
  return obs;
}

// ---------------------------------------------------------------------------
// The pure engine.

void BM_Engine(benchmark::State& state) {
  const int matching = static_cast<int>(state.range(0));
  std::vector<RuleSpec> rules;
  for (int i = 0; i < kRules; ++i) {
    // Spread the listening rules over the condition kinds.
    bool listens = matching >= kRules || i % (kRules / matching) == 0;
    std::string events =
        listens ? (i % 2 ? "monitor.evaluated" : "\"monitor.*\"") : kOtherEvents[i % 4];
    auto spec = ParseRule(RuleYaml(i, events, ConditionOf(i)));
    if (!spec)
      Die(spec.error().ToString());
    rules.push_back(std::move(spec).value());
  }
  std::mt19937_64 rng(42);
  std::vector<Observation> events;
  for (int n = 0; n < 1000; ++n)
    events.push_back(ObservationOf(n, rng));
  std::vector<std::map<std::string, ConditionState>> states(rules.size());
  const std::string type = "monitor.evaluated";

  int64_t now_us = 1'700'000'000'000'000;
  size_t next = 0;
  int64_t evaluations = 0, fires = 0;
  for (auto _ : state) {
    Observation& obs = events[next];
    next = next + 1 == events.size() ? 0 : next + 1;
    now_us += 1'000'000;  // one event per second
    obs.time_us = now_us;
    for (size_t r = 0; r < rules.size(); ++r) {
      const RuleSpec& rule = rules[r];
      if (!rule.MatchesEventType(type))
        continue;
      Applicability a = Evaluate(rule, obs);
      if (a == Applicability::kNotApplicable)
        continue;
      ++evaluations;
      StepResult s = Step(rule, states[r][obs.subject], a, now_us);
      fires += s.fire ? 1 : 0;
    }
  }
  state.SetItemsProcessed(state.iterations());
  double n = static_cast<double>(state.iterations());
  state.counters["evaluations_per_event"] = static_cast<double>(evaluations) / n;
  state.counters["fires_per_event"] = static_cast<double>(fires) / n;
}
BENCHMARK(BM_Engine)->Name("engine/matching")->Arg(100)->Arg(10);

// What Rules::OnEvent does to an event before evaluating a rule on it: a copy
// of FromEvent (rules.cc, not exported): parse the event's data, collect its
// metrics. OnEvent does this once per listening rule.
void BM_ObservationFromEvent(benchmark::State& state) {
  std::mt19937_64 rng(42);
  std::string data = Json({{"transition", "evaluated"},
                           {"from", "Evaluating"},
                           {"to", "Monitoring"},
                           {"data", {{"metrics", Metrics(rng)}}}})
                         .dump();
  for (auto _ : state) {
    Observation obs;
    obs.subject = "ep-1";
    obs.attributes = {{"type", "monitor.evaluated"},
                      {"subject_kind", "monitor"},
                      {"subject_id", "ep-1"},
                      {"actor", "system:monitoring"},
                      {"project", ""},
                      {"reason", ""}};
    obs.data = Json::parse(data);
    if (obs.data.contains("to") && obs.data["to"].is_string())
      obs.attributes["state"] = obs.data["to"].get<std::string>();
    const Json& m = obs.data["data"]["metrics"];
    for (const auto& [k, v] : m.items()) {
      if (v.is_number())
        obs.metrics[k] = v.get<double>();
    }
    benchmark::DoNotOptimize(obs);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ObservationFromEvent)->Name("cpu/observation_from_event");

// ---------------------------------------------------------------------------
// The service on a real store.

enum class Backend { kSqlite, kPostgres };
enum class Variant { kNoFire, kFire10Pct };

class Service {
 public:
  static std::unique_ptr<Service> Create(Backend backend, Variant variant) {
    core::SetLogLevel(core::LogLevel::kWarn);  // not a migration line per run
    auto s = std::unique_ptr<Service>(new Service());
    if (backend == Backend::kPostgres) {
      s->admin_dsn_ = Env("KERVAN_BENCH_PG_DSN");
      std::string name = "kervan_bench_rules_" + RandomSuffix();
      auto admin = store::OpenPostgres({.dsn = s->admin_dsn_, .pool_size = 1});
      if (!admin)
        Die(admin.error().ToString());
      {
        auto conn = (*admin)->Acquire();
        if (!conn)
          Die(conn.error().ToString());
        auto r = (*conn)->Exec("CREATE DATABASE " + name);
        if (!r)
          Die(r.error().ToString());
      }
      s->pg_database_ = name;
      auto db = store::OpenPostgres({.dsn = s->admin_dsn_ + " dbname=" + name, .pool_size = 8});
      if (!db)
        Die(db.error().ToString());
      s->db_ = std::move(db).value();
    } else {
      std::string base = Env("KERVAN_BENCH_DIR");
      s->dir_ =
          fs::path(base.empty() ? "/var/tmp" : base) / ("kervan-rules-bench-" + RandomSuffix());
      fs::create_directories(s->dir_);
      auto db = store::OpenSqlite({.path = (s->dir_ / "kervan.db").string(), .pool_size = 8});
      if (!db)
        Die(db.error().ToString());
      s->db_ = std::move(db).value();
    }
    if (auto m = store::ApplyMigrations(*s->db_); !m)
      Die(m.error().ToString());
    auto log = store::EventLog::Open(*s->db_);
    if (!log)
      Die(log.error().ToString());
    s->log_ = std::move(log).value();
    s->lifecycles_ = std::make_unique<store::Lifecycles>(*s->log_);
    // No services: nothing to act on (the firing variant's rules are dry runs).
    auto rules = Rules::Open(*s->db_, *s->log_, *s->lifecycles_, {}, {});
    if (!rules)
      Die(rules.error().ToString());
    s->rules_ = std::move(rules).value();
    store::CommandContext ctx{.actor = "user:bench", .correlation_id = "bench"};
    for (int i = 0; i < kRules; ++i) {
      Condition c = ConditionOf(i);
      bool fires = variant == Variant::kFire10Pct && i % 10 == 0;
      if (fires) {
        c = {"metrics.drift_share >= 0.0", "1", "0s"};  // every evaluation fires
      } else {
        // The same conditions as the engine's, made never to match these
        // events: the thresholds are out of the events' ranges.
        switch (i % 10) {
          case 2:
            c.when = "data.to = 'RetrainDecision'";
            break;
          case 3:
            c.when = "type = 'monitor.evaluated' and metrics.rows > 1000000";
            break;
          case 0:
          case 4:
          case 7:
            c.when = "metrics.drift_share > 2";
            if (i % 10 == 7)
              c.when += fmt::format(" and subject_id IN ('ep-{}', 'ep-{}')", i % 50, (i + 1) % 50);
            break;
          case 1:
          case 6:
            c.when = fmt::format("metrics.accuracy < 0.1 and subject_id = 'ep-{}'", i % 50);
            break;
          case 5:
            c.when = fmt::format("metrics.drift.f{} > 5", i % 5);
            break;
          case 8:
            c.when = "metrics.psi > 10";
            break;
          default:
            c.when = "data.transition = 'evaluated' and metrics.auc < 0.1";
        }
      }
      auto r = s->rules_->Submit(RuleYaml(i, "monitor.evaluated", c, fires), ctx);
      if (!r)
        Die(r.error().ToString());
    }
    // Events in the log, as the monitoring module writes them.
    std::mt19937_64 rng(42);
    for (int n = 0; n < 200; ++n) {
      Json data = {{"transition", "evaluated"},
                   {"from", "Evaluating"},
                   {"to", "Monitoring"},
                   {"data", {{"metrics", Metrics(rng)}}}};
      auto e = s->log_->Append({.type = "monitor.evaluated",
                                .subject_kind = "monitor",
                                .subject_id = fmt::format("ep-{}", n % kSubjects),
                                .actor = "system:monitoring",
                                .data = data});
      if (!e)
        Die(e.error().ToString());
      s->events_.push_back(*e);
    }
    return s;
  }

  ~Service() {
    rules_.reset();
    lifecycles_.reset();
    if (log_)
      log_->Stop();
    log_.reset();
    db_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    if (!pg_database_.empty()) {
      auto admin = store::OpenPostgres({.dsn = admin_dsn_, .pool_size = 1});
      if (admin) {
        auto conn = (*admin)->Acquire();
        if (conn)
          (void)(*conn)->Exec("DROP DATABASE IF EXISTS " + pg_database_ + " WITH (FORCE)");
      }
    }
  }

  Rules& rules() { return *rules_; }
  // Firings so far: each writes one rule_actions row per action (one here).
  int64_t Firings() {
    auto conn = db_->Acquire();
    if (!conn)
      Die(conn.error().ToString());
    auto rows = (*conn)->Query("SELECT COUNT(*) FROM rule_actions", {});
    if (!rows)
      Die(rows.error().ToString());
    return (*rows)[0].Int(0);
  }
  const std::vector<store::Event>& events() const { return events_; }

 private:
  Service() = default;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<store::EventLog> log_;
  std::unique_ptr<store::Lifecycles> lifecycles_;
  std::unique_ptr<Rules> rules_;
  std::vector<store::Event> events_;
  fs::path dir_;
  std::string admin_dsn_, pg_database_;
};

void BM_Service(benchmark::State& state, Backend backend, Variant variant) {
  if (backend == Backend::kPostgres && Env("KERVAN_BENCH_PG_DSN").empty()) {
    state.SkipWithError("KERVAN_BENCH_PG_DSN is not set");
    return;
  }
  // One store per run (set up before the clock starts; Google Benchmark runs
  // the function several times while it sizes the iteration count).
  auto service = Service::Create(backend, variant);
  std::vector<store::Event> events = service->events();
  const int64_t fired_before = service->Firings();
  size_t next = 0;
  for (auto _ : state) {
    // The events are delivered in a loop: give each delivery the current
    // time, so that a subject's evaluations move forward in time (an older
    // time than the last firing would count as within the cooldown).
    events[next].time_us = core::NowMicros();
    auto s = service->rules().OnEvent(events[next]);
    if (!s) {
      state.SkipWithError(s.error().ToString().c_str());
      break;
    }
    next = next + 1 == events.size() ? 0 : next + 1;
  }
  state.SetItemsProcessed(state.iterations());
  // The timer stopped with the loop.
  state.counters["fires_per_event"] = static_cast<double>(service->Firings() - fired_before) /
                                      static_cast<double>(state.iterations());
  service.reset();
}
BENCHMARK_CAPTURE(BM_Service, sqlite_no_fire, Backend::kSqlite, Variant::kNoFire)
    ->Name("service/sqlite/no_fire")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Service, sqlite_fire_10pct, Backend::kSqlite, Variant::kFire10Pct)
    ->Name("service/sqlite/fire_10pct")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Service, postgres_no_fire, Backend::kPostgres, Variant::kNoFire)
    ->Name("service/postgres/no_fire")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_Service, postgres_fire_10pct, Backend::kPostgres, Variant::kFire10Pct)
    ->Name("service/postgres/fire_10pct")
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace
}  // namespace kervan::rules

BENCHMARK_MAIN();

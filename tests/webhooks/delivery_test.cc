// Webhooks end to end over SQLite and PostgreSQL: events fan out to
// subscriptions and are POSTed, signed, to a real loopback receiver.
#include <set>

#include "webhook_fixture.h"

namespace kervan::webhooks::testing {
namespace {

using Delivered = DeliveryStatus;

int64_t NowSeconds() {
  return core::NowMicros() / 1000000;
}

class WebhooksDeliveryTest : public WebhooksTest {};

TEST_P(WebhooksDeliveryTest, DeliversOnceWithValidSignature) {
  Receiver rx;
  auto created = MustCreate({.url = rx.Url("a"), .event_types = {"model_version.*"}});
  ASSERT_FALSE(created.secret.empty());
  store::Event e = MustAppend("model_version.approved");

  auto d = WaitForDelivery(created.subscription.id, e.seq, Delivered::kDelivered);
  ASSERT_TRUE(d) << "not delivered";
  ASSERT_EQ(d->attempt_log.size(), 1u);
  EXPECT_EQ(d->attempts, 1);
  EXPECT_EQ(d->attempt_log[0].http_status, 200);
  EXPECT_EQ(d->attempt_log[0].error, "");
  EXPECT_GT(d->attempt_log[0].latency_us, 0);
  EXPECT_EQ(d->last_status, 200);

  // Nothing more arrives later (one delivery, one request).
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto got = rx.Got("a");
  ASSERT_EQ(got.size(), 1u);
  const Received& r = got[0];
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.event_header, "model_version.approved");
  EXPECT_EQ(r.delivery_header, d->id.value());
  EXPECT_EQ(r.body, e.ToJson().dump());
  auto verified = VerifySignature(created.secret, r.signature_header, r.body, NowSeconds());
  EXPECT_TRUE(verified) << verified.error().ToString();
  EXPECT_FALSE(
      VerifySignature("wrong-secret-0123456789", r.signature_header, r.body, NowSeconds()));
  EXPECT_EQ(Deliveries(created.subscription.id).size(), 1u);
}

TEST_P(WebhooksDeliveryTest, RetriesServerErrorsThenDelivers) {
  Receiver rx;
  rx.Script("flaky", {500, 500, 200});
  auto created = MustCreate({.url = rx.Url("flaky"), .event_types = {"*"}});
  store::Event e = MustAppend("job.completed");

  auto d = WaitForDelivery(created.subscription.id, e.seq, Delivered::kDelivered);
  ASSERT_TRUE(d) << "not delivered";
  ASSERT_EQ(d->attempt_log.size(), 3u);
  EXPECT_EQ(d->attempts, 3);
  std::vector<int> statuses;
  for (const auto& a : d->attempt_log) {
    statuses.push_back(a.http_status);
    EXPECT_GT(a.latency_us, 0);
  }
  EXPECT_EQ(statuses, (std::vector<int>{500, 500, 200}));
  EXPECT_NE(d->attempt_log[0].error.find("HTTP 500"), std::string::npos) << d->attempt_log[0].error;
  EXPECT_EQ(d->attempt_log[2].error, "");
  // Attempts are spaced by the backoff (40 ms, then 80 ms, minus up to 20%).
  EXPECT_GE(d->attempt_log[1].time_us - d->attempt_log[0].time_us, 30000);
  EXPECT_GE(d->attempt_log[2].time_us - d->attempt_log[1].time_us, 60000);
  // Every try carried the same body and delivery id, each validly signed.
  auto got = rx.Got("flaky");
  ASSERT_EQ(got.size(), 3u);
  for (const auto& r : got) {
    EXPECT_EQ(r.body, got[0].body);
    EXPECT_EQ(r.delivery_header, d->id.value());
    EXPECT_TRUE(VerifySignature(created.secret, r.signature_header, r.body, NowSeconds()));
  }
}

TEST_P(WebhooksDeliveryTest, ReceiverDownFailsAfterMaxAttempts) {
  auto created = MustCreate(
      {.url = "http://127.0.0.1:" + std::to_string(UnusedPort()) + "/x", .event_types = {"*"}});
  store::Event e = MustAppend("job.failed");

  auto d = WaitForDelivery(created.subscription.id, e.seq, Delivered::kFailed);
  ASSERT_TRUE(d) << "not failed";
  EXPECT_EQ(d->attempts, 3);  // FastOptions().retry.max_attempts
  ASSERT_EQ(d->attempt_log.size(), 3u);
  for (const auto& a : d->attempt_log) {
    EXPECT_EQ(a.http_status, 0);
    EXPECT_FALSE(a.error.empty());
  }
  EXPECT_EQ(d->last_status, 0);
  EXPECT_FALSE(d->last_error.empty());
  // A failed delivery is not attempted again.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto again = webhooks_->GetDelivery(created.subscription.id, d->id);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->attempts, 3);
}

TEST_P(WebhooksDeliveryTest, FiltersByTypeAndProject) {
  Receiver rx;
  auto risk_models =
      MustCreate({.url = rx.Url("risk"), .event_types = {"model_version.*"}, .project = "risk"});
  auto jobs = MustCreate({.url = rx.Url("jobs"), .event_types = {"job.completed"}});
  auto all = MustCreate({.url = rx.Url("all"), .event_types = {"*"}});

  int64_t mv_risk = MustAppend("model_version.approved", "risk").seq;
  int64_t mv_fraud = MustAppend("model_version.approved", "fraud").seq;
  int64_t job_done = MustAppend("job.completed").seq;
  int64_t job_done_risk = MustAppend("job.completed", "risk").seq;
  int64_t job_failed = MustAppend("job.failed").seq;
  // Fan-out runs in seq order: once the last event reached "all", every
  // earlier one has been fanned out.
  int64_t marker = MustAppend("zz.marker").seq;
  ASSERT_TRUE(WaitForDelivery(all.subscription.id, marker, Delivered::kDelivered));

  auto seqs = [&](const CreatedSubscription& c) {
    std::set<int64_t> out;
    for (const auto& d : Deliveries(c.subscription.id))
      out.insert(d.event_seq);
    return out;
  };
  EXPECT_EQ(seqs(risk_models), (std::set<int64_t>{mv_risk}));
  EXPECT_EQ(seqs(jobs), (std::set<int64_t>{job_done, job_done_risk}));
  // "*" gets everything but events about webhooks themselves (the three
  // webhook.created events above).
  EXPECT_EQ(seqs(all),
            (std::set<int64_t>{mv_risk, mv_fraud, job_done, job_done_risk, job_failed, marker}));
}

TEST_P(WebhooksDeliveryTest, PendingDeliverySurvivesRestart) {
  // The receiver's port is known but nothing listens yet.
  uint16_t port = UnusedPort();
  Close();
  auto options = FastOptions();
  options.retry.max_attempts = 100;
  Open(options);
  auto created = MustCreate(
      {.url = "http://127.0.0.1:" + std::to_string(port) + "/hook/late", .event_types = {"*"}});
  store::Event e = MustAppend("job.completed");
  ASSERT_TRUE(WaitFor([&] {
    auto list = Deliveries(created.subscription.id);
    return !list.empty() && list[0].attempts >= 1;
  }));

  // Stop everything (as a restart would), bring the receiver up, start again.
  Close();
  Receiver rx(port);
  Open(options);
  auto d = WaitForDelivery(created.subscription.id, e.seq, Delivered::kDelivered);
  ASSERT_TRUE(d) << "not delivered after restart";
  EXPECT_GE(d->attempt_log.size(), 2u);
  EXPECT_EQ(d->attempt_log.front().http_status, 0);
  EXPECT_EQ(d->attempt_log.back().http_status, 200);
  ASSERT_EQ(rx.Got("late").size(), 1u);
  EXPECT_TRUE(VerifySignature(created.secret, rx.Got("late")[0].signature_header,
                              rx.Got("late")[0].body, NowSeconds()));
  // The fan-out cursor survived too: no second delivery for the same event.
  EXPECT_EQ(Deliveries(created.subscription.id).size(), 1u);
}

TEST_P(WebhooksDeliveryTest, FanOutOfARedeliveredEventIsIdempotent) {
  Receiver rx;
  auto created = MustCreate({.url = rx.Url("dup"), .event_types = {"*"}});
  store::Event e = MustAppend("job.completed");
  ASSERT_TRUE(WaitForDelivery(created.subscription.id, e.seq, Delivered::kDelivered));
  // As the at-least-once subscriber would after a crash before saving its cursor.
  ASSERT_TRUE(webhooks_->FanOut(e));
  ASSERT_TRUE(webhooks_->FanOut(e));
  EXPECT_EQ(Deliveries(created.subscription.id).size(), 1u);
}

TEST_P(WebhooksDeliveryTest, DeletingASubscriptionStopsDeliveries) {
  Receiver rx;
  rx.Script("gone", std::vector<int>(1000, 503));
  auto options = FastOptions();
  options.retry.max_attempts = 100;
  Close();
  Open(options);
  auto created = MustCreate({.url = rx.Url("gone"), .event_types = {"*"}});
  MustAppend("job.completed");
  ASSERT_TRUE(WaitFor([&] { return rx.Got("gone").size() >= 2; }));

  ASSERT_TRUE(webhooks_->Delete(created.subscription.id, kAlice));
  size_t at_delete = rx.Got("gone").size();
  MustAppend("job.completed");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // The one attempt that may have been in flight at the delete can still
  // land (its outcome is then dropped); after that, silence.
  EXPECT_LE(rx.Got("gone").size(), at_delete + 1);

  auto list = webhooks_->ListDeliveries(created.subscription.id, {});
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, core::ErrorCode::kNotFound);
  auto deleted = log_->Read({.type = "webhook.deleted"});
  ASSERT_TRUE(deleted);
  ASSERT_EQ(deleted->size(), 1u);
  EXPECT_EQ((*deleted)[0].subject_id, created.subscription.id.value());
  EXPECT_EQ((*deleted)[0].actor, "alice");
  EXPECT_EQ((*deleted)[0].correlation_id, "req-1");
  EXPECT_EQ(webhooks_->Delete(created.subscription.id, kAlice).error().code,
            core::ErrorCode::kNotFound);
}

TEST_P(WebhooksDeliveryTest, PausedSubscriptionGetsNothingUntilResumed) {
  Receiver rx;
  auto created = MustCreate({.url = rx.Url("p"), .event_types = {"*"}});
  auto witness = MustCreate({.url = rx.Url("witness"), .event_types = {"*"}});
  auto paused = webhooks_->SetActive(created.subscription.id, false, kAlice);
  ASSERT_TRUE(paused);
  EXPECT_FALSE(paused->active);
  int64_t while_paused = MustAppend("job.completed").seq;
  // Fan-out has passed the event once the witness got it.
  ASSERT_TRUE(WaitForDelivery(witness.subscription.id, while_paused, Delivered::kDelivered));
  EXPECT_EQ(webhooks_->Ping(created.subscription.id, kAlice).error().code,
            core::ErrorCode::kFailedPrecondition);
  ASSERT_TRUE(webhooks_->SetActive(created.subscription.id, true, kAlice));
  // Setting the same state again records nothing.
  ASSERT_TRUE(webhooks_->SetActive(created.subscription.id, true, kAlice));
  auto ping = webhooks_->Ping(created.subscription.id, kAlice);
  ASSERT_TRUE(ping) << ping.error().ToString();
  ASSERT_TRUE(WaitForDelivery(created.subscription.id, ping->seq, Delivered::kDelivered));
  auto got = rx.Got("p");
  ASSERT_EQ(got.size(), 1u);  // the ping only; the event while paused was skipped
  EXPECT_EQ(got[0].event_header, "webhook.pinged");
  auto events =
      log_->Read({.subject_kind = "webhook", .subject_id = created.subscription.id.value()});
  ASSERT_TRUE(events);
  std::vector<std::string> types;
  for (const auto& ev : *events)
    types.push_back(ev.type);
  EXPECT_EQ(types, (std::vector<std::string>{"webhook.created", "webhook.paused", "webhook.resumed",
                                             "webhook.pinged"}));
}

TEST_P(WebhooksDeliveryTest, CreateRecordsAnEventAndSealsTheSecret) {
  auto created = MustCreate({.url = "http://127.0.0.1:9/x",
                             .event_types = {"job.*"},
                             .project = "risk",
                             .description = "pager",
                             .secret = "a-caller-chosen-secret-value"});
  EXPECT_EQ(created.secret, "a-caller-chosen-secret-value");
  auto events = log_->Read({.type = "webhook.created"});
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  const store::Event& ev = (*events)[0];
  EXPECT_EQ(ev.subject_kind, "webhook");
  EXPECT_EQ(ev.subject_id, created.subscription.id.value());
  EXPECT_EQ(ev.actor, "alice");
  EXPECT_EQ(ev.project, "risk");
  EXPECT_EQ(ev.seq, created.subscription.created_seq);
  EXPECT_EQ(ev.data.find("a-caller-chosen"), std::string::npos);

  auto conn = db_->Acquire();
  ASSERT_TRUE(conn);
  auto rows = (*conn)->Query("SELECT secret_sealed FROM webhook_subscriptions");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 1u);
  std::string sealed = (*rows)[0].Text(0);
  EXPECT_EQ(sealed.find("a-caller-chosen"), std::string::npos);
  auto opened = core::OpenSecret(kSecretKey, sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "a-caller-chosen-secret-value");

  // Generated secrets are long and distinct.
  auto a = MustCreate({.url = "http://h/", .event_types = {"*"}});
  auto b = MustCreate({.url = "http://h/", .event_types = {"*"}});
  EXPECT_GE(a.secret.size(), 32u);
  EXPECT_NE(a.secret, b.secret);
}

TEST_P(WebhooksDeliveryTest, InvalidCreateLeavesNoTrace) {
  for (NewSubscription bad : std::vector<NewSubscription>{
           {.url = "ftp://x/", .event_types = {"*"}},
           {.url = "http://x/", .event_types = {}},
           {.url = "http://x/", .event_types = {"job..x"}},
           {.url = "http://x/", .event_types = {"*"}, .project = "no spaces"},
           {.url = "http://x/", .event_types = {"*"}, .secret = "short"},
       }) {
    auto r = webhooks_->Create(bad, kAlice);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, core::ErrorCode::kInvalidArgument);
    EXPECT_FALSE(r.error().field.empty());
  }
  auto list = webhooks_->List({});
  ASSERT_TRUE(list);
  EXPECT_TRUE(list->empty());
  EXPECT_EQ(log_->head_seq(), 0);
}

KERVAN_INSTANTIATE_BACKENDS(WebhooksDeliveryTest);

TEST(WebhooksOpen, RejectsBadOptions) {
  auto dir =
      std::filesystem::temp_directory_path() / ("kervan-wh-" + store::testing::RandomSuffix());
  std::filesystem::create_directories(dir);
  {
    auto db = store::OpenSqlite({.path = (dir / "k.db").string()});
    ASSERT_TRUE(db);
    ASSERT_TRUE(store::ApplyMigrations(**db));
    auto log = store::EventLog::Open(**db);
    ASSERT_TRUE(log);
    auto o = FastOptions();
    o.secret_key = "short";
    EXPECT_FALSE(Webhooks::Open(**log, o));
    o = FastOptions();
    o.retry.max = std::chrono::milliseconds(1);
    EXPECT_FALSE(Webhooks::Open(**log, o));
    o = FastOptions();
    o.workers = 0;
    EXPECT_FALSE(Webhooks::Open(**log, o));
    auto ok = Webhooks::Open(**log, FastOptions());
    ASSERT_TRUE(ok);
    ASSERT_TRUE((*ok)->Start());
    EXPECT_FALSE((*ok)->Start());
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kervan::webhooks::testing

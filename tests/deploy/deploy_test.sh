#!/usr/bin/env bash
# Checks deploy/ (Prometheus config and rules, Grafana dashboard) and
# scripts/alertmanager.sh against the real tools:
#
#   1. promtool check config / check rules, and a promtool unit test of the
#      alerting rules;
#   2. the dashboard JSON is a sound Grafana model, and every kervan_* metric
#      that a panel, the endpoint variable or a rule uses is registered in
#      src/ or app/ (names not found are listed, and the test fails);
#   3. a real `kervan server` (the binary given) scraped by a real Prometheus
#      run from a config derived from deploy/prometheus/prometheus.yml: the
#      target comes up, its samples are queryable, every dashboard expression
#      (variables substituted) is accepted by /api/v1/query, no rule errors;
#   4. Alertmanager from scripts/alertmanager.sh: an alert Prometheus sends,
#      and one posted to /api/v2/alerts, are served back and notified to a
#      webhook; posted again with endsAt in the past, it is resolved.
#
#   bash tests/deploy/deploy_test.sh path/to/kervan
#
# Everything runs on 127.0.0.1 on free ports, in a temp dir removed on exit
# (KERVAN_TEST_KEEP=1 keeps it). Needs prometheus, promtool,
# prometheus-alertmanager, curl, jq, python3. Exits 1 listing the failed
# checks; a check that cannot even run (a server that does not start) stops
# the test at once.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DASHBOARD=$ROOT/deploy/grafana/kervan-dashboard.json
PROM_CONFIG=$ROOT/deploy/prometheus/prometheus.yml
RULES=$ROOT/deploy/prometheus/kervan-alerts.yml
PROMETHEUS=${PROMETHEUS_BIN:-/usr/bin/prometheus}
PROMTOOL=${PROMTOOL_BIN:-/usr/bin/promtool}

(($# == 1)) || {
  echo "usage: deploy_test.sh path/to/kervan" >&2
  exit 2
}
KERVAN=$(realpath -- "$1")
STARTED_AT=$(date +%s.%N)

FAILURES=()
fail() {
  echo "FAIL: $*"
  FAILURES+=("$*")
}
since_start() { awk -v s="$STARTED_AT" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
ok() { echo "ok:   $* [$(since_start) s]"; }
# A failure that leaves nothing else worth checking.
die() {
  echo "FATAL: $*" >&2
  local log
  for log in "${DIE_LOGS[@]}"; do
    if [[ -s "$log" ]]; then
      echo "--- last lines of $log ---" >&2
      tail -n 20 "$log" >&2 || true
    fi
  done
  exit 1
}
DIE_LOGS=()

for tool in "$PROMETHEUS" "$PROMTOOL" /usr/bin/prometheus-alertmanager; do
  [[ -x "$tool" ]] || die "$tool not found (apt-get install prometheus prometheus-alertmanager)"
done
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x "$KERVAN" ]] || die "$KERVAN is not an executable"

# shellcheck source=scripts/lib/ports.sh
source "$ROOT/scripts/lib/ports.sh"

TMP=$(mktemp -d /tmp/kervan-deploy-test.XXXXXX)
SERVER_PID="" PROM_PID="" HOOK_PID=""
stop_pid() {
  local pid=$1 i
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$PROM_PID"
  stop_pid "$SERVER_PID"
  stop_pid "$HOOK_PID"
  bash "$ROOT/scripts/alertmanager.sh" stop "$TMP/am" >/dev/null 2>&1 || true
  if [[ "${KERVAN_TEST_KEEP:-}" == 1 ]]; then
    echo "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# prom_query URL QUERY: /api/v1/query's JSON answer (an error answer included).
prom_query() {
  curl -sS --max-time 10 -G "$1/api/v1/query" --data-urlencode "query=$2"
}

# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds (0), gives
# up (CMD returned 2) or SECONDS pass.
wait_for() {
  local seconds=$1 i rc
  shift
  for ((i = 0; i < seconds * 5; i++)); do
    rc=0
    "$@" || rc=$?
    ((rc != 0)) || return 0
    ((rc != 2)) || return 2
    sleep 0.2
  done
  return 1
}

# ---------------------------------------------------------------------------
echo "== 1. promtool"
if out=$("$PROMTOOL" check config "$PROM_CONFIG" 2>&1); then
  ok "promtool check config deploy/prometheus/prometheus.yml"
else
  fail "promtool check config deploy/prometheus/prometheus.yml: $out"
fi
if out=$("$PROMTOOL" check rules "$RULES" 2>&1); then
  ok "promtool check rules deploy/prometheus/kervan-alerts.yml"
else
  fail "promtool check rules deploy/prometheus/kervan-alerts.yml: $out"
fi

# Unit test of the alerting rules: each alert fires on the data it is meant
# for, with its labels and annotation, and stays quiet on healthy data.
cat >"$TMP/rules-test.yml" <<EOF
rule_files:
  - $RULES
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'kervan_inference_requests_total{endpoint="churn",version="3",side="stable",outcome="ok"}'
        values: '0+90x20'
      - series: 'kervan_inference_requests_total{endpoint="churn",version="3",side="stable",outcome="error"}'
        values: '0+10x20'
      - series: 'kervan_inference_requests_total{endpoint="fraud",version="1",side="stable",outcome="ok"}'
        values: '0+99x20'
      - series: 'kervan_inference_requests_total{endpoint="fraud",version="1",side="stable",outcome="error"}'
        values: '0+1x20'
      - series: 'kervan_rollout_state{endpoint="churn",state="GradualRollout"}'
        values: '1 1 0 0 0'
      - series: 'kervan_rollout_state{endpoint="churn",state="RolledBack"}'
        values: '0 0 1 1 1'
      - series: 'kervan_rollout_state{endpoint="fraud",state="FullProduction"}'
        values: '1 1 1 1 1'
      - series: 'kervan_monitor_dataset_drift{endpoint="churn"}'
        values: '1x30'
      - series: 'kervan_monitor_drift_share{endpoint="churn"}'
        values: '0.5x30'
      - series: 'kervan_monitor_dataset_drift{endpoint="fraud"}'
        values: '0x30'
      - series: 'up{job="kervan",instance="127.0.0.1:8080"}'
        values: '1 1 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 10m
        alertname: KervanInferenceErrorRatioHigh
        exp_alerts:
          - exp_labels: {severity: critical, endpoint: churn}
            exp_annotations:
              summary: 'Endpoint churn: 10% of inference requests fail'
      - eval_time: 1m
        alertname: KervanRolloutRolledBack
        exp_alerts: []
      - eval_time: 3m
        alertname: KervanRolloutRolledBack
        exp_alerts:
          - exp_labels: {severity: warning, endpoint: churn, state: RolledBack}
            exp_annotations:
              summary: 'Rollout on endpoint churn ended RolledBack'
      - eval_time: 10m
        alertname: KervanDatasetDrift
        exp_alerts: []
      - eval_time: 20m
        alertname: KervanDatasetDrift
        exp_alerts:
          - exp_labels: {severity: warning, endpoint: churn}
            exp_annotations:
              summary: 'Endpoint churn: dataset drift (50% of features drifted)'
      - eval_time: 5m
        alertname: KervanTargetDown
        exp_alerts:
          - exp_labels: {severity: critical, job: kervan, instance: '127.0.0.1:8080'}
            exp_annotations:
              summary: 'Kervan kervan at 127.0.0.1:8080 is not answering /metrics'
EOF
if out=$("$PROMTOOL" test rules "$TMP/rules-test.yml" 2>&1); then
  ok "promtool test rules: alerts fire as designed"
else
  fail "promtool test rules (alerts in kervan-alerts.yml): $out"
fi

# ---------------------------------------------------------------------------
echo "== 2. dashboard model and metric names"
EXPRS=$TMP/exprs.jsonl  # {"panel": title, "ref": refId, "expr": ...} per line
if ! jq -e . "$DASHBOARD" >/dev/null 2>"$TMP/jq.err"; then
  die "deploy/grafana/kervan-dashboard.json is not valid JSON: $(cat "$TMP/jq.err")"
fi
ok "dashboard is valid JSON"
# Panels at the top level and inside (collapsed) rows.
PANELS='[.panels[] | ., (.panels // [])[]] | map(select(.type != "row"))'
jq -c "($PANELS) | .[] | .title as \$t | (.targets // [])[] | {panel: \$t, ref: .refId, expr: .expr}" \
  "$DASHBOARD" >"$EXPRS"
n_exprs=$(wc -l <"$EXPRS")
((n_exprs >= 20)) || fail "dashboard: only $n_exprs panel expressions (expected the full set of rows)"

dash_check() {  # dash_check DESCRIPTION JQ_BOOLEAN_FILTER
  if jq -e "$2" "$DASHBOARD" >/dev/null; then ok "dashboard: $1"; else fail "dashboard: $1"; fi
}
dash_check "schemaVersion >= 36" '.schemaVersion >= 36'
dash_check "has a title and a uid" '(.title | length > 0) and (.uid | length > 0)'
dash_check "variable datasource of type datasource, query prometheus" \
  '[.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")] | length == 1'
dash_check "variable endpoint = label_values(kervan_inference_requests_total, endpoint)" \
  '[.templating.list[] | select(.name == "endpoint" and .type == "query" and
     ((.query | if type == "object" then .query else . end) == "label_values(kervan_inference_requests_total, endpoint)"))]
   | length == 1'
dash_check "panel ids are unique" "[.panels[] | ., (.panels // [])[]] | map(.id) | (length == (unique | length)) and all(. != null)"
dash_check "every panel has a gridPos inside 24 columns" \
  "($PANELS) + [.panels[] | select(.type == \"row\")] | all(.[]; .gridPos.w > 0 and .gridPos.h > 0 and .gridPos.x + .gridPos.w <= 24)"
dash_check "every non-row panel queries the \${datasource} variable" \
  "($PANELS) | all(.[]; .datasource.uid == \"\${datasource}\" and ((.targets // []) | length > 0) and all(.targets[]; .datasource.uid == \"\${datasource}\"))"
dash_check "every target has a refId and a non-empty expr" \
  "($PANELS) | all(.[] | (.targets // [])[]; (.refId | length > 0) and (.expr | type == \"string\" and length > 0))"
for row in Serving Rollouts Drift "Data quality" "Model performance (from feedback)" Monitor "Rules and alerts" \
  "Control plane"; do
  dash_check "row \"$row\"" "[.panels[] | select(.type == \"row\" and .title == \"$row\")] | length == 1"
done

# Metric names registered by the sources: the quoted "kervan_..." strings.
grep -rhoE '"kervan_[a-z0-9_]+"' "$ROOT/src" "$ROOT/app" | tr -d '"' | sort -u >"$TMP/registered.txt"
# kervan_* names in expressions: not part of a longer name nor of a recording
# rule's level:name:op.
names_in() { grep -oP '(?<![A-Za-z0-9_:])kervan_[a-z0-9_]+(?![A-Za-z0-9_:])' || true; }
# Prints the names (from stdin) that are not registered; a histogram's
# _bucket/_sum/_count series count as their family's name.
unregistered() {
  local name base
  while read -r name; do
    [[ -n "$name" ]] || continue
    grep -qxF "$name" "$TMP/registered.txt" && continue
    base=$(sed -E 's/_(bucket|sum|count)$//' <<<"$name")
    grep -qxF "$base" "$TMP/registered.txt" && continue
    echo "$name"
  done
}
# The check itself must be able to fail.
if [[ "$(echo kervan_deploy_test_no_such_metric_bucket | unregistered)" != kervan_deploy_test_no_such_metric_bucket ]] ||
  [[ -n "$(echo kervan_http_request_duration_seconds_bucket | unregistered)" ]]; then
  fail "self-check of the registered-name check"
fi
{
  jq -r '.expr' "$EXPRS"
  jq -r '.templating.list[] | select(.name == "endpoint") | .definition // "", (.query | if type == "object" then .query else . end)' "$DASHBOARD"
} | names_in | sort -u >"$TMP/dashboard-names.txt"
grep -vE '^\s*#' "$RULES" | names_in | sort -u >"$TMP/rules-names.txt"
echo "dashboard uses $(wc -l <"$TMP/dashboard-names.txt") kervan_* names, rules $(wc -l <"$TMP/rules-names.txt"), sources register $(wc -l <"$TMP/registered.txt")"
missing_dash=$(unregistered <"$TMP/dashboard-names.txt")
missing_rules=$(unregistered <"$TMP/rules-names.txt")
if [[ -n "$missing_dash" ]]; then
  fail "dashboard metric names not registered in src/ or app/: $(paste -sd' ' <<<"$missing_dash")"
else
  ok "every dashboard metric name is registered"
fi
if [[ -n "$missing_rules" ]]; then
  fail "rule metric names not registered in src/ or app/: $(paste -sd' ' <<<"$missing_rules")"
else
  ok "every rule metric name is registered"
fi

# ---------------------------------------------------------------------------
echo "== 3. kervan server scraped by Prometheus"
mkdir -p "$TMP/kervan"
DIE_LOGS=("$TMP/kervan/server.log")
(
  # A developer's KERVAN_* settings must not leak into the server's config.
  while read -r v; do unset "$v"; done < <(compgen -e | grep '^KERVAN_' || true)
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
  exec "$KERVAN" server --data-dir "$TMP/kervan" --port 0 --ready-file "$TMP/kervan/port" \
    --set log.events=false --set auth.protect_metrics=true </dev/null >>"$TMP/kervan/server.log" 2>&1
) &
SERVER_PID=$!
server_ready() {
  kill -0 "$SERVER_PID" 2>/dev/null || die "kervan server exited during start"
  [[ -s "$TMP/kervan/port" ]]
}
wait_for 30 server_ready || die "kervan server did not write its ready file within 30 s"
KPORT=$(<"$TMP/kervan/port")
KURL="http://127.0.0.1:$KPORT"
# auth.protect_metrics is on, so the scrape also checks the config's
# (commented) authorization: block, with the bootstrap admin's token.
TOKEN_FILE=$TMP/kervan/admin.token
[[ -s "$TOKEN_FILE" ]] || die "no $TOKEN_FILE after the server's first start"
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$KURL/metrics")
[[ "$code" == 401 ]] || fail "GET /metrics without a token with auth.protect_metrics=true: HTTP $code, not 401"
curl -fsS --max-time 5 -H "Authorization: Bearer $(head -n 1 "$TOKEN_FILE")" "$KURL/metrics" \
  >"$TMP/kervan/metrics.txt" || die "GET $KURL/metrics with the admin token failed"
ok "kervan server on $KURL serves /metrics to a token only ($(grep -c '^kervan_' "$TMP/kervan/metrics.txt") samples)"

# Alertmanager (with a webhook receiver) first: Prometheus's config names it.
cat >"$TMP/hook.py" <<'EOF'
import http.server, sys
out, port_file = sys.argv[1], sys.argv[2]
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os; os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
EOF
: >"$TMP/hooks.jsonl"
python3 "$TMP/hook.py" "$TMP/hooks.jsonl" "$TMP/hook.port" </dev/null >"$TMP/hook.log" 2>&1 &
HOOK_PID=$!
DIE_LOGS=("$TMP/hook.log")
wait_for 10 test -s "$TMP/hook.port" || die "webhook receiver did not start"
HOOK_URL="http://127.0.0.1:$(<"$TMP/hook.port")/alerts"
DIE_LOGS=("$TMP/am/log")
AM_URL=$(bash "$ROOT/scripts/alertmanager.sh" start "$TMP/am" "$HOOK_URL") ||
  die "scripts/alertmanager.sh start failed"
[[ "$AM_URL" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "alertmanager.sh printed '$AM_URL', not a URL"
[[ "$(bash "$ROOT/scripts/alertmanager.sh" start "$TMP/am" "$HOOK_URL")" == "$AM_URL" ]] ||
  fail "alertmanager.sh start again: not the running instance's URL"
[[ "$(bash "$ROOT/scripts/alertmanager.sh" url "$TMP/am")" == "$AM_URL" ]] ||
  fail "alertmanager.sh url: not the URL start printed"
ok "alertmanager.sh started $AM_URL (start again and url agree)"

# The test's Prometheus config: deploy/prometheus/prometheus.yml with this
# test's server, its authorization: block uncommented with the admin token, an
# unused gateway port, this Alertmanager, 1 s intervals, and one extra rule
# that fires as soon as the server is scraped.
mkdir -p "$TMP/prom"
DIE_LOGS=()
AM_HOSTPORT=${AM_URL#http://}
GW_PORT=$(free_port)
sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$KPORT/" \
  -e "s/127\.0\.0\.1:8081/127.0.0.1:$GW_PORT/" \
  -e "s/127\.0\.0\.1:9093/$AM_HOSTPORT/" \
  -e 's/^\(  scrape_interval:\).*/\1 1s/' \
  -e 's/^\(  evaluation_interval:\).*/\1 1s/' \
  -e 's/^\(  scrape_timeout:\).*/\1 1s/' \
  -e '/^  - kervan-alerts\.yml/a\  - deploy-test-rules.yml' \
  -e 's/^\(    \)# \(authorization:\)$/\1\2/' \
  -e 's/^\(    \)#   \(type: Bearer\)$/\1  \2/' \
  -e "s|^\\(    \\)#   credentials_file: .*|\\1  credentials_file: $TOKEN_FILE|" \
  "$PROM_CONFIG" >"$TMP/prom/prometheus.yml"
cp "$RULES" "$TMP/prom/kervan-alerts.yml"
cat >"$TMP/prom/deploy-test-rules.yml" <<'EOF'
groups:
  - name: deploy-test
    interval: 1s
    rules:
      - alert: KervanDeployTestScraped
        expr: up{job="kervan"} == 1
        labels:
          severity: none
        annotations:
          summary: 'deploy_test: Prometheus scraped {{ $labels.instance }}'
EOF
for want in "127.0.0.1:$KPORT" "targets: \\['$AM_HOSTPORT'\\]" "scrape_interval: 1s" "evaluation_interval: 1s" \
  "- deploy-test-rules.yml" "^    authorization:" "^      type: Bearer" "^      credentials_file: $TOKEN_FILE"; do
  grep -q -- "$want" "$TMP/prom/prometheus.yml" ||
    die "could not derive the test config from deploy/prometheus/prometheus.yml ('$want' missing): keep the server target on 127.0.0.1:8080 with the commented authorization: block, the Alertmanager on 127.0.0.1:9093 and rule_files with '  - kervan-alerts.yml'"
done
"$PROMTOOL" check config "$TMP/prom/prometheus.yml" >"$TMP/prom/check.log" 2>&1 ||
  die "the derived config fails promtool: $(cat "$TMP/prom/check.log")"

DIE_LOGS=("$TMP/prom/log")
for attempt in 1 2 3; do
  PPORT=$(free_port)
  PURL="http://127.0.0.1:$PPORT"
  "$PROMETHEUS" --config.file="$TMP/prom/prometheus.yml" --storage.tsdb.path="$TMP/prom/data" \
    --web.listen-address="127.0.0.1:$PPORT" --rules.alert.resend-delay=1s \
    </dev/null >"$TMP/prom/log" 2>&1 &
  PROM_PID=$!
  prom_ready() {
    kill -0 "$PROM_PID" 2>/dev/null || return 2
    curl -fsS -o /dev/null --max-time 1 "$PURL/-/ready" 2>/dev/null
  }
  if wait_for 15 prom_ready; then break; fi
  kill -0 "$PROM_PID" 2>/dev/null && die "Prometheus did not get ready within 15 s"
  wait "$PROM_PID" 2>/dev/null || true
  if ((attempt == 3)) || ! grep -q 'address already in use' "$TMP/prom/log"; then
    die "Prometheus exited during start"
  fi
done
ok "Prometheus ready on $PURL"

target_up() {
  prom_query "$PURL" 'up{job="kervan"} == 1' | jq -e '.data.result | length == 1' >/dev/null
}
if wait_for 20 target_up; then
  ok "Prometheus scrapes the kervan server with the bearer token (up{job=\"kervan\"} == 1)"
else
  curl -sS "$PURL/api/v1/targets" | jq -c '.data.activeTargets[] | {job: .labels.job, health, lastError}' || true
  die "target job=kervan not up within 20 s"
fi
for q in 'kervan_event_log_head_seq{job="kervan"} > 0' 'kervan_http_requests_total{job="kervan",route="/metrics"}'; do
  if prom_query "$PURL" "$q" | jq -e '.status == "success" and (.data.result | length >= 1)' >/dev/null; then
    ok "scraped samples are queryable: $q"
  else
    fail "no result for $q: $(prom_query "$PURL" "$q")"
  fi
done
if prom_query "$PURL" 'sum by (endpoint (kervan_inference_in_flight)' | jq -e '.status == "error"' >/dev/null; then
  ok "self-check: a malformed expression is rejected"
else
  fail "self-check: Prometheus accepted a malformed expression"
fi

# Every panel expression, with the dashboard's variables as Grafana would
# substitute them ($endpoint = All = .*).
n_ok=0
# shellcheck disable=SC2016 # the Grafana variables are literal
while IFS=$'\t' read -r panel ref expr_b64; do
  expr=$(base64 -d <<<"$expr_b64")  # may hold newlines, tabs, backslashes
  q=$expr
  q=${q//'${endpoint}'/.*}
  q=${q//'$endpoint'/.*}
  q=${q//'$__rate_interval'/1m}
  q=${q//'$__interval'/15s}
  q=${q//'$__range'/1h}
  if [[ "$q" =~ \$[{A-Za-z_] ]]; then
    fail "panel \"$panel\" $ref: unknown variable in: $expr"
    continue
  fi
  answer=$(prom_query "$PURL" "$q" || true)
  if [[ "$answer" == '{"status":"success"'* ]]; then
    n_ok=$((n_ok + 1))
  else
    fail "panel \"$panel\" $ref: query $q -> $answer"
  fi
done < <(jq -r '[.panel, .ref, (.expr | @base64)] | @tsv' "$EXPRS")
ok "$n_ok of $n_exprs dashboard expressions accepted by Prometheus"
answer=$(curl -sS -G "$PURL/api/v1/label/endpoint/values" --data-urlencode 'match[]=kervan_inference_requests_total')
if jq -e '.status == "success"' >/dev/null <<<"$answer"; then
  ok "endpoint variable's label_values query accepted"
else
  fail "label_values(kervan_inference_requests_total, endpoint): $answer"
fi

# The rules loaded from kervan-alerts.yml; none may fail to evaluate.
rules_loaded() {
  curl -sS "$PURL/api/v1/rules" >"$TMP/rules.json" &&
    jq -e '[.data.groups[].name] | index("kervan-alerts") != null and index("kervan-recording") != null' \
      "$TMP/rules.json" >/dev/null
}
if wait_for 5 rules_loaded; then
  bad=$(jq -c '[.data.groups[].rules[] | select(.health == "err") | {name, lastError}]' "$TMP/rules.json")
  if [[ "$bad" == "[]" ]]; then
    ok "rule groups kervan-recording and kervan-alerts loaded, no rule in error"
  else
    fail "rules in error: $bad"
  fi
else
  fail "Prometheus did not load the kervan-recording/kervan-alerts groups: $(cat "$TMP/rules.json")"
fi

# ---------------------------------------------------------------------------
echo "== 4. Alertmanager"
am_alerts() {  # am_alerts ALERTNAME: the active alerts of that name
  curl -sS --max-time 5 -G "$AM_URL/api/v2/alerts" --data-urlencode "filter=alertname=\"$1\""
}
hook_got() {  # hook_got ALERTNAME STATUS: the webhook got a notification
  jq -e --arg a "$1" --arg s "$2" 'select(.groupLabels.alertname == $a and .status == $s)' \
    "$TMP/hooks.jsonl" 2>/dev/null | grep -q .
}

# From Prometheus, through the alerting: block of prometheus.yml.
prom_alert_arrived() {
  am_alerts KervanDeployTestScraped | jq -e 'length == 1 and .[0].labels.job == "kervan"' >/dev/null
}
if wait_for 20 prom_alert_arrived; then
  ok "an alert from Prometheus's rules reached Alertmanager"
else
  fail "no KervanDeployTestScraped alert from Prometheus in Alertmanager within 20 s;" \
    "alertmanagers: $(curl -sS "$PURL/api/v1/alertmanagers" | jq -c .data)"
fi

ALERT='{"labels": {"alertname": "KervanDeployTestManual", "severity": "info", "endpoint": "churn"},
        "annotations": {"summary": "posted by deploy_test.sh"},
        "generatorURL": "http://127.0.0.1/deploy-test"}'
code=$(curl -sS -o "$TMP/post.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data "[$ALERT]" "$AM_URL/api/v2/alerts")
[[ "$code" == 200 ]] || fail "POST /api/v2/alerts: HTTP $code $(cat "$TMP/post.out")"
manual_active() {
  am_alerts KervanDeployTestManual | jq -e 'length == 1 and .[0].status.state == "active" and
    .[0].labels.endpoint == "churn" and .[0].annotations.summary == "posted by deploy_test.sh"' >/dev/null
}
if wait_for 5 manual_active; then
  ok "posted alert is served back by GET /api/v2/alerts (active)"
else
  fail "posted alert not served back: $(am_alerts KervanDeployTestManual)"
fi
if wait_for 10 hook_got KervanDeployTestManual firing; then
  ok "webhook receiver got the firing notification"
else
  fail "webhook receiver got no firing notification within 10 s: $(cat "$TMP/hooks.jsonl")"
fi

ended=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
code=$(curl -sS -o "$TMP/post.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data "[$(jq -c --arg e "$ended" '. + {endsAt: $e}' <<<"$ALERT")]" "$AM_URL/api/v2/alerts")
[[ "$code" == 200 ]] || fail "POST /api/v2/alerts (endsAt in the past): HTTP $code $(cat "$TMP/post.out")"
manual_gone() { am_alerts KervanDeployTestManual | jq -e 'length == 0' >/dev/null; }
if wait_for 5 manual_gone; then
  ok "alert posted with endsAt in the past is resolved (gone from GET /api/v2/alerts)"
else
  fail "alert still active after endsAt in the past: $(am_alerts KervanDeployTestManual)"
fi
if wait_for 10 hook_got KervanDeployTestManual resolved; then
  ok "webhook receiver got the resolved notification"
else
  fail "webhook receiver got no resolved notification within 10 s: $(cat "$TMP/hooks.jsonl")"
fi

bash "$ROOT/scripts/alertmanager.sh" stop "$TMP/am" 2>/dev/null
if curl -fsS -o /dev/null --max-time 1 "$AM_URL/-/ready" 2>/dev/null; then
  fail "Alertmanager still answers after alertmanager.sh stop"
else
  ok "alertmanager.sh stop stopped it"
fi
bash "$ROOT/scripts/alertmanager.sh" stop "$TMP/am" 2>/dev/null || fail "alertmanager.sh stop twice failed"

# ---------------------------------------------------------------------------
elapsed=$(since_start)
if ((${#FAILURES[@]})); then
  echo
  echo "${#FAILURES[@]} check(s) failed (${elapsed} s):"
  printf '  - %s\n' "${FAILURES[@]}"
  exit 1
fi
echo "all deploy checks passed (${elapsed} s)"

#!/usr/bin/env bash
# The main job (README command 1): builds Kervan, starts a server on the
# embedded defaults (SQLite in a temporary data dir) and tells a short story
# with the CLI, each person acting with their own API token:
#
#   the admin (bootstrap token) creates project `risk`, user:alice (scientist)
#   and user:erin (engineer) and a token for each; erin registers model
#   credit-risk with a validation gate; alice tracks three training runs
#   through the MLflow REST API (params, metric history, an artifact) and
#   compares them; alice's versions are validated on
#   registration (v1 passes, v2 is rejected with evidence); alice may not
#   override the gate (403), erin may only with a reason (400, then a recorded
#   manual override); v3 beats the champion and erin moves the alias to it;
#   on the GPU scheduler (4 virtual GPUs) erin's prod retrain preempts
#   alice's dev sweep, which is requeued and completes.
#   Then the audit trail (who, what, why), the alias history, the hash-chain
#   verification, and a graceful stop.
#
# Exits non-zero as soon as any step does not do what the story says.
# KERVAN_BIN=path/to/kervan skips the setup and build and uses that binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

BOLD=$'\033[1m' DIM=$'\033[2m' OFF=$'\033[0m'
if [[ ! -t 1 ]]; then BOLD="" DIM="" OFF=""; fi
say() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
note() { printf '%s%s%s\n' "$DIM" "$*" "$OFF"; }
die() {
  echo "demo: $*" >&2
  exit 1
}

if [[ -n "${KERVAN_BIN:-}" ]]; then
  KERVAN=$(realpath "$KERVAN_BIN")
else
  say "Installing dependencies and building"
  bash scripts/setup.sh
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build --target kervan
  KERVAN="$ROOT/build/app/kervan"
fi
unset KERVAN_TOKEN KERVAN_TOKEN_FILE

DATA=$(mktemp -d /tmp/kervan-demo.XXXXXX)
SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
}
trap 'stop_server; rm -rf "$DATA"' EXIT

# Who is acting: each person's token, by name.
declare -A TOKEN
# Shows a command the way one would type it: "NAME$ kervan ARGS", quoted.
prompt() {
  local who=$1 line="kervan" arg
  shift 2
  for arg in "$@"; do
    if [[ "$arg" =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then line+=" $arg"; else line+=" '$arg'"; fi
  done
  printf '%s%s$%s %s\n' "$BOLD" "$who" "$OFF" "$line"
}
# as NAME kervan ARGS...: runs the CLI with NAME's token, showing the prompt.
as() {
  prompt "$@"
  local who=$1
  shift 2
  KERVAN_TOKEN="${TOKEN[$who]}" "$KERVAN" "$@"
}
# refused NAME EXPECTED_TEXT kervan ARGS...: the command must fail, and its
# error must mention EXPECTED_TEXT; the error is shown.
refused() {
  local who=$1 expected=$2 out
  shift 2
  prompt "$who" "$@"
  shift
  if out=$(KERVAN_TOKEN="${TOKEN[$who]}" "$KERVAN" "$@" 2>&1); then
    printf '%s\n' "$out"
    die "expected this to be refused"
  fi
  printf '%s\n' "$out"
  grep -qF -- "$expected" <<<"$out" || die "expected the refusal to mention \"$expected\""
}
# expect_state MODEL VERSION STATE: checks the registry's answer.
expect_state() {
  local state
  state=$(KERVAN_TOKEN="${TOKEN[admin]}" "$KERVAN" version get "$1" "$2" -o json |
    sed -n 's/^  "state": "\([A-Za-z]*\)",\{0,1\}$/\1/p')
  [[ "$state" == "$3" ]] || die "$1 version $2 is in state \"$state\", expected $3"
  note "(checked: $1 version $2 is $3)"
}

say "Starting kervan server (config/dev.yaml: SQLite in $DATA)"
# No GPUs here: the local executor pretends the host has 4 (jobs see
# CUDA_VISIBLE_DEVICES as they would on real ones).
"$KERVAN" server --config config/dev.yaml --data-dir "$DATA" --port 0 \
  --set jobs.virtual_gpus=4 --set jobs.cycle_ms=200 --set jobs.termination_grace_ms=2000 \
  --set serving.sample_percent=100 --set monitoring.window_rows=150 --set monitoring.cycle_ms=500 \
  --set rules.cycle_ms=500 \
  --ready-file "$DATA/port" 2>"$DATA/server.log" &
SERVER_PID=$!
for _ in $(seq 1 100); do [[ -s "$DATA/port" ]] && break; sleep 0.1; done
if [[ ! -s "$DATA/port" ]]; then
  echo "demo: server did not start; its log:" >&2
  tail -n 20 "$DATA/server.log" >&2
  exit 1
fi
export KERVAN_URL="http://127.0.0.1:$(cat "$DATA/port")"
echo "server up at $KERVAN_URL (JSON logs in $DATA/server.log)"
[[ "$(stat -c %a "$DATA/admin.token")" == 600 ]] || die "admin.token is not mode 0600"
echo "first start: bootstrap admin user:admin, its token in $DATA/admin.token (mode 0600)"
TOKEN[admin]=$(head -n 1 "$DATA/admin.token")
TOKEN[nobody]=""

say "Every API call needs a token (only /healthz, /readyz and /metrics are open)"
refused nobody "KERVAN_TOKEN" kervan model list

say "1. The admin sets up the risk team: a project, two people, their roles"
note "export KERVAN_TOKEN=\$(head -n 1 $DATA/admin.token)"
as admin kervan whoami
as admin kervan project create risk --description "Credit risk scoring models"
as admin kervan principal create user:alice --display-name "Alice (data scientist)"
as admin kervan principal bind user:alice scientist --project risk --reason "joins the risk team"
as admin kervan principal create user:erin --display-name "Erin (ML engineer)"
as admin kervan principal bind user:erin engineer --project risk --reason "owns risk model releases"

say "... and gives each of them an API token (shown once; secrets elided here)"
for who in alice erin; do
  out=$(as admin kervan token create --for "user:$who" --name demo --expires-in-days 1 2>&1)
  TOKEN[$who]=$(grep -o 'kvn_[A-Za-z0-9]*_[A-Za-z0-9]*' <<<"$out" | head -n 1)
  [[ -n "${TOKEN[$who]}" ]] || die "no token in: $out"
  sed 's/\(kvn_[A-Za-z0-9]*_\)[A-Za-z0-9]*/\1<secret>/' <<<"$out"
done
as admin kervan principal list

say "2. Erin (engineer) registers the model and its validation gate"
as erin kervan model create credit-risk --project risk \
  --description "Probability of default, retail loans" \
  --check 'auc>=0.85' --champion auc:0.02

say "3. Alice trains: her code logs to Kervan with the MLflow REST API (as the MLflow client does)"
as alice kervan experiments create credit-risk-training --project risk --tag owner=alice
EXP=$(KERVAN_TOKEN="${TOKEN[alice]}" "$KERVAN" experiments list -o json |
  jq -r '.items[] | select(.name == "credit-risk-training") | .experiment_id')
# mlflow_call TOKEN ENDPOINT JSON: one MLflow REST call, its JSON answer on stdout.
mlflow_call() {
  curl -sf -H "Authorization: Bearer $1" -H "Content-Type: application/json" \
    "$KERVAN_URL/api/2.0/mlflow/$2" -d "$3" || die "MLflow call $2 failed"
}
declare -A RUN
for trial in "gbm-depth4 4 0.91 0.52" "gbm-depth2 2 0.80 0.41" "gbm-depth6 6 0.92 0.55"; do
  read -r name depth auc ks <<<"$trial"
  RUN[$name]=$(mlflow_call "${TOKEN[alice]}" runs/create \
    "{\"experiment_id\":\"$EXP\",\"run_name\":\"$name\",\"start_time\":$(date +%s%3N)}" |
    jq -r .run.info.run_id)
  metrics=""
  for step in 1 2 3 4 5; do
    metrics+="{\"key\":\"train_loss\",\"value\":$(awk -v s="$step" 'BEGIN { printf "%.3f", 0.9 / s }'),\"timestamp\":$(date +%s%3N),\"step\":$step},"
  done
  mlflow_call "${TOKEN[alice]}" runs/log-batch "{\"run_id\":\"${RUN[$name]}\",
    \"params\":[{\"key\":\"max_depth\",\"value\":\"$depth\"},{\"key\":\"learning_rate\",\"value\":\"0.1\"}],
    \"metrics\":[${metrics}{\"key\":\"auc\",\"value\":$auc,\"timestamp\":$(date +%s%3N)},
                {\"key\":\"ks\",\"value\":$ks,\"timestamp\":$(date +%s%3N)}]}" >/dev/null
  mlflow_call "${TOKEN[alice]}" runs/update \
    "{\"run_id\":\"${RUN[$name]}\",\"status\":\"FINISHED\",\"end_time\":$(date +%s%3N)}" >/dev/null
  echo "run $name (${RUN[$name]}): max_depth=$depth auc=$auc ks=$ks, 5 train_loss steps"
done
printf '{"format": "demo", "max_depth": 4}\n' >"$DATA/model.json"
as alice kervan artifacts put "${RUN[gbm-depth4]}" "$DATA/model.json" model/model.json
as alice kervan runs list -e "$EXP" --filter "metrics.auc > 0.85" --order-by "metrics.auc DESC"
as alice kervan runs compare "${RUN[gbm-depth4]}" "${RUN[gbm-depth6]}"

say "4. Alice registers version 1 from her best first run: the gate validates it at once"
as alice kervan version register credit-risk --run-id "${RUN[gbm-depth4]}" \
  --artifact-uri "mlflow-artifacts:/$EXP/${RUN[gbm-depth4]}/artifacts/model" --metric auc=0.91 --metric ks=0.52
expect_state credit-risk 1 DeploymentReady

say "5. Erin makes version 1 the champion (a reason is required)"
as erin kervan alias set credit-risk champion 1 \
  --reason "first version through the gate; replaces the rules-based scorecard"

say "6. Alice registers version 2 (AUC 0.80): rejected, with the evidence"
as alice kervan version register credit-risk --run-id "${RUN[gbm-depth2]}" \
  --artifact-uri "mlflow-artifacts:/$EXP/${RUN[gbm-depth2]}/artifacts/model" --metric auc=0.80 --metric ks=0.41
expect_state credit-risk 2 Rejected

say "7. Alice tries to override the gate: her role lacks the permission (HTTP 403)"
refused alice "model_version.approve" kervan version approve credit-risk 2 \
  --reason "I think it is fine"
expect_state credit-risk 2 Rejected

say "8. Erin may override it, but not without saying why (HTTP 400)"
refused erin "reason" kervan version approve credit-risk 2

say "... with a reason, the manual override is accepted and recorded"
as erin kervan version approve credit-risk 2 \
  --reason "Risk committee: AUC 0.80 accepted for the thin-file pilot segment (ticket RISK-112)"
expect_state credit-risk 2 DeploymentReady

say "9. Alice registers version 3 (AUC 0.92): passes the threshold and beats the champion"
as alice kervan version register credit-risk --run-id "${RUN[gbm-depth6]}" \
  --artifact-uri "mlflow-artifacts:/$EXP/${RUN[gbm-depth6]}/artifacts/model" --metric auc=0.92 --metric ks=0.55
expect_state credit-risk 3 DeploymentReady

say "10. Erin promotes version 3 to champion"
as erin kervan alias set credit-risk champion 3 \
  --reason "v3 beats v1 on holdout AUC (0.92 vs 0.91); signed off in model review MR-7"
as erin kervan version list credit-risk

# job_state ID: the job's state, read through the CLI's JSON output.
job_state() {
  KERVAN_TOKEN="${TOKEN[admin]}" "$KERVAN" jobs show "$1" -o json |
    sed -n 's/^  "state": "\([A-Za-z]*\)",\{0,1\}$/\1/p'
}
# wait_job ID STATE: polls until the job is in STATE (at most 30 s).
wait_job() {
  local state
  for _ in $(seq 1 150); do
    state=$(job_state "$1") || die "cannot read job $1"
    [[ "$state" == "$2" ]] && { note "(checked: job $1 is $2)"; return; }
    sleep 0.2
  done
  die "job $1 is $(job_state "$1"), expected $2"
}
# submit NAME kervan jobs submit ...: shows the command, returns the job id in JOB.
submit() {
  prompt "$@"
  local who=$1 out
  shift 2
  # -o json before the job's own command (everything after -- is the job's).
  out=$(KERVAN_TOKEN="${TOKEN[$who]}" "$KERVAN" "$1" "$2" -o json "${@:3}") || die "submit failed"
  JOB=$(sed -n 's/^  "id": "\([^"]*\)",$/\1/p' <<<"$out")
  echo "job $JOB submitted: $(sed -n 's/^  "state": "\([A-Za-z]*\)",\{0,1\}$/\1/p' <<<"$out")"
}

say "11. GPU jobs: Alice's dev sweep takes all 4 GPUs; Erin's prod retrain preempts it"
as admin kervan jobs nodes
submit alice kervan jobs submit --project risk --name hp-sweep --priority-class dev --gpus 4 \
  -- /bin/sh -c 'if [ "$KERVAN_ATTEMPT" = 1 ]; then sleep 30; fi; echo "sweep done on GPUs $CUDA_VISIBLE_DEVICES"'
SWEEP=$JOB
wait_job "$SWEEP" Running
submit erin kervan jobs submit --project risk --name retrain --priority-class prod --gpus 2 \
  -- /bin/sh -c 'echo "prod retrain on GPUs $CUDA_VISIBLE_DEVICES"; sleep 1'
RETRAIN=$JOB
as erin kervan jobs explain "$RETRAIN"
wait_job "$RETRAIN" Succeeded
wait_job "$SWEEP" Succeeded
as alice kervan jobs show "$SWEEP"
as alice kervan jobs logs "$SWEEP"
as alice kervan jobs logs "$RETRAIN"

say "12. A real training pipeline: ingest, validate, split, train (XGBoost), evaluate, register"
note "(examples/pipelines/breast-cancer: scikit-learn's bundled breast cancer data, Debian's python3-xgboost)"
as admin kervan principal bind user:alice scientist --project default \
  --reason "runs the shared example pipelines"
as alice kervan pipelines run -f examples/pipelines/breast-cancer/pipeline.yaml --wait
as alice kervan version list breast-cancer

say "... run again: nothing changed, so every step is served from the cache"
as alice kervan pipelines run breast-cancer --wait

say "... a different max_depth: ingest, validate and split stay cached; train, evaluate, register run"
as alice kervan pipelines run breast-cancer -p max_depth=3 --wait
as alice kervan version list breast-cancer

say "13. Serving: version 1 goes live; version 2 replaces it through a canary (20% -> 50% -> 100%)"
as admin kervan principal bind user:erin engineer --project default \
  --reason "deploys the shared example models"
as erin kervan deploy breast-cancer --version 1 --reason "first release of the example model"
ROWS=$(/usr/bin/python3 -c 'import json; from sklearn.datasets import load_breast_cancer as l; print(json.dumps({"instances": l().data[[0, 19, 100]].tolist()}))')
as alice kervan predict breast-cancer --json "$ROWS"
note "(background traffic: 3-row predictions of the data set's rows through the gateway while the canary runs)"
/usr/bin/python3 examples/pipelines/breast-cancer/traffic.py --url "$KERVAN_URL" --token "${TOKEN[alice]}" \
  --scale 1.0 2>>"$DATA/traffic.log" &
TRAFFIC=$!
# No p99 ratio limit: with ten-odd requests per analysis on a 2-core machine
# running the traffic generator too, one slow request is the p99 (the error
# rate and prediction shift still gate the candidate).
as erin kervan deploy breast-cancer --version 2 --steps 20,50,100 --step-seconds 3 --step-requests 20 \
  --interval 1 --min-samples 10 --failure-limit 3 --max-p99-ratio 0 --reason "max_depth=3 retrain" --wait
kill "$TRAFFIC" 2>/dev/null || true
wait "$TRAFFIC" 2>/dev/null || true
as alice kervan predict breast-cancer --json "$ROWS"
as erin kervan endpoints show breast-cancer
ROLLOUT=$(KERVAN_TOKEN="${TOKEN[erin]}" "$KERVAN" rollout history breast-cancer -o json |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["rollouts"][0]["id"])')
say "... the rollout's timeline from the event log (each analysis with its numbers)"
as admin kervan entity history deployment "$ROLLOUT"
[[ "$(KERVAN_TOKEN="${TOKEN[erin]}" "$KERVAN" alias show breast-cancer champion -o json |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("version"))')" == 2 ]] ||
  die "the champion alias of breast-cancer does not point at version 2"
note "(checked: breast-cancer's champion alias moved to version 2 on promotion)"

say "14. The closed loop: drift -> retrain -> canary -> production; a broken version is rolled back"
note "(the endpoint's monitor compares production inputs with the training data's profile)"
as erin kervan monitors show breast-cancer
as erin kervan rules apply -f examples/rules/retrain-on-drift.yaml
as erin kervan rules apply -f examples/rules/deploy-retrained.yaml
as erin kervan rules list
LOOP_START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.5 s.
wait_until() {
  local what=$1 limit=$2 start=$SECONDS
  shift 2
  printf '%s... waiting: %s%s\n' "$DIM" "$what" "$OFF"
  until "$@"; do
    ((SECONDS - start < limit)) || die "gave up after ${limit}s waiting: $what"
    sleep 0.5
  done
  note "(after $((SECONDS - start)) s: $what)"
}
api() { curl -sf -H "Authorization: Bearer ${TOKEN[admin]}" "$KERVAN_URL$1"; }
jq_py() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
monitor_state() { [[ "$(api /api/v1/monitors/breast-cancer | jq_py 'd["state"]')" == "$1" ]]; }
stable_version() { [[ "$(api /api/v1/endpoints/breast-cancer | jq_py 'd["stable_version"]')" == "$1" ]]; }
rule_started_run() {
  api "/api/v1/rules/retrain-on-drift/actions" |
    jq_py '" ".join(a["result"]["pipeline_run"] for a in d["actions"] if a["state"] == "succeeded" and a["type"] == "start_pipeline")' |
    grep -q .
}
last_rollout_state() { [[ "$(api /api/v1/endpoints/breast-cancer/rollouts?limit=1 | jq_py 'd["rollouts"][0]["state"] + ":" + str(d["rollouts"][0]["candidate_version"])')" == "$1" ]]; }
note "(traffic: 3-row predictions whose inputs drift from x1.0 to x1.3 over 20 s, like an instrument losing calibration)"
/usr/bin/python3 examples/pipelines/breast-cancer/traffic.py --url "$KERVAN_URL" --token "${TOKEN[alice]}" \
  --ramp-seconds 20 --scale 1.3 2>>"$DATA/traffic.log" &
TRAFFIC=$!
wait_until "the monitor finds the inputs drifted and asks for a retrain decision" 120 monitor_state RetrainDecision
as erin kervan monitors evaluations breast-cancer
wait_until "rule retrain-on-drift (two drifted windows in a row) starts the pipeline on the new data" 60 rule_started_run
RUN=$(api "/api/v1/rules/retrain-on-drift/actions" |
  jq_py '[a["result"]["pipeline_run"] for a in d["actions"] if a["type"] == "start_pipeline"][0]')
as alice kervan pipelines status "$RUN"
NEXT=$(( $(api /api/v1/models/breast-cancer/versions?limit=1000 | jq_py 'max(v["version"] for v in d["items"])') + 1 ))
wait_until "the pipeline trains version $NEXT on the new data, the gate passes it, rule deploy-retrained canaries it" 240 last_rollout_state "GradualRollout:$NEXT"
wait_until "the canary promotes version $NEXT to production" 120 stable_version "$NEXT"
as erin kervan endpoints show breast-cancer
wait_until "the monitor follows version $NEXT (its profile: the new training data)" 30 monitor_state Monitoring

say "... a deliberately broken version: its model server is down, yet its metrics pass the gate"
BROKEN_BODY=$(KERVAN_TOKEN="${TOKEN[admin]}" "$KERVAN" version get breast-cancer "$NEXT" -o json | /usr/bin/python3 -c '
import json, sys
v = json.load(sys.stdin)
print(json.dumps({"artifact_uri": "http://127.0.0.1:9/v2/models/breast-cancer", "signature": v["signature"],
                  "metrics": {"auc": 0.99, "accuracy": 0.97}, "description": "hand-built server (down)"}))')
prompt erin kervan version register breast-cancer --artifact-uri http://127.0.0.1:9/v2/models/breast-cancer --metric auc=0.99
curl -sf -X POST -H "Authorization: Bearer ${TOKEN[erin]}" -H "Content-Type: application/json" \
  -d "$BROKEN_BODY" "$KERVAN_URL/api/v1/models/breast-cancer/versions" >/dev/null || die "cannot register the broken version"
BROKEN=$((NEXT + 1))
wait_until "rule deploy-retrained canaries version $BROKEN; its errors fail the analysis; it is rolled back" 120 last_rollout_state "RolledBack:$BROKEN"
kill "$TRAFFIC" 2>/dev/null || true
wait "$TRAFFIC" 2>/dev/null || true
as erin kervan endpoints show breast-cancer
stable_version "$NEXT" || die "version $NEXT should still serve after the rollback"
note "(checked: version $NEXT kept serving; version $BROKEN was rolled back automatically)"

say "... the loop's timeline and its decisions, with their evidence, from the audit log"
KERVAN_TOKEN="${TOKEN[admin]}" "$KERVAN" audit log --since "$LOOP_START" --limit 1000 -o json | /usr/bin/python3 -c '
import json, sys
KEEP = ("monitor.retrain_needed", "monitor.retargeted", "rule.fired", "rule.action_succeeded",
        "rule.action_failed", "pipeline_run.", "model_version.", "deployment.", "alert.")
SKIP = ("deployment.analysis_evaluated", "deployment.step_advanced")
drifted = 0  # consecutive drifted windows shown as one line
def flush():
    global drifted
    if drifted > 1:
        print("          (and %d more drifted windows while the loop reacts)" % (drifted - 1))
    drifted = 0
for e in json.load(sys.stdin)["events"]:
    t = e["type"]
    if not t.startswith(KEEP) or t.startswith(SKIP):
        continue
    if t == "monitor.retrain_needed":
        drifted += 1
        if drifted > 1:
            continue
    elif t == "monitor.retargeted":
        flush()
    d = e.get("data") or {}
    why = e.get("reason") or ""
    if t == "rule.fired":
        m = d.get("observation", {}).get("metrics", {})
        why = "rule %s v%s saw %s; decided %s" % (d.get("rule"), d.get("rule_version"),
              ", ".join("%s=%s" % (k, round(v, 3) if isinstance(v, float) else v) for k, v in m.items()
                        if k in ("drift_share", "drifted_features", "dataset_drift", "rows")) or d.get("observation", {}).get("attributes", {}).get("type", ""),
              ", ".join(a["type"] for a in d.get("actions", [])))
    elif t == "rule.action_succeeded":
        why = "%s -> %s" % (d.get("type"), json.dumps(d.get("result")))
    elif t == "monitor.retrain_needed":
        m = d.get("data", {}).get("metrics", {})
        why = "window %s: drift share %.2f (%d features); %s" % (d.get("data", {}).get("window"),
              m.get("drift_share", 0), m.get("drifted_features", 0), why)
    print("%s  %-32s %-28s %-18s %s" % (e["time"][11:19], t, e["subject"]["id"][:28], e["actor"][:18], why[:150]))
flush()
'

say "15. The audit trail of project risk: who did what, when, and why"
as admin kervan audit log --project risk

say "The champion alias: where it points and every move it made"
as admin kervan alias show credit-risk champion

say "Audit: recompute the hash chain over every event"
as admin kervan audit verify
as admin kervan audit export --project risk --output-file "$DATA/risk-audit.jsonl"
echo "$(wc -l <"$DATA/risk-audit.jsonl") events exported as JSON lines (with their hashes)"

say "Stopping the server (SIGTERM: in-flight requests finish, nothing acknowledged is lost)"
stop_server
grep -o '"message":"[^"]*stopped[^"]*"' "$DATA/server.log" | tail -n 1
echo
echo "demo complete."

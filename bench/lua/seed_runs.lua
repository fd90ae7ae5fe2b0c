-- wrk script: creates runs and gives each an "auc" metric, an "lr" param and
-- a "team" tag, as fast as the server takes them.
--   wrk -tT ... URL -s bench/lua/seed_runs.lua -- EXPERIMENT_ID RUNS_PER_THREAD
-- runs/create (with the tag) answers the run id; response() queues it and
-- the next request() on any of the thread's connections logs the metric and
-- the param for it with runs/log-batch. A thread stops itself once all of
-- its runs are logged. done() prints "SEED created=N logged=N errors=N".
local exp_id, target
local sent, created, logged, errors = 0, 0, 0, 0
local pending, head, tail = {}, 1, 0
local threads = {}
local health

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

function init(args)
  exp_id, target = args[1], tonumber(args[2])
  assert(exp_id and target, "seed_runs.lua: -- EXPERIMENT_ID RUNS_PER_THREAD")
  math.randomseed(12345 + (thread_id or 1))
  health = wrk.format("GET", "/healthz")
end

function request()
  if head <= tail then
    local run_id = pending[head]
    pending[head] = nil
    head = head + 1
    local body = string.format(
      '{"run_id":"%s","metrics":[{"key":"auc","value":%.6f,"timestamp":1700000000000,"step":0}],' ..
      '"params":[{"key":"lr","value":"0.01"}]}', run_id, math.random())
    return wrk.format("POST", "/api/2.0/mlflow/runs/log-batch", nil, body)
  end
  if sent < target then
    sent = sent + 1
    local body = string.format(
      '{"experiment_id":"%s","start_time":%d,"tags":[{"key":"team","value":"bench"}]}',
      exp_id, 1700000000000 + (thread_id or 1) * 10000000 + sent)
    return wrk.format("POST", "/api/2.0/mlflow/runs/create", nil, body)
  end
  return health  -- only while the last log-batches are in flight
end

function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    return
  end
  local run_id = string.match(body, '"run_id":"(%x+)"')
  if run_id then
    created = created + 1
    tail = tail + 1
    pending[tail] = run_id
  elseif body == "{}" then
    logged = logged + 1
    if logged >= target then wrk.thread:stop() end
  end
end

function done(summary, latency, requests)
  local c, l, e = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    l = l + t:get("logged")
    e = e + t:get("errors")
  end
  io.write(string.format("SEED created=%d logged=%d errors=%d\n", c, l, e))
end

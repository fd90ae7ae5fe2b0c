-- wrk script: creates runs and gives each an "auc" metric, an "lr" param and
-- a "team" tag, as fast as the server takes them.
--   wrk -tT ... URL -s bench/lua/seed_runs.lua -- EXPERIMENT_ID RUNS_PER_THREAD DONE_FILE
-- runs/create (with the tag) answers the run id; response() queues it and
-- the next request() on any of the thread's connections logs the metric and
-- the param for it with runs/log-batch. A thread stops itself once each of
-- its runs is logged or has failed (any non-200 answer ends one run: a failed
-- create, or a failed log-batch), or when nothing has progressed for 10 s
-- (a request lost with its connection), and appends a line to DONE_FILE:
-- wrk itself runs for its whole -d, so tracking_bench.sh waits for one line
-- per thread and then stops wrk with SIGINT. It counts the runs
-- afterwards and tops up any missing with curl.
-- done() prints "SEED created=N logged=N errors=N".
local exp_id, target, done_file
local finished = false
sent, created, logged, errors = 0, 0, 0, 0  -- globals: done() reads them with thread:get()
local last_progress = os.time()
-- wrk calls request() once in the first thread to check the request and
-- never sends it: every thread answers its first call with the filler.
local first_call = true
local pending, head, tail = {}, 1, 0
local threads = {}
local health

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

function init(args)
  exp_id, target, done_file = args[1], tonumber(args[2]), args[3]
  assert(exp_id and target and done_file, "seed_runs.lua: -- EXPERIMENT_ID RUNS_PER_THREAD DONE_FILE")
  math.randomseed(12345 + (thread_id or 1))
  health = wrk.format("GET", "/healthz")
end

function finish()
  if finished then return end
  finished = true
  local f = io.open(done_file, "a")
  f:write(string.format("thread %d: logged %d errors %d\n", thread_id or 0, logged, errors))
  f:close()
  wrk.thread:stop()
end

function request()
  if first_call then
    first_call = false
    return health
  end
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
  if os.time() - last_progress > 10 then finish() end
  return health  -- only while the last log-batches are in flight
end

function response(status, headers, body)
  if status ~= 200 then
    errors = errors + 1
    last_progress = os.time()
    if not first_error then first_error = status .. " " .. string.sub(body or "", 1, 200) end
  else
    local run_id = string.match(body, '"run_id":"(%x+)"')
    if run_id then
      created = created + 1
      tail = tail + 1
      pending[tail] = run_id
      last_progress = os.time()
    elseif body == "{}" then
      logged = logged + 1
      last_progress = os.time()
    end
  end
  if logged + errors >= target then finish() end
end

function done(summary, latency, requests)
  local c, l, e = 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    l = l + t:get("logged")
    e = e + t:get("errors")
  end
  io.write(string.format("SEED created=%d logged=%d errors=%d\n", c, l, e))
  for _, t in ipairs(threads) do
    local fe = t:get("first_error")
    if fe then io.write("SEED first error: " .. fe .. "\n") end
  end
end

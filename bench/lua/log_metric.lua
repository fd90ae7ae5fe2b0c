-- wrk script: POST /api/2.0/mlflow/runs/log-metric, one point per request.
--   wrk ... URL -s bench/lua/log_metric.lua -- RUN_ID [RUN_ID ...]
-- Each request logs key "loss" at a fresh step to the next run (round robin);
-- wrk threads use disjoint step ranges. Headers (Authorization,
-- Content-Type: application/json) come from wrk -H.
local runs = {}
local counter = 0
local base = 0
local path = "/api/2.0/mlflow/runs/log-metric"

function setup(thread)
  setup_n = (setup_n or 0) + 1
  thread:set("thread_id", setup_n)
end

function init(args)
  for i = 1, #args do runs[i] = args[i] end
  assert(#runs > 0, "log_metric.lua: pass run ids after --")
  base = (thread_id or 1) * 1000000000
end

function request()
  counter = counter + 1
  local step = base + counter
  local body = string.format(
    '{"run_id":"%s","key":"loss","value":%.6f,"timestamp":%d,"step":%d}',
    runs[counter % #runs + 1], 1 / counter, 1700000000000 + counter, step)
  return wrk.format("POST", path, nil, body)
end

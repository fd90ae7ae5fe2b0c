-- wrk script: POST /api/2.0/mlflow/runs/log-batch with POINTS metric points
-- per request (MLflow allows at most 1000).
--   wrk ... URL -s bench/lua/log_batch.lua -- POINTS KEYS RUN_ID [RUN_ID ...]
-- A request carries KEYS distinct keys (m0..m<KEYS-1>) x POINTS/KEYS steps.
-- Bodies are built in init(), 8 per run with different steps, and reused
-- round robin, so wrk spends no CPU building them (the server stores every
-- point it is sent; repeated (key, step) pairs are allowed, as in MLflow).
local reqs = {}
local n = 0

function setup(thread)
  setup_n = (setup_n or 0) + 1
  thread:set("thread_id", setup_n)
end

function init(args)
  local points, keys = tonumber(args[1]), tonumber(args[2])
  assert(points and keys and #args >= 3, "log_batch.lua: -- POINTS KEYS RUN_ID...")
  local steps = math.floor(points / keys)
  local tid = thread_id or 1
  for r = 3, #args do
    for v = 0, 7 do
      local items = {}
      local first = (tid * 8 + v) * steps
      for s = 0, steps - 1 do
        for k = 0, keys - 1 do
          items[#items + 1] = string.format(
            '{"key":"m%d","value":%.6f,"timestamp":%d,"step":%d}',
            k, (k + 1) / (first + s + 1), 1700000000000 + first + s, first + s)
        end
      end
      local body = string.format('{"run_id":"%s","metrics":[%s]}', args[r], table.concat(items, ","))
      reqs[#reqs + 1] = wrk.format("POST", "/api/2.0/mlflow/runs/log-batch", nil, body)
    end
  end
end

function request()
  n = n + 1
  return reqs[n % #reqs + 1]
end

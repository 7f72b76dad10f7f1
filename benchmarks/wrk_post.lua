-- wrk script for bench_scoring.py's closed-loop throughput: POSTs a fresh JSON body per request
-- and prints one JSON line with the totals when done.
--   wrk -t1 -c16 -d10s -s benchmarks/wrk_post.lua URL -- score|mlflow N_FEATURES
local mode, nfeat, i = "score", 0, 0
local start = os.time() + 1  -- whole seconds: start after anything already sent
local run = tostring(start)

function init(args)
  mode = args[1] or "score"
  nfeat = tonumber(args[2] or "0")
end

function request()
  i = i + 1
  local body
  if mode == "mlflow" then
    local vals = {}
    for k = 1, nfeat do vals[k] = string.format("%d.0", (i * 7) % 97) end
    body = '{"inputs": [[' .. table.concat(vals, ",") .. ']]}'
  else
    -- Live traffic arrives in time order: event times start at the wall clock and advance 100 µs
    -- per request (replaying old times would send every request down the late-event path).
    local us = i * 100
    local ts = os.date("!%Y-%m-%dT%H:%M:%S", start + math.floor(us / 1000000)) .. string.format(".%06dZ", us % 1000000)
    body = string.format(
      '{"transaction_id":"w%s-%d","card_id":"c%d","terminal_id":"t%d","merchant_id":"m%d",' ..
      '"amount":%d.0,"region":"eu-west","device_id":"d%d",' ..
      '"timestamp":"%s","channel":"ecom"}',
      run, i, i % 2000, i % 300, i % 100, 10 + i % 500, i % 900, ts)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end

-- POST /api/v1/alerts with a new alert each time (unique title, so none is deduplicated).
-- Environment: RATE (requests/s over all threads; 0 = as fast as possible), THREADS (wrk's -t), TOKEN (optional).
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local pace = require("pace")

local counter = 0
local thread_id = 0
local threads = 0
local delay_fn

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  thread_id = id or 0
  local rate = tonumber(os.getenv("RATE") or "0")
  local count = tonumber(os.getenv("THREADS") or "1")
  delay_fn = pace.new(rate > 0 and (1000 * count / rate) or 0)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("TOKEN")
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

function delay()
  return delay_fn()
end

local run = tostring(math.floor(pace.now_ms()))

function request()
  counter = counter + 1
  local body = string.format(
    '{"source":"bench","severity":"P3","title":"Bench alert %s-%d-%d","description":"load test",'
      .. '"namespace":"bench","labels":{"app":"bench","run":"%s"}}',
    run, thread_id, counter, run)
  return wrk.format(nil, "/api/v1/alerts", nil, body)
end

local failures = 0
function response(status)
  if status ~= 201 then failures = failures + 1 end
end

function done(summary, latency, requests)
  pace.report(summary, latency)
end

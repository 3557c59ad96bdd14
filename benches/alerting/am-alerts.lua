-- POST /api/v2/alerts (Alertmanager API v2) with BATCH new alerts per request (unique label sets, none
-- deduplicated), as rule engines send them. Environment: BATCH (alerts per request, default 1), THREADS (wrk's -t).
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local pace = require("pace")

local counter = 0
local thread_id = 0
local threads = 0
local batch = 1
local ends_at

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  thread_id = id or 0
  batch = tonumber(os.getenv("BATCH") or "1")
  ends_at = os.date("!%Y-%m-%dT%H:%M:%SZ", os.time() + 3600)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local run = tostring(math.floor(pace.now_ms()))

function request()
  local alerts = {}
  for i = 1, batch do
    counter = counter + 1
    alerts[i] = string.format(
      '{"labels":{"alertname":"BenchAlert","severity":"warning","run":"%s","thread":"%d","n":"%d"},'
        .. '"annotations":{"summary":"load test"},"endsAt":"%s",'
        .. '"generatorURL":"http://vmalert:8880/vmalert/alert?group_id=1&alert_id=2"}',
      run, thread_id, counter, ends_at)
  end
  return wrk.format(nil, "/api/v2/alerts", nil, "[" .. table.concat(alerts, ",") .. "]")
end

local failures = 0
function response(status)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  pace.report(summary, latency)
end

-- POST /api/v2/alerts (Alertmanager API v2) with BATCH alerts per request, as rule engines send them. Environment:
--   BATCH      alerts per request (default 1); with BATCH_MAX, each request has a size drawn uniformly from
--   BATCH_MAX  BATCH..BATCH_MAX
--   REPEAT     the share of alerts (0..1, default 0) that repeat one this thread sent in an earlier request (one of
--              its last 1,000: a rule engine resending a firing alert); the others are new label sets
--   THREADS    wrk's -t
-- Every alert ends 4 minutes after its request (`endsAt`, milliseconds), as Prometheus sets it (4 x its resend delay):
-- a repeat moves the end of its alert.
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local pace = require("pace")

local counter = 0
local thread_id = 0
local threads = 0
local batch = 1
local batch_max = 1
local repeat_share = 0
local RECENT = 1000

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  thread_id = id or 0
  batch = tonumber(os.getenv("BATCH") or "1")
  batch_max = tonumber(os.getenv("BATCH_MAX") or tostring(batch))
  repeat_share = tonumber(os.getenv("REPEAT") or "0")
  math.randomseed(thread_id * 7919 + math.floor(pace.now_ms()))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

local run = tostring(math.floor(pace.now_ms()))

function request()
  local alerts = {}
  local size = batch
  if batch_max > batch then size = math.random(batch, batch_max) end
  -- A request names each label set once, as a rule engine's does: repeats are drawn, without repetition, from
  -- what earlier requests sent.
  local before = counter
  local taken = {}
  local ends_at = pace.rfc3339(240000)
  for i = 1, size do
    local n
    if before > 0 and math.random() < repeat_share then
      n = math.random(math.max(1, before - RECENT + 1), before)
      if taken[n] then n = nil end
    end
    if n == nil then
      counter = counter + 1
      n = counter
    end
    taken[n] = true
    alerts[i] = string.format(
      '{"labels":{"alertname":"BenchAlert","severity":"warning","run":"%s","thread":"%d","n":"%d"},'
        .. '"annotations":{"summary":"load test"},"endsAt":"%s",'
        .. '"generatorURL":"http://vmalert:8880/vmalert/alert?group_id=1&alert_id=2"}',
      run, thread_id, n, ends_at)
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

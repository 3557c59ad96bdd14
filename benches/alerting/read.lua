-- GET /api/v1/alerts/{id}, cycling through the ids in the file named by IDS.
-- Environment: IDS, RATE (requests/s over all threads; 0 = as fast as possible), THREADS, TOKEN (optional).
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
local pace = require("pace")

local ids = {}
local position = 0
local delay_fn

function init(args)
  for line in io.lines(os.getenv("IDS")) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  position = math.random(#ids)
  local rate = tonumber(os.getenv("RATE") or "0")
  local count = tonumber(os.getenv("THREADS") or "1")
  delay_fn = pace.new(rate > 0 and (1000 * count / rate) or 0)
  local token = os.getenv("TOKEN")
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

function delay()
  return delay_fn()
end

function request()
  position = position % #ids + 1
  return wrk.format("GET", "/api/v1/alerts/" .. ids[position])
end

function done(summary, latency, requests)
  pace.report(summary, latency)
end

-- Fixed-rate pacing for wrk: each thread keeps a schedule of RATE/threads requests per second and delay()
-- returns the time to the next free slot, so latency is measured at a steady offered load.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } gomon_timespec;
  int clock_gettime(int clock_id, gomon_timespec *tp);
]]
local ts = ffi.new("gomon_timespec")
local pace = {}

function pace.now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- The time of day as RFC 3339 with milliseconds, offset_ms from now.
function pace.rfc3339(offset_ms)
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME
  local ms = tonumber(ts.tv_sec) * 1000 + math.floor(tonumber(ts.tv_nsec) / 1e6) + offset_ms
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(ms / 1000)) .. string.format(".%03dZ", ms % 1000)
end

-- interval_ms: time between two requests of this thread; 0 means no pacing.
function pace.new(interval_ms)
  local next_slot = nil
  return function()
    if interval_ms <= 0 then return 0 end
    local now = pace.now_ms()
    if next_slot == nil or next_slot < now - 1000 then next_slot = now end
    local wait = next_slot - now
    next_slot = next_slot + interval_ms
    if wait < 0 then return 0 end
    return math.floor(wait)
  end
end

-- One line the benchmark script parses: rate, latency percentiles in ms, errors.
function pace.report(summary, latency)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    "RESULT requests=%d seconds=%.2f rate=%.1f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, errors))
end

return pace

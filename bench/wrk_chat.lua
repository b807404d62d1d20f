-- wrk script for bench/run.py: POSTs one JSON body and prints one "BENCHJSON {...}" line.
-- env: BENCH_BODY (path of the body file), BENCH_HEADERS ("Name: value" lines, "\n"-separated).
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"), "cannot open BENCH_BODY")
wrk.method = "POST"
wrk.body = f:read("*a"):gsub("%s+$", "")
f:close()
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local k, v = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
  if k then wrk.headers[k] = v end
end

-- No response() callback: defining one makes wrk run Lua for every reply (client CPU).
-- summary.errors.status counts replies with a status >= 400.
function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  local function ms(us) return us / 1000 end
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_s":%.3f,"rps":%.1f,' ..
    '"lat_ms":{"n":%d,"mean":%.4f,"min":%.4f,"p50":%.4f,"p90":%.4f,"p99":%.4f,"p999":%.4f,"max":%.4f},' ..
    '"socket_errors":%d,"status_errors":%d,"timeouts":%d}\n',
    summary.requests, secs, summary.requests / secs, summary.requests,
    ms(latency.mean), ms(latency.min), ms(latency:percentile(50)), ms(latency:percentile(90)),
    ms(latency:percentile(99)), ms(latency:percentile(99.9)), ms(latency.max),
    e.connect + e.read + e.write, e.status, e.timeout))
end

-- admin.lua: GET /chat/{id} with an admin token, over ids known to exist.
--
-- Request n (over all threads) looks up id lo + n % (hi - lo + 1); bench.py
-- passes the id range of messages the send workload stored.
-- Arguments: lo, hi, token, threads.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

bench_counters = {"non2xx"}

local lo, span, nthreads, headers
local k = 0

function init(args)
  local a = bench_args(args)
  lo = bench_num(a, "lo")
  span = bench_num(a, "hi") - lo + 1
  nthreads = bench_num(a, "threads")
  if span < 1 then error("admin.lua needs hi >= lo") end
  headers = {["Authorization"] = "Bearer " .. (a.token or error("admin.lua needs token="))}
  started_us = bench_now_us()
end

function request()
  local id = lo + (k * nthreads + tid) % span
  k = k + 1
  return wrk.format("GET", "/chat/" .. id, headers)
end

function response(status, headers_, body)
  bench_count_status(status)
end

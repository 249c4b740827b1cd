-- common.lua: what every snaptext wrk script shares. Each script loads it
-- with dofile() (see bench_load_common in the scripts) in every Lua state
-- wrk makes: the setup/done state and one state per thread.
--
--   * arguments after "--" are key=value pairs: bench_args(args) -> table;
--   * setup() numbers the threads (global tid, 0-based) and keeps them so
--     that done() can add up the per-thread counters named in the global
--     bench_counters of the script;
--   * done() prints one line "BENCH-RESULT {json}" that bench.py parses:
--     wrk's totals, its latency percentiles (microseconds) and the counters;
--   * response(), when a script installs bench_response, counts every
--     status outside 200-299 as "non2xx" (wrk itself only counts >= 400).
-- Not here: which requests a workload sends (send.lua, read.lua, ...).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec_t;
int clock_gettime(int clk_id, bench_timespec_t *tp);
]]
local bench_ts = ffi.new("bench_timespec_t")

-- Monotonic clock in microseconds (CLOCK_MONOTONIC = 1 on Linux).
function bench_now_us()
  ffi.C.clock_gettime(1, bench_ts)
  return tonumber(bench_ts.tv_sec) * 1000000 + math.floor(tonumber(bench_ts.tv_nsec) / 1000)
end

function bench_args(args)
  local a = {}
  for _, kv in ipairs(args or {}) do
    local k, v = kv:match("^([%w_]+)=(.*)$")
    if not k then error("bench script argument is not key=value: " .. kv) end
    a[k] = v
  end
  return a
end

function bench_num(a, key, default)
  local v = a[key]
  if v == nil or v == "" then
    if default == nil then error("bench script needs the argument " .. key) end
    return default
  end
  local n = tonumber(v)
  if n == nil then error("bench script argument " .. key .. " is not a number: " .. v) end
  return n
end

-- A text of exactly size bytes (plain ASCII, nothing to escape in JSON),
-- different for each i so that no layer can share them.
function bench_text(i, size)
  local head = "snap " .. i .. " "
  if #head >= size then return head:sub(1, size) end
  return head .. string.rep("x", size - #head)
end

-- Reads one token per line; returns a list (empty when path is nil).
function bench_read_lines(path)
  local out = {}
  if not path or path == "" then return out end
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if line ~= "" then out[#out + 1] = line end
  end
  f:close()
  return out
end

-- Per-thread state every script uses.
tid = tid or 0
non2xx = 0

-- A cheap request HAProxy answers itself: what a thread sends after it has
-- run out of work and asked to stop (wrk always wants one more request).
bench_idle_request = "GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"

function bench_count_status(status)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

-- setup/done state ------------------------------------------------------------
-- The thread's supply of work is used up: note when (once), ask wrk to stop
-- this thread, and give it a request HAProxy answers itself meanwhile.
-- Uses the script's globals ran_out_us, exhausted and idle.
function bench_out_of_supply()
  if not ran_out_us then
    ran_out_us = bench_now_us()
    exhausted = 1
    wrk.thread:stop()
  end
  idle = idle + 1
  return bench_idle_request
end

-- Counts an answer to GET /chats/{user}: empty reads and messages returned,
-- into the script's globals empty and msgs.
function bench_count_read(status, body)
  if status == 200 and body:sub(1, 1) == "[" then
    if body == "[]" then
      empty = empty + 1
    else
      local _, n = body:gsub('"id":', "")
      msgs = msgs + n
    end
  end
end

bench_threads = {}

function setup(thread)
  bench_threads[#bench_threads + 1] = thread
  thread:set("tid", #bench_threads - 1)
end

local function json_number(v)
  if v == nil then return "null" end
  if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
  return string.format("%.3f", v)
end

function done(summary, latency, requests)
  local counters = {}
  for _, name in ipairs(bench_counters or {}) do
    local total = 0
    for _, t in ipairs(bench_threads) do total = total + (tonumber(t:get(name)) or 0) end
    counters[#counters + 1] = string.format('"%s":%s', name, json_number(total))
  end
  -- Times (monotonic microseconds): when the first thread started and when
  -- the last one ran out of work (0 when none did).
  local started, ran_out = nil, 0
  for _, t in ipairs(bench_threads) do
    local s = tonumber(t:get("started_us"))
    if s and (started == nil or s < started) then started = s end
    local e = tonumber(t:get("ran_out_us"))
    if e and e > ran_out then ran_out = e end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH-RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%s,"p90":%s,"p99":%s,"p999":%s,"mean":%s,"max":%s},' ..
    '"started_us":%s,"ran_out_us":%s,"counters":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    json_number(latency:percentile(50)), json_number(latency:percentile(90)),
    json_number(latency:percentile(99)), json_number(latency:percentile(99.9)),
    json_number(latency.mean), json_number(latency.max),
    json_number(started or 0), json_number(ran_out), table.concat(counters, ",")))
end

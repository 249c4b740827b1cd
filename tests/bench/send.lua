-- send.lua: POST /chat to a set of recipients, round robin.
--
-- Request n (counted over all threads) goes to recipient (offset + n) % users,
-- named <prefix><index>, with a text of exactly `text` bytes and the given
-- timeout. Arguments (key=value after "--"):
--   prefix, users, threads   recipients and the wrk thread count (required)
--   text=100 timeout=3600 offset=0
--   tokens=FILE   one bearer token per line, used round robin (required mode)
--   quota=N       each thread stops after N sends (then sends GET /healthz,
--                 which HAProxy answers itself, until wrk ends)
--   check=0       do not look at responses (wrk then skips parsing them; used
--                 for the proxy ceiling, where only wrk's own error counts apply)
-- Used for the send workloads, the proxy ceiling and to fill inboxes.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

bench_counters = {"non2xx", "sent", "idle", "exhausted"}
sent, idle, exhausted = 0, 0, 0

local prefix, users, nthreads, text_bytes, timeout, offset, quota
local tokens, prebuilt
local k = 0

local function build(i)
  local headers = {["Content-Type"] = "application/json"}
  if #tokens > 0 then headers["Authorization"] = "Bearer " .. tokens[i % #tokens + 1] end
  local body = string.format('{"username":"%s%d","text":"%s","timeout":%d}',
                             prefix, i, bench_text(i, text_bytes), timeout)
  return wrk.format("POST", "/chat", headers, body)
end

function init(args)
  local a = bench_args(args)
  prefix = a.prefix or error("send.lua needs prefix=")
  users = bench_num(a, "users")
  nthreads = bench_num(a, "threads")
  text_bytes = bench_num(a, "text", 100)
  timeout = bench_num(a, "timeout", 3600)
  offset = bench_num(a, "offset", 0)
  quota = a.quota and bench_num(a, "quota") or nil
  tokens = bench_read_lines(a.tokens)
  started_us = bench_now_us()
  -- Up to a few thousand recipients: build every request once (cheap to
  -- send at any rate); beyond that, format each one as it is sent.
  if users <= 5000 then
    prebuilt = {}
    for i = 0, users - 1 do prebuilt[i] = build(i) end
  end
  if a.check == "0" then response = nil end
end

function request()
  if quota and k >= quota then
    return bench_out_of_supply()
  end
  local i = (offset + k * nthreads + tid) % users
  k = k + 1
  sent = sent + 1
  if prebuilt then return prebuilt[i] end
  return build(i)
end

function response(status, headers, body)
  bench_count_status(status)
end

-- mixed.lua: 80 % POST /chat, 20 % GET /chats/{user}, on one set of users.
--
-- Of every 5 requests of a thread, 4 are sends and the 5th a read. Thread t
-- owns the users t, t + threads, t + 2 * threads, ... (users / threads of
-- them) and walks them in the same order for sends and for reads, so each
-- user is read once per 4 sends to each of the thread's users: a read
-- returns about 4 messages, and a message is read once, as in real use
-- (sends outnumber reads because every message is read at most once).
-- The warm-up runs the same script on the same users, so the measured run
-- starts with every inbox holding messages.
-- Arguments: prefix, users, threads, text=100, timeout=3600.
-- Counters: sends, reads, empty, msgs (messages returned by the reads).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

bench_counters = {"non2xx", "sends", "reads", "empty", "msgs"}
sends, reads, empty, msgs = 0, 0, 0, 0

local send_reqs, read_reqs = {}, {}
local per, k

function init(args)
  local a = bench_args(args)
  local prefix = a.prefix or error("mixed.lua needs prefix=")
  local users = bench_num(a, "users")
  local nthreads = bench_num(a, "threads")
  local text_bytes = bench_num(a, "text", 100)
  local timeout = bench_num(a, "timeout", 3600)
  per = math.floor(users / nthreads)
  if per < 1 then error("mixed.lua needs at least one user per thread") end
  local headers = {["Content-Type"] = "application/json"}
  for j = 0, per - 1 do
    local i = j * nthreads + tid
    local body = string.format('{"username":"%s%d","text":"%s","timeout":%d}',
                               prefix, i, bench_text(i, text_bytes), timeout)
    send_reqs[j] = wrk.format("POST", "/chat", headers, body)
    read_reqs[j] = wrk.format("GET", "/chats/" .. prefix .. i)
  end
  k = 0
  started_us = bench_now_us()
end

function request()
  local slot = k % 5
  local round = math.floor(k / 5)
  k = k + 1
  if slot == 4 then
    reads = reads + 1
    return read_reqs[round % per]
  end
  local s = round * 4 + slot
  sends = sends + 1
  return send_reqs[s % per]
end

function response(status, headers, body)
  bench_count_status(status)
  bench_count_read(status, body)
end

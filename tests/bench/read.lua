-- read.lua: GET /chats/{user}, each user of a prepared range exactly once.
--
-- Reading empties an inbox, so a read benchmark needs a supply of full
-- inboxes: bench.py fills users <prefix><from> .. <prefix><to - 1> first,
-- and this script reads each of them once (thread t takes from + t,
-- from + t + threads, ...). A thread that has read all of its users notes
-- the time, asks wrk to stop it and sends GET /healthz (answered by HAProxy
-- itself) for the few requests wrk still wants; bench.py then computes the
-- rate over the time until the supply ran out, not over wrk's duration.
-- Arguments: prefix, from, to, threads.
-- Counters: reads, empty (200 with []), msgs (messages returned), idle.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

bench_counters = {"non2xx", "reads", "empty", "msgs", "idle", "exhausted"}
reads, empty, msgs, idle, exhausted = 0, 0, 0, 0, 0

local prefix, first, last, nthreads
local k = 0

function init(args)
  local a = bench_args(args)
  prefix = a.prefix or error("read.lua needs prefix=")
  first = bench_num(a, "from")
  last = bench_num(a, "to")
  nthreads = bench_num(a, "threads")
  started_us = bench_now_us()
end

function request()
  local i = first + k * nthreads + tid
  if i >= last then
    return bench_out_of_supply()
  end
  k = k + 1
  reads = reads + 1
  return wrk.format("GET", "/chats/" .. prefix .. i)
end

function response(status, headers, body)
  bench_count_status(status)
  bench_count_read(status, body)
end

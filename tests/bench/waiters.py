"""waiters.py: what waiting reads (GET /chats/{u}?wait=S) cost and how fast
they deliver, through HAProxy on a stack with one users, one ingest and one
fetch instance (open mode).

N waiters (default 1000) each hold a waiting read of their own inbox; a
sender sends at a steady rate to random waiters, each text carrying the
monotonic time its 201 arrived; a waiter that gets a message records the
delay from that 201 to its own 200 and waits again. It prints, and writes as
JSON with --out:
  - fetch's RSS and threads idle, and with all N waiting (per waiter: the
    difference divided by N), Redis clients and memory;
  - the send-to-delivery delay, p50 / p99 / max, and how many sends were
    delivered (every one must be, exactly once: the run fails otherwise).

  python3 tests/bench/waiters.py [--waiters 1000] [--rate 100] [--seconds 20]
         [--wait 30] [--out FILE]

Needs the binaries (SNAP_*_BIN, as ctest or run.sh set them). The waiters
are one asyncio loop of raw keep-alive HTTP/1.1 connections, so the client
costs little next to what it measures. Speed is reported, never asserted.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time

import snaptest


def proc_status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return int(out["VmRSS"].split()[0]), int(out["Threads"])


async def http(reader, writer, method, path, body=None):
    data = b"" if body is None else json.dumps(body).encode()
    head = "%s %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n" % (method, path, len(data))
    if body is not None:
        head += "Content-Type: application/json\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
    payload = await reader.readexactly(length) if length else b""
    return int(status_line.split()[1]), json.loads(payload) if payload else None


async def run(port, users, args, result):
    got = {}              # text -> number of deliveries
    got_at = {}           # text -> when its waiter had it
    acked_at = {}         # text -> when its 201 arrived
    errors = []
    stop = asyncio.Event()
    waiting = [0]

    async def waiter(user):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not stop.is_set():
                waiting[0] += 1
                st, body = await http(reader, writer, "GET", "/chats/%s?wait=%d" % (user, args.wait))
                waiting[0] -= 1
                now = time.monotonic()
                if st != 200:
                    errors.append(st)
                    await asyncio.sleep(0.2)
                    continue
                for m in body:
                    got[m["text"]] = got.get(m["text"], 0) + 1
                    got_at.setdefault(m["text"], now)
        finally:
            writer.close()

    tasks = [asyncio.create_task(waiter(u)) for u in users]
    t0 = time.monotonic()
    while waiting[0] < len(users) and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # every waiter is inside the service now
    result["all_waiting_after_s"] = round(time.monotonic() - t0, 2)
    result["measure"]()
    sent = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t_end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < t_end:
        n += 1
        user = random.choice(users)
        t_sent = time.monotonic()
        text = "m%d" % n
        st, body = await http(reader, writer, "POST", "/chat", {"username": user, "text": text})
        if st == 201:
            acked_at[text] = time.monotonic()
            sent.append(text)
        else:
            errors.append(st)
        await asyncio.sleep(max(0.0, t_sent + 1.0 / args.rate - time.monotonic()))
    writer.close()
    await asyncio.sleep(3.0)  # the last deliveries
    stop.set()
    await asyncio.wait(tasks, timeout=args.wait + 10)
    for t in tasks:
        t.cancel()
    result["sends_acknowledged"] = len(sent)
    result["delivered"] = sum(1 for t in sent if t in got)
    result["twice"] = sum(1 for t in got if got[t] > 1)
    result["non_200"] = len(errors)
    # A waiter can be handed its message in the same loop turn as the 201
    # reaches the sender: such a delay is below what this clock can tell.
    delays = sorted(max(0.0, got_at[t] - acked_at[t]) for t in sent if t in got_at)
    if delays:
        result["delay_ms"] = {
            "p50": round(1000 * delays[len(delays) // 2], 2),
            "p99": round(1000 * delays[min(len(delays) - 1, int(len(delays) * 0.99))], 2),
            "max": round(1000 * delays[-1], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--waiters", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--wait", type=int, default=30)
    ap.add_argument("--out")
    args = ap.parse_args()
    threads = args.waiters + 64
    # HAProxy must let every waiter through to the one fetch instance.
    os.environ["SNAPTEXT_SERVER_MAXCONN"] = str(threads - 16)
    os.environ["SNAPTEXT_RATE_LIMIT"] = "1000000"
    S = snaptest.Stack(instances=1, env={
        "SNAPTEXT_AUTH": "open", "SNAPTEXT_THREADS": str(threads),
        "SNAPTEXT_MAX_WAITERS": str(args.waiters)})
    code = 1
    try:
        fetch = S.services["fetch"][0]
        rss0, thr0 = proc_status(fetch.pid)
        result = {"waiters": args.waiters, "send_rate": args.rate, "seconds": args.seconds,
                  "fetch_threads_configured": threads,
                  "fetch_idle": {"rss_kb": rss0, "threads": thr0}}

        def measure():
            rss, thr = proc_status(fetch.pid)
            clients = snaptest.redis_cmd(S.redis.port, "INFO", "clients")
            result["fetch_waiting"] = {"rss_kb": rss, "threads": thr}
            result["per_waiter_rss_kb"] = round((rss - rss0) / args.waiters, 1)
            result["redis_connected_clients"] = int(
                [l for l in clients.splitlines() if l.startswith("connected_clients:")][0]
                .split(":")[1])
        result["measure"] = measure
        users = ["w%d" % i for i in range(args.waiters)]
        asyncio.run(run(S.port, users, args, result))
        del result["measure"]
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
        ok = result["delivered"] == result["sends_acknowledged"] and result["twice"] == 0
        print("%d passed, %d failed" % (1 if ok else 0, 0 if ok else 1))
        code = 0 if ok else 1
    finally:
        code = S.teardown(code)
    return code


if __name__ == "__main__":
    sys.exit(main())

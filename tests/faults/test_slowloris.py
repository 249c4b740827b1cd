"""Slowloris against HAProxy: ~200 connections each sending a request head
one byte at a time and never finishing it. Normal clients keep being
served (no failure; p99 under a generous 1 s, a bound against starvation,
not a speed target), and HAProxy closes every slow connection once its
`timeout http-request 5s` runs out, answering 408."""
import select
import socket
import sys
import threading
import time

import faultlib as fl
import snaptest
from snaptest import test

SLOW_CONNS = 200
BYTE_INTERVAL_S = 0.5
HTTP_REQUEST_TIMEOUT_S = 5.0  # deploy/haproxy/haproxy.cfg
P99_BOUND_S = 1.0


class Slowloris(threading.Thread):
    """Opens n connections, then sends each one byte every interval of an
    endless request head, recording when the peer closed it and what it said."""

    def __init__(self, port, n, interval):
        super().__init__(daemon=True)
        self.port, self.n, self.interval = port, n, interval
        head = b"GET /chats/slowloris HTTP/1.1\r\nHost: snaptext\r\n"
        self.head = head + b"".join(b"X-Slow-%d: %d\r\n" % (i, i) for i in range(2000))
        self.socks, self.opened, self.closed, self.replies, self.sent = [], [], [], [], []
        self.refused = 0
        self.stop_flag = threading.Event()
        self.all_open = threading.Event()

    def _close(self, i):
        if self.closed[i] is None:
            self.closed[i] = time.time()
            self.socks[i].close()

    def run(self):
        for _ in range(self.n):
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                self.refused += 1
                continue
            s.setblocking(False)
            self.socks.append(s)
            self.opened.append(time.time())
            self.closed.append(None)
            self.replies.append(b"")
            self.sent.append(0)
        self.all_open.set()
        while not self.stop_flag.is_set():
            live = [i for i in range(len(self.socks)) if self.closed[i] is None]
            if not live:
                return
            for i in live:
                try:
                    self.socks[i].send(self.head[self.sent[i]:self.sent[i] + 1])
                    self.sent[i] += 1
                except BlockingIOError:
                    pass
                except OSError:
                    self._close(i)
            deadline = time.time() + self.interval
            while time.time() < deadline:
                live = [i for i in range(len(self.socks)) if self.closed[i] is None]
                if not live:
                    return
                rd, _, _ = select.select([self.socks[i] for i in live], [], [],
                                         max(0.0, deadline - time.time()))
                for s in rd:
                    i = self.socks.index(s)
                    try:
                        data = s.recv(4096)
                    except OSError:
                        data = b""
                    if data:
                        self.replies[i] += data
                    else:
                        self._close(i)

    def stop(self):
        self.stop_flag.set()
        self.join(10)
        for i in range(len(self.socks)):
            if self.closed[i] is None:
                self.socks[i].close()


@test
def slowloris_does_not_starve_normal_clients():
    with fl.stack() as S:
        users = fl.recipients("sl", 4)
        load = fl.mixed_load(S.port, users, "sl", senders=2, send_rate=15, readers=1, read_rate=10,
                             timeout=10.0)
        load.start()
        time.sleep(4.0)
        t_slow = time.time()
        slow = Slowloris(S.port, SLOW_CONNS, BYTE_INTERVAL_S)
        slow.start()
        assert slow.all_open.wait(30), "could not open the slow connections"
        t_open = time.time()
        fl.wait_until(lambda: all(c is not None for c in slow.closed),
                      "HAProxy to close every slow connection",
                      HTTP_REQUEST_TIMEOUT_S + 10)
        t_closed = time.time()
        time.sleep(1.0)
        load.stop()
        slow.stop()

        before = load.since(0, t_slow)
        during = load.since(t_slow, t_closed)
        bad = [r for r in load.records if r["status"] not in (200, 201)]
        assert not bad, "normal requests failed:\n" + "\n".join(
            fl.describe(r) for r in bad[:10])
        b, d = fl.summary(before), fl.summary(during)
        assert during, "no normal request during the attack"
        assert d["p99_ms"] < 1000 * P99_BOUND_S * fl.MULT, (
            "p99 during the attack %.0f ms" % d["p99_ms"])
        assert slow.refused == 0, "%d slow connections refused" % slow.refused
        held = [c - o for o, c in zip(slow.opened, slow.closed)]
        early = [h for h in held if h < HTTP_REQUEST_TIMEOUT_S - 1.0]
        assert not early, "slow connections closed before the timeout: %s" % early[:5]
        assert max(held) < HTTP_REQUEST_TIMEOUT_S + 3.0, max(held)
        no_408 = [r[:60] for r in slow.replies if not r.startswith(b"HTTP/1.1 408")]
        assert not no_408, "slow connections not answered 408: %d, e.g. %r" % (
            len(no_408), no_408[:3])

        fl.figure("slowloris", slow_conns=len(slow.opened), open_all_s=t_open - t_slow,
                  closed_after_s_min=min(held), closed_after_s_max=max(held),
                  bytes_sent_max=max(slow.sent), answered_408=len(slow.replies) - len(no_408),
                  before_n=b["n"], before_p50_ms=b["p50_ms"], before_p99_ms=b["p99_ms"],
                  during_n=d["n"], during_p50_ms=d["p50_ms"], during_p99_ms=d["p99_ms"],
                  during_max_ms=d["max_ms"])


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())

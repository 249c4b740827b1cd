"""Password guessing and login floods, through HAProxy (hardening item 2).

 * Failed logins are counted per account: past SNAPTEXT_LOGIN_MAX_FAILS in
   the window, a login of that account is answered 429 rate_limited with a
   Retry-After of the window's rest, even with the right password and from
   another address; when the window ends (its Redis key's TTL, shortened
   here), the right password works again.
 * Failed logins are counted per client address (HAProxy's `src`, passed
   as X-Client-Addr): past SNAPTEXT_LOGIN_MAX_FAILS_ADDR, every login from
   that address is 429, whatever X-Client-Addr the client sends itself,
   while another address (127.0.0.2) still logs in.
 * A flood of logins (many clients at once, more than the users service
   can hash) does not delay its other routes: /users/me keeps answering
   200 quickly, logout works, and the logins past the bounded hash queue
   get 503 at once instead of waiting in line.
The limits are made small here (env below); the defaults are in README.md.
"""
import sys
import threading
import time

import snaptest
from snaptest import test

S = None
PASSWORD = "correct horse battery staple"
LIMIT_ACCOUNT = 3
LIMIT_ADDR = 8
WINDOW = 30


def register(name=None):
    name = name or S.uname("la")
    st, _, body = S.req("POST", "/users", {"username": name, "password": PASSWORD})
    assert st == 201, (st, body)
    return name, body["token"]


def login(name, password=PASSWORD, source=None, headers=None):
    return snaptest.request("POST", "/sessions", port=S.port, source=source, headers=headers,
                            body={"username": name, "password": password})


def redis(*args):
    return snaptest.redis_cmd(S.redis.port, *args)


def forget_address(addr="127.0.0.1"):
    redis("DEL", "snap:login_fails_addr:" + addr)


def assert_throttled(resp, what):
    st, hdrs, body = resp
    assert st == 429 and body["error"] == "rate_limited", resp
    assert what in body["message"], body
    retry = int(hdrs.get("retry-after", "0"))
    assert 1 <= retry <= WINDOW, hdrs
    return retry


@test
def account_throttled_after_failures():
    forget_address()
    name, _ = register()
    for _ in range(LIMIT_ACCOUNT):
        st, _, body = login(name, "wrong password")
        assert st == 401, (st, body)
    # The right password, and from another address: still refused.
    retry = assert_throttled(login(name), "for this account")
    assert_throttled(login(name, source="127.0.0.2"), "for this account")
    print("account: %d failures, then 429 with Retry-After %d" % (LIMIT_ACCOUNT, retry))
    # Other accounts are not affected.
    other, _ = register()
    st, _, body = login(other)
    assert st == 201, (st, body)
    # When the window ends, the right password works again.
    redis("PEXPIRE", "snap:{%s}:login_fails" % name, "1")
    time.sleep(0.05)
    st, _, body = login(name)
    assert st == 201, (st, body)
    forget_address()


@test
def unknown_accounts_count_too():
    forget_address()
    ghost = S.uname("ghost")
    for _ in range(LIMIT_ACCOUNT):
        assert login(ghost, "wrong password")[0] == 401
    # The same answer as for a real account: the throttle tells nothing
    # about which names exist.
    assert_throttled(login(ghost, "wrong password"), "for this account")
    forget_address()


@test
def address_throttled_after_failures():
    forget_address()
    forget_address("127.0.0.2")
    name, _ = register()
    for i in range(LIMIT_ADDR):
        st, _, body = login(S.uname("guess"), "wrong password %d" % i)
        assert st == 401, (st, body)
    retry = assert_throttled(login(name), "from this address")
    # A client cannot pick its own address: HAProxy overwrites the header.
    assert_throttled(login(name, headers={"X-Client-Addr": "10.9.9.9"}), "from this address")
    # Another client address still logs in.
    st, _, body = login(name, source="127.0.0.2")
    assert st == 201, (st, body)
    print("address: %d failures, then 429 with Retry-After %d; 127.0.0.2 still 201"
          % (LIMIT_ADDR, retry))
    forget_address()


@test
def login_flood_does_not_starve_other_routes():
    forget_address()
    flooder, _ = register()
    me, token = register()
    _, logout_token = register()
    stop = threading.Event()
    counts = {}
    lock = threading.Lock()

    def flood():
        while not stop.is_set():
            try:
                st, hdrs, _ = login(flooder)
                key = st if st != 503 or hdrs.get("retry-after") else "503 without Retry-After"
            except OSError as e:
                key = type(e).__name__
            with lock:
                counts[key] = counts.get(key, 0) + 1
            if key == 503:
                time.sleep(0.02)  # keeps this client's own CPU down; the queue stays full

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(120)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # let the flood fill every queue
    lat, bad = [], []
    t_end = time.time() + 4.0
    while time.time() < t_end:
        t0 = time.perf_counter()
        st, _, body = S.req("GET", "/users/me", token=token, timeout=15)
        lat.append(time.perf_counter() - t0)
        if st != 200:
            bad.append((st, body))
        time.sleep(0.1)
    t0 = time.perf_counter()
    st_logout, _, _ = S.req("DELETE", "/sessions/current", token=logout_token, timeout=15)
    logout_s = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    lat.sort()
    print("flood: login answers %s; /users/me n=%d median %.0f ms max %.0f ms; logout %d in %.0f ms"
          % (dict(sorted(counts.items(), key=str)), len(lat), 1000 * lat[len(lat) // 2],
             1000 * lat[-1], st_logout, 1000 * logout_s))
    assert not bad, "/users/me during the flood: %s" % bad[:5]
    assert lat[-1] < 1.0, "/users/me took %.2f s during the flood" % lat[-1]
    assert st_logout == 204 and logout_s < 1.0, (st_logout, logout_s)
    assert set(counts) <= {201, 503}, counts
    assert counts.get(201, 0) > 0, counts


def set_stack(s):
    global S
    S = s


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, instances=1, env={
        "SNAPTEXT_LOGIN_MAX_FAILS": str(LIMIT_ACCOUNT),
        "SNAPTEXT_LOGIN_MAX_FAILS_ADDR": str(LIMIT_ADDR),
        "SNAPTEXT_LOGIN_WINDOW": str(WINDOW)}))

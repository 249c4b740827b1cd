"""The admin bootstrap's rule (hardening item 4), with more users instances
started against the stack's Redis and store, as a restart with other
settings would:
 * an ordinary account registered under the configured admin name is never
   promoted: the instance stops with one line that says so;
 * an admin account whose password is not SNAPTEXT_ADMIN_PASSWORD (the
   variable was changed): the instance stops with one line naming it,
   and the old password is what still logs in;
 * the configured password of the existing admin: the instance starts.
"""
import os
import sys
import time

import snaptest
from snaptest import test

S = None
ADMIN = ("admin", "first-admin-password-1")


def try_users(username, password):
    """Starts one more users instance; returns (proc, stdout+stderr, started)."""
    env = dict(S.env, SNAPTEXT_ADMIN_USERNAME=username, SNAPTEXT_ADMIN_PASSWORD=password,
               SNAPTEXT_LISTEN="127.0.0.1:0", SNAPTEXT_DRAIN_MS="0")
    proc = snaptest.Proc("users-extra", [S.binary("users")], env=env, root=S.root)
    deadline = time.time() + 20 * snaptest.TIMEOUT_MULT
    while time.time() < deadline and proc.alive() and "listening port=" not in proc.stdout():
        time.sleep(0.05)
    started = proc.alive() and "listening port=" in proc.stdout()
    problems = proc.stop(expect_clean=started)
    out = proc.stdout() + proc.stderr()
    proc.cleanup()
    assert not problems or not started, problems
    return proc, out, started


def me(token):
    st, _, body = S.req("GET", "/users/me", token=token)
    assert st == 200, (st, body)
    return body


def login(name, password):
    return S.req("POST", "/sessions", {"username": name, "password": password})


@test
def ordinary_account_is_not_promoted():
    st, _, body = S.req("POST", "/users", {"username": "boss", "password": "boss-password-1"})
    assert st == 201, (st, body)
    proc, out, started = try_users("boss", "whatever-password-1")
    line = [l for l in out.splitlines() if "ordinary account" in l]
    print("exit %s: %s" % (proc.returncode, line[:1]))
    assert not started and proc.returncode == 1, (proc.returncode, out[-1500:])
    assert line, out[-1500:]
    assert me(body["token"])["role"] == "user"


@test
def changed_admin_password_stops_the_service():
    proc, out, started = try_users(ADMIN[0], "changed-password-2")
    line = [l for l in out.splitlines() if "SNAPTEXT_ADMIN_PASSWORD" in l]
    print("exit %s: %s" % (proc.returncode, line[:1]))
    assert not started and proc.returncode == 1, (proc.returncode, out[-1500:])
    assert line, out[-1500:]
    assert login(ADMIN[0], "changed-password-2")[0] == 401
    st, _, body = login(*ADMIN)
    assert st == 201, (st, body)
    assert me(body["token"])["role"] == "admin"


@test
def configured_admin_password_starts():
    _, out, started = try_users(*ADMIN)
    assert started, out[-1500:]


def set_stack(s):
    global S
    S = s


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, instances=1, admin=ADMIN))

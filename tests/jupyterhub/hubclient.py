"""HTTP client for the JupyterHub end-to-end tests (run by tests/tests/jupyterhub.rs with the
test venv's python). Every step talks to the real hub through the real proxy; any unexpected
answer exits non-zero with what was asked and what came back.

  hubclient.py wait  BASE                 until the hub answers (bounded)
  hubclient.py start BASE USER PASSWORD [PROFILE]
                                          log in like a browser (xsrf, cookies), which starts the
                                          server (choosing PROFILE in ProfilesSpawner's form); wait
                                          until it is ready and answers through the proxy; print
                                          {"token": ...} (an API token of USER)
  hubclient.py stop  BASE USER TOKEN      DELETE the server; wait until the hub says it is gone
"""

import json
import re
import sys
import time

import requests

# Bounds, not expectations: a healthy run takes a fraction of these.
DEADLINE = 90


def fail(msg):
    print(f"hubclient: {msg}", file=sys.stderr)
    sys.exit(1)


def check(resp, *ok):
    if resp.status_code not in ok:
        fail(f"{resp.request.method} {resp.url} -> {resp.status_code} (wanted {ok}): {resp.text[:500]}")
    return resp


def poll(what, probe):
    """Call probe() until it returns a true value; fail after DEADLINE seconds."""
    end = time.monotonic() + DEADLINE
    last = None
    while time.monotonic() < end:
        try:
            result, last = probe()
        except requests.RequestException as e:
            result, last = None, repr(e)
        if result:
            return result
        time.sleep(0.1)
    fail(f"gave up waiting for {what} after {DEADLINE} s; last answer: {last}")


def wait(base):
    def probe():
        r = requests.get(f"{base}/hub/api", timeout=5)
        return r.status_code == 200 and "version" in r.json(), r.status_code

    poll("the hub to answer", probe)


def server_state(base, user, token):
    r = check(requests.get(f"{base}/hub/api/users/{user}", headers=auth(token), timeout=10), 200)
    return r.json().get("servers", {}).get("")


def auth(token):
    return {"Authorization": f"token {token}"}


def start(base, user, password, profile=None):
    s = requests.Session()
    page = check(s.get(f"{base}/hub/login", timeout=10), 200).text
    m = re.search(r'name="_xsrf"\s+value="([^"]+)"', page)
    if not m:
        fail(f"no _xsrf field in the login page: {page[:500]}")
    # The hub answers a good login with 302 to /hub/spawn, which starts the server.
    r = check(
        s.post(
            f"{base}/hub/login",
            data={"username": user, "password": password, "_xsrf": m.group(1)},
            allow_redirects=False,
            timeout=10,
        ),
        302,
    )
    if "/hub/login" in r.headers.get("Location", ""):
        fail(f"login of {user} refused: redirected to {r.headers['Location']}")
    # Following it (to /hub/spawn-pending/USER, or to the spawn form) is what a browser does.
    page = check(s.get(requests.compat.urljoin(f"{base}/hub/login", r.headers["Location"]), timeout=30), 200)
    xsrf = s.cookies.get("_xsrf")
    if profile is not None:
        if f'value="{profile}"' not in page.text:
            fail(f"no profile {profile!r} in the spawn form at {page.url}: {page.text[:800]}")
        check(
            s.post(
                f"{base}/hub/spawn/{user}",
                data={"profile": profile, "_xsrf": xsrf},
                allow_redirects=False,
                timeout=30,
            ),
            302,
        )
    r = check(
        s.post(
            f"{base}/hub/api/users/{user}/tokens",
            json={"note": "end-to-end test", "expires_in": 3600},
            headers={"X-XSRFToken": xsrf} if xsrf else {},
            timeout=10,
        ),
        200,
        201,
    )
    token = r.json()["token"]

    def ready():
        state = server_state(base, user, token)
        if state is None:
            # The spawn was initiated before we got here (the server was pending): gone means
            # the start failed and the hub dropped it.
            fail(f"{user}'s server is gone while starting: it failed (see the hub log)")
        return (state if state.get("ready") else None), state

    state = poll(f"{user}'s server to be ready", ready)
    # A real server answers through the proxy with the user's token.
    r = check(requests.get(f"{base}/user/{user}/api/status", headers=auth(token), timeout=10), 200)
    status = r.json()
    if "started" not in status:
        fail(f"{user}'s server answered /api/status without 'started': {status}")
    print(json.dumps({"token": token, "url": state.get("url")}))


def stop(base, user, token):
    check(requests.delete(f"{base}/hub/api/users/{user}/server", headers=auth(token), timeout=120), 202, 204)

    def gone():
        state = server_state(base, user, token)
        return state is None, state

    poll(f"{user}'s server to stop", gone)


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "wait" and len(args) == 1:
        wait(*args)
    elif cmd == "start" and len(args) in (3, 4):
        start(*args)
    elif cmd == "stop" and len(args) == 3:
        stop(*args)
    else:
        fail(f"bad arguments {argv[1:]}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)

"""Jupyter contents API through the hub's proxy, for tests/tests/podman_spawner.rs (reuses hubclient).

  contents_client.py put BASE USER TOKEN PATH TEXT   PUT a text file; print the model the server
                                                     returned (JSON)
  contents_client.py get BASE USER TOKEN PATH        GET it back; print its content
"""

import json
import os
import sys

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hubclient  # noqa: E402


def url(base, user, path):
    return f"{base}/user/{user}/api/contents/{path}"


def put(base, user, token, path, text):
    body = {"type": "file", "format": "text", "content": text}
    r = hubclient.check(
        requests.put(url(base, user, path), json=body, headers=hubclient.auth(token), timeout=30), 200, 201
    )
    print(json.dumps(r.json()))


def get(base, user, token, path):
    r = hubclient.check(requests.get(url(base, user, path), headers=hubclient.auth(token), timeout=30), 200)
    print(r.json()["content"], end="")


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else (None, [])
    if cmd == "put" and len(args) == 5:
        put(*args)
    elif cmd == "get" and len(args) == 4:
        get(*args)
    else:
        hubclient.fail(f"bad arguments {argv[1:]}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)

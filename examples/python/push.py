#!/usr/bin/env python3
"""Push one message to a browser through push-server's HTTP/JSON API.

    python3 push.py session <session id> <event> [<data JSON>]
    python3 push.py openid <openid> <event> [<data JSON>]

PUSH_API_URL: the API (default http://127.0.0.1:9091); GRPC_AUTH_TOKEN:
push-server's token, if it has one. Prints the answer's JSON; exits 1 when
the server refuses the push, 2 on a usage error. Standard library only.
"""
import json
import os
import sys
import urllib.error
import urllib.request


def post(path, body):
    """POSTs body as JSON; returns (HTTP status, answer text)."""
    url = os.environ.get("PUSH_API_URL", "http://127.0.0.1:9091").rstrip("/") + path
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    token = os.environ.get("GRPC_AUTH_TOKEN", "")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:  # 4xx, 5xx: the body says why
        return e.code, e.read().decode()


def main(args):
    if len(args) not in (3, 4) or args[0] not in ("session", "openid"):
        print("usage: push.py session|openid <id> <event> [<data JSON>]", file=sys.stderr)
        return 2
    try:
        data = json.loads(args[3]) if len(args) == 4 else None
    except ValueError as e:
        print(f"data is not JSON: {e}", file=sys.stderr)
        return 2
    try:
        status, answer = post("/v1/push", {args[0]: args[1], "event": args[2], "data": data})
    except OSError as e:
        print(f"push-server unreachable: {e}", file=sys.stderr)
        return 1
    print(answer)
    if status != 200:
        # {"code": "invalid_argument" | "unauthenticated" | "not_found" | "unavailable", "message": ...}
        print(f"push refused: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

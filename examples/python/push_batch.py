#!/usr/bin/env python3
"""Push many messages in one call through push-server's HTTP/JSON API.

    python3 push_batch.py < batch.json

batch.json: {"pushes": [...]}, 1 to 1,000 pushes, each {"session": id} or
{"openid": id} with "event" and "data". PUSH_API_URL and
GRPC_AUTH_TOKEN as for push.py. Prints the results (one per push, in order);
exits 1 when the call is refused or any push failed.
"""
import json
import sys

from push import post


def main():
    try:
        batch = json.load(sys.stdin)
    except ValueError as e:
        print(f"not JSON: {e}", file=sys.stderr)
        return 2
    try:
        status, answer = post("/v1/push/batch", batch)
    except OSError as e:
        print(f"push-server unreachable: {e}", file=sys.stderr)
        return 1
    print(answer)
    if status != 200:
        print(f"batch refused: HTTP {status}", file=sys.stderr)
        return 1
    failed = [i for i, r in enumerate(json.loads(answer)["results"]) if "error" in r]
    if failed:
        # Each failed push fails alone: the others were delivered.
        print(f"pushes {failed} failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

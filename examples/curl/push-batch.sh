#!/usr/bin/env bash
# Push many messages in one call: reads {"pushes": [...]} (1 to 1,000
# pushes, each {"session" or "openid", "event", "data"}) on stdin.
#
#   echo '{"pushes": [{"openid": "oAlice", "event": "order.paid", "data": {"order": "A1001"}}]}' | push-batch.sh
#
# PUSH_API_URL and GRPC_AUTH_TOKEN as for push.sh. Prints the results, one
# per push in order; exits 1 when the call is refused or any push failed.
set -euo pipefail

body=$(cat)
auth_header() {
	if [[ -n ${GRPC_AUTH_TOKEN:-} ]]; then printf 'Authorization: Bearer %s\n' "$GRPC_AUTH_TOKEN"; fi
}
if ! answer=$(curl -sS --fail-with-body -X POST "${PUSH_API_URL:-http://127.0.0.1:9091}/v1/push/batch" \
	-H 'Content-Type: application/json' -H @<(auth_header) --data-binary "$body"); then
	echo "$answer"
	echo "$0: batch refused" >&2
	exit 1
fi
echo "$answer"
# A failed push has {"error": ...} in its place; the JSON is compact.
if [[ $answer == *'"error":'* ]]; then
	echo "$0: some pushes failed" >&2
	exit 1
fi

#!/usr/bin/env bash
# Push one message to a browser through push-server's HTTP/JSON API.
#
#   push.sh session <session id> <event> [<data JSON>]
#   push.sh openid <openid> <event> [<data JSON>]
#
# PUSH_API_URL: the API (default http://127.0.0.1:9091); GRPC_AUTH_TOKEN:
# push-server's token, if it has one. Prints the answer's JSON; exits 1 when
# the server refuses the push, 2 on a usage error.
set -euo pipefail

if (($# < 3 || $# > 4)) || [[ $1 != session && $1 != openid ]]; then
	echo "usage: $0 session|openid <id> <event> [<data JSON>]" >&2
	exit 2
fi
target=$1 id=$2 event=$3 data=${4:-null}
# The id and event go into the JSON as they are: check they need no escaping
# (the server checks them again).
if ! [[ $id =~ ^[A-Za-z0-9_-]{1,64}$ && $event =~ ^[A-Za-z0-9._:-]{1,64}$ ]]; then
	echo "$0: bad id or event" >&2
	exit 2
fi
body="{\"$target\": \"$id\", \"event\": \"$event\", \"data\": $data}"

# The token goes in a header that curl reads from a pipe, not on its
# command line, where any user of the machine could read it.
auth_header() {
	if [[ -n ${GRPC_AUTH_TOKEN:-} ]]; then printf 'Authorization: Bearer %s\n' "$GRPC_AUTH_TOKEN"; fi
}
# --fail-with-body: an error answer's body too, and a non-zero exit for it.
if ! answer=$(curl -sS --fail-with-body -X POST "${PUSH_API_URL:-http://127.0.0.1:9091}/v1/push" \
	-H 'Content-Type: application/json' -H @<(auth_header) --data-binary "$body"); then
	echo "$answer"
	echo "$0: push refused" >&2
	exit 1
fi
echo "$answer"

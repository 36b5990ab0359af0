#!/usr/bin/env bash
# run-all.sh: start the WeChat simulator, wechat-callback and push-server on
# this machine with matching development settings, so that a login can be
# tried in a browser without a WeChat account, in both flows (official
# account QR code and Mini Program code). `make run-all` builds the
# binaries into bin/ and calls this script.
#
# Ctrl-C stops all three; so does any one of them exiting.
#
# Ports (all on 127.0.0.1) can be changed through the environment:
#   PUSH_PORT=8080 PUSH_GRPC_PORT=9090 CALLBACK_PORT=8081 SIM_PORT=8090
# Other knobs: BIN (where the binaries are, default bin/), LOG_LEVEL,
# LOGIN_TTL (life of a QR code, default 120s), SIM_TOKEN_TTL (life of an
# access token, default 300s so the refresh path runs), SIM_PUBLIC_URL (base
# URL of the simulator as the browser sees it), OA_CONFIRM (default false;
# true: an official-account scan is confirmed on a page inside WeChat, here
# the simulator's phone page).
set -euo pipefail
cd "$(dirname "$0")/.."

# Ctrl-C signals the terminal's whole foreground process group, make
# included; make then dies of the signal and the stop reads as a failure.
# So on a terminal the script runs again in a process group of its own that
# holds the terminal: Ctrl-C reaches only it and the programs it starts,
# and a clean stop exits 0 through make too.
if [[ -t 0 && -z ${RUN_ALL_FOREGROUND:-} ]]; then
	set -m
	RUN_ALL_FOREGROUND=1 "$0" "$@" &
	fg %1 >/dev/null
	exit
fi

BIN=${BIN:-bin}
PUSH_PORT=${PUSH_PORT:-8080}
PUSH_GRPC_PORT=${PUSH_GRPC_PORT:-9090}
CALLBACK_PORT=${CALLBACK_PORT:-8081}
SIM_PORT=${SIM_PORT:-8090}
HOST=127.0.0.1

SIM_URL=${SIM_PUBLIC_URL:-http://$HOST:$SIM_PORT}
OA_CONFIRM=${OA_CONFIRM:-false}
PAGE_URL=http://localhost:$PUSH_PORT/

# Development credentials of the simulated official account. They are
# public: never use them for a real account.
DEV_APPID=wx5ca11091d0e5f00d
DEV_SECRET=dev-secret-not-for-production
DEV_TOKEN=scanlogindev
DEV_AES_KEY=ScanLoginDevEncodingAESKey0123456789abcdefg
DEV_ORIGINAL_ID=gh_5ca11091d0e5
# The simulated Mini Program shares the simulated account's AppID and
# secret (the simulator serves one app).
DEV_MINI_APPID=$DEV_APPID
DEV_MINI_SECRET=$DEV_SECRET
DEV_SITE_NAME="scanlogin dev"
# A fresh gRPC token per run: the callback must present it to push-server.
GRPC_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

say() { printf 'run-all: %s\n' "$*" >&2; }

for name in wechat-sim wechat-callback push-server; do
	if [[ ! -x $BIN/$name ]]; then
		say "$BIN/$name is missing: run 'make build' first (or 'make run-all', which builds)"
		exit 1
	fi
done

# in_use reports whether the port is taken: something listens on it, or
# (seen with ss, where there is ss) a connection uses it as its local port.
in_use() {
	if command -v ss >/dev/null 2>&1 && [[ -n $(ss -Htan exclude time-wait "( sport = :$1 )" 2>/dev/null) ]]; then
		return 0
	fi
	(exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

busy=0
for spec in "$PUSH_PORT:push-server:PUSH_PORT" "$PUSH_GRPC_PORT:push-server gRPC:PUSH_GRPC_PORT" \
	"$CALLBACK_PORT:wechat-callback:CALLBACK_PORT" "$SIM_PORT:wechat-sim:SIM_PORT"; do
	IFS=: read -r port what var <<<"$spec"
	if in_use "$port"; then
		say "port $port ($what) is in use; stop what uses it or pick another port, e.g. $var=$((port + 100)) make run-all"
		busy=1
	fi
done
((busy == 0)) || exit 1

# Output of each program is prefixed with its name (in colour on a terminal).
color() {
	if [[ -t 1 ]]; then printf '\033[%sm%s\033[0m' "$1" "$2"; else printf '%s' "$2"; fi
}
prefix() {
	trap '' INT TERM # keep printing the programs' last lines on Ctrl-C
	local tag
	tag=$(color "$2" "$(printf '%-15s' "$1")")
	while IFS= read -r line; do printf '%s | %s\n' "$tag" "$line"; done
}

pids=()
names=()
stopping=0

stop_all() {
	((stopping)) && return
	stopping=1
	local i
	for i in "${!pids[@]}"; do
		kill -TERM "${pids[$i]}" 2>/dev/null || true
	done
	# Give them the time of a graceful shutdown, then insist.
	for _ in $(seq 1 120); do
		local alive=0
		for i in "${!pids[@]}"; do
			kill -0 "${pids[$i]}" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for i in "${!pids[@]}"; do
		if kill -0 "${pids[$i]}" 2>/dev/null; then
			say "${names[$i]} did not stop in 12 s; killing it"
			kill -KILL "${pids[$i]}" 2>/dev/null || true
		fi
	done
	wait 2>/dev/null || true
}

on_signal() {
	echo >&2
	say "stopping all three…"
	stop_all
	say "stopped"
	exit 0
}
trap on_signal INT TERM
trap stop_all EXIT

# start NAME COLOUR VAR=VALUE...: run bin/NAME with those settings.
start() {
	local name=$1 colour=$2
	shift 2
	env "$@" "$BIN/$name" > >(prefix "$name" "$colour") 2>&1 &
	pids+=($!)
	names+=("$name")
}

# http_ok PORT PATH: whether GET http://127.0.0.1:PORT/PATH answers 200.
http_ok() {
	local status
	{
		exec 3<>"/dev/tcp/$HOST/$1" &&
			printf 'GET %s HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$2" "$HOST" "$1" >&3 &&
			IFS= read -r -t 2 status <&3
	} 2>/dev/null || return 1
	exec 3<&-
	[[ $status == "HTTP/"*" 200 "* ]]
}

# wait_healthy NAME PORT: wait until /healthz answers 200, or the program dies.
wait_healthy() {
	local name=$1 port=$2 i
	for i in $(seq 1 100); do
		if http_ok "$port" /healthz; then
			return 0
		fi
		local last=$((${#pids[@]} - 1))
		if ! kill -0 "${pids[$last]}" 2>/dev/null; then
			say "$name exited during start-up (see its lines above)"
			exit 1
		fi
		sleep 0.1
	done
	say "$name is not answering http://$HOST:$port/healthz after 10 s"
	exit 1
}

common=(
	"WECHAT_APPID=$DEV_APPID"
	"WECHAT_SECRET=$DEV_SECRET"
	"WECHAT_TOKEN=$DEV_TOKEN"
	"WECHAT_AES_KEY=$DEV_AES_KEY"
	"GRPC_AUTH_TOKEN=$GRPC_TOKEN"
	"LOG_LEVEL=${LOG_LEVEL:-info}"
)
# Both flows, oa first (the page's default; it offers a switch).
mini=(
	"MINIPROGRAM_APPID=$DEV_MINI_APPID"
	"MINIPROGRAM_SECRET=$DEV_MINI_SECRET"
	"LOGIN_FLOWS=oa,miniprogram"
	"SITE_NAME=$DEV_SITE_NAME"
)

start wechat-sim 35 "${common[@]}" \
	"SIM_HTTP_ADDR=$HOST:$SIM_PORT" \
	"SIM_PUBLIC_URL=$SIM_URL" \
	"SIM_CALLBACK_URL=http://$HOST:$CALLBACK_PORT/wechat/callback" \
	"SIM_ORIGINAL_ID=$DEV_ORIGINAL_ID" \
	"SIM_TOKEN_TTL=${SIM_TOKEN_TTL:-300s}" \
	"SIM_MINIPROGRAM_DIR=$PWD/miniprogram" \
	"SIM_MINIPROGRAM_API_BASE=http://$HOST:$CALLBACK_PORT"
wait_healthy wechat-sim "$SIM_PORT"

start push-server 36 "${common[@]}" "${mini[@]}" \
	"PUSH_HTTP_ADDR=$HOST:$PUSH_PORT" \
	"PUSH_GRPC_ADDR=$HOST:$PUSH_GRPC_PORT" \
	"WECHAT_API_BASE=http://$HOST:$SIM_PORT" \
	"WECHAT_MP_BASE=$SIM_URL" \
	"PUSH_SIMULATOR_URL=$SIM_URL" \
	"LOGIN_TTL=${LOGIN_TTL:-120s}"
wait_healthy push-server "$PUSH_PORT"

start wechat-callback 33 "${common[@]}" "${mini[@]}" \
	"CALLBACK_HTTP_ADDR=$HOST:$CALLBACK_PORT" \
	"WECHAT_API_BASE=http://$HOST:$SIM_PORT" \
	"WECHAT_ORIGINAL_ID=$DEV_ORIGINAL_ID" \
	"CALLBACK_REQUIRE_ENCRYPTION=true" \
	"FETCH_USER_INFO=true" \
	"PUSH_GRPC_TARGET=$HOST:$PUSH_GRPC_PORT" \
	"OA_CONFIRM=$OA_CONFIRM" \
	"CALLBACK_PUBLIC_URL=http://$HOST:$CALLBACK_PORT" \
	"WECHAT_OPEN_BASE=$SIM_URL"
wait_healthy wechat-callback "$CALLBACK_PORT"

oa_hint=
if [[ $OA_CONFIRM == true ]]; then
	oa_hint="
 OA_CONFIRM=true: the scan only shows \"scanned\"; tap the link in the reply
 on the phone page and press Confirm (or Cancel) on the page it opens."
fi

cat >&2 <<EOF

================================================================================
 Open $PAGE_URL and scan with the simulator's phone page (link on the page)
================================================================================
   login page        $PAGE_URL
   WeChat simulator  $SIM_URL/
   callback          http://$HOST:$CALLBACK_PORT/wechat/callback (safe mode)
   push gRPC         $HOST:$PUSH_GRPC_PORT

 On the page, click "Open the simulator's phone page", keep "A new user" (or
 pick the follower Alice) and press Scan: the page shows you logged in.$oa_hint
 Mini Program: pick "Mini Program code" on the page, open the phone page,
 "Open the Mini Program" (the shipped miniprogram/ page runs there) and
 tap Confirm login. Ctrl-C stops all three.

EOF

# Run until Ctrl-C or until one of them exits (a polling loop rather than
# `wait -n`, which older bash versions lack).
while :; do
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			set +e
			wait "${pids[$i]}"
			status=$?
			set -e
			say "${names[$i]} exited (status $status); stopping the others"
			stop_all
			exit $((status == 0 ? 1 : status))
		fi
	done
	sleep 0.5
done

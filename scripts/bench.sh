#!/usr/bin/env bash
# scripts/bench.sh: the standard load profile of scanlogin (`make bench`).
#
# Starts, for each run, fresh servers as separate processes on free loopback
# ports (the WeChat simulator, wechat-callback, push-server; or the baseline
# server), drives them with bin/loadtest and writes docs/benchmarks.md:
#
#   push   10,000 connections, Push over gRPC at 2,000/s for 20 s; then again
#          with a fixed client flow-control window (no BDP pings); then over
#          the HTTP/JSON API (POST /v1/push); then the same 2,000 messages/s
#          in batches of BENCH_BATCH (100) per call: gRPC PushBatch and POST
#          /v1/push/batch
#   scan   10,000 connections, signed safe-mode scans at 2,000/s for 5 s
#          (each session logs in once: 10,000 scans need 10,000 sessions)
#   mem    19,000 connections on one instance, then Push at 2,000/s for 20 s
#   scale  3 instances + Redis, 50,000 connections (skipped while push-server
#          refuses REDIS_URL)
#
# and the push (single and batch) and mem runs again against the baseline
# (`loadtest baseline`). Needs bin/ built (make bench does it). Takes 10-12
# minutes on 2 cores.
#
# Environment (for quick runs while developing; the defaults are the
# standard profile): BENCH_N, BENCH_MEM_N, BENCH_SCALE_N, BENCH_RATE, BENCH_BATCH,
# BENCH_DURATION, BENCH_SCAN_DURATION, BENCH_SETTLE, BENCH_QUIET_WAIT (how
# long each run may wait for a quiet machine, default 5s), BENCH_ONLY (space
# list of push scan mem scale), BENCH_OUT (default docs/benchmarks.md),
# BIN (where the binaries are), BENCH_REV (the revision they were built from).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks.md}
N=${BENCH_N:-10000}
MEM_N=${BENCH_MEM_N:-19000}
SCALE_N=${BENCH_SCALE_N:-50000}
RATE=${BENCH_RATE:-2000}
BATCH=${BENCH_BATCH:-100}
DURATION=${BENCH_DURATION:-20s}
SCAN_DURATION=${BENCH_SCAN_DURATION:-5s}
SETTLE=${BENCH_SETTLE:-10s}
QUIET_WAIT=${BENCH_QUIET_WAIT:-5s}
ONLY=${BENCH_ONLY:-push scan mem scale}
CONNECT_RATE=2000
SCALE_CONNECT_RATE=1000

for b in loadtest push-server wechat-callback wechat-sim; do
	[[ -x $BIN/$b ]] || { echo "bench: $BIN/$b missing; run make bench" >&2; exit 1; }
done

# The revision bin/ was built from (make bench builds it just before), read
# now: edits made while the runs go on are not in the binaries. BENCH_REV
# names it when bin/ was built elsewhere.
rev=${BENCH_REV:-}
if [[ -z $rev ]]; then
	rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
	if [[ -n $(git -C "$ROOT" status --porcelain -- . ':!docs' 2>/dev/null) ]]; then
		rev+="+dirty"
	fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/scanlogin-bench.XXXXXX")
CMDS=$WORK/commands.sh
echo "bench: work directory $WORK" >&2

# Test credentials for the simulator; nothing here is a real account.
export WECHAT_APPID=wxbench0000000001
export WECHAT_SECRET=bench-secret
export WECHAT_TOKEN=benchtoken
export WECHAT_AES_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# note appends a line to the commands file shown in the report.
note() { printf '%s\n' "$*" >>"$CMDS"; }

# start NAME ENV... -- CMD...: runs CMD in the background with ENV, logs to
# $WORK/NAME.log, records the command and sets LAST_PID.
start() {
	local name=$1; shift
	local envs=()
	while [[ $1 != -- ]]; do envs+=("$1"); shift; done
	shift
	local cmd="${envs[*]:+${envs[*]} }$*"
	note "${cmd//$BIN\//bin/} &"
	env "${envs[@]}" "$@" >"$WORK/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

ports() { "$BIN/loadtest" freeports -n "$1"; }

wait_up() {
	if ! "$BIN/loadtest" wait -timeout 20s "$@"; then
		echo "bench: servers did not come up; logs in $WORK" >&2
		tail -n 5 "$WORK"/*.log >&2 || true
		exit 1
	fi
}

# scanlogin_up INSTANCES [REDIS_URL]: the simulator, one wechat-callback and
# INSTANCES push servers. Sets PUSH_PIDS, SIM_PID, CB_PID, WS_URLS,
# GRPC_ADDRS, API_URLS, CB_URL.
scanlogin_up() {
	local instances=$1 redis=${2:-} p i
	read -r -a p <<<"$(ports $((2 + 3 * instances)))"
	local sim=${p[0]} cb=${p[1]}
	note ""
	note "# fresh servers"
	start sim LOG_LEVEL=warn SIM_HTTP_ADDR=127.0.0.1:$sim SIM_CALLBACK_URL=http://127.0.0.1:$cb/wechat/callback \
		WECHAT_APPID=$WECHAT_APPID WECHAT_SECRET=$WECHAT_SECRET WECHAT_TOKEN=$WECHAT_TOKEN WECHAT_AES_KEY=$WECHAT_AES_KEY \
		-- "$BIN/wechat-sim"
	SIM_PID=$LAST_PID
	PUSH_PIDS="" WS_URLS="" GRPC_ADDRS="" API_URLS=""
	local health=("http://127.0.0.1:$sim/healthz")
	for ((i = 0; i < instances; i++)); do
		local h=${p[$((2 + 3 * i))]} g=${p[$((3 + 3 * i))]} a=${p[$((4 + 3 * i))]}
		start "push$i" LOG_LEVEL=warn PUSH_HTTP_ADDR=127.0.0.1:$h PUSH_GRPC_ADDR=127.0.0.1:$g PUSH_API_ADDR=127.0.0.1:$a \
			WECHAT_APPID=$WECHAT_APPID WECHAT_SECRET=$WECHAT_SECRET \
			WECHAT_API_BASE=http://127.0.0.1:$sim WECHAT_MP_BASE=http://127.0.0.1:$sim \
			LOGIN_TTL=10m LIMIT_CONNS_PER_IP=0 LIMIT_QR_PER_IP=0 ${redis:+REDIS_URL=$redis} \
			-- "$BIN/push-server"
		PUSH_PIDS+=${PUSH_PIDS:+,}$LAST_PID
		WS_URLS+=${WS_URLS:+,}ws://127.0.0.1:$h/ws
		GRPC_ADDRS+=${GRPC_ADDRS:+,}127.0.0.1:$g
		API_URLS+=${API_URLS:+,}http://127.0.0.1:$a
		health+=("http://127.0.0.1:$h/healthz")
	done
	start callback LOG_LEVEL=warn CALLBACK_HTTP_ADDR=127.0.0.1:$cb \
		WECHAT_APPID=$WECHAT_APPID WECHAT_SECRET=$WECHAT_SECRET WECHAT_TOKEN=$WECHAT_TOKEN WECHAT_AES_KEY=$WECHAT_AES_KEY \
		WECHAT_API_BASE=http://127.0.0.1:$sim PUSH_GRPC_TARGET=${GRPC_ADDRS%%,*} \
		-- "$BIN/wechat-callback"
	CB_PID=$LAST_PID
	CB_URL=http://127.0.0.1:$cb/wechat/callback
	health+=("http://127.0.0.1:$cb/healthz")
	wait_up "${health[@]}"
}

# baseline_up: a fresh baseline server. Sets BASE_PID, BASE_WS.
baseline_up() {
	local p
	p=$(ports 1)
	note ""
	note "# fresh baseline server"
	start baseline -- "$BIN/loadtest" baseline -addr "127.0.0.1:$p"
	BASE_PID=$LAST_PID
	BASE_WS=ws://127.0.0.1:$p/ws
	wait_up "http://127.0.0.1:$p/healthz"
}

# load NAME ARGS...: one loadtest run, its JSON in $WORK/NAME.json.
load() {
	local name=$1; shift
	note "bin/loadtest run $* -json $name.json"
	echo "bench: == $name" >&2
	# The servers are up and idle: wait (bounded) for other work on the
	# machine to calm down, so that it disturbs the figures less.
	"$BIN/loadtest" quiet -below 0.3 -max-wait "$QUIET_WAIT"
	if ! "$BIN/loadtest" run "$@" -json "$WORK/$name.json" | tee "$WORK/$name.txt"; then
		echo "bench: $name failed; the report shows what it measured, if anything" >&2
	fi
}

has() { [[ " $ONLY " == *" $1 "* ]]; }

note "# scripts/bench.sh, $(date -u '+%Y-%m-%d %H:%M UTC'); every server gets LOG_LEVEL=warn; ports are free loopback ports picked at start"
note "# WECHAT_APPID=$WECHAT_APPID WECHAT_SECRET=... WECHAT_TOKEN=$WECHAT_TOKEN WECHAT_AES_KEY=... (simulator test values)"

if has push; then
	baseline_up
	load push-baseline -label baseline -target baseline -ws "$BASE_WS" -n "$N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$BASE_PID"
	cleanup
	scanlogin_up 1
	load push-scanlogin -label scanlogin -ws "$WS_URLS" -grpc "$GRPC_ADDRS" -n "$N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$PUSH_PIDS" \
		-watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
	# The same with a fixed client flow-control window: no BDP ping per answer.
	scanlogin_up 1
	load push-scanlogin-window -label "scanlogin, fixed window" -grpc-window 1048576 -ws "$WS_URLS" -grpc "$GRPC_ADDRS" -n "$N" \
		-connect-rate $CONNECT_RATE -settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$PUSH_PIDS" \
		-watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
	# The same pushes over the HTTP/JSON API.
	scanlogin_up 1
	load push-scanlogin-json -label "scanlogin, HTTP/JSON" -via http -api-url "$API_URLS" -ws "$WS_URLS" -n "$N" \
		-connect-rate $CONNECT_RATE -settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$PUSH_PIDS" \
		-watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
	# The same rate of messages, $BATCH per call.
	baseline_up
	load batch-baseline -label "baseline, batch ×$BATCH" -target baseline -ws "$BASE_WS" -n "$N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode batch -batch "$BATCH" -rate "$RATE" -duration "$DURATION" -server-pid "$BASE_PID"
	cleanup
	scanlogin_up 1
	load batch-scanlogin -label "scanlogin, PushBatch ×$BATCH" -ws "$WS_URLS" -grpc "$GRPC_ADDRS" -n "$N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode batch -batch "$BATCH" -rate "$RATE" -duration "$DURATION" -server-pid "$PUSH_PIDS" \
		-watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
	scanlogin_up 1
	load batch-scanlogin-json -label "scanlogin, HTTP/JSON batch ×$BATCH" -via http -api-url "$API_URLS" -ws "$WS_URLS" -n "$N" \
		-connect-rate $CONNECT_RATE -settle "$SETTLE" -mode batch -batch "$BATCH" -rate "$RATE" -duration "$DURATION" \
		-server-pid "$PUSH_PIDS" -watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
fi

if has scan; then
	scanlogin_up 1
	load scan-scanlogin -label scanlogin -ws "$WS_URLS" -n "$N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode scan -rate "$RATE" -duration "$SCAN_DURATION" \
		-callback "$CB_URL" -wechat-token "$WECHAT_TOKEN" -aes-key "$WECHAT_AES_KEY" -appid "$WECHAT_APPID" \
		-server-pid "$PUSH_PIDS" -watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
fi

if has mem; then
	baseline_up
	load mem-baseline -label baseline -target baseline -ws "$BASE_WS" -n "$MEM_N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$BASE_PID"
	cleanup
	scanlogin_up 1
	load mem-scanlogin -label scanlogin -ws "$WS_URLS" -grpc "$GRPC_ADDRS" -n "$MEM_N" -connect-rate $CONNECT_RATE \
		-settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" -server-pid "$PUSH_PIDS" \
		-watch-pid "simulator=$SIM_PID,callback=$CB_PID"
	cleanup
fi

if has scale; then
	# Scale-out needs push-server to accept REDIS_URL; ask it.
	if msg=$(env PUSH_HTTP_ADDR=127.0.0.1:1 WECHAT_APPID=x WECHAT_SECRET=x REDIS_URL=redis://127.0.0.1:1 \
		"$BIN/push-server" -check-config 2>&1); then
		if ! command -v redis-server >/dev/null; then
			echo "redis-server is not installed" >"$WORK/scale-scanlogin.skip"
		else
			rp=$(ports 1)
			note ""
			note "# Redis for the instances"
			start redis -- redis-server --port "$rp" --bind 127.0.0.1 --save "" --appendonly no
			sleep 0.5
			scanlogin_up 3 "redis://127.0.0.1:$rp"
			load scale-scanlogin -label "scanlogin ×3 + Redis" -ws "$WS_URLS" -grpc "$GRPC_ADDRS" -n "$SCALE_N" \
				-connect-rate $SCALE_CONNECT_RATE -connect-concurrency 64 -settle "$SETTLE" -mode push -rate "$RATE" -duration "$DURATION" \
				-server-pid "$PUSH_PIDS" -watch-pid "simulator=$SIM_PID,callback=$CB_PID"
			cleanup
		fi
	else
		echo "push-server refuses REDIS_URL (\"$(tr '\n' ' ' <<<"$msg" | sed 's/ *$//')\"), so there is no scale-out to measure yet. When it accepts REDIS_URL, this run starts Redis and 3 instances and spreads $SCALE_N connections over them: loadtest run -ws URL1,URL2,URL3 -grpc ADDR1,ADDR2,ADDR3 -server-pid PID1,PID2,PID3." >"$WORK/scale-scanlogin.skip"
		echo "bench: scale-out skipped: $(cat "$WORK/scale-scanlogin.skip")" >&2
	fi
fi

"$BIN/loadtest" report -dir "$WORK" -commands "$CMDS" -rev "$rev" -o "$OUT"
echo "bench: wrote $OUT (runs in $WORK)" >&2

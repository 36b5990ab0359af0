#!/usr/bin/env bash
# Generates the Go code for proto/ with the pinned plugins in .tools/.
#   genproto.sh proto   write the generated files next to the .proto files
#   genproto.sh check   generate into a temp dir and fail if the committed files differ
set -euo pipefail
cd "$(dirname "$0")/.."
tools="$PWD/.tools"
mode=${1:-proto}

if ! command -v protoc >/dev/null; then
	echo "genproto: protoc not found; install Debian's protobuf-compiler and libprotobuf-dev" >&2
	exit 1
fi

gen() {
	local out=$1
	PATH="$tools:$PATH" protoc -I proto \
		--go_out="$out" --go_opt=paths=source_relative \
		--go-grpc_out="$out" --go-grpc_opt=paths=source_relative \
		$(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
}

case $mode in
proto)
	gen proto
	;;
check)
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	gen "$tmp"
	stale=0
	while IFS= read -r f; do
		if ! cmp -s "$tmp/$f" "proto/$f"; then
			echo "genproto: proto/$f is stale; run 'make proto' and commit the result" >&2
			stale=1
		fi
	done < <(cd "$tmp" && find . -name '*.go' | sed 's|^\./||' | sort)
	exit $stale
	;;
*)
	echo "usage: genproto.sh proto|check" >&2
	exit 2
	;;
esac

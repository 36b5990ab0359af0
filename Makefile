# scanlogin: build, test, generate, run and measure.
#
# Every tool version is pinned here; `go test ./...` does not work at a go.work
# root, so each module is listed.

SHELL := /bin/bash
export GOTOOLCHAIN ?= local

MODULES := . proto wechat push-server wechat-callback wechat-sim scripts/loadtest e2e
BIN := $(CURDIR)/bin
TOOLS := $(CURDIR)/.tools

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.1

GO_TEST_FLAGS ?= -race -count=1

.PHONY: all build test test-unit test-node test-js test-deploy fuzz proto proto-check tools vet clean run-all bench soak

all: build

## build: binaries into bin/
build:
	@mkdir -p $(BIN)
	cd push-server && go build -o $(BIN)/push-server ./cmd/push-server
	cd wechat-callback && go build -o $(BIN)/wechat-callback ./cmd/wechat-callback
	cd wechat-sim && go build -o $(BIN)/wechat-sim ./cmd/wechat-sim

## run-all: the simulator, wechat-callback and push-server with matching dev settings
run-all: build
	scripts/run-all.sh

## soak: about ten minutes of churn across every program (SOAK=2m for less);
## not part of make test. -race is left out: it would distort the RSS figures.
SOAK ?= 10m
soak:
	cd e2e && SCANLOGIN_SOAK=$(SOAK) go test -count=1 -run '^TestSoak$$' -timeout 60m -v .

## bench: the standard load profile; writes docs/benchmarks.md
bench: build
	cd scripts/loadtest && go build -o $(BIN)/loadtest .
	scripts/bench.sh

FUZZTIME ?= 3s

## test: every test suite, with the race detector, and a short fuzz run
test: proto-check vet test-unit test-node test-js test-deploy fuzz

## test-deploy: images, compose, the Helm chart, dashboard and alert rules
## (deploy/check is outside go.work so Helm and Kubernetes stay out of the
## services' module graph)
test-deploy:
	cd deploy/check && GOWORK=off go test $(GO_TEST_FLAGS) ./...

## test-js: the browser client package: Node tests and its TypeScript declarations
test-js:
	node --test scanlogin-js/test/*.test.js
	cd scanlogin-js && npm ci --no-audit --no-fund && node_modules/.bin/tsc --noEmit -p .

## test-node: the shipped Mini Program page's logic, with Node's test runner
test-node:
	node --test miniprogram/test/*.test.js

test-unit:
	@set -e; for m in $(MODULES); do echo "== go test $$m"; (cd $$m && go test $(GO_TEST_FLAGS) ./...); done

## fuzz: a short run of every fuzz target on top of its seed corpus
fuzz:
	@set -e; for f in FuzzDecrypt FuzzParseMessage; do \
		echo "== fuzz wechat $$f"; (cd wechat && go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) .); done
	@set -e; for f in FuzzPlaintextBody FuzzEncryptValue FuzzDecryptedPlaintext; do \
		echo "== fuzz wechat-callback $$f"; (cd wechat-callback && go test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) ./internal/callback); done

vet:
	@set -e; for m in $(MODULES); do (cd $$m && go vet ./...); done
	cd deploy/check && GOWORK=off go vet ./...
	go vet examples/go/push.go # a file: its build tag keeps it out of ./...

## tools: the pinned protoc plugins, into .tools/
tools: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## proto: regenerate the Go code from proto/ (needs Debian's protobuf-compiler)
proto: tools
	scripts/genproto.sh proto

## proto-check: fail when the committed generated code is stale
proto-check: tools
	scripts/genproto.sh check

clean:
	rm -rf $(BIN) $(TOOLS)

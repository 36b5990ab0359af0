// Package e2e holds scanlogin's tests across real processes. TestMain
// builds the WeChat simulator, wechat-callback and push-server once (with
// the race detector when the tests run with it); internal/proctest starts
// each binary on free ports, with the development settings of
// scripts/run-all.sh, and waits for its listening line. The tests drive a
// headless Chromium through logins (in the official-account and the Mini
// Program flow, confirmed and cancelled), expiry and reconnects, and run
// push-server instances over Redis and wechat-callback in front of them.
//
//   - browser_test.go: the three programs with the development settings of
//     scripts/run-all.sh, and a headless Chromium through a login, a QR
//     code expiry and reconnects.
//   - cluster_test.go: push-server instances sharing one Redis (or a Redis
//     Cluster), with WeChat faked in the test's process: logins, resumes
//     and pushes across instances, a Redis restart, an instance killed.
//   - callback_test.go: wechat-callback in front of two instances.
//   - runall_test.go: Ctrl-C on `make run-all` stops everything cleanly.
//   - soak_test.go: `make soak`, skipped unless SCANLOGIN_SOAK holds a
//     duration: minutes of browsers logging in, resuming and receiving
//     pushes across two instances, wechat-callback and the simulator, an
//     instance and Redis restarted on the way; no login may be lost, and
//     no process may keep more memory, goroutines or open files.
//
// A program that does not exit cleanly on SIGTERM (a race report makes a
// race-built program exit 66) fails its test. The browser tests need
// Chromium (/usr/bin/chromium, or chromium on PATH), the cluster tests
// redis-server, the run-all test script(1) from util-linux: without them
// those tests skip, or fail when CI=true. Screenshots and process logs of a
// failed browser test go to $E2E_ARTIFACTS, default e2e/artifacts/.
package e2e

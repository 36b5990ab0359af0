// Package e2e holds scanlogin's end-to-end tests: they build the WeChat
// simulator, wechat-callback and push-server, run them as separate
// processes on free ports with the development settings of
// scripts/run-all.sh, and drive a headless Chromium through a login (in the
// official-account and the Mini Program flow, confirmed and cancelled), a QR
// code expiry and reconnects.
//
// The tests need Chromium (/usr/bin/chromium, or chromium on PATH). Without
// it they skip, or fail when CI=true. Screenshots and process logs of a
// failed test go to $E2E_ARTIFACTS, default e2e/artifacts/.
package e2e

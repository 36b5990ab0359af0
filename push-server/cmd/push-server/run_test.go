package main

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// loops are the long-running functions run starts; none may outlive it.
var loops = []string{
	"github.com/scanlogin/scanlogin/push-server/internal/wsconn.(*Manager).Run",
	"github.com/scanlogin/scanlogin/push-server/internal/cluster.(*Cluster).Run",
	"github.com/scanlogin/scanlogin/push-server/internal/cluster.(*Cluster).monitor",
}

// stillRunning returns those of fns that some goroutine is executing now.
func stillRunning(fns []string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, fn := range fns {
		// A frame line starts with the function's name; "created by" lines
		// (which name a goroutine's creator, maybe long gone) do not.
		if bytes.Contains(buf, []byte("\n"+fn+"(")) {
			found = append(found, fn)
		}
	}
	return found
}

// A run that fails while starting (here the debug address is taken) leaves
// no loop running and no listener open behind it.
func TestRunFailingToStartLeavesNothingBehind(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := free.Addr().String()
	free.Close()

	fake := wechattest.New(t, appID, secret)
	env := map[string]string{
		"PUSH_HTTP_ADDR":  httpAddr,
		"PUSH_GRPC_ADDR":  "127.0.0.1:0",
		"PUSH_API_ADDR":   "127.0.0.1:0",
		"PUSH_DEBUG_ADDR": busy.Addr().String(),
		"WECHAT_APPID":    appID,
		"WECHAT_SECRET":   secret,
		"WECHAT_API_BASE": fake.URL(),
		"WECHAT_MP_BASE":  fake.URL(),
	}
	var logs strings.Builder
	err = run(context.Background(), nil, settings.Map(env), &logs)
	if err == nil || !strings.Contains(err.Error(), "PUSH_DEBUG_ADDR") {
		t.Fatalf("run = %v, want an error naming PUSH_DEBUG_ADDR\n%s", err, logs.String())
	}
	if left := stillRunning(loops); len(left) > 0 {
		t.Errorf("still running after run returned: %v", left)
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		t.Fatalf("the HTTP address is still held after run returned: %v", err)
	}
	ln.Close()
}

// When run returns after a clean stop, the loops it started (connections,
// the Redis cluster and its health monitor) have stopped with it.
func TestRunStopsWhatItStarted(t *testing.T) {
	rs := redistest.Start(t)
	in := start(t, map[string]string{"REDIS_URL": rs.URL(), "PUSH_DEBUG_ADDR": "127.0.0.1:0"})
	b := in.mustDial("")
	b.Expect("qrcode")
	if left := stillRunning(loops); len(left) != len(loops) {
		t.Fatalf("while serving, only %v of %v run: the names are stale", left, loops)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- in.stop() }()
	b.ExpectClose(websocket.CloseGoingAway)
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v", err)
	}
	if left := stillRunning(loops); len(left) > 0 {
		t.Errorf("still running after run returned: %v", left)
	}
}

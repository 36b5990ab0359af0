package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/redistest"
)

// scanlogin_redis_up follows Redis: 1 while it answers, 0 while it is away,
// 1 again when it is back (the health check runs every second).
func TestRedisUpMetric(t *testing.T) {
	rs := redistest.Start(t)
	in := start(t, map[string]string{"REDIS_URL": rs.URL()})
	waitMetric(t, in, "scanlogin_redis_up 1")
	rs.Kill()
	waitMetric(t, in, "scanlogin_redis_up 0")
	rs.Restart()
	waitMetric(t, in, "scanlogin_redis_up 1")
}

// waitMetric waits until the instance's /metrics has the line want.
func waitMetric(t *testing.T, in *instance, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + in.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if line == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never had %q", want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

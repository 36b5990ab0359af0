package redisstore

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// BenchmarkWaitingSessionFootprint measures what one waiting session costs
// Redis: the session, its scene index and one connection's presence entry,
// with realistic field sizes. Run: go test -run '^$' -bench Footprint ./internal/redisstore
func BenchmarkWaitingSessionFootprint(b *testing.B) {
	srv := redistest.Start(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	st := New(rdb, "scanlogin:", 10*time.Minute)
	const n = 10000
	before := usedMemory(b, rdb)
	for i := range n {
		sess := &login.Session{
			ID: login.NewSessionID(), ResumeHash: login.HashResume(login.NewResumeSecret()), Scene: login.NewScene(),
			Ticket:    "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xLzAyVm5YUkxkQ2lkM2UxMDAwME0wN1AAAgT+" + strconv.Itoa(i) + "==",
			ScanURL:   "http://weixin.qq.com/q/02VnXRLdCid3e10000M07P",
			ExpiresAt: time.Now().Add(2 * time.Minute), State: login.StateWaiting,
		}
		if err := st.Create(ctx, sess); err != nil {
			b.Fatal(err)
		}
		rdb.HIncrBy(ctx, "scanlogin:s:{"+sess.ID+"}:c", "0123456789abcdef", 1)
		rdb.PExpire(ctx, "scanlogin:s:{"+sess.ID+"}:c", 24*time.Hour)
	}
	after := usedMemory(b, rdb)
	b.ReportMetric(float64(after-before)/n, "bytes/session")
	for range b.N {
	}
}

func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	b.Fatal("no used_memory")
	return 0
}

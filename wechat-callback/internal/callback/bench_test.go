package callback

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// BenchmarkSafeModeScan measures one signed, encrypted SCAN event through
// the handler: verification, decryption, duplicate checks, Notify to a real
// gRPC server (pushtest) and the encrypted reply. The inputs are made
// before the timer starts; the allocations reported include the
// in-process fake push server's. docs/benchmarks.md keeps past results.
func BenchmarkSafeModeScan(b *testing.B) {
	e := newEnv(b, safeMode)
	type input struct {
		q    url.Values
		body []byte
	}
	in := make([]input, b.N)
	now := time.Now().Unix()
	for i := range in {
		scene := "s" + strconv.Itoa(i)
		e.push.SetResult(scene, pushv1.Result_RESULT_DELIVERED)
		q, body := e.encrypted(e.query(), event(testOpenID, now, "SCAN", scene, "T"+scene))
		in[i] = input{q, []byte(body)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range in {
		if rec := e.serve(in[i].q, in[i].body); rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

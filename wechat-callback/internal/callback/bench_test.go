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
// before the timer starts. Per event, the in-process fake push server's
// side included: 32 KB and 285 allocations (37 KB and 375 before the XML
// fast path, wechat.parseFlat). Time depends on the machine: 80–92 µs on an
// earlier one, 250–300 µs (300–330 before the fast path) on the slower one
// of 2026-12-01's last runs.
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

package callback

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// rawAnswer is an HTTP answer with everything the sender can see but Date.
type rawAnswer struct {
	status int
	header http.Header
	body   string
}

func (a rawAnswer) String() string {
	return fmt.Sprintf("%d %v %q", a.status, a.header, a.body)
}

func (a rawAnswer) equal(b rawAnswer) bool {
	return a.String() == b.String()
}

// postRaw POSTs and returns the whole answer, Date left out.
func (e *testEnv) postRaw(q url.Values, body string) rawAnswer {
	e.t.Helper()
	resp, err := e.srv.Client().Post(e.srv.URL+"/wechat/callback?"+q.Encode(), "text/xml", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	h := resp.Header.Clone()
	h.Del("Date")
	return rawAnswer{resp.StatusCode, h, string(b)}
}

// signedEncrypt makes a safe-mode request carrying enc as Encrypt, with a
// valid msg_signature: what someone who knows the Token can send.
func (e *testEnv) signedEncrypt(enc string) (url.Values, string) {
	q := e.query()
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
	return q, "<xml><ToUserName><![CDATA[" + testGH + "]]></ToUserName><Encrypt><![CDATA[" + enc + "]]></Encrypt></xml>"
}

// sealRaw encrypts pt (a multiple of 32 bytes) with the test key as is, so
// that any padding and length prefix can be sent.
func sealRaw(t testing.TB, pt []byte) string {
	t.Helper()
	key := aesKey(t, testAESKey)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(out, pt)
	return base64.StdEncoding.EncodeToString(out)
}

// TestDecryptFailuresAnsweredAlike: once msg_signature verifies, whatever is
// wrong inside the ciphertext gets the same answer, byte for byte (Date
// aside), one log line with one reason, and one metric.
func TestDecryptFailuresAnsweredAlike(t *testing.T) {
	e := newEnv(t, safeMode, withEnv("WECHAT_ORIGINAL_ID", testGH, "CALLBACK_DECRYPT_FAILURES_PER_IP", "0"))
	msg := event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")
	random := []byte("0123456789abcdef")
	cases := []struct{ name, enc string }{
		{"valid padding, wrong AppID", encrypt(t, testAESKey, "wxOTHERAPP", random, []byte(msg))},
		{"bad padding", sealRaw(t, func() []byte {
			pt := layout([]byte(msg), testAppID)
			pt[len(pt)-1] = 0
			return pt
		}())},
		{"bad length prefix", sealRaw(t, func() []byte {
			pt := layout([]byte(msg), testAppID)
			binary.BigEndian.PutUint32(pt[16:20], uint32(len(msg)+1))
			return pt
		}())},
		{"length prefix past the end", sealRaw(t, func() []byte {
			pt := layout([]byte(msg), testAppID)
			binary.BigEndian.PutUint32(pt[16:20], 1<<31)
			return pt
		}())},
		{"bad inner XML", encrypt(t, testAESKey, testAppID, random, []byte("<xml><FromUserName>"))},
		{"no FromUserName inside", encrypt(t, testAESKey, testAppID, random, []byte("<xml><MsgType>event</MsgType></xml>"))},
		{"FromUserName not an OpenID", encrypt(t, testAESKey, testAppID, random, []byte(event("oVictim\nX", 1, "SCAN", "s1", "T")))},
		{"other ToUserName inside", encrypt(t, testAESKey, testAppID, random, []byte(strings.Replace(msg, testGH, "gh_other", 1)))},
		{"other key", encrypt(t, "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj", testAppID, random, []byte(msg))},
		{"one block", sealRaw(t, make([]byte, 32))},
		{"not a multiple of 32", base64.StdEncoding.EncodeToString(make([]byte, 48))},
		{"not base64", "not base64!"},
	}
	var first rawAnswer
	for i, c := range cases {
		before := e.logs.String()
		got := e.postRaw(e.signedEncrypt(c.enc))
		if i == 0 {
			first = got
			if got.status != http.StatusBadRequest {
				t.Fatalf("%s: status %d, want 400", c.name, got.status)
			}
		} else if !got.equal(first) {
			t.Errorf("%s: answer\n%v\nwant the same as for %s:\n%v", c.name, got, cases[0].name, first)
		}
		logged := strings.TrimPrefix(e.logs.String(), before)
		if strings.Count(logged, "\n") != 1 || !strings.Contains(logged, "reason="+reasonDecrypt) ||
			!strings.Contains(logged, `detail="encrypted message refused"`) {
			t.Errorf("%s: logged %q, want one line with reason=%s and the common detail", c.name, logged, reasonDecrypt)
		}
	}
	if got := e.counter("wechat_callback_rejected_total", "reason", reasonDecrypt); got != float64(len(cases)) {
		t.Errorf("rejected{decrypt_failed} = %v, want %d", got, len(cases))
	}
	if got := e.counter("wechat_callback_rejected_total"); got != float64(len(cases)) {
		t.Errorf("rejected = %v, want %d (every case under one reason)", got, len(cases))
	}
	if n := len(e.push.Calls()); n != 0 {
		t.Fatalf("%d Notify calls", n)
	}
}

// paddingOracleProbe is the first step of a CBC padding oracle attack on the
// last byte of a captured ciphertext block: 256 requests, each the captured
// first two blocks (with the length prefix XORed to 0, which the attacker
// gets by trying the few lengths the ciphertext size allows), a block R
// whose last byte is the guess, and the target block. A guess that makes the
// plaintext end in 0x01 has valid padding and a length prefix that decodes;
// the answers must not tell it apart. It returns the answers and the guess
// with valid padding, which only the test (holding the key) can compute.
func paddingOracleProbe(t *testing.T, e *testEnv) (answers []rawAnswer, validGuess byte) {
	t.Helper()
	msg := event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T")
	captured, err := base64.StdEncoding.DecodeString(encrypt(t, testAESKey, testAppID, []byte("0123456789abcdef"), []byte(msg)))
	if err != nil {
		t.Fatal(err)
	}
	prefix := bytes.Clone(captured[:32])
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(msg)))
	for i := range n {
		prefix[i] ^= n[i] // P1 = D(C1) ^ C0: the length prefix becomes 0
	}
	target := captured[48:64]

	key := aesKey(t, testAESKey)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	var dec [16]byte
	block.Decrypt(dec[:], target)
	validGuess = dec[15] ^ 0x01

	for g := 0; g < 256; g++ {
		r := make([]byte, 16)
		r[15] = byte(g)
		ct := append(append(bytes.Clone(prefix), r...), target...)
		answers = append(answers, e.postRaw(e.signedEncrypt(base64.StdEncoding.EncodeToString(ct))))
	}

	// The test's own decryption confirms the probe hits the case that
	// leaked: padding good, length prefix 0, AppID wrong.
	r := make([]byte, 16)
	r[15] = validGuess
	plain, appID, err := decrypt(t, testAESKey, base64.StdEncoding.EncodeToString(append(append(bytes.Clone(prefix), r...), target...)))
	if err != nil || len(plain) != 0 || appID == testAppID {
		t.Fatalf("probe set-up: guess %d decrypts to %q, AppID %q, %v; want valid padding, empty message, wrong AppID", validGuess, plain, appID, err)
	}
	return answers, validGuess
}

// TestPaddingOracleAttack runs the attack against the handler over HTTP.
func TestPaddingOracleAttack(t *testing.T) {
	t.Run("learns nothing", func(t *testing.T) {
		e := newEnv(t, safeMode, withEnv("CALLBACK_DECRYPT_FAILURES_PER_IP", "0"))
		answers, valid := paddingOracleProbe(t, e)
		for g, a := range answers {
			if !a.equal(answers[0]) {
				t.Fatalf("guess %d (valid padding: %d) answered\n%v\nguess 0 answered\n%v", g, valid, a, answers[0])
			}
		}
		if answers[0].status != http.StatusBadRequest {
			t.Fatalf("answer %v, want 400", answers[0])
		}
		if got := e.counter("wechat_callback_rejected_total", "reason", reasonDecrypt); got != 256 {
			t.Errorf("rejected{decrypt_failed} = %v, want 256", got)
		}
	})

	t.Run("is cut short", func(t *testing.T) {
		e := newEnv(t, safeMode) // default: 10 failures a minute
		answers, _ := paddingOracleProbe(t, e)
		for g, a := range answers {
			want := http.StatusBadRequest
			if g >= 10 {
				want = http.StatusTooManyRequests
			}
			if a.status != want {
				t.Fatalf("guess %d: status %d, want %d", g, a.status, want)
			}
		}
		if got := e.counter("wechat_callback_rejected_total", "reason", reasonDecrypt); got != 10 {
			t.Errorf("rejected{decrypt_failed} = %v, want 10", got)
		}
		if got := e.counter("wechat_callback_rejected_total", "reason", reasonThrottled); got != 246 {
			t.Errorf("rejected{too_many_failures} = %v, want 246", got)
		}
	})
}

// clock is a settable clock for the server and the test's timestamps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withSettableClock(c *clock) envOption {
	return func(e *testEnv, _ map[string]string, d *Deps) {
		e.now = c.now
		d.Now = c.now
	}
}

// TestDecryptFailureLimit: past CALLBACK_DECRYPT_FAILURES_PER_IP failures,
// an address's encrypted requests are refused with 429 before decryption,
// good ones included, until its allowance refills; plaintext requests and
// a message that decrypts do not count.
func TestDecryptFailureLimit(t *testing.T) {
	clk := &clock{t: time.Now()}
	e := newEnv(t, safeMode, withSettableClock(clk), withEnv("CALLBACK_DECRYPT_FAILURES_PER_IP", "3/m"))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	good := func(i int) (url.Values, string) {
		return e.encrypted(e.query(), event(testOpenID, clk.now().Unix()+int64(i), "SCAN", "s1", "T"))
	}
	bad := func() (url.Values, string) { return e.signedEncrypt(sealRaw(t, make([]byte, 64))) }

	if r := e.post(good(0)); r.status != 200 {
		t.Fatalf("good message: %+v", r)
	}
	for i := range 3 {
		if r := e.post(bad()); r.status != 400 {
			t.Fatalf("failure %d: %+v", i+1, r)
		}
	}
	a := e.postRaw(bad())
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "20" {
		t.Fatalf("fourth failure: %v, want 429 with Retry-After: 20", a)
	}
	calls := len(e.push.Calls())
	if a := e.postRaw(good(1)); a.status != http.StatusTooManyRequests {
		t.Fatalf("good message while blocked: %v, want 429", a)
	}
	if n := len(e.push.Calls()); n != calls {
		t.Fatalf("a blocked request reached Notify")
	}
	if r := e.post(e.query(), event(testOpenID, clk.now().Unix()+2, "SCAN", "s1", "T")); r.status != 200 {
		t.Fatalf("plaintext request while blocked: %+v", r)
	}
	if !strings.Contains(e.logs.String(), "reason="+reasonThrottled) {
		t.Errorf("no log line for the 429")
	}

	clk.add(20 * time.Second) // one failure allowed again
	if r := e.post(good(3)); r.status != 200 {
		t.Fatalf("good message after 20 s: %+v", r)
	}
	if r := e.post(bad()); r.status != 400 {
		t.Fatalf("failure after 20 s: %+v", r)
	}
	if r := e.post(bad()); r.status != 429 {
		t.Fatalf("second failure after 20 s: %+v", r)
	}
}

// postFrom POSTs as a trusted proxy relaying a request from client.
func (e *testEnv) postFrom(client string, req func() (url.Values, string)) int {
	e.t.Helper()
	q, body := req()
	return e.postFromQuery(client, q, body)
}

func (e *testEnv) postFromQuery(client string, q url.Values, body string) int {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/wechat/callback?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("X-Forwarded-For", client)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Behind a trusted proxy the limit counts each sender that X-Forwarded-For
// names: an attacker's failures do not hold off WeChat's requests, which
// reach the callback through the same proxy.
func TestDecryptFailureLimitPerSenderBehindProxy(t *testing.T) {
	e := newEnv(t, safeMode, withEnv("CALLBACK_DECRYPT_FAILURES_PER_IP", "2/m"), withEnv("TRUSTED_PROXIES", "127.0.0.1"))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	bad := func() (url.Values, string) { return e.signedEncrypt(sealRaw(t, make([]byte, 64))) }
	const attacker, wechatServer = "198.51.100.66", "203.0.113.10"
	for i := range 2 {
		if s := e.postFrom(attacker, bad); s != http.StatusBadRequest {
			t.Fatalf("failure %d: %d", i+1, s)
		}
	}
	if s := e.postFrom(attacker, bad); s != http.StatusTooManyRequests {
		t.Fatalf("the attacker's third failure: %d, want 429", s)
	}
	q, body := e.encrypted(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	if s := e.postFromQuery(wechatServer, q, body); s != http.StatusOK {
		t.Fatalf("WeChat's event through the same proxy: %d, want 200", s)
	}
	// An X-Forwarded-For from an address that is not a trusted proxy
	// names nobody: without TRUSTED_PROXIES the peer address counts.
	plain := newEnv(t, safeMode, withEnv("CALLBACK_DECRYPT_FAILURES_PER_IP", "2/m"))
	plainBad := func() (url.Values, string) { return plain.signedEncrypt(sealRaw(t, make([]byte, 64))) }
	for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
		plain.postFrom(client, plainBad)
	}
	if s := plain.postFrom("192.0.2.1", plainBad); s != http.StatusTooManyRequests {
		t.Fatalf("X-Forwarded-For believed without TRUSTED_PROXIES: %d, want 429", s)
	}
}

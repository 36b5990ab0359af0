package callback

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// Fuzz targets: each sends fuzzed input through the whole handler with a
// valid signature, so that parsing and decryption are reached, and checks
// that nothing panics and that WeChat never sees a 5xx. Seeds live in
// testdata/fuzz/<name>/; run e.g.
//
//	go test -run '^$' -fuzz '^FuzzPlaintextBody$' -fuzztime 10s ./internal/callback

// serve sends one request straight to the handler.
func (e *testEnv) serve(q url.Values, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/wechat/callback?"+q.Encode(), bytes.NewReader(body))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on an answer WeChat should never get.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, encrypted bool) {
	switch rec.Code {
	case 200:
		body := rec.Body.String()
		if body == "success" {
			return
		}
		var v struct {
			XMLName xml.Name `xml:"xml"`
			Content string   `xml:"Content"`
			Encrypt string   `xml:"Encrypt"`
		}
		if err := xml.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("200 with a body that is not XML: %q", body)
		}
		if encrypted && v.Encrypt == "" || !encrypted && v.Content == "" {
			t.Fatalf("200 with an unexpected reply: %q", body)
		}
	case 400, 403, 413:
	default:
		t.Fatalf("status %d: %q", rec.Code, rec.Body.String())
	}
}

// fuzzEnv has no limit on decrypt failures: the fuzzer fails far more often
// than any limit allows.
func fuzzEnv(f *testing.F, opts ...envOption) *testEnv {
	e := newEnv(f, append(opts, withEnv("LOG_LEVEL", "error", "CALLBACK_BUDGET", "1s", "NOTIFY_TIMEOUT", "200ms",
		"CALLBACK_DECRYPT_FAILURES_PER_IP", "0"))...)
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)
	return e
}

// FuzzPlaintextBody fuzzes the XML body of a plaintext-mode POST.
func FuzzPlaintextBody(f *testing.F) {
	e := fuzzEnv(f)
	f.Add([]byte(event(testOpenID, 1700000000, "SCAN", "s1", "T")))
	f.Add([]byte(vecBPlain))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAnswer(t, e.serve(e.query(), body), false)
	})
}

// FuzzEncryptValue fuzzes the <Encrypt> value of a safe-mode POST; the
// msg_signature is computed over whatever the XML parser will read back.
func FuzzEncryptValue(f *testing.F) {
	e := fuzzEnv(f, safeMode)
	f.Add(encrypt(f, testAESKey, testAppID, []byte("0123456789abcdef"), []byte(event(testOpenID, 1, "SCAN", "s1", "T"))))
	f.Add(vecBEncrypt)
	f.Fuzz(func(t *testing.T, enc string) {
		var b strings.Builder
		if err := xml.EscapeText(&b, []byte(enc)); err != nil {
			t.Skip()
		}
		body := "<xml><Encrypt>" + b.String() + "</Encrypt></xml>"
		var parsed struct {
			Encrypt string `xml:"Encrypt"`
		}
		if xml.Unmarshal([]byte(body), &parsed) != nil {
			parsed.Encrypt = enc
		}
		q := e.query()
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), parsed.Encrypt))
		checkAnswer(t, e.serve(q, []byte(body)), true)
	})
}

// FuzzDecryptedPlaintext fuzzes what decryption yields: random prefix,
// length field, message, AppID and padding are all the fuzzer's. The input
// is zero-extended to a multiple of 32 bytes and encrypted with the right
// key, so every input reaches the checks after AES.
func FuzzDecryptedPlaintext(f *testing.F) {
	e := fuzzEnv(f, safeMode)
	f.Add(layout([]byte(event(testOpenID, 1, "SCAN", "s1", "T")), testAppID))
	f.Add(layout([]byte("<xml></xml>"), testAppID))
	f.Add(layout([]byte(event(testOpenID, 1, "SCAN", "s1", "T")), "wxOTHER"))
	key := aesKey(f, testAESKey)
	block, err := aes.NewCipher(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pt []byte) {
		if len(pt) == 0 || len(pt) > MaxBodyBytes/2 {
			t.Skip()
		}
		buf := make([]byte, (len(pt)+31)/32*32)
		copy(buf, pt)
		cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(buf, buf)
		enc := base64.StdEncoding.EncodeToString(buf)
		q := e.query()
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", sign(testToken, q.Get("timestamp"), q.Get("nonce"), enc))
		checkAnswer(t, e.serve(q, []byte("<xml><Encrypt>"+enc+"</Encrypt></xml>")), true)
	})
}

// layout is the plaintext WeChat encrypts: random(16) || len || msg || appid
// || padding to 32.
func layout(msg []byte, appID string) []byte {
	pt := []byte("0123456789abcdef")
	pt = append(pt, byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg)))
	pt = append(pt, msg...)
	pt = append(pt, appID...)
	pad := 32 - len(pt)%32
	return append(pt, bytes.Repeat([]byte{byte(pad)}, pad)...)
}

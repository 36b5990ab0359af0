package wechat

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// Common parameters of the test vectors (docs/wechat.md, Test vectors).
const (
	vecToken  = "pamtest"
	vecAppID  = "wxb11529c136998cb6"
	vecAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
)

// Vector A: EasyWeChat's test suite.
const (
	vecATimestamp = "1458300676"
	vecANonce     = "260774613"
	vecAMsgSig    = "4f3ad57b6989f09f4eb392acce4f9e93942ed890"
	vecAEncrypt   = "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA=="
	vecAPlain     = "<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>"
)

// Vector B: a subscribe-with-scene event.
const (
	vecBRandom    = "0123456789abcdef"
	vecBTimestamp = "1700000000"
	vecBNonce     = "1234567890"
	vecBSig       = "2030e01d907f9ebfcf6d27a15e9d5b5a9aa39b27"
	vecBMsgSig    = "e348f50c976bfb8401246a163c65d8c7df950111"
	vecBPlain     = "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[oUser_openid_0001]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_login_3f2a9c]]></EventKey><Ticket><![CDATA[gQFAKE_TICKET==]]></Ticket></xml>"
	vecBEncrypt   = "Q3stYC6hdFzMh9T8HCvyDPXDKbVeLZOylslQ5o9SoOE8Jo/FvpniB5n5ws3uXq6aA8akupiAtGSjx7mgfdVT99amy9WxnPsD967XZr5fSRX9z6QxtExXTSGos9xe0iAV/jvViFV3enprRXQJBsJWWa/ZNoRh8XCiqgbwWcnq1W+DQyt6zQf+wvU2MdaG8JxIc6TyLbYxwuUE0P69jrdlzatsUy7DC8uQN7cXXIGCX9usWqzPw+jbdtwBH+EEbamkjDcSUeddfHfHcBJre9YT8WhZrzFLWcE8GLoUNhWKmT72Nxd/j2WKqYtbslT7l9jrPSec7n4jUKMIC2DyjZUkdmOJM/+thQwjmfbubDWBdAwmLndZHKDfkcMX4f7+dHEwZmGIuVh0ODARVrrQA9QciJ9y/9QMgTjahenB0j5mHwSawQH4bROm1sfyk72kC6GiuyW/qqVdiq3Btlk5poKs5zi1Fjpe5SvdO+MoIN1U+9wPfx9TdnxTisT8uvraJmbQ"
)

// Vector C: an encrypted passive text reply.
const (
	vecCRandom    = "fedcba9876543210"
	vecCTimestamp = "1700000001"
	vecCNonce     = "987654321"
	vecCMsgSig    = "5f37e6ccb57a4562e73c4408b5014aadccb95fb8"
	vecCPlain     = "<xml><ToUserName><![CDATA[oUser_openid_0001]]></ToUserName><FromUserName><![CDATA[gh_0123456789ab]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[login ok]]></Content></xml>"
	vecCEncrypt   = "DpQeJfnf/MGZ/+GTIspwVE9FNgUq8R4CclPMcg6N6klcH0rK/70V6OfKQl0CX73+R7BFg/pvz9cNQ14WFtVD7uoloHQO4shPjvE0BgjLDR60kYXKs9IciYutXHIcnQlld3uecIS60Fo6eUEdLAxImEFJKol8vqvB6Eux5g+14e5+LGnVQJ4OmGJpXXV2FZhuggg6PuPsfaFBwq5cubt6jgjW3WaYgzRduB5JZjUit4nCWtw95KHNxirOQCffId7F3kRzVsUBVVQ/B1bBaoz9Yx6y02Oj56Wtk4vyDGKX5T8/af878K/X5yCzPDNatz/6UjIVeWMrMXvokx3lnLpYnwBD0Nhf6krpNDmw2xA/SUqYkyDfzNpve8NOvRM39PU9"
)

func newVecCrypter(t testing.TB) *Crypter {
	t.Helper()
	c, err := NewCrypter(vecToken, vecAESKey, vecAppID)
	if err != nil {
		t.Fatalf("NewCrypter: %v", err)
	}
	return c
}

func TestCrypterKeyDecoding(t *testing.T) {
	// The vector key has non-zero trailing bits: Strict() would reject it.
	c := newVecCrypter(t)
	const wantIV = "69b71d79f8218a39259a7a29aabb2dba"
	if got := hex.EncodeToString(c.iv); got != wantIV {
		t.Errorf("iv = %s, want %s", got, wantIV)
	}
}

func TestDecryptVectors(t *testing.T) {
	c := newVecCrypter(t)
	tests := []struct {
		name, encrypt, want string
	}{
		{"A", vecAEncrypt, vecAPlain},
		{"B", vecBEncrypt, vecBPlain},
		{"C", vecCEncrypt, vecCPlain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Decrypt(tt.encrypt)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Decrypt =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestEncryptWithRandomVectors(t *testing.T) {
	c := newVecCrypter(t)
	tests := []struct {
		name, random, plain, want string
	}{
		{"B", vecBRandom, vecBPlain, vecBEncrypt},
		{"C", vecCRandom, vecCPlain, vecCEncrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.EncryptWithRandom([]byte(tt.random), []byte(tt.plain))
			if err != nil {
				t.Fatalf("EncryptWithRandom: %v", err)
			}
			if got != tt.want {
				t.Errorf("EncryptWithRandom =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestMsgSignatureVectors(t *testing.T) {
	c := newVecCrypter(t)
	tests := []struct {
		name, timestamp, nonce, encrypt, want string
	}{
		{"A", vecATimestamp, vecANonce, vecAEncrypt, vecAMsgSig},
		{"B", vecBTimestamp, vecBNonce, vecBEncrypt, vecBMsgSig},
		{"C", vecCTimestamp, vecCNonce, vecCEncrypt, vecCMsgSig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.MsgSignature(tt.timestamp, tt.nonce, tt.encrypt); got != tt.want {
				t.Errorf("MsgSignature = %s, want %s", got, tt.want)
			}
			if !c.VerifyMsgSignature(tt.want, tt.timestamp, tt.nonce, tt.encrypt) {
				t.Error("VerifyMsgSignature(right) = false")
			}
			if c.VerifyMsgSignature(tt.want, tt.timestamp, tt.nonce+"1", tt.encrypt) {
				t.Error("VerifyMsgSignature(other nonce) = true")
			}
			if c.VerifyMsgSignature(strings.ToUpper(tt.want), tt.timestamp, tt.nonce, tt.encrypt) {
				t.Error("VerifyMsgSignature(upper case) = true")
			}
		})
	}
}

func TestDecryptTampered(t *testing.T) {
	c := newVecCrypter(t)
	other, err := NewCrypter(vecToken, vecAESKey, "wx0000000000000000")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := NewCrypter(vecToken, "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut", vecAppID)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(vecBEncrypt)
	flipLast := bytes.Clone(ct)
	flipLast[len(flipLast)-1] ^= 0x01 // garbles the last plaintext block: padding
	encodedFor := func(cr *Crypter, raw []byte) string {
		// raw is the plaintext before padding; encrypt with valid padding.
		s, err := cr.encryptRaw(raw)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name    string
		c       *Crypter
		encrypt string
		want    error
	}{
		{"wrong appid", other, vecBEncrypt, ErrDecrypt},
		{"wrong key", otherKey, vecBEncrypt, ErrDecrypt},
		{"bit flip", c, base64.StdEncoding.EncodeToString(flipLast), ErrDecrypt},
		{"truncated 32", c, base64.StdEncoding.EncodeToString(ct[:len(ct)-32]), ErrDecrypt},
		{"truncated 16", c, base64.StdEncoding.EncodeToString(ct[:len(ct)-16]), ErrBadCiphertextLength},
		{"not base64", c, "not*base64!", ErrBadBase64},
		{"truncated base64", c, vecBEncrypt[:len(vecBEncrypt)-3], ErrBadBase64},
		{"empty", c, "", ErrBadCiphertextLength},
		{"one block of 16", c, base64.StdEncoding.EncodeToString(make([]byte, 16)), ErrBadCiphertextLength},
		{"zeros", c, base64.StdEncoding.EncodeToString(make([]byte, 64)), ErrDecrypt},
		{"too short for header", c, encodedFor(c, []byte("0123456789abcdef")), ErrDecrypt},
		{"length prefix past end", c, encodedFor(c, append([]byte("0123456789abcdef\x00\x00\x10\x00"), vecAppID...)), ErrDecrypt},
		{"length prefix max", c, encodedFor(c, append([]byte("0123456789abcdef\xff\xff\xff\xff"), vecAppID...)), ErrDecrypt},
		{"no appid", c, encodedFor(c, []byte("0123456789abcdef\x00\x00\x00\x02hi")), ErrDecrypt},
		{"appid prefix", c, encodedFor(c, append([]byte("0123456789abcdef\x00\x00\x00\x02hi"), vecAppID[:5]...)), ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Decrypt(tt.encrypt)
			if err == nil {
				t.Fatalf("Decrypt = %q, want error", got)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Decrypt error = %v, want %v", err, tt.want)
			}
		})
	}
}

// encryptRaw pads and encrypts raw as is, to build malformed plaintexts.
func (c *Crypter) encryptRaw(raw []byte) (string, error) {
	p := padBlock - len(raw)%padBlock
	pt := append(bytes.Clone(raw), bytes.Repeat([]byte{byte(p)}, p)...)
	out := make([]byte, len(pt))
	cbcEncrypt(c, out, pt)
	return base64.StdEncoding.EncodeToString(out), nil
}

func TestDecryptBadPaddingValues(t *testing.T) {
	c := newVecCrypter(t)
	for _, last := range []byte{0, 33, 0xff} {
		pt := bytes.Repeat([]byte{'a'}, 64)
		pt[63] = last
		out := make([]byte, len(pt))
		cbcEncrypt(c, out, pt)
		if _, err := c.Decrypt(base64.StdEncoding.EncodeToString(out)); !errors.Is(err, ErrDecrypt) {
			t.Errorf("pad byte %d: err = %v, want ErrDecrypt", last, err)
		}
	}
	// Right last byte, inconsistent earlier padding bytes.
	pt := bytes.Repeat([]byte{'a'}, 64)
	pt[63], pt[62] = 3, 3
	out := make([]byte, len(pt))
	cbcEncrypt(c, out, pt)
	if _, err := c.Decrypt(base64.StdEncoding.EncodeToString(out)); !errors.Is(err, ErrDecrypt) {
		t.Errorf("inconsistent padding: err = %v, want ErrDecrypt", err)
	}
}

// TestDecryptPaddingEdges checks every byte of the padding (24 and a whole
// block of 32) and an AppID longer than the plaintext.
func TestDecryptPaddingEdges(t *testing.T) {
	c := newVecCrypter(t)
	seal := func(pt []byte) string {
		out := make([]byte, len(pt))
		cbcEncrypt(c, out, pt)
		return base64.StdEncoding.EncodeToString(out)
	}
	for _, msg := range []string{"hi", strings.Repeat("m", 26)} {
		pt := binary.BigEndian.AppendUint32([]byte("0123456789abcdef"), uint32(len(msg)))
		pt = append(append(pt, msg...), vecAppID...)
		p := padBlock - len(pt)%padBlock
		pt = append(pt, bytes.Repeat([]byte{byte(p)}, p)...)
		if got, err := c.Decrypt(seal(pt)); err != nil || string(got) != msg {
			t.Fatalf("pad %d: Decrypt = %q, %v", p, got, err)
		}
		for i := 1; i <= p; i++ {
			bad := bytes.Clone(pt)
			bad[len(bad)-i] ^= 0x40
			if _, err := c.Decrypt(seal(bad)); !errors.Is(err, ErrDecrypt) {
				t.Errorf("pad %d, byte -%d wrong: err = %v, want ErrDecrypt", p, i, err)
			}
		}
	}

	long, err := NewCrypter(vecToken, vecAESKey, strings.Repeat("w", 100))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{32, 64, 128} {
		pt := bytes.Repeat([]byte{1}, n)
		out := make([]byte, n)
		cbcEncrypt(long, out, pt)
		if _, err := long.Decrypt(base64.StdEncoding.EncodeToString(out)); !errors.Is(err, ErrDecrypt) {
			t.Errorf("%d bytes, long AppID: err = %v, want ErrDecrypt", n, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := newVecCrypter(t)
	for _, n := range []int{0, 1, 11, 12, 13, 31, 32, 33, 100, 4096} {
		msg := bytes.Repeat([]byte{'x'}, n)
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Decrypt(enc)
		if err != nil {
			t.Fatalf("len %d: Decrypt: %v", n, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("len %d: round trip changed the message", n)
		}
	}
	a, _ := c.Encrypt([]byte("same"))
	b, _ := c.Encrypt([]byte("same"))
	if a == b {
		t.Error("Encrypt is deterministic; want a fresh random prefix")
	}
	if _, err := c.EncryptWithRandom([]byte("short"), []byte("x")); !errors.Is(err, ErrBadRandom) {
		t.Errorf("EncryptWithRandom(short random) err = %v, want ErrBadRandom", err)
	}
}

func TestNewCrypterValidation(t *testing.T) {
	tests := []struct {
		name, token, key, appID string
		want                    error
	}{
		{"ok", vecToken, vecAESKey, vecAppID, nil},
		{"empty appid", vecToken, vecAESKey, "", ErrEmptyAppID},
		{"empty token", "", vecAESKey, vecAppID, ErrEmptyToken},
		{"short key", vecToken, vecAESKey[:42], vecAppID, ErrBadAESKey},
		{"long key", vecToken, vecAESKey + "A", vecAppID, ErrBadAESKey},
		{"44 with padding", vecToken, vecAESKey + "=", vecAppID, ErrBadAESKey},
		{"bad chars", vecToken, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!", vecAppID, ErrBadAESKey},
		{"empty key", vecToken, "", vecAppID, ErrBadAESKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewCrypter(tt.token, tt.key, tt.appID)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewCrypter err = %v, want %v", err, tt.want)
			}
			if err == nil && c == nil {
				t.Fatal("NewCrypter = nil, nil")
			}
		})
	}
}

func TestEncryptReply(t *testing.T) {
	c := newVecCrypter(t)
	reply := TextReply("oUser_openid_0001", "gh_0123456789ab", 1700000001, "login ok")
	if string(reply) != vecCPlain {
		t.Fatalf("TextReply =\n%s\nwant\n%s", reply, vecCPlain)
	}
	body, err := c.EncryptReply(reply, vecCTimestamp, vecCNonce)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, []byte("<xml><Encrypt><![CDATA[")) ||
		!bytes.HasSuffix(body, []byte("<TimeStamp>1700000001</TimeStamp><Nonce><![CDATA[987654321]]></Nonce></xml>")) {
		t.Errorf("EncryptReply body layout: %s", body)
	}
	r, err := ParseEncryptedReply(body)
	if err != nil {
		t.Fatal(err)
	}
	if r.TimeStamp != vecCTimestamp || r.Nonce != vecCNonce {
		t.Errorf("TimeStamp, Nonce = %q, %q", r.TimeStamp, r.Nonce)
	}
	if !c.VerifyMsgSignature(r.MsgSignature, r.TimeStamp, r.Nonce, r.Encrypt) {
		t.Error("MsgSignature of the reply does not verify")
	}
	got, err := c.Decrypt(r.Encrypt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, reply) {
		t.Errorf("decrypted reply = %s", got)
	}

	// The envelope of vector C, as WeChat would check it.
	vecC := "<xml><Encrypt><![CDATA[" + vecCEncrypt + "]]></Encrypt><MsgSignature><![CDATA[" + vecCMsgSig +
		"]]></MsgSignature><TimeStamp>" + vecCTimestamp + "</TimeStamp><Nonce><![CDATA[" + vecCNonce + "]]></Nonce></xml>"
	r, err = ParseEncryptedReply([]byte(vecC))
	if err != nil {
		t.Fatal(err)
	}
	if *r != (EncryptedReply{vecCEncrypt, vecCMsgSig, vecCTimestamp, vecCNonce}) {
		t.Errorf("ParseEncryptedReply(vector C) = %+v", r)
	}

	for _, ts := range []string{"", "17e9", "1<2", " 1"} {
		if _, err := c.EncryptReply(reply, ts, "n"); err == nil {
			t.Errorf("EncryptReply(timestamp %q) succeeded, want error", ts)
		}
	}
	if _, err := c.EncryptReply(reply, "1", "bad\x00nonce"); err == nil {
		t.Error("EncryptReply(nonce with NUL) succeeded, want error")
	}
	// A nonce with "]]>" must still round-trip.
	body, err = c.EncryptReply(reply, "1", "a]]>b")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseEncryptedReply(body); err != nil || r.Nonce != "a]]>b" {
		t.Errorf("nonce with ]]>: %+v, %v", r, err)
	}
}

func TestParseEncryptedReplyErrors(t *testing.T) {
	for _, body := range []string{
		"",
		"<xml>",
		"<foo><Encrypt>a</Encrypt><MsgSignature>b</MsgSignature><TimeStamp>1</TimeStamp><Nonce>n</Nonce></foo>",
		"<xml><Encrypt>a</Encrypt><MsgSignature>b</MsgSignature><TimeStamp>1</TimeStamp></xml>",
		"success",
	} {
		if r, err := ParseEncryptedReply([]byte(body)); err == nil {
			t.Errorf("ParseEncryptedReply(%q) = %+v, want error", body, r)
		}
	}
}

func FuzzDecrypt(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzDecrypt; add the vectors too.
	f.Add(vecAEncrypt)
	f.Add(vecBEncrypt)
	c := newVecCrypter(f)
	f.Fuzz(func(t *testing.T, encrypt string) {
		msg, err := c.Decrypt(encrypt)
		if err != nil {
			if msg != nil {
				t.Fatalf("Decrypt returned %q with error %v", msg, err)
			}
			return
		}
		// Whatever decrypts must re-encrypt and decrypt to the same bytes.
		enc, err := c.Encrypt(msg)
		if err != nil {
			t.Fatal(err)
		}
		again, err := c.Decrypt(enc)
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("round trip of %q: %q, %v", msg, again, err)
		}
	})
}

package callback

// An independent implementation of WeChat's side (signatures, message
// encryption, encrypted replies; docs/wechat.md), written without the wechat
// package, so that the tests do not trust the code they test.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"sort"
	"strings"
	"testing"
)

// sign is SHA-1 over the sorted, concatenated parts, in lowercase hex.
func sign(parts ...string) string {
	p := append([]string(nil), parts...)
	sort.Strings(p)
	sum := sha1.Sum([]byte(strings.Join(p, "")))
	return hex.EncodeToString(sum[:])
}

// aesKey decodes a 43-character EncodingAESKey (no Strict()).
func aesKey(t testing.TB, encodingAESKey string) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(k) != 32 {
		t.Fatalf("bad EncodingAESKey: %v (%d bytes)", err, len(k))
	}
	return k
}

// encrypt lays out random(16) || len(msg) || msg || appid, pads to 32 bytes
// and encrypts with AES-256-CBC, IV = key[:16].
func encrypt(t testing.TB, encodingAESKey, appID string, random, msg []byte) string {
	t.Helper()
	key := aesKey(t, encodingAESKey)
	var pt []byte
	pt = append(pt, random...)
	pt = binary.BigEndian.AppendUint32(pt, uint32(len(msg)))
	pt = append(pt, msg...)
	pt = append(pt, appID...)
	pad := 32 - len(pt)%32
	pt = append(pt, bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(pt, pt)
	return base64.StdEncoding.EncodeToString(pt)
}

// decrypt reverses encrypt and returns the message and the trailing AppID.
func decrypt(t testing.TB, encodingAESKey, enc string) (msg []byte, appID string, err error) {
	t.Helper()
	key := aesKey(t, encodingAESKey)
	ct, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(ct) == 0 || len(ct)%32 != 0 {
		return nil, "", errors.New("bad ciphertext")
	}
	block, _ := aes.NewCipher(key)
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(pt, ct)
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > 32 {
		return nil, "", errors.New("bad padding")
	}
	pt = pt[:len(pt)-pad]
	if len(pt) < 20 {
		return nil, "", errors.New("short plaintext")
	}
	n := int(binary.BigEndian.Uint32(pt[16:20]))
	if n > len(pt)-20 {
		return nil, "", errors.New("bad length")
	}
	return pt[20 : 20+n], string(pt[20+n:]), nil
}

// The test vectors' common parameters and vectors A-C (docs/wechat.md).
const (
	vecToken  = "pamtest"
	vecAppID  = "wxb11529c136998cb6"
	vecAESKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

	vecAEncrypt = "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA=="
	vecAPlain   = "<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>"

	vecBPlain   = "<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName><FromUserName><![CDATA[oUser_openid_0001]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_login_3f2a9c]]></EventKey><Ticket><![CDATA[gQFAKE_TICKET==]]></Ticket></xml>"
	vecBEncrypt = "Q3stYC6hdFzMh9T8HCvyDPXDKbVeLZOylslQ5o9SoOE8Jo/FvpniB5n5ws3uXq6aA8akupiAtGSjx7mgfdVT99amy9WxnPsD967XZr5fSRX9z6QxtExXTSGos9xe0iAV/jvViFV3enprRXQJBsJWWa/ZNoRh8XCiqgbwWcnq1W+DQyt6zQf+wvU2MdaG8JxIc6TyLbYxwuUE0P69jrdlzatsUy7DC8uQN7cXXIGCX9usWqzPw+jbdtwBH+EEbamkjDcSUeddfHfHcBJre9YT8WhZrzFLWcE8GLoUNhWKmT72Nxd/j2WKqYtbslT7l9jrPSec7n4jUKMIC2DyjZUkdmOJM/+thQwjmfbubDWBdAwmLndZHKDfkcMX4f7+dHEwZmGIuVh0ODARVrrQA9QciJ9y/9QMgTjahenB0j5mHwSawQH4bROm1sfyk72kC6GiuyW/qqVdiq3Btlk5poKs5zi1Fjpe5SvdO+MoIN1U+9wPfx9TdnxTisT8uvraJmbQ"
	vecBSig     = "2030e01d907f9ebfcf6d27a15e9d5b5a9aa39b27"
	vecBMsgSig  = "e348f50c976bfb8401246a163c65d8c7df950111"

	vecCPlain   = "<xml><ToUserName><![CDATA[oUser_openid_0001]]></ToUserName><FromUserName><![CDATA[gh_0123456789ab]]></FromUserName><CreateTime>1700000001</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[login ok]]></Content></xml>"
	vecCEncrypt = "DpQeJfnf/MGZ/+GTIspwVE9FNgUq8R4CclPMcg6N6klcH0rK/70V6OfKQl0CX73+R7BFg/pvz9cNQ14WFtVD7uoloHQO4shPjvE0BgjLDR60kYXKs9IciYutXHIcnQlld3uecIS60Fo6eUEdLAxImEFJKol8vqvB6Eux5g+14e5+LGnVQJ4OmGJpXXV2FZhuggg6PuPsfaFBwq5cubt6jgjW3WaYgzRduB5JZjUit4nCWtw95KHNxirOQCffId7F3kRzVsUBVVQ/B1bBaoz9Yx6y02Oj56Wtk4vyDGKX5T8/af878K/X5yCzPDNatz/6UjIVeWMrMXvokx3lnLpYnwBD0Nhf6krpNDmw2xA/SUqYkyDfzNpve8NOvRM39PU9"
	vecCMsgSig  = "5f37e6ccb57a4562e73c4408b5014aadccb95fb8"
)

// TestSignerVectors checks the test-only signer against vectors A-D, so
// that the requests the other tests build are what WeChat would send.
func TestSignerVectors(t *testing.T) {
	t.Run("D plain signature", func(t *testing.T) {
		if got := sign("AAAAA", "1714037059", "486452656"); got != "899cf89e464efb63f54ddac96b0a0a235f53aa78" {
			t.Fatalf("sign = %s", got)
		}
	})
	if k := hex.EncodeToString(aesKey(t, vecAESKey)); k != "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051" {
		t.Fatalf("AES key = %s", k)
	}
	tests := []struct {
		name, random, plain, encrypt, ts, nonce, msgSig string
	}{
		{"A EasyWeChat", "d43123b161a4ba84", vecAPlain, vecAEncrypt, "1458300676", "260774613", "4f3ad57b6989f09f4eb392acce4f9e93942ed890"},
		{"B subscribe", "0123456789abcdef", vecBPlain, vecBEncrypt, "1700000000", "1234567890", vecBMsgSig},
		{"C reply", "fedcba9876543210", vecCPlain, vecCEncrypt, "1700000001", "987654321", vecCMsgSig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := encrypt(t, vecAESKey, vecAppID, []byte(tt.random), []byte(tt.plain)); got != tt.encrypt {
				t.Errorf("encrypt = %s", got)
			}
			msg, appID, err := decrypt(t, vecAESKey, tt.encrypt)
			if err != nil || string(msg) != tt.plain || appID != vecAppID {
				t.Errorf("decrypt = %q, %q, %v", msg, appID, err)
			}
			if got := sign(vecToken, tt.ts, tt.nonce, tt.encrypt); got != tt.msgSig {
				t.Errorf("msg_signature = %s", got)
			}
		})
	}
	if got := sign(vecToken, "1700000000", "1234567890"); got != vecBSig {
		t.Errorf("B signature = %s", got)
	}
}

// encryptedReply is the envelope of an encrypted passive reply.
type encryptedReply struct {
	XMLName      xml.Name `xml:"xml"`
	Encrypt      string   `xml:"Encrypt"`
	MsgSignature string   `xml:"MsgSignature"`
	TimeStamp    string   `xml:"TimeStamp"`
	Nonce        string   `xml:"Nonce"`
}

// textReply is a passive text reply.
type textReply struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   string   `xml:"ToUserName"`
	FromUserName string   `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      string   `xml:"MsgType"`
	Content      string   `xml:"Content"`
}

func xmlUnmarshal(s string, v any) error { return xml.Unmarshal([]byte(s), v) }

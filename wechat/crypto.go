package wechat

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Errors of [NewCrypter] and [Crypter.Decrypt].
var (
	// ErrBadAESKey means the EncodingAESKey is not 43 base64 characters
	// that decode to 32 bytes.
	ErrBadAESKey = errors.New("wechat: EncodingAESKey must be 43 base64 characters decoding to 32 bytes")
	// ErrEmptyAppID means NewCrypter got an empty AppID.
	ErrEmptyAppID = errors.New("wechat: empty AppID")
	// ErrEmptyToken means NewCrypter got an empty token, which would make
	// msg_signature forgeable.
	ErrEmptyToken = errors.New("wechat: empty token")
	// ErrBadBase64 means the Encrypt value is not standard base64.
	ErrBadBase64 = errors.New("wechat: ciphertext is not valid base64")
	// ErrBadCiphertextLength means the decoded ciphertext is empty or not
	// a multiple of 32 bytes.
	ErrBadCiphertextLength = errors.New("wechat: ciphertext length is not a non-zero multiple of 32")
	// ErrDecrypt means the plaintext is not ours: its padding, its length
	// prefix or its AppID is wrong. Which of them is deliberately not
	// told: telling a bad padding from a wrong AppID is a padding oracle
	// that decrypts and forges messages without the key.
	ErrDecrypt = errors.New("wechat: message does not decrypt (padding, length prefix or AppID)")
	// ErrBadRandom means EncryptWithRandom got a prefix that is not 16 bytes.
	ErrBadRandom = errors.New("wechat: random prefix must be 16 bytes")
)

const (
	// encodingAESKeyLen is the length of the EncodingAESKey set in the
	// account's console.
	encodingAESKeyLen = 43
	// padBlock is WeChat's padding block size: 32, not AES's 16.
	padBlock = 32
	// randomLen is the length of the random prefix of every plaintext.
	randomLen = 16
	// headerLen is random prefix plus the 4-byte big-endian message length.
	headerLen = randomLen + 4
)

// Crypter encrypts and decrypts WeChat messages in compatible and safe mode:
// AES-256-CBC with IV = key[:16], 32-byte PKCS#7 padding, plaintext laid out
// as random(16) || len(msg) (uint32 big-endian) || msg || AppID.
// It also signs with the account's token (msg_signature). A Crypter is
// immutable and safe for concurrent use.
type Crypter struct {
	token string
	appID []byte
	block cipher.Block
	iv    []byte
}

// NewCrypter returns a Crypter for the account's Token, EncodingAESKey and
// AppID. The 43-character key is decoded as base64 of key+"=" without
// Strict(), because typical keys carry non-zero trailing bits that strict
// decoding rejects; it must yield 32 bytes. token and appID must be non-empty.
func NewCrypter(token, encodingAESKey, appID string) (*Crypter, error) {
	if token == "" {
		return nil, ErrEmptyToken
	}
	if appID == "" {
		return nil, ErrEmptyAppID
	}
	if len(encodingAESKey) != encodingAESKeyLen {
		return nil, ErrBadAESKey
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return nil, ErrBadAESKey
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wechat: new cipher: %w", err)
	}
	return &Crypter{
		token: token,
		appID: []byte(appID),
		block: block,
		iv:    bytes.Clone(key[:aes.BlockSize]),
	}, nil
}

// Decrypt decrypts the base64 Encrypt value of a compatible- or safe-mode
// message and returns the inner XML. It fails with ErrBadBase64 or
// ErrBadCiphertextLength on what anyone can see of the ciphertext, and with
// ErrDecrypt on anything wrong with the plaintext: padding, length prefix or
// AppID. Those three are checked together without branching on the
// plaintext, so that neither the error nor the time taken tells them apart.
// It never panics, whatever the input. Verify msg_signature with
// [Crypter.VerifyMsgSignature] before calling it.
func (c *Crypter) Decrypt(encrypt string) ([]byte, error) {
	ct, err := base64.StdEncoding.DecodeString(encrypt)
	if err != nil {
		return nil, ErrBadBase64
	}
	if len(ct) == 0 || len(ct)%padBlock != 0 {
		return nil, ErrBadCiphertextLength
	}
	pt := make([]byte, len(ct))
	cipher.NewCBCDecrypter(c.block, c.iv).CryptBlocks(pt, ct)

	// Padding: p bytes of value p, 1 <= p <= 32. The loop reads all of the
	// last 32 bytes (there are at least 32) whatever p is.
	p := int(pt[len(pt)-1])
	ok := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, padBlock)
	for i := 1; i <= padBlock; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, p)
		ok &= subtle.ConstantTimeSelect(inPad, subtle.ConstantTimeByteEq(pt[len(pt)-i], byte(p)), 1)
	}
	p = subtle.ConstantTimeSelect(ok, p, 0) // bad padding: go on as if there were none

	// random(16) || n || msg(n) || AppID: n must leave exactly our AppID
	// before the padding. A negative remainder never equals n (< 2^32).
	end := len(pt) - p
	n := uint64(binary.BigEndian.Uint32(pt[randomLen:headerLen]))
	ok &= equal64(n, uint64(int64(end-headerLen-len(c.appID))))
	start := max(end-len(c.appID), 0) // below 0 only when ok is already 0
	ok &= subtle.ConstantTimeCompare(pt[start:min(start+len(c.appID), len(pt))], c.appID)
	if ok != 1 {
		return nil, ErrDecrypt
	}
	return pt[headerLen:start:start], nil
}

// equal64 returns 1 if a == b and 0 otherwise, in constant time.
func equal64(a, b uint64) int {
	x := a ^ b
	return int(((x | -x) >> 63) ^ 1)
}

// Encrypt encrypts msg for WeChat with 16 fresh random bytes as prefix and
// returns the base64 Encrypt value.
func (c *Crypter) Encrypt(msg []byte) (string, error) {
	random := make([]byte, randomLen)
	if _, err := rand.Read(random); err != nil {
		return "", fmt.Errorf("wechat: random prefix: %w", err)
	}
	return c.EncryptWithRandom(random, msg)
}

// EncryptWithRandom is [Crypter.Encrypt] with a caller-chosen 16-byte random
// prefix. It exists for test vectors and deterministic tests; production code
// should call Encrypt.
func (c *Crypter) EncryptWithRandom(random []byte, msg []byte) (string, error) {
	if len(random) != randomLen {
		return "", ErrBadRandom
	}
	if uint64(len(msg)) > math.MaxUint32 {
		return "", errors.New("wechat: message too long")
	}
	n := headerLen + len(msg) + len(c.appID)
	p := padBlock - n%padBlock
	pt := make([]byte, 0, n+p)
	pt = append(pt, random...)
	pt = binary.BigEndian.AppendUint32(pt, uint32(len(msg)))
	pt = append(pt, msg...)
	pt = append(pt, c.appID...)
	pt = append(pt, bytes.Repeat([]byte{byte(p)}, p)...)
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(pt, pt)
	return base64.StdEncoding.EncodeToString(pt), nil
}

// MsgSignature returns the msg_signature of an Encrypt value:
// Signature(token, timestamp, nonce, encrypt).
func (c *Crypter) MsgSignature(timestamp, nonce, encrypt string) string {
	return Signature(c.token, timestamp, nonce, encrypt)
}

// VerifyMsgSignature reports, in constant time, whether sig is the
// msg_signature of encrypt. Call it before Decrypt.
func (c *Crypter) VerifyMsgSignature(sig, timestamp, nonce, encrypt string) bool {
	return VerifySignature(sig, c.token, timestamp, nonce, encrypt)
}

// EncryptReply encrypts the plaintext reply XML (for example from
// [TextReply]) with fresh random bytes and returns the envelope WeChat
// expects in safe mode:
//
//	<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>
//
// timestamp must be decimal digits (Unix seconds); nonce is any string,
// usually the request's.
func (c *Crypter) EncryptReply(reply []byte, timestamp, nonce string) ([]byte, error) {
	if !isDigits(timestamp) {
		return nil, fmt.Errorf("wechat: encrypt reply: timestamp %q is not decimal", timestamp)
	}
	if !validXMLText(nonce) {
		return nil, errors.New("wechat: encrypt reply: nonce is not valid XML text")
	}
	enc, err := c.Encrypt(reply)
	if err != nil {
		return nil, fmt.Errorf("wechat: encrypt reply: %w", err)
	}
	var b bytes.Buffer
	b.WriteString("<xml>")
	writeCDATAElem(&b, "Encrypt", enc)
	writeCDATAElem(&b, "MsgSignature", c.MsgSignature(timestamp, nonce, enc))
	b.WriteString("<TimeStamp>" + timestamp + "</TimeStamp>")
	writeCDATAElem(&b, "Nonce", nonce)
	b.WriteString("</xml>")
	return b.Bytes(), nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

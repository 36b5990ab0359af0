package wechat

import (
	"crypto/cipher"
	"time"
)

// cbcEncrypt encrypts src (a multiple of 16 bytes) with c's key and IV, no
// padding, so that tests can build malformed plaintexts.
func cbcEncrypt(c *Crypter, dst, src []byte) {
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(dst, src)
}

// SetClock replaces the client's clock, for token expiry tests.
func SetClock(c *Client, now func() time.Time) { c.now = now }

// TokenLifetime exposes tokenLifetime to tests.
var TokenLifetime = tokenLifetime

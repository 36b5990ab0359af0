package wechat

import "crypto/cipher"

// cbcEncrypt encrypts src (a multiple of 16 bytes) with c's key and IV, no
// padding, so that tests can build malformed plaintexts.
func cbcEncrypt(c *Crypter, dst, src []byte) {
	cipher.NewCBCEncrypter(c.block, c.iv).CryptBlocks(dst, src)
}

// Package wechat holds the WeChat mechanics that scanlogin's services share,
// and nothing else: no login sessions, no business rules.
//
// It provides
//
//   - [Signature] and [VerifySignature]: the SHA-1 signature WeChat puts on
//     every callback request (the "signature" and "msg_signature" query
//     parameters);
//   - [Crypter]: AES-256-CBC message encryption of compatible and safe mode,
//     including the encrypted reply envelope;
//   - [Message], [ParseMessage], [TextReply] and [ParseEncryptedReply]: the
//     XML that WeChat POSTs to a callback and the passive replies it accepts;
//   - [Client]: a small client of the WeChat API (stable access token with a
//     shared cache, temporary QR codes, user info) that refreshes the token
//     once and retries once when WeChat reports it invalid.
//
// Package wechattest is the fake WeChat, shared by the tests and the
// simulator.
//
// docs/wechat.md describes WeChat's side as scanlogin relies on it; its
// test vectors are checked in this package's tests.
//
// Nothing here logs or returns a secret: the access token travels only in
// the access_token query parameter and is stripped from every error.
package wechat

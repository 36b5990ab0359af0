// Package browser is the browser WebSocket protocol of /ws: the messages the
// server sends and the requests it takes, the error codes and the close
// codes. docs/browser-protocol.md describes it in full.
//
// Every server-to-browser message is encoded once, into a Frame that carries
// its Kind beside its JSON, so the code that routes a frame (the hub, other
// instances, the connection) knows what it is without reading the JSON.
package browser

import (
	"encoding/json"
	"fmt"
)

// Kind is which message a Frame holds. Its values travel between instances
// (package cluster), so they never change meaning.
type Kind uint8

// The kinds of server-to-browser messages.
const (
	KindQRCode    Kind = iota + 1 // "qrcode": the code to show
	KindScanned                   // "scanned": a two-step flow saw the scan
	KindLogin                     // "login": the scan was accepted; the connection closes with 1000 after it
	KindExpired                   // "expired": the session's time is up, or it is gone
	KindCancelled                 // "cancelled": the user declined
	KindMessage                   // "message": a Push; kept for a session whose browser is away
	KindError                     // "error"
	// KindSessionTaken is the "error" with code session_taken: another
	// connection resumed the session, and this one closes with 4002 after it.
	KindSessionTaken
	KindPong // "pong": the answer to a ping
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool { return k >= KindQRCode && k <= KindPong }

// String is the message's "type".
func (k Kind) String() string {
	switch k {
	case KindQRCode:
		return "qrcode"
	case KindScanned:
		return "scanned"
	case KindLogin:
		return "login"
	case KindExpired:
		return "expired"
	case KindCancelled:
		return "cancelled"
	case KindMessage:
		return "message"
	case KindError, KindSessionTaken:
		return "error"
	case KindPong:
		return "pong"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// CloseAfter is how the connection closes once a frame of kind k is sent:
// code 0 when it stays open.
func (k Kind) CloseAfter() (code int, reason string) {
	switch k {
	case KindLogin:
		return CloseNormal, "logged in"
	case KindSessionTaken:
		return CloseSessionTaken, "session taken"
	}
	return 0, ""
}

// Frame is one server-to-browser message, encoded: the JSON text of a
// WebSocket text frame, and its kind. Frames are immutable once made; the
// same JSON goes to every connection that receives it.
type Frame struct {
	Kind Kind
	JSON []byte
}

// Error codes of "error" messages.
const (
	CodeBadRequest          = "bad_request"          // a frame that is not JSON, an unknown type, or a refresh on a token connection
	CodeRateLimited         = "rate_limited"         // too many QR codes from this address
	CodeUpstreamUnavailable = "upstream_unavailable" // WeChat or the session store did not answer
	CodeResumeFailed        = "resume_failed"        // the resume pair is wrong, expired or used; a new session follows
	CodeRefreshLimit        = "refresh_limit"        // too many refreshes on this connection
	CodeSessionTaken        = "session_taken"        // another connection resumed the session (KindSessionTaken)
	// CodeMiniProgramMisconfigured: WeChat refused to make a Mini Program
	// code for a reason only the operator can fix (41030 page not
	// published, 40129/40169 scene refused); retrying will not help.
	CodeMiniProgramMisconfigured = "miniprogram_misconfigured"
)

// WebSocket close codes the server sends.
const (
	CloseNormal        = 1000 // after login
	CloseGoingAway     = 1001 // the server is shutting down: resume elsewhere
	CloseUnsupported   = 1003 // a binary frame
	ClosePolicy        = 1008 // too many bad frames, or over the frame budget
	CloseTooBig        = 1009 // a frame over the read limit (sent by gorilla/websocket)
	CloseTryAgainLater = 1013 // QR rate limit or upstream down on connect, or a connection too slow to read
	// Private codes (4000-4999).
	CloseTokenExpired = 4001 // the token of a /ws?token= connection expired: reconnect with a fresh one
	CloseSessionTaken = 4002 // another connection resumed the session: do not resume it again
)

// Requests from the browser: {"type":"ping"} and {"type":"refresh"}.
const (
	RequestPing    = "ping"    // answered with Pong by the connection itself
	RequestRefresh = "refresh" // ends the session and starts a new one, with a new code
)

// encode renders a message of kind k; every message type here encodes.
func encode(k Kind, v any) Frame {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("browser: encode %T: %v", v, err))
	}
	return Frame{Kind: k, JSON: b}
}

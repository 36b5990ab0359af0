package login

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// The server-to-browser messages of the WebSocket protocol (interfaces.md).
// Each is rendered once to JSON bytes and then handed to connections as is.

// QRCodeMsg tells the browser which QR code to show.
type QRCodeMsg struct {
	Type      string `json:"type"` // "qrcode"
	Session   string `json:"session"`
	Resume    string `json:"resume"`
	Scene     string `json:"scene"`
	QRCodeURL string `json:"qrcode_url"`
	ScanURL   string `json:"scan_url"`
	ExpiresIn int64  `json:"expires_in"` // seconds
	ExpiresAt int64  `json:"expires_at"` // unix ms
}

// LoginMsg tells the browser that the scan was accepted.
type LoginMsg struct {
	Type  string `json:"type"` // "login"
	Token string `json:"token"`
	User  User   `json:"user"`
}

// PushMsg carries a Push from an internal service.
type PushMsg struct {
	Type  string          `json:"type"` // "message"
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// ErrorMsg tells the browser what went wrong.
type ErrorMsg struct {
	Type    string `json:"type"` // "error"
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes sent in ErrorMsg.
const (
	CodeBadRequest          = "bad_request"
	CodeRateLimited         = "rate_limited"
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeResumeFailed        = "resume_failed"
	CodeRefreshLimit        = "refresh_limit"
	CodeSlowConsumer        = "slow_consumer"
	CodeInternal            = "internal"
	// CodeSessionTaken: another connection resumed this one's session; the
	// server then closes this one (4002) and the browser must not resume.
	CodeSessionTaken = "session_taken"
)

// Fixed messages, rendered once.
var (
	MsgScanned   = []byte(`{"type":"scanned"}`)
	MsgExpired   = []byte(`{"type":"expired"}`)
	MsgCancelled = []byte(`{"type":"cancelled"}`)
	MsgPong      = []byte(`{"type":"pong"}`)
	// MsgSessionTaken goes to the connections of a session that another
	// connection resumed; they close after it.
	MsgSessionTaken = ErrorFrame(CodeSessionTaken, "this login continues in another tab or window")
)

// Encode renders a message; the message types above always encode.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("login: encode %T: %v", v, err))
	}
	return b
}

// ErrorFrame renders an error message.
func ErrorFrame(code, message string) []byte {
	return Encode(ErrorMsg{Type: "error", Code: code, Message: message})
}

// loginPrefix starts every login message: Encode writes struct fields in
// order, so a LoginMsg always begins this way.
var loginPrefix = []byte(`{"type":"login"`)

// IsLogin reports whether msg is a login message, after which the
// connection is closed with 1000.
func IsLogin(msg []byte) bool { return bytes.HasPrefix(msg, loginPrefix) }

// pushPrefix starts every PushMsg.
var pushPrefix = []byte(`{"type":"message"`)

// IsPush reports whether msg is a Push message: one that must be kept for
// the browser when no connection took it, unlike state messages, which the
// session itself keeps.
func IsPush(msg []byte) bool { return bytes.HasPrefix(msg, pushPrefix) }

// IsSessionTaken reports whether msg is MsgSessionTaken, after which the
// connection is closed with 4002.
func IsSessionTaken(msg []byte) bool { return bytes.Equal(msg, MsgSessionTaken) }

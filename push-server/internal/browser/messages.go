package browser

// QRCode is the qrcode message: the code to show, and the pair that resumes
// its session.
type QRCode struct {
	Session   string `json:"session"`
	Resume    string `json:"resume"` // the resume secret: only ever sent to this browser
	Flow      string `json:"flow"`   // "oa" or "miniprogram"
	Scene     string `json:"scene"`
	QRCodeURL string `json:"qrcode_url"`
	ScanURL   string `json:"scan_url"`   // what the image encodes
	ExpiresIn int64  `json:"expires_in"` // seconds
	ExpiresAt int64  `json:"expires_at"` // unix ms
}

// Frame encodes the message.
func (m QRCode) Frame() Frame {
	return encode(KindQRCode, struct {
		Type string `json:"type"`
		QRCode
	}{"qrcode", m})
}

// User is the WeChat user of a login message.
type User struct {
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid,omitempty"`
	Nickname  string `json:"nickname,omitempty"`
	AvatarURL string `json:"avatar_url,omitempty"`
}

// Login is the login message: the scan was accepted.
type Login struct {
	Token string `json:"token"` // the login token (a JWT)
	User  User   `json:"user"`
}

// Frame encodes the message.
func (m Login) Frame() Frame {
	return encode(KindLogin, struct {
		Type string `json:"type"`
		Login
	}{"login", m})
}

// PushFrame encodes the message of a Push of event with data, which must be
// valid JSON; event must need no escaping (login.ValidEventName). It is
// written by hand, without reflection, since every Push makes one.
func PushFrame(event string, data []byte) Frame {
	b := make([]byte, 0, len(`{"type":"message","event":"","data":}`)+len(event)+len(data))
	b = append(b, `{"type":"message","event":"`...)
	b = append(b, event...)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return Frame{Kind: KindMessage, JSON: append(b, '}')}
}

// ErrorFrame encodes an error message with code (one of the Code
// constants) and a message for people.
func ErrorFrame(code, message string) Frame {
	k := KindError
	if code == CodeSessionTaken {
		k = KindSessionTaken
	}
	return encode(k, struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"error", code, message})
}

// The messages without fields, and the fixed errors, encoded once.
var (
	Scanned   = Frame{KindScanned, []byte(`{"type":"scanned"}`)}
	Expired   = Frame{KindExpired, []byte(`{"type":"expired"}`)}
	Cancelled = Frame{KindCancelled, []byte(`{"type":"cancelled"}`)}
	Pong      = Frame{KindPong, []byte(`{"type":"pong"}`)}
	// SessionTaken goes to the connections of a session that another
	// connection resumed; they close after it.
	SessionTaken = ErrorFrame(CodeSessionTaken, "this login continues in another tab or window")
	// NotJSON answers a frame that is not a JSON object with a type.
	NotJSON = ErrorFrame(CodeBadRequest, `expected a JSON text frame like {"type":"ping"}`)
	// UnknownType answers a request of a type the server does not know.
	UnknownType = ErrorFrame(CodeBadRequest, "unknown message type")
)

package browser

import (
	"encoding/json"
	"testing"
)

// Every frame's kind names the type in its JSON, and the JSON is what the
// browser expects, byte for byte.
func TestFramesEncode(t *testing.T) {
	for _, tc := range []struct {
		f    Frame
		kind Kind
		want string
	}{
		{QRCode{Session: "s", Resume: "r", Flow: "oa", Scene: "c", QRCodeURL: "q", ScanURL: "u", ExpiresIn: 120, ExpiresAt: 1700000000000}.Frame(), KindQRCode,
			`{"type":"qrcode","session":"s","resume":"r","flow":"oa","scene":"c","qrcode_url":"q","scan_url":"u","expires_in":120,"expires_at":1700000000000}`},
		{QRCode{Session: "s", Resume: "r", Flow: "miniprogram", Scene: "c", QRCodeURL: "/wxacode/k", ExpiresIn: 120, ExpiresAt: 1700000000000}.Frame(), KindQRCode,
			`{"type":"qrcode","session":"s","resume":"r","flow":"miniprogram","scene":"c","qrcode_url":"/wxacode/k","scan_url":"","expires_in":120,"expires_at":1700000000000}`},
		{Login{Token: "t", User: User{OpenID: "o", Nickname: "n"}}.Frame(), KindLogin,
			`{"type":"login","token":"t","user":{"openid":"o","nickname":"n"}}`},
		{PushFrame("order.paid", []byte(`{"a":1}`)), KindMessage, `{"type":"message","event":"order.paid","data":{"a":1}}`},
		{ErrorFrame(CodeRateLimited, "slow down"), KindError, `{"type":"error","code":"rate_limited","message":"slow down"}`},
		{SessionTaken, KindSessionTaken, `{"type":"error","code":"session_taken","message":"this login continues in another tab or window"}`},
		{NotJSON, KindError, `{"type":"error","code":"bad_request","message":"expected a JSON text frame like {\"type\":\"ping\"}"}`},
		{UnknownType, KindError, `{"type":"error","code":"bad_request","message":"unknown message type"}`},
		{Scanned, KindScanned, `{"type":"scanned"}`},
		{Expired, KindExpired, `{"type":"expired"}`},
		{Cancelled, KindCancelled, `{"type":"cancelled"}`},
		{Pong, KindPong, `{"type":"pong"}`},
	} {
		if tc.f.Kind != tc.kind || string(tc.f.JSON) != tc.want {
			t.Errorf("frame %v %s, want %v %s", tc.f.Kind, tc.f.JSON, tc.kind, tc.want)
		}
		var m struct{ Type string }
		if err := json.Unmarshal(tc.f.JSON, &m); err != nil || m.Type != tc.f.Kind.String() {
			t.Errorf("%s: type %q, kind says %q (%v)", tc.f.JSON, m.Type, tc.f.Kind, err)
		}
	}
}

// PushFrame writes by hand what encoding/json would write.
func TestPushFrameMatchesEncode(t *testing.T) {
	for _, data := range []string{`{"a":1}`, `[1,2]`, `"x"`, `null`, `{"nested":{"s":"\u00e9\n"}}`} {
		got := PushFrame("order.paid", []byte(data))
		want := encode(KindMessage, struct {
			Type  string          `json:"type"`
			Event string          `json:"event"`
			Data  json.RawMessage `json:"data"`
		}{"message", "order.paid", json.RawMessage(data)})
		if got.Kind != want.Kind || string(got.JSON) != string(want.JSON) {
			t.Errorf("PushFrame = %v %s, want %v %s", got.Kind, got.JSON, want.Kind, want.JSON)
		}
	}
}

// Only a login and a session_taken error end the connection, each with its
// own code.
func TestCloseAfter(t *testing.T) {
	for k := KindQRCode; k.Valid(); k++ {
		code, _ := k.CloseAfter()
		want := 0
		switch k {
		case KindLogin:
			want = CloseNormal
		case KindSessionTaken:
			want = CloseSessionTaken
		}
		if code != want {
			t.Errorf("%d (%v) closes with %d, want %d", k, k, code, want)
		}
	}
	if Kind(0).Valid() || (KindPong + 1).Valid() {
		t.Error("a kind outside the list is valid")
	}
}

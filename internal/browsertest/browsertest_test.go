package browsertest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// echo answers a ping with a pong, then closes with 4002.
func echo(t *testing.T) string {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"qrcode","scene":"`+r.URL.Query().Get("scene")+`"}`))
		if _, msg, err := ws.ReadMessage(); err == nil && string(msg) == `{"type":"ping"}` {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"pong"}`))
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4002, ""), time.Now().Add(time.Second))
		_, _, _ = ws.ReadMessage()
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestConnReadsMessagesAndClose(t *testing.T) {
	c := MustDial(t, echo(t), "scene=s1")
	if m := c.Expect("qrcode"); m.Scene != "s1" {
		t.Fatalf("qrcode = %+v", m)
	}
	c.Send(`{"type":"ping"}`)
	c.Expect("pong")
	c.ExpectClose(4002)
}

func TestDialRefusedReturnsTheResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "invalid or expired token", http.StatusUnauthorized)
	}))
	defer srv.Close()
	_, resp, err := Dial(t, strings.TrimPrefix(srv.URL, "http://"), "token=x", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Dial = %v %v, want the 401", resp, err)
	}
}

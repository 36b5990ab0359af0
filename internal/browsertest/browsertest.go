// Package browsertest is a fake browser for tests: a WebSocket client of
// push-server's /ws that reads and writes the browser protocol's JSON
// messages, and fails the test when a message or a close is not the one
// expected.
package browsertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// readTimeout bounds the wait for each message.
const readTimeout = 10 * time.Second

// Message is any message push-server sends to a browser; only the fields
// of its type are set.
type Message struct {
	Type      string          `json:"type"`
	Flow      string          `json:"flow"`
	Session   string          `json:"session"`
	Resume    string          `json:"resume"`
	Scene     string          `json:"scene"`
	QRCodeURL string          `json:"qrcode_url"`
	ScanURL   string          `json:"scan_url"`
	ExpiresIn int64           `json:"expires_in"`
	ExpiresAt int64           `json:"expires_at"`
	Token     string          `json:"token"`
	User      map[string]any  `json:"user"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
}

// Conn is one browser connection.
type Conn struct {
	t  testing.TB
	WS *websocket.Conn // for frames the protocol does not have
}

// Dial opens ws://addr/ws?query with header; the connection is closed when
// the test ends. A refused upgrade returns the server's response.
func Dial(t testing.TB, addr, query string, header http.Header) (*Conn, *http.Response, error) {
	u := "ws://" + addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	ws, resp, err := websocket.DefaultDialer.Dial(u, header)
	if err != nil {
		return nil, resp, err
	}
	t.Cleanup(func() { ws.Close() })
	return &Conn{t: t, WS: ws}, resp, nil
}

// MustDial is Dial that fails the test when the upgrade is refused.
func MustDial(t testing.TB, addr, query string) *Conn {
	t.Helper()
	c, _, err := Dial(t, addr, query, nil)
	if err != nil {
		t.Fatalf("dial /ws?%s: %v", query, err)
	}
	return c
}

// Next reads the next message.
func (c *Conn) Next() (Message, error) {
	_ = c.WS.SetReadDeadline(time.Now().Add(readTimeout))
	_, data, err := c.WS.ReadMessage()
	if err != nil {
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("bad message %q: %w", data, err)
	}
	return m, nil
}

// Read reads the next message, failing the test if there is none.
func (c *Conn) Read() Message {
	c.t.Helper()
	m, err := c.Next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// Expect reads the next message and fails the test unless it has type typ.
func (c *Conn) Expect(typ string) Message {
	c.t.Helper()
	m := c.Read()
	if m.Type != typ {
		c.t.Fatalf("got %+v, want a %q message", m, typ)
	}
	return m
}

// ExpectClose reads until the connection closes and checks the close code.
func (c *Conn) ExpectClose(code int) {
	c.t.Helper()
	for {
		_, err := c.Next()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != code {
			c.t.Fatalf("connection ended with %v, want close code %d", err, code)
		}
		return
	}
}

// Send writes a text frame.
func (c *Conn) Send(text string) {
	c.t.Helper()
	if err := c.WS.WriteMessage(websocket.TextMessage, []byte(text)); err != nil {
		c.t.Fatal(err)
	}
}

// WaitConns waits until the push-server at addr holds n connections, as
// its /metrics counts them, so that a test knows a connection it closed is
// gone on the server's side too.
func WaitConns(t testing.TB, addr string, n int) {
	t.Helper()
	want := fmt.Sprintf("scanlogin_ws_connections %d\n", n)
	deadline := time.Now().Add(readTimeout)
	for {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("push-server never held %d connections", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

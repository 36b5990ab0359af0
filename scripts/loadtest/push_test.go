package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// fakeAuth is the bearer token the fake push API requires.
const fakeAuth = "bench-auth"

// fakePush sends push k to session, as push-server would: a message frame
// with data. A push whose data id ends in 3 fails with not_found, so that
// a batch mixes successes and failures.
func (f *fakeScanlogin) fakePush(session, event string, data []byte) error {
	var d struct {
		ID int64 `json:"id"`
		T  int64 `json:"t"`
	}
	if err := json.Unmarshal(data, &d); err != nil || d.T == 0 || event != "bench" {
		return fmt.Errorf("invalid_argument: event %q data %q", event, data)
	}
	if d.ID%10 == 3 {
		return fmt.Errorf("not_found: no such session")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.sessions[session]
	if !ok {
		return fmt.Errorf("not_found: no such session")
	}
	msg, _ := json.Marshal(map[string]any{"type": "message", "event": event, "data": json.RawMessage(data)})
	return c.WriteMessage(websocket.TextMessage, msg)
}

// fakeAPIPush is one push of the JSON API, as the contract names its
// members.
type fakeAPIPush struct {
	Session string          `json:"session"`
	Event   string          `json:"event"`
	Data    json.RawMessage `json:"data"`
}

// api serves POST /v1/push and POST /v1/push/batch with the contract's
// shapes; unknown members are refused.
func (f *fakeScanlogin) api(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+fakeAuth {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"code":"unauthenticated","message":"missing or wrong bearer token"}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	result := func(err error) map[string]any {
		if err != nil {
			code, msg, _ := strings.Cut(err.Error(), ": ")
			return map[string]any{"error": map[string]string{"code": code, "message": msg}}
		}
		return map[string]any{"delivered": 1, "stored": false}
	}
	switch r.URL.Path {
	case "/v1/push":
		var p fakeAPIPush
		if err := dec.Decode(&p); err != nil {
			http.Error(w, `{"code":"invalid_argument","message":"bad body"}`, http.StatusBadRequest)
			return
		}
		if err := f.fakePush(p.Session, p.Event, p.Data); err != nil {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(result(err)["error"])
			return
		}
		json.NewEncoder(w).Encode(result(nil))
	case "/v1/push/batch":
		var b struct{ Pushes []fakeAPIPush }
		if err := dec.Decode(&b); err != nil || len(b.Pushes) == 0 {
			http.Error(w, `{"code":"invalid_argument","message":"bad body"}`, http.StatusBadRequest)
			return
		}
		var res struct {
			Results []map[string]any `json:"results"`
		}
		for _, p := range b.Pushes {
			res.Results = append(res.Results, result(f.fakePush(p.Session, p.Event, p.Data)))
		}
		json.NewEncoder(w).Encode(res)
	default:
		http.NotFound(w, r)
	}
}

// fakePushService is PushService over the fake.
type fakePushService struct {
	pushv1.UnimplementedPushServiceServer
	f *fakeScanlogin
}

func fakeAuthorized(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if a := md.Get("authorization"); len(a) != 1 || a[0] != "Bearer "+fakeAuth {
		return status.Error(codes.Unauthenticated, "missing or wrong bearer token")
	}
	return nil
}

func (s fakePushService) Push(ctx context.Context, req *pushv1.PushRequest) (*pushv1.PushResponse, error) {
	if err := fakeAuthorized(ctx); err != nil {
		return nil, err
	}
	if err := s.f.fakePush(req.GetSessionId(), req.GetEvent(), req.GetData()); err != nil {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	return &pushv1.PushResponse{Delivered: 1}, nil
}

func (s fakePushService) PushBatch(ctx context.Context, req *pushv1.PushBatchRequest) (*pushv1.PushBatchResponse, error) {
	if err := fakeAuthorized(ctx); err != nil {
		return nil, err
	}
	res := &pushv1.PushBatchResponse{}
	for _, p := range req.GetPushes() {
		r := &pushv1.PushResult{Outcome: &pushv1.PushResult_Ok{Ok: &pushv1.PushResponse{Delivered: 1}}}
		if err := s.f.fakePush(p.GetSessionId(), p.GetEvent(), p.GetData()); err != nil {
			code, msg, _ := strings.Cut(err.Error(), ": ")
			r.Outcome = &pushv1.PushResult_Error{Error: &pushv1.PushError{Code: code, Message: msg}}
		}
		res.Results = append(res.Results, r)
	}
	return res, nil
}

// TestPushesToScanlogin drives single and batch pushes over gRPC and the
// JSON API against a fake push server that fails one push in ten: each
// push counts once, the failed ones as errors, the others arrive.
func TestPushesToScanlogin(t *testing.T) {
	f := newFakeScanlogin(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", f.ws)
	mux.HandleFunc("POST /v1/", f.api)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pushv1.RegisterPushServiceServer(gs, fakePushService{f: f})
	go gs.Serve(ln)
	defer gs.Stop()

	for _, tc := range []struct {
		name  string
		args  []string
		batch int
		calls int
		err   string
	}{
		{"Push over gRPC", []string{"-mode", "push"}, 1, 200, "NotFound"},
		{"PushBatch", []string{"-mode", "batch", "-batch", "25"}, 25, 8, "push: not_found: no such session"},
		{"POST /v1/push", []string{"-mode", "push", "-via", "http"}, 1, 200, "push: HTTP 404 not_found: no such session"},
		{"POST /v1/push/batch", []string{"-mode", "batch", "-via", "http", "-batch", "30"}, 30, 7, "push: not_found: no such session"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, append([]string{"-ws", wsURL(srv), "-grpc", ln.Addr().String(), "-api-url", srv.URL,
				"-grpc-auth", fakeAuth, "-n", "40", "-settle", "0", "-rate", "400", "-duration", "500ms", "-grace", "2s",
				"-server-pid", fmt.Sprint(os.Getpid())}, tc.args...)...)
			l := r.Load
			if l.Calls != tc.calls || l.Sent != 200 || l.OK != 180 || l.Errors != 20 || l.Received != 180 || l.Lost != 0 {
				t.Fatalf("calls %d sent %d ok %d errors %d received %d lost %d %v, want %d calls, 200 sent, 180 ok and received, 20 errors",
					l.Calls, l.Sent, l.OK, l.Errors, l.Received, l.Lost, l.ErrorKinds, tc.calls)
			}
			n := 0
			for k, v := range l.ErrorKinds {
				if strings.Contains(k, tc.err) {
					n += v
				}
			}
			if n != 20 {
				t.Errorf("errors %v, want 20 mentioning %q", l.ErrorKinds, tc.err)
			}
			if l.Latency.Count != 180 || l.Latency.P50 <= 0 {
				t.Errorf("latency %+v", l.Latency)
			}
			// The warm-up push arrives too, unmeasured.
			if r.Conns.BadPush != 0 || r.Conns.Frames["message"] != 181 {
				t.Errorf("frames %v, %d without a stamp", r.Conns.Frames, r.Conns.BadPush)
			}
			if r.Settings.Batch != tc.batch {
				t.Errorf("batch %d, want %d", r.Settings.Batch, tc.batch)
			}
			if !r.Server.Measured || r.Server.CPUPerOpMicros <= 0 {
				t.Errorf("server %+v", r.Server)
			}
		})
	}
}

// TestPushesNeedTheToken: without the bearer token every push fails, and
// says why.
func TestPushesNeedTheToken(t *testing.T) {
	f := newFakeScanlogin(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", f.ws)
	mux.HandleFunc("POST /v1/", f.api)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	r := run(t, "-ws", wsURL(srv), "-api-url", srv.URL, "-via", "http", "-mode", "batch", "-batch", "10",
		"-n", "5", "-settle", "0", "-rate", "200", "-duration", "100ms", "-grace", "100ms")
	if l := r.Load; l.Sent != 20 || l.OK != 0 || l.ErrorKinds["push: HTTP 401 unauthenticated: missing or wrong bearer token"] != 20 {
		t.Errorf("sent %d ok %d errors %v", l.Sent, l.OK, l.ErrorKinds)
	}
}

func TestBaselineBatchEndpoint(t *testing.T) {
	h, closeAll := newBaseline()
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer closeAll()
	ws, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, hello, err := ws.ReadMessage(); err != nil || string(hello) != `{"type":"hello","id":1}` {
		t.Fatalf("hello %q %v", hello, err)
	}
	post := func(body string) (int, string) {
		res, err := http.Post(srv.URL+"/push/batch", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	code, body := post(`[{"id":1,"data":{"a":1}},{"id":9,"data":2},{"id":1,"data":"x"}]`)
	if code != http.StatusOK || body != `{"results":[200,404,200]}` {
		t.Fatalf("got %d %s", code, body)
	}
	for _, want := range []string{`{"type":"message","event":"bench","data":{"a":1}}`, `{"type":"message","event":"bench","data":"x"}`} {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != want {
			t.Fatalf("frame %q %v, want %s", got, err, want)
		}
	}
	for _, bad := range []string{`[]`, `{"id":1}`, `[{"id":"x"}]`, `[` + strings.Repeat(`{"id":1,"data":0},`, maxBatch) + `{"id":1,"data":0}]`} {
		if code, _ := post(bad); code != http.StatusBadRequest {
			t.Errorf("%.40s…: HTTP %d, want 400", bad, code)
		}
	}
}

func TestPushBodies(t *testing.T) {
	for _, s := range []string{"AbC-12_x.y~", `q"uote\`, "tab\there", "中文", "<&>"} {
		got := appendJSONString([]byte("x"), s)
		want, _ := json.Marshal(s)
		if string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q) = %s, want x%s", s, got, want)
		}
	}
	at := time.Unix(1, 5)
	var p fakeAPIPush
	b := appendAPIPush(nil, &Session{ID: `s"1`}, 7, at)
	if err := json.Unmarshal(b, &p); err != nil || p.Session != `s"1` || p.Event != "bench" || string(p.Data) != `{"id":7,"t":1000000005}` {
		t.Errorf("%s: %+v %v", b, p, err)
	}
	if pushID(-1, 5) != -1 || pushID(100, 5) != 105 {
		t.Errorf("pushID")
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/internal/testkey"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

var apiListening = regexp.MustCompile(`msg=listening .* api=(\S+)`)

// api is the base URL of the instance's HTTP/JSON API.
func (in *instance) api() string {
	in.t.Helper()
	m := apiListening.FindStringSubmatch(in.logs.String())
	if m == nil {
		in.t.Fatalf("no api address in the logs:\n%s", in.logs)
	}
	return "http://" + m[1]
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// call makes one request to the JSON API; token "" sends no Authorization.
func (in *instance) call(method, path, token, body string) reply {
	in.t.Helper()
	req, err := http.NewRequest(method, in.api()+path, strings.NewReader(body))
	if err != nil {
		in.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		in.t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// apiError decodes an error answer, checking its shape.
func (r reply) apiError(t *testing.T) (code, message string) {
	t.Helper()
	var e struct{ Code, Message string }
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Code == "" || e.Message == "" {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return e.Code, e.Message
}

type pushReply struct {
	Delivered *int  `json:"delivered"`
	Stored    *bool `json:"stored"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// String shows a result as the tests compare it: "n", "n stored" or the
// error code.
func (p pushReply) String() string {
	switch {
	case p.Error != nil:
		return p.Error.Code
	case p.Delivered == nil || p.Stored == nil:
		return "malformed"
	case *p.Stored:
		return fmt.Sprintf("%d stored", *p.Delivered)
	}
	return fmt.Sprint(*p.Delivered)
}

func (in *instance) push(token, body string) (int, pushReply) {
	in.t.Helper()
	r := in.call(http.MethodPost, "/v1/push", token, body)
	var p pushReply
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.body, &p); err != nil {
			in.t.Fatalf("push answer %q: %v", r.body, err)
		}
	}
	return r.status, p
}

// batch posts a batch and returns its results as strings (pushReply.String).
func (in *instance) batch(token string, pushes ...string) []string {
	in.t.Helper()
	r := in.call(http.MethodPost, "/v1/push/batch", token, `{"pushes":[`+strings.Join(pushes, ",")+`]}`)
	if r.status != http.StatusOK {
		in.t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var res struct{ Results []pushReply }
	if err := json.Unmarshal(r.body, &res); err != nil {
		in.t.Fatalf("batch answer %q: %v", r.body, err)
	}
	var out []string
	for _, p := range res.Results {
		out = append(out, p.String())
	}
	return out
}

func pushJSON(target, id, event, data string) string {
	s := fmt.Sprintf(`{%q:%q,"event":%q`, target, id, event)
	if data != "" {
		s += `,"data":` + data
	}
	return s + "}"
}

// collect reads b's messages up to the one of event "end", skipping
// "probe" ones, and returns them as "event=data".
func collect(t *testing.T, b *browsertest.Conn) []string {
	t.Helper()
	var out []string
	for {
		m := b.Expect("message")
		switch m.Event {
		case "probe":
			continue
		case "end":
			return out
		}
		out = append(out, m.Event+"="+string(m.Data))
	}
}

// userTab logs in openid on in and opens a tab of that user.
func userTab(in *instance, openid string) *browsertest.Conn {
	in.t.Helper()
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	in.notify(qr, pushv1.Event_EVENT_SCAN, openid, "ev-"+qr.Session)
	tok := b.Expect("login").Token
	b.ExpectClose(websocket.CloseNormalClosure)
	return in.mustDial("token=" + url.QueryEscape(tok))
}

// waitUser pushes "probe" messages through entry until one reaches n
// connections of openid (tabs register after their handshake).
func waitUser(t *testing.T, entry *instance, openid string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, p := entry.push("", pushJSON("openid", openid, "probe", ""))
		if p.Delivered != nil && *p.Delivered == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe pushes reach %v of %d tabs", p, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connCount is how many browser connections in holds.
func (in *instance) connCount() int {
	in.t.Helper()
	resp, err := http.Get("http://" + in.http + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^scanlogin_ws_connections (\d+)$`).FindSubmatch(body)
	if m == nil {
		in.t.Fatalf("no connection count in the metrics")
	}
	var n int
	fmt.Sscan(string(m[1]), &n)
	return n
}

func TestJSONPushToSessionsAndUsers(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := b.Expect("qrcode")

	st, p := in.push("", pushJSON("session", qr.Session, "order.paid", `{"id": 7, "items": [1, 2]}`))
	if st != http.StatusOK || p.String() != "1" {
		t.Fatalf("push to session: %d %v", st, p)
	}
	// Data reaches the browser as sent, without insignificant white space.
	if m := b.Expect("message"); m.Event != "order.paid" || string(m.Data) != `{"id":7,"items":[1,2]}` {
		t.Fatalf("browser got %+v", m)
	}
	if st, p := in.push("", `{"session":"`+qr.Session+`","event":"nodata"}`); st != http.StatusOK || p.String() != "1" {
		t.Fatalf("push without data: %d %v", st, p)
	}
	if m := b.Expect("message"); m.Event != "nodata" || string(m.Data) != "null" {
		t.Fatalf("browser got %+v", m)
	}

	tabs := []*browsertest.Conn{userTab(in, "oCarol"), userTab(in, "oCarol")}
	waitUser(t, in, "oCarol", 2)
	if st, p := in.push("", pushJSON("openid", "oCarol", "hi", `"there"`)); st != http.StatusOK || p.String() != "2" {
		t.Fatalf("push to user: %d %v", st, p)
	}
	if st, p := in.push("", pushJSON("openid", "oNobody", "hi", "")); st != http.StatusOK || p.String() != "0" {
		t.Fatalf("push to an absent user: %d %v", st, p)
	}
	in.push("", pushJSON("openid", "oCarol", "end", ""))
	for _, tab := range tabs {
		if got := collect(t, tab); !slices.Equal(got, []string{`hi="there"`}) {
			t.Errorf("tab got %q", got)
		}
	}

	// A session whose browser is away keeps the push for its resume.
	b.WS.Close()
	in.waitConns(2)
	if st, p := in.push("", pushJSON("session", qr.Session, "kept", "1")); st != http.StatusOK || p.String() != "0 stored" {
		t.Fatalf("push while away: %d %v", st, p)
	}
	b2 := in.mustDial(url.Values{"session": {qr.Session}, "resume": {qr.Resume}}.Encode())
	b2.Expect("qrcode")
	if m := b2.Expect("message"); m.Event != "kept" || string(m.Data) != "1" {
		t.Fatalf("resumed browser got %+v", m)
	}

	r := in.call(http.MethodPost, "/v1/push", "", pushJSON("session", "AAAAAAAAAAAAAAAAAAAAAA", "e", ""))
	if code, _ := r.apiError(t); r.status != http.StatusNotFound || code != "not_found" {
		t.Errorf("unknown session: %d %s", r.status, r.body)
	}
}

func TestJSONAuth(t *testing.T) {
	in := start(t, map[string]string{"GRPC_AUTH_TOKEN": "internal-token"})
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	good := pushJSON("session", qr.Session, "e", "1")
	for name, h := range map[string][]string{
		"none":   nil,
		"wrong":  {"Bearer internal-tokem"},
		"bare":   {"internal-token"},
		"basic":  {"Basic internal-token"},
		"prefix": {"Bearer internal-token-and-more"},
		"twice":  {"Bearer internal-token", "Bearer internal-token"},
	} {
		for _, path := range []string{"/v1/push", "/v1/push/batch", "/v1/openapi.json", "/nowhere"} {
			req, _ := http.NewRequest(http.MethodPost, in.api()+path, strings.NewReader(good))
			if path == "/v1/openapi.json" {
				req.Method = http.MethodGet
			}
			for _, v := range h {
				req.Header.Add("Authorization", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := reply{resp.StatusCode, resp.Header, body}
			if code, _ := r.apiError(t); r.status != http.StatusUnauthorized || code != "unauthenticated" ||
				!strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: %d %v %s", name, path, r.status, r.header, body)
			}
		}
	}
	if st, p := in.push("internal-token", good); st != http.StatusOK || p.String() != "1" {
		t.Fatalf("right token: %d %v", st, p)
	}
	if m := b.Expect("message"); m.Event != "e" {
		t.Fatalf("browser got %+v", m)
	}
	if r := in.call(http.MethodGet, "/v1/openapi.json", "internal-token", ""); r.status != http.StatusOK {
		t.Errorf("openapi.json with the token: %d", r.status)
	}
	if strings.Contains(in.logs.String(), "internal-token") {
		t.Error("GRPC_AUTH_TOKEN was logged")
	}
}

// Every kind of malformed body is a 400 (413 when too large) of the error
// shape, and reaches no browser.
func TestJSONMalformedBodies(t *testing.T) {
	in := start(t, nil)
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	s := qr.Session
	big := `"` + strings.Repeat("x", 64<<10-1) + `"` // 64 KiB + 1 encoded
	for name, tc := range map[string]struct {
		path, body string
		status     int
	}{
		"empty":               {"/v1/push", "", 400},
		"not JSON":            {"/v1/push", "session=" + s, 400},
		"truncated":           {"/v1/push", `{"session":"` + s, 400},
		"array":               {"/v1/push", `[]`, 400},
		"null":                {"/v1/push", `null`, 400},
		"string":              {"/v1/push", `"x"`, 400},
		"two values":          {"/v1/push", pushJSON("session", s, "e", "") + `{}`, 400},
		"trailing garbage":    {"/v1/push", pushJSON("session", s, "e", "") + `x`, 400},
		"unknown field":       {"/v1/push", `{"session":"` + s + `","event":"e","extra":1}`, 400},
		"proto field name":    {"/v1/push", `{"session_id":"` + s + `","event":"e"}`, 400},
		"two targets":         {"/v1/push", `{"session":"` + s + `","openid":"oA","event":"e"}`, 400},
		"field of other case": {"/v1/push", `{"Session":"` + s + `","event":"e"}`, 400},
		"field given twice":   {"/v1/push", `{"session":"` + s + `","session":"` + s + `","event":"e"}`, 400},
		"event given twice":   {"/v1/push", `{"session":"` + s + `","event":"e","event":"f"}`, 400},
		"batch item case":     {"/v1/push/batch", `{"pushes":[{"session":"` + s + `","EVENT":"e"}]}`, 400},
		"batch item twice":    {"/v1/push/batch", `{"pushes":[{"openid":"o","openid":"p","event":"e"}]}`, 400},
		"batch item null":     {"/v1/push/batch", `{"pushes":[null]}`, 400},
		"batch twice":         {"/v1/push/batch", `{"pushes":[],"pushes":[` + pushJSON("session", s, "e", "") + `]}`, 400},
		"two, one empty":      {"/v1/push", `{"session":"` + s + `","openid":"","event":"e"}`, 400},
		"no target":           {"/v1/push", `{"event":"e"}`, 400},
		"null target":         {"/v1/push", `{"session":null,"event":"e"}`, 400},
		"empty target":        {"/v1/push", `{"session":"","event":"e"}`, 400},
		"target not string":   {"/v1/push", `{"session":5,"event":"e"}`, 400},
		"no event":            {"/v1/push", `{"session":"` + s + `"}`, 400},
		"event not string":    {"/v1/push", `{"session":"` + s + `","event":1}`, 400},
		"bad event":           {"/v1/push", pushJSON("session", s, "a b", ""), 400},
		"event too long":      {"/v1/push", pushJSON("session", s, strings.Repeat("e", 65), ""), 400},
		"bad data":            {"/v1/push", `{"session":"` + s + `","event":"e","data":{]}`, 400},
		"data name twice":     {"/v1/push", `{"session":"` + s + `","event":"e","data":{"a":1,"a":2}}`, 400},
		"data not UTF-8":      {"/v1/push", `{"session":"` + s + "\",\"event\":\"e\",\"data\":\"\xff\"}", 400},
		"data too large":      {"/v1/push", pushJSON("session", s, "e", big), 400},
		"malformed session":   {"/v1/push", pushJSON("session", s+"\n", "e", ""), 400},
		"malformed openid":    {"/v1/push", pushJSON("openid", "o\nX", "e", ""), 400},
		"body over 1 MiB":     {"/v1/push", pushJSON("session", s, "e", `"`+strings.Repeat("x", 1<<20)+`"`), 413},
		"batch empty":         {"/v1/push/batch", `{"pushes":[]}`, 400},
		"batch no pushes":     {"/v1/push/batch", `{}`, 400},
		"batch null":          {"/v1/push/batch", `{"pushes":null}`, 400},
		"batch not array":     {"/v1/push/batch", `{"pushes":{}}`, 400},
		"batch over 1000":     {"/v1/push/batch", `{"pushes":[` + strings.Repeat(pushJSON("session", s, "e", "")+",", 1000) + pushJSON("session", s, "e", "") + `]}`, 400},
		"batch unknown field": {"/v1/push/batch", `{"pushes":[` + pushJSON("session", s, "e", "") + `],"x":1}`, 400},
		"batch item unknown":  {"/v1/push/batch", `{"pushes":[{"session":"` + s + `","event":"e","x":1}]}`, 400},
		"batch item type":     {"/v1/push/batch", `{"pushes":[{"session":"` + s + `","event":[]}]}`, 400},
		"batch bad JSON":      {"/v1/push/batch", `{"pushes":[`, 400},
		"batch over 1 MiB":    {"/v1/push/batch", `{"pushes":[` + pushJSON("session", s, "e", `"`+strings.Repeat("x", 1<<20)+`"`) + `]}`, 413},
	} {
		r := in.call(http.MethodPost, tc.path, "", tc.body)
		if code, _ := r.apiError(t); r.status != tc.status || code != "invalid_argument" {
			t.Errorf("%s: %d %s, want %d invalid_argument", name, r.status, r.body, tc.status)
		}
	}
	for _, c := range []struct {
		method, path string
		status       int
		code         string
	}{
		{http.MethodGet, "/v1/push", 405, "invalid_argument"},
		{http.MethodPut, "/v1/push/batch", 405, "invalid_argument"},
		{http.MethodPost, "/v1/openapi.json", 405, "invalid_argument"},
		{http.MethodPost, "/v1/pushes", 404, "not_found"},
		{http.MethodGet, "/", 404, "not_found"},
		{http.MethodPost, "/v1/push/", 404, "not_found"},
	} {
		r := in.call(c.method, c.path, "", pushJSON("session", s, "e", ""))
		if code, _ := r.apiError(t); r.status != c.status || code != c.code {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.status, r.body)
		}
	}

	// The largest data allowed passes, as do spaces around the value.
	justFits := `"` + strings.Repeat("x", 64<<10-2) + `"`
	if st, p := in.push("", " \n"+pushJSON("session", s, "big", justFits)+"\n "); st != http.StatusOK || p.String() != "1" {
		t.Fatalf("64 KiB data: %d %v", st, p)
	}
	in.push("", pushJSON("session", s, "end", ""))
	if got := collect(t, b); len(got) != 1 || got[0] != "big="+justFits {
		t.Errorf("browser got %d messages, want only the 64 KiB one", len(got))
	}
}

// batchCase is a batch mixing good and bad pushes, with the results and
// the messages each browser should get.
func batchCase(t *testing.T, sessions []string, away, user string) (pushes []string, results []string, want map[string][]string) {
	t.Helper()
	want = map[string][]string{}
	add := func(body, result, who, msg string) {
		pushes = append(pushes, body)
		results = append(results, result)
		if who != "" {
			want[who] = append(want[who], msg)
		}
	}
	for i, s := range sessions {
		add(pushJSON("session", s, "first", fmt.Sprint(i)), "1", s, fmt.Sprintf("first=%d", i))
	}
	add(pushJSON("session", sessions[0], "bad event", ""), "invalid_argument", "", "")
	add(pushJSON("openid", user, "to.user", `{"a":[true,null]}`), "2", user, `to.user={"a":[true,null]}`)
	add(`{"session":"`+sessions[0]+`","openid":"`+user+`","event":"two"}`, "invalid_argument", "", "")
	add(pushJSON("session", "AAAAAAAAAAAAAAAAAAAAAA", "nobody", ""), "not_found", "", "")
	add(`{"event":"none"}`, "invalid_argument", "", "")
	add(pushJSON("session", away, "kept", `"k"`), "0 stored", "", "")
	add(pushJSON("session", sessions[0], "big", `"`+strings.Repeat("x", 64<<10)+`"`), "invalid_argument", "", "")
	add(pushJSON("openid", "oNobody", "e", ""), "0", "", "")
	for _, s := range sessions {
		add(pushJSON("session", s, "second", ""), "1", s, "second=null")
	}
	return pushes, results, want
}

// A batch to one instance: each push has its own result, in order, and
// each browser gets exactly its messages.
func TestJSONBatchMixesGoodAndBad(t *testing.T) {
	in := start(t, nil)
	testBatch(t, []*instance{in}, in, func(pushes []string) []string { return in.batch("", pushes...) }, nil)
}

// testBatch runs batchCase: browsers on the instances holders (round
// robin), the batch sent through send to entry. With rdb, it checks that
// the batch was one publish per other instance.
func testBatch(t *testing.T, holders []*instance, entry *instance, send func(pushes []string) []string, rdb *redis.Client) {
	t.Helper()
	var browsers []*browsertest.Conn
	var sessions []string
	for i := range 6 {
		b := holders[i%len(holders)].mustDial("")
		browsers = append(browsers, b)
		sessions = append(sessions, b.Expect("qrcode").Session)
	}
	awayB := entry.mustDial("")
	away := awayB.Expect("qrcode")
	n := entry.connCount()
	awayB.WS.Close()
	entry.waitConns(n - 1)
	// Two tabs of one user, spread over the holders.
	user := "oUser" + strings.NewReplacer("/", "", "_", "").Replace(t.Name())
	user = user[:min(len(user), 64)]
	tabs := []*browsertest.Conn{userTab(holders[0], user), userTab(holders[len(holders)-1], user)}
	waitUser(t, entry, user, 2)

	pushes, results, want := batchCase(t, sessions, away.Session, user)
	if rdb != nil {
		if err := rdb.ConfigResetStat(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if got := send(pushes); !slices.Equal(got, results) {
		t.Fatalf("results\n got %q\nwant %q", got, results)
	}
	if rdb != nil {
		others := 0
		for _, h := range holders {
			if h != entry {
				others++
			}
		}
		if n := publishCount(t, rdb); n != others {
			t.Errorf("%d publishes for a batch of %d, want one per other instance (%d)", n, len(pushes), others)
		}
	}
	var end []string
	for _, s := range sessions {
		end = append(end, pushJSON("session", s, "end", ""))
	}
	end = append(end, pushJSON("openid", user, "end", ""))
	entry.batch("", end...)
	for i, b := range browsers {
		if got := collect(t, b); !slices.Equal(got, want[sessions[i]]) {
			t.Errorf("browser %d got %q, want %q", i, got, want[sessions[i]])
		}
	}
	for i, tab := range tabs {
		if got := collect(t, tab); !slices.Equal(got, want[user]) {
			t.Errorf("tab %d got %q, want %q", i, got, want[user])
		}
	}
	resumed := entry.mustDial(url.Values{"session": {away.Session}, "resume": {away.Resume}}.Encode())
	resumed.Expect("qrcode")
	if m := resumed.Expect("message"); m.Event != "kept" || string(m.Data) != `"k"` {
		t.Errorf("resumed browser got %+v", m)
	}
}

func publishCount(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_publish:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// Across two instances with Redis, a batch entering one instance reaches
// the browsers of both, with one publish to the other instance.
func TestJSONBatchAcrossInstances(t *testing.T) {
	ins, rs := startCluster(t, 2)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { rdb.Close() })
	a := ins[0]
	t.Run("all remote", func(t *testing.T) {
		testBatch(t, ins[1:], a, func(p []string) []string { return a.batch("", p...) }, rdb)
	})
	t.Run("mixed", func(t *testing.T) {
		testBatch(t, ins, a, func(p []string) []string { return a.batch("", p...) }, rdb)
	})
}

// grpcBatch sends pushes, as JSON bodies, through gRPC PushBatch.
func grpcBatch(t *testing.T, in *instance, ctx context.Context, pushes []string) ([]string, error) {
	t.Helper()
	req := &pushv1.PushBatchRequest{}
	for _, p := range pushes {
		var b struct {
			Session, OpenID *string
			Event           string
			Data            json.RawMessage
		}
		if err := json.Unmarshal([]byte(p), &b); err != nil {
			t.Fatal(err)
		}
		r := &pushv1.PushRequest{Event: b.Event, Data: b.Data}
		switch {
		case b.Session != nil && b.OpenID != nil:
			continue // a oneof cannot hold two targets
		case b.Session != nil:
			r.Target = &pushv1.PushRequest_SessionId{SessionId: *b.Session}
		case b.OpenID != nil:
			r.Target = &pushv1.PushRequest_Openid{Openid: *b.OpenID}
		}
		req.Pushes = append(req.Pushes, r)
	}
	resp, err := in.client.PushBatch(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range resp.Results {
		switch {
		case r.GetError() != nil:
			out = append(out, r.GetError().Code)
		case r.GetOk().Stored:
			out = append(out, fmt.Sprintf("%d stored", r.GetOk().Delivered))
		default:
			out = append(out, fmt.Sprint(r.GetOk().Delivered))
		}
	}
	return out, nil
}

// gRPC PushBatch has the results of the JSON batch (but for two targets,
// which a gRPC request cannot carry).
func TestGRPCPushBatch(t *testing.T) {
	send := func(in *instance) func([]string) []string {
		return func(pushes []string) []string {
			got, err := grpcBatch(t, in, context.Background(), pushes)
			if err != nil {
				t.Fatal(err)
			}
			// Put back the result of the two-target push, which was not sent.
			for i, p := range pushes {
				if strings.Contains(p, `"event":"two"`) {
					got = slices.Insert(got, i, "invalid_argument")
				}
			}
			return got
		}
	}
	t.Run("one instance", func(t *testing.T) {
		in := start(t, nil)
		testBatch(t, []*instance{in}, in, send(in), nil)
		for _, n := range []int{0, 1001} {
			pushes := slices.Repeat([]string{pushJSON("openid", "o", "e", "")}, n)
			if _, err := grpcBatch(t, in, context.Background(), pushes); status.Code(err) != codes.InvalidArgument {
				t.Errorf("batch of %d: %v", n, err)
			}
		}
	})
	t.Run("two instances", func(t *testing.T) {
		ins, rs := startCluster(t, 2)
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
		t.Cleanup(func() { rdb.Close() })
		testBatch(t, ins, ins[0], send(ins[0]), rdb)
	})
	t.Run("auth", func(t *testing.T) {
		in := start(t, map[string]string{"GRPC_AUTH_TOKEN": "internal-token"})
		pushes := []string{pushJSON("openid", "o", "e", "")}
		if _, err := grpcBatch(t, in, context.Background(), pushes); status.Code(err) != codes.Unauthenticated {
			t.Errorf("no token: %v", err)
		}
		ctx := metadata.NewOutgoingContext(context.Background(), metadata.Pairs("authorization", "Bearer internal-token"))
		if got, err := grpcBatch(t, in, ctx, pushes); err != nil || !slices.Equal(got, []string{"0"}) {
			t.Errorf("with token: %q %v", got, err)
		}
	})
}

// A PUSH_API_ADDR that cannot be bound stops run with an error naming it.
func TestBusyAPIAddrNamesTheSetting(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fake := wechattest.New(t, appID, secret)
	err = run(context.Background(), nil, settings.Map(map[string]string{
		"PUSH_HTTP_ADDR": "127.0.0.1:0", "PUSH_GRPC_ADDR": "127.0.0.1:0", "PUSH_API_ADDR": busy.Addr().String(),
		"WECHAT_APPID": appID, "WECHAT_SECRET": secret, "WECHAT_API_BASE": fake.URL(), "WECHAT_MP_BASE": fake.URL(),
	}), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PUSH_API_ADDR") {
		t.Fatalf("run = %v, want an error naming PUSH_API_ADDR", err)
	}
}

// startCluster starts n instances sharing one Redis and one token key.
func startCluster(t *testing.T, n int) ([]*instance, *redistest.Server) {
	t.Helper()
	rs := redistest.Start(t)
	key, _ := testkey.Write(t)
	var ins []*instance
	for range n {
		ins = append(ins, start(t, map[string]string{"REDIS_URL": rs.URL(), "LOG_LEVEL": "info", "TOKEN_KEY_FILE": key}))
	}
	return ins, rs
}

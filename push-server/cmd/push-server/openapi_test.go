package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/scanlogin/scanlogin/internal/redistest"
	"github.com/scanlogin/scanlogin/push-server/internal/jsonapi"
)

// The OpenAPI document in the repository describes the running server:
// it is a valid OpenAPI 3 document, the server serves it as committed,
// every documented path, method and status answers as documented (status
// and body shape, for a good request and each documented error), and the
// server has no path or method the document does not name.
func TestOpenAPIDescribesTheServer(t *testing.T) {
	ctx := context.Background()
	committed, err := os.ReadFile("../../../docs/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(committed)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("not a valid OpenAPI 3 document: %v", err)
	}

	// What the document names, and what the server routes.
	type op struct{ method, path string }
	var documented []op
	want := map[string]bool{} // "METHOD path status" still to see
	for path, item := range doc.Paths.Map() {
		for method, o := range item.Operations() {
			documented = append(documented, op{method, path})
			for status := range o.Responses.Map() {
				want[fmt.Sprintf("%s %s %s", method, path, status)] = true
			}
		}
	}
	var served []op
	for _, r := range jsonapi.New(slog.New(slog.DiscardHandler), nil, jsonapi.Options{}).Routes() {
		served = append(served, op{r.Method, r.Path})
	}
	cmpOp := func(a, b op) int { return strings.Compare(a.path+" "+a.method, b.path+" "+b.method) }
	slices.SortFunc(documented, cmpOp)
	slices.SortFunc(served, cmpOp)
	if !slices.Equal(documented, served) {
		t.Fatalf("documented %v, served %v", documented, served)
	}

	rs := redistest.Start(t)
	const token = "api-token"
	in := start(t, map[string]string{"REDIS_URL": rs.URL(), "GRPC_AUTH_TOKEN": token})
	b := in.mustDial("")
	qr := b.Expect("qrcode")
	s := qr.Session

	check := func(name, method, path, tok, body string, wantStatus int) []byte {
		t.Helper()
		r := in.call(method, path, tok, body)
		if r.status != wantStatus {
			t.Errorf("%s: %s %s answered %d %s, want %d", name, method, path, r.status, r.body, wantStatus)
			return r.body
		}
		req, _ := http.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("%s: %s %s is not documented", name, method, path)
			return r.body
		}
		route := &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: item.GetOperation(method)}
		opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
		reqIn := &openapi3filter.RequestValidationInput{Request: req, Route: route, Options: opts}
		if wantStatus == http.StatusOK {
			// A good request is one the document allows.
			if err := openapi3filter.ValidateRequest(ctx, reqIn); err != nil {
				t.Errorf("%s: the document refuses the request: %v", name, err)
			}
		}
		err := openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: reqIn, Status: r.status, Header: r.header,
			Body: io.NopCloser(bytes.NewReader(r.body)), Options: opts,
		})
		if err != nil {
			t.Errorf("%s: the answer is not as documented: %v", name, err)
		}
		delete(want, fmt.Sprintf("%s %s %d", method, path, r.status))
		return r.body
	}

	push := func(target, id, event, data string) string { return pushJSON(target, id, event, data) }
	huge := push("session", s, "e", `"`+strings.Repeat("x", 1<<20)+`"`)
	post := http.MethodPost

	check("push to session", post, "/v1/push", token, push("session", s, "order.paid", `{"n":1}`), 200)
	check("push to user", post, "/v1/push", token, push("openid", "oNobody", "e", ""), 200)
	check("bad event", post, "/v1/push", token, push("session", s, "bad event", ""), 400)
	check("unknown field", post, "/v1/push", token, `{"session":"`+s+`","event":"e","x":1}`, 400)
	check("no token", post, "/v1/push", "", push("session", s, "e", ""), 401)
	check("unknown session", post, "/v1/push", token, push("session", "AAAAAAAAAAAAAAAAAAAAAA", "e", ""), 404)
	check("huge body", post, "/v1/push", token, huge, 413)

	check("mixed batch", post, "/v1/push/batch", token, `{"pushes":[`+push("session", s, "e", "1")+`,`+
		push("session", s, "bad event", "")+`,{"event":"e"},`+push("session", "AAAAAAAAAAAAAAAAAAAAAA", "e", "")+`]}`, 200)
	check("empty batch", post, "/v1/push/batch", token, `{"pushes":[]}`, 400)
	check("batch no token", post, "/v1/push/batch", "", `{"pushes":[`+push("session", s, "e", "")+`]}`, 401)
	check("huge batch", post, "/v1/push/batch", token, `{"pushes":[`+huge+`]}`, 413)

	served0 := check("document", http.MethodGet, "/v1/openapi.json", token, "", 200)
	if !bytes.Equal(served0, committed) {
		t.Errorf("the served document differs from docs/api/openapi.json")
	}
	check("document no token", http.MethodGet, "/v1/openapi.json", "", "", 401)

	// Nothing undocumented answers but with 404 or 405.
	for _, o := range documented {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			if m == o.method {
				continue
			}
			if r := in.call(m, o.path, token, "{}"); r.status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s answered %d, want 405", m, o.path, r.status)
			}
		}
	}
	for _, p := range []string{"/", "/v1", "/v1/", "/v1/push/", "/v1/push/batch/", "/v2/push", "/v1/openapi.yaml", "/healthz", "/metrics", "/ws"} {
		if r := in.call(http.MethodGet, p, token, ""); r.status != http.StatusNotFound {
			t.Errorf("GET %s answered %d, want 404", p, r.status)
		}
	}

	// Last: without Redis, a push is 503.
	rs.Kill()
	check("store down", post, "/v1/push", token, push("openid", "oNobody", "e", ""), 503)

	for k := range want {
		t.Errorf("documented but never seen: %s", k)
	}
}

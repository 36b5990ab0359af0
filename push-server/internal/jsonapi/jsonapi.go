// Package jsonapi serves the internal HTTP/JSON push API, for services that
// do not speak gRPC: POST /v1/push, POST /v1/push/batch and the API's
// OpenAPI document at GET /v1/openapi.json. Pushes go to the same login
// service as gRPC Push and PushBatch, so both APIs validate and answer
// alike; this package only decodes JSON and translates errors into HTTP
// statuses.
package jsonapi

import (
	"cmp"
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
)

// OpenAPI is the OpenAPI 3 document of this API, as served.
//
//go:embed openapi.json
var OpenAPI []byte

// MaxBody bounds a request body; a larger one is answered 413.
const MaxBody = 1 << 20

// Logins is what the API needs of the login service.
type Logins interface {
	Push(ctx context.Context, to login.Target, event string, data []byte) (int, bool, error)
	PushBatch(ctx context.Context, items []login.PushItem) ([]login.PushOutcome, error)
}

// Route is a method and path the API serves.
type Route struct {
	Method, Path string
}

// Options configure the API.
type Options struct {
	// AuthToken, when set, is required on every call as
	// "Authorization: Bearer <AuthToken>".
	AuthToken string
	// OnAuthFail, when set, is called for each refused call.
	OnAuthFail func()
}

// Handler serves the API.
type Handler struct {
	log    *slog.Logger
	logins Logins
	auth   []byte // "Bearer <token>"; nil: no authentication
	onFail func()
	routes map[Route]http.HandlerFunc
}

// New returns the API's handler.
func New(log *slog.Logger, logins Logins, opt Options) *Handler {
	h := &Handler{log: log, logins: logins, onFail: opt.OnAuthFail}
	if opt.AuthToken != "" {
		h.auth = []byte("Bearer " + opt.AuthToken)
	}
	h.routes = map[Route]http.HandlerFunc{
		{http.MethodPost, "/v1/push"}:        h.push,
		{http.MethodPost, "/v1/push/batch"}:  h.batch,
		{http.MethodGet, "/v1/openapi.json"}: h.openAPI,
	}
	return h
}

// Routes lists what the handler serves, so a test can hold it against the
// OpenAPI document.
func (h *Handler) Routes() []Route {
	out := make([]Route, 0, len(h.routes))
	for r := range h.routes {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.Method, b.Method))
	})
	return out
}

// ServeHTTP authenticates every call, then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.auth != nil {
		got := r.Header.Values("Authorization")
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), h.auth) != 1 {
			if h.onFail != nil {
				h.onFail()
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="scanlogin"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "missing or wrong bearer token")
			return
		}
	}
	if f, ok := h.routes[Route{r.Method, r.URL.Path}]; ok {
		f(w, r)
		return
	}
	var allow []string
	for rt := range h.routes {
		if rt.Path == r.URL.Path {
			allow = append(allow, rt.Method)
		}
	}
	if allow == nil {
		writeError(w, http.StatusNotFound, "not_found", "no such path")
		return
	}
	slices.Sort(allow)
	for _, m := range allow {
		w.Header().Add("Allow", m)
	}
	writeError(w, http.StatusMethodNotAllowed, "invalid_argument", "method not allowed")
}

// pushBody is one push as JSON. The targets are pointers so that naming
// both, even one empty, is refused as two targets.
type pushBody struct {
	Session *string        `json:"session"`
	OpenID  *string        `json:"openid"`
	Event   string         `json:"event"`
	Data    jsontext.Value `json:"data"`
}

// pushResult is a push's result, or in a batch its error.
type pushResult struct {
	Delivered *int      `json:"delivered,omitempty"`
	Stored    *bool     `json:"stored,omitempty"`
	Error     *apiError `json:"error,omitempty"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var errTwoTargets = fmt.Errorf("%w: exactly one of session and openid", login.ErrInvalid)

// item turns p into the login service's arguments, or says why it cannot.
func (p *pushBody) item() (login.PushItem, error) {
	if p.Session != nil && p.OpenID != nil {
		return login.PushItem{}, errTwoTargets
	}
	it := login.PushItem{Event: p.Event}
	if p.Session != nil {
		it.To.SessionID = *p.Session
	}
	if p.OpenID != nil {
		it.To.OpenID = *p.OpenID
	}
	if len(p.Data) > 0 {
		// The browser gets data without insignificant whitespace, and the
		// size limit applies to that encoding. Compact cannot fail on what
		// parse accepted; login.CheckPush judges the data either way.
		_ = p.Data.Compact()
		it.Data = p.Data
	}
	return it, nil
}

func (h *Handler) push(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var p pushBody
	if err := parse(b, &p); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad request body: "+err.Error())
		return
	}
	it, err := p.item()
	if err != nil {
		h.fail(w, err)
		return
	}
	n, stored, err := h.logins.Push(r.Context(), it.To, it.Event, it.Data)
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, pushResult{Delivered: &n, Stored: &stored})
}

func (h *Handler) batch(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Pushes []*pushBody `json:"pushes"` // pointers: a null push is refused, not read as an empty one
	}
	if err := parse(b, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "bad request body: "+err.Error())
		return
	}
	pushes := req.Pushes
	if len(pushes) == 0 || len(pushes) > login.MaxBatch {
		writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("pushes must hold 1 to %d pushes", login.MaxBatch))
		return
	}
	if i := slices.Index(pushes, nil); i >= 0 {
		writeError(w, http.StatusBadRequest, "invalid_argument", fmt.Sprintf("bad request body: pushes[%d]: must be a JSON object", i))
		return
	}
	results := make([]pushResult, len(pushes))
	items := make([]login.PushItem, 0, len(pushes))
	idx := make([]int, 0, len(pushes)) // items[j] is pushes[idx[j]]
	for i := range pushes {
		it, err := pushes[i].item()
		if err != nil {
			_, code, msg := h.class(err)
			results[i].Error = &apiError{code, msg}
			continue
		}
		items = append(items, it)
		idx = append(idx, i)
	}
	if len(items) > 0 {
		outs, err := h.logins.PushBatch(r.Context(), items)
		if err != nil {
			h.fail(w, err)
			return
		}
		for j, o := range outs {
			res := &results[idx[j]]
			if o.Err != nil {
				_, code, msg := h.class(o.Err)
				res.Error = &apiError{code, msg}
				continue
			}
			res.Delivered, res.Stored = &o.Delivered, &o.Stored
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Results []pushResult `json:"results"`
	}{results})
}

func (h *Handler) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(OpenAPI)
}

// readBody reads r's body, at most MaxBody bytes; on failure it answers
// and returns false.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		writeError(w, http.StatusRequestEntityTooLarge, "invalid_argument", fmt.Sprintf("request body over %d bytes", MaxBody))
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_argument", "could not read the request body")
		return nil, false
	}
	return b, true
}

// parse decodes b, exactly one JSON object, into v: every member known,
// spelled exactly so and given at most once, strings valid UTF-8. A batch
// is one document, decoded in one pass with its pushes.
func parse(b []byte, v any) error {
	if err := json.Unmarshal(b, v, json.RejectUnknownMembers(true)); err != nil {
		return errors.New(bodyError(err))
	}
	if jsontext.Value(b).Kind() != '{' { // null, which leaves v as it was
		return errors.New("must be a JSON object")
	}
	return nil
}

// bodyError says what is wrong with a body, and where, without echoing its
// content: "pushes[2]: unknown field \"x\"".
func bodyError(err error) string {
	if sy, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		switch {
		case errors.Is(sy.Err, io.ErrUnexpectedEOF) && sy.ByteOffset == 0:
			return "empty"
		case errors.Is(sy.Err, io.ErrUnexpectedEOF):
			return "truncated JSON"
		case errors.Is(sy.Err, jsontext.ErrDuplicateName):
			return where(sy.JSONPointer.Parent()) + "field " + quoteName(sy.JSONPointer.LastToken()) + " given twice"
		}
		return fmt.Sprintf("not JSON (offset %d)", sy.ByteOffset)
	}
	if se, ok := errors.AsType[*json.SemanticError](err); ok {
		switch {
		case errors.Is(se.Err, json.ErrUnknownName):
			return where(se.JSONPointer.Parent()) + "unknown field " + quoteName(se.JSONPointer.LastToken())
		case se.GoType != nil && se.GoType.Kind() == reflect.Struct:
			return where(se.JSONPointer) + "must be a JSON object"
		case se.GoType != nil && se.GoType.Kind() == reflect.Slice:
			return where(se.JSONPointer.Parent()) + se.JSONPointer.LastToken() + " must be an array"
		case se.GoType != nil:
			return where(se.JSONPointer.Parent()) + se.JSONPointer.LastToken() + " must be a " + se.GoType.String()
		}
	}
	return "not JSON"
}

// quoteName quotes a member name for a message, cut to 64 bytes: the
// names are the caller's, and an answer need not repeat a long one.
func quoteName(name string) string {
	if len(name) > 64 {
		name = strings.ToValidUTF8(name[:64], "") + "…"
	}
	return strconv.Quote(name)
}

// where names the object at p, a push of a batch ("pushes[2]: "), or
// nothing for the body itself.
func where(p jsontext.Pointer) string {
	var out strings.Builder
	for tok := range p.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil && out.Len() > 0 {
			fmt.Fprintf(&out, "[%s]", tok)
			continue
		}
		if out.Len() > 0 {
			out.WriteByte('.')
		}
		out.WriteString(tok)
	}
	if out.Len() == 0 {
		return ""
	}
	return out.String() + ": "
}

// class maps a login error to an HTTP status, an error code and a message
// that is safe to show.
func (h *Handler) class(err error) (int, string, string) {
	switch {
	case errors.Is(err, login.ErrInvalid):
		return http.StatusBadRequest, "invalid_argument", err.Error()
	case errors.Is(err, login.ErrNotFound):
		return http.StatusNotFound, "not_found", "no such session"
	case errors.Is(err, login.ErrUnavailable):
		h.log.Debug("push failed", "err", err) // the store's monitor logs the outage once
		return http.StatusServiceUnavailable, "unavailable", "session store unavailable; retry"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "unavailable", "request ended before the push did"
	}
	h.log.Error("push failed", "err", err)
	return http.StatusServiceUnavailable, "unavailable", "internal error; retry"
}

func (h *Handler) fail(w http.ResponseWriter, err error) {
	status, code, msg := h.class(err)
	writeError(w, status, code, msg)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"code":"unavailable","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

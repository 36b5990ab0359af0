package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

// The pushers of the rate phase. Each sends one push per call (do) or
// several (doBatch); every push carries pushData, whose t is the moment
// just before its call left, so that the receiving connection times each
// message from the call that carried it.

// pusher sends single or batch pushes.
type pusher interface {
	op
	batchOp
}

// pushData is the payload of a timed push: the receiving connection reads
// t to compute the latency.
func pushData(seq int, t time.Time) []byte {
	return appendPushData(make([]byte, 0, 48), seq, t)
}

func appendPushData(b []byte, seq int, t time.Time) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	return append(b, '}')
}

// pushID is the id of push k of a call whose first push is seq: a warm-up
// call (seq < 0) has only negative ids, which are not measured.
func pushID(seq, k int) int {
	if seq < 0 {
		return -1
	}
	return seq + k
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// grpcPush calls PushService.Push or PushBatch on the push servers,
// round-robin.
type grpcPush struct {
	conns   []*grpc.ClientConn
	clients []pushv1.PushServiceClient
	auth    string
	timeout time.Duration
	next    atomic.Uint64
}

// newGRPCPush connects to the push servers. window > 0 fixes the client's
// flow-control windows, which turns off grpc-go's bandwidth estimation: with
// it, the client pings the server after each answer.
func newGRPCPush(addrs []string, authToken string, window int, timeout time.Duration) (*grpcPush, error) {
	p := &grpcPush{auth: authToken, timeout: timeout}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if window > 0 {
		opts = append(opts, grpc.WithInitialWindowSize(int32(window)), grpc.WithInitialConnWindowSize(int32(window)))
	}
	for _, a := range addrs {
		cc, err := grpc.NewClient("passthrough:///"+a, opts...)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("grpc %s: %w", a, err)
		}
		cc.Connect()
		p.conns = append(p.conns, cc)
		p.clients = append(p.clients, pushv1.NewPushServiceClient(cc))
	}
	return p, nil
}

// call returns the context of one call and the client it goes to.
func (p *grpcPush) call(ctx context.Context) (context.Context, context.CancelFunc, pushv1.PushServiceClient) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	if p.auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.auth)
	}
	return ctx, cancel, p.clients[(p.next.Add(1)-1)%uint64(len(p.clients))]
}

func (p *grpcPush) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	ctx, cancel, c := p.call(ctx)
	defer cancel()
	start := time.Now()
	req := &pushv1.PushRequest{
		Target: &pushv1.PushRequest_SessionId{SessionId: s.ID},
		Event:  "bench",
		Data:   pushData(pushID(seq, 0), start),
	}
	res, err := c.Push(ctx, req)
	if err != nil {
		return start, fmt.Errorf("push: %w", err)
	}
	if res.GetDelivered() < 1 {
		return start, fmt.Errorf("push: delivered %d, stored %v", res.GetDelivered(), res.GetStored())
	}
	return start, nil
}

func (p *grpcPush) doBatch(ctx context.Context, seq int, ss []*Session) (time.Time, []error) {
	ctx, cancel, c := p.call(ctx)
	defer cancel()
	start := time.Now()
	req := &pushv1.PushBatchRequest{Pushes: make([]*pushv1.PushRequest, len(ss))}
	for k, s := range ss {
		req.Pushes[k] = &pushv1.PushRequest{
			Target: &pushv1.PushRequest_SessionId{SessionId: s.ID},
			Event:  "bench",
			Data:   pushData(pushID(seq, k), start),
		}
	}
	errs := make([]error, len(ss))
	res, err := c.PushBatch(ctx, req)
	if err == nil && len(res.GetResults()) != len(ss) {
		err = fmt.Errorf("%d results for %d pushes", len(res.GetResults()), len(ss))
	}
	if err != nil {
		return start, fill(errs, fmt.Errorf("push batch: %w", err))
	}
	for k, r := range res.GetResults() {
		switch {
		case r.GetError() != nil:
			errs[k] = fmt.Errorf("push: %s: %s", r.GetError().GetCode(), r.GetError().GetMessage())
		case r.GetOk().GetDelivered() < 1:
			errs[k] = fmt.Errorf("push: delivered %d, stored %v", r.GetOk().GetDelivered(), r.GetOk().GetStored())
		}
	}
	return start, errs
}

func (p *grpcPush) Close() error {
	for _, c := range p.conns {
		c.Close()
	}
	return nil
}

// fill sets every entry of errs to err and returns errs.
func fill(errs []error, err error) []error {
	for k := range errs {
		errs[k] = err
	}
	return errs
}

// postTargets are HTTP URLs, one per server instance, taken round-robin,
// each with a pool of kept-alive connections to its host.
type postTargets struct {
	urls  []*url.URL
	pools []*postPool
	next  atomic.Uint64
}

func newPostTargets(flag string, raw []string, timeout time.Duration) (*postTargets, error) {
	t := &postTargets{}
	pools := map[string]*postPool{} // one per host:port
	for _, r := range raw {
		u, err := checkURL(flag, r, "http")
		if err != nil {
			return nil, err
		}
		addr := hostPort(u)
		if pools[addr] == nil {
			pools[addr] = newPostPool(addr, timeout)
		}
		t.urls = append(t.urls, u)
		t.pools = append(t.pools, pools[addr])
	}
	return t, nil
}

// pick returns the next URL, with path appended to its own, and its pool.
func (t *postTargets) pick(path string) (url.URL, *postPool) {
	i := (t.next.Add(1) - 1) % uint64(len(t.urls))
	u := *t.urls[i]
	u.Path += path
	return u, t.pools[i]
}

func (t *postTargets) Close() error {
	for _, p := range t.pools {
		p.Close() // a shared pool closes twice: harmless
	}
	return nil
}

// apiPush pushes through push-server's HTTP/JSON API: POST /v1/push and
// POST /v1/push/batch under each base URL.
type apiPush struct {
	*postTargets
	auth string // "Bearer <token>", or empty
}

func newAPIPush(bases []string, authToken string, timeout time.Duration) (*apiPush, error) {
	t, err := newPostTargets("api-url", bases, timeout)
	if err != nil {
		return nil, err
	}
	p := &apiPush{postTargets: t}
	if authToken != "" {
		p.auth = "Bearer " + authToken
	}
	return p, nil
}

// appendAPIPush appends one push of the JSON API.
func appendAPIPush(b []byte, s *Session, id int, start time.Time) []byte {
	b = append(b, `{"session":`...)
	b = appendJSONString(b, s.ID)
	b = append(b, `,"event":"bench","data":`...)
	b = appendPushData(b, id, start)
	return append(b, '}')
}

// apiError is the JSON API's error answer, and a batch result's error.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiFailure describes an answer other than 200.
func apiFailure(code int, body []byte) error {
	var e apiError
	if json.Unmarshal(body, &e) == nil && e.Code != "" {
		return fmt.Errorf("push: HTTP %d %s: %s", code, e.Code, e.Message)
	}
	return fmt.Errorf("push: HTTP %d", code)
}

func (p *apiPush) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	u, pool := p.pick("/v1/push")
	start := time.Now()
	body := appendAPIPush(make([]byte, 0, 128), s, pushID(seq, 0), start)
	code, answer, err := pool.postRead(ctx, rawPostAuth(&u, "application/json", p.auth, body))
	if err != nil {
		return start, fmt.Errorf("push: %w", shortErr(err))
	}
	if code != 200 {
		return start, apiFailure(code, answer)
	}
	var res struct {
		Delivered int  `json:"delivered"`
		Stored    bool `json:"stored"`
	}
	if err := json.Unmarshal(answer, &res); err != nil {
		return start, fmt.Errorf("push: answer: %w", err)
	}
	if res.Delivered < 1 {
		return start, fmt.Errorf("push: delivered %d, stored %v", res.Delivered, res.Stored)
	}
	return start, nil
}

func (p *apiPush) doBatch(ctx context.Context, seq int, ss []*Session) (time.Time, []error) {
	u, pool := p.pick("/v1/push/batch")
	errs := make([]error, len(ss))
	start := time.Now()
	body := make([]byte, 0, 16+len(ss)*128)
	body = append(body, `{"pushes":[`...)
	for k, s := range ss {
		if k > 0 {
			body = append(body, ',')
		}
		body = appendAPIPush(body, s, pushID(seq, k), start)
	}
	body = append(body, "]}"...)
	code, answer, err := pool.postRead(ctx, rawPostAuth(&u, "application/json", p.auth, body))
	if err != nil {
		return start, fill(errs, fmt.Errorf("push batch: %w", shortErr(err)))
	}
	if code != 200 {
		return start, fill(errs, apiFailure(code, answer))
	}
	var res struct {
		Results []struct {
			Delivered int       `json:"delivered"`
			Stored    bool      `json:"stored"`
			Error     *apiError `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(answer, &res); err != nil {
		return start, fill(errs, fmt.Errorf("push batch: answer: %w", err))
	}
	if len(res.Results) != len(ss) {
		return start, fill(errs, fmt.Errorf("push batch: %d results for %d pushes", len(res.Results), len(ss)))
	}
	for k, r := range res.Results {
		switch {
		case r.Error != nil:
			errs[k] = fmt.Errorf("push: %s: %s", r.Error.Code, r.Error.Message)
		case r.Delivered < 1:
			errs[k] = fmt.Errorf("push: delivered %d, stored %v", r.Delivered, r.Stored)
		}
	}
	return start, errs
}

// baselinePush POSTs to the baseline's /push?id=N and /push/batch,
// round-robin over its instances.
type baselinePush struct {
	*postTargets // http://host:port/push
}

func newBaselinePush(urls []string, timeout time.Duration) (*baselinePush, error) {
	t, err := newPostTargets("push-url", urls, timeout)
	if err != nil {
		return nil, err
	}
	return &baselinePush{t}, nil
}

func (p *baselinePush) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	u, pool := p.pick("")
	u.RawQuery = "id=" + url.QueryEscape(s.ID)
	start := time.Now()
	code, err := pool.post(ctx, rawPost(&u, "application/json", pushData(pushID(seq, 0), start)))
	if err != nil {
		return start, fmt.Errorf("push: %w", shortErr(err))
	}
	if code/100 != 2 {
		return start, fmt.Errorf("push: HTTP %d", code)
	}
	return start, nil
}

func (p *baselinePush) doBatch(ctx context.Context, seq int, ss []*Session) (time.Time, []error) {
	u, pool := p.pick("/batch")
	errs := make([]error, len(ss))
	start := time.Now()
	body := make([]byte, 0, 8+len(ss)*80)
	body = append(body, '[')
	for k, s := range ss {
		if k > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"id":`...)
		body = append(body, s.ID...) // the baseline's ids are numbers
		body = append(body, `,"data":`...)
		body = appendPushData(body, pushID(seq, k), start)
		body = append(body, '}')
	}
	body = append(body, ']')
	code, answer, err := pool.postRead(ctx, rawPost(&u, "application/json", body))
	if err != nil {
		return start, fill(errs, fmt.Errorf("push batch: %w", shortErr(err)))
	}
	if code != 200 {
		return start, fill(errs, fmt.Errorf("push batch: HTTP %d", code))
	}
	var res struct {
		Results []int `json:"results"`
	}
	if err := json.Unmarshal(answer, &res); err != nil || len(res.Results) != len(ss) {
		return start, fill(errs, fmt.Errorf("push batch: answer %.80q", answer))
	}
	for k, c := range res.Results {
		if c != 200 {
			errs[k] = fmt.Errorf("push: HTTP %d", c)
		}
	}
	return start, errs
}

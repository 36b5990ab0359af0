package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
)

// An op is one timed request of the rate phase: a Push, or a scan POSTed
// to the callback.
type op interface {
	// do sends request number seq to session s. Work that is not part of
	// the measure (building and signing a scan) happens first; start is
	// taken just before the request leaves.
	do(ctx context.Context, seq int, s *Session) (start time.Time, err error)
	Close() error
}

// pushData is the payload of a timed push: the receiving connection reads
// t to compute the latency.
func pushData(seq int, t time.Time) []byte {
	b := make([]byte, 0, 48)
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, t.UnixNano(), 10)
	return append(b, '}')
}

// grpcPush calls PushService.Push on the push servers, round-robin.
type grpcPush struct {
	conns   []*grpc.ClientConn
	clients []pushv1.PushServiceClient
	auth    string
	timeout time.Duration
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

func (p *grpcPush) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if p.auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+p.auth)
	}
	c := p.clients[max(seq, 0)%len(p.clients)]
	start := time.Now()
	req := &pushv1.PushRequest{
		Target: &pushv1.PushRequest_SessionId{SessionId: s.ID},
		Event:  "bench",
		Data:   pushData(seq, start),
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

func (p *grpcPush) Close() error {
	for _, c := range p.conns {
		c.Close()
	}
	return nil
}

// loopbackClient is an HTTP client with enough kept-alive connections for
// the rate phase, that refuses to leave the machine.
func loopbackClient(conns int, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if err := checkAddr("target", addr); err != nil {
					return nil, err
				}
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// httpPush POSTs to the baseline's /push?id=N, round-robin over its
// instances.
type httpPush struct {
	urls []string // http://host:port/push
	hc   *http.Client
}

func (p *httpPush) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	u := p.urls[max(seq, 0)%len(p.urls)] + "?id=" + s.ID
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(pushData(seq, start))))
	if err != nil {
		return start, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := p.hc.Do(req)
	if err != nil {
		return start, fmt.Errorf("push: %w", shortErr(err))
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return start, fmt.Errorf("push: HTTP %d", res.StatusCode)
	}
	return start, nil
}

func (p *httpPush) Close() error { p.hc.CloseIdleConnections(); return nil }

// ScanConfig is how the tool plays WeChat towards the callback.
type ScanConfig struct {
	URLs   []string // callback URLs, round-robin
	Token  string   // WECHAT_TOKEN
	AESKey string   // WECHAT_AES_KEY; set: safe mode
	AppID  string   // WECHAT_APPID, for safe mode
	ToUser string   // the account's original id (ToUserName)
	Event  string   // "scan", "subscribe" or "mixed"
}

// scanPost POSTs signed WeChat events to the callback, as WeChat would
// after the user scanned session s's QR code.
type scanPost struct {
	cfg     ScanConfig
	crypter *wechat.Crypter // nil: plaintext mode
	targets []scanTarget    // cfg.URLs, parsed, round-robin
	ready   map[int]signed  // by request number, from prepare; read-only in the rate phase
}

// scanTarget is one callback URL and the connections to its host.
type scanTarget struct {
	url  *url.URL
	pool *postPool
}

// signed is a scan request built ahead: the whole HTTP request, with the
// signed query and the body, and the pool of its callback.
type signed struct {
	pool *postPool
	req  []byte
}

// prepare signs (and encrypts) the requests for the rate phase before it
// starts, as WeChat's own servers do their work before the POST: the load
// tool shares the machine with the servers, so the less it computes while
// they are measured, the less it disturbs them.
func (p *scanPost) prepare(count int, pick func(int) *Session, now time.Time) error {
	p.ready = make(map[int]signed, count)
	for i := 0; i < count; i++ {
		r, err := p.sign(i, pick(i), now)
		if err != nil {
			return err
		}
		p.ready[i] = r
	}
	return nil
}

func newScanPost(cfg ScanConfig, timeout time.Duration) (*scanPost, error) {
	p := &scanPost{cfg: cfg}
	pools := map[string]*postPool{} // one per host:port
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("-callback: %w", err)
		}
		addr := hostPort(u)
		if pools[addr] == nil {
			pools[addr] = newPostPool(addr, timeout)
		}
		p.targets = append(p.targets, scanTarget{url: u, pool: pools[addr]})
	}
	if cfg.AESKey != "" {
		c, err := wechat.NewCrypter(cfg.Token, cfg.AESKey, cfg.AppID)
		if err != nil {
			return nil, fmt.Errorf("-aes-key: %w", err)
		}
		p.crypter = c
	}
	return p, nil
}

// openID makes a stable, realistic-looking 28-character OpenID per session.
func openID(idx int) string { return fmt.Sprintf("oBENCH%022d", idx) }

// sign builds the signed scan request number seq, for session s.
func (p *scanPost) sign(seq int, s *Session, now time.Time) (signed, error) {
	ev, key := wechat.EventScan, s.Scene
	if p.cfg.Event == "subscribe" || (p.cfg.Event == "mixed" && seq%2 == 1) {
		ev, key = wechat.EventSubscribe, wechat.EventKeyScenePrefix+s.Scene
	}
	m := wechat.Message{
		ToUserName:   p.cfg.ToUser,
		FromUserName: openID(s.Idx),
		CreateTime:   now.Unix(),
		MsgType:      wechat.MsgTypeEvent,
		Event:        ev,
		EventKey:     key,
		Ticket:       s.Ticket,
	}
	body, err := m.Marshal()
	if err != nil {
		return signed{}, err
	}
	var nb [8]byte
	rand.Read(nb[:])
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := strconv.FormatUint(binary.BigEndian.Uint64(nb[:])>>1, 10)
	q := url.Values{
		"signature": {wechat.Signature(p.cfg.Token, ts, nonce)},
		"timestamp": {ts},
		"nonce":     {nonce},
		"openid":    {m.FromUserName},
	}
	if p.crypter != nil {
		enc, err := p.crypter.Encrypt(body)
		if err != nil {
			return signed{}, err
		}
		env := wechat.Message{ToUserName: p.cfg.ToUser, Encrypt: enc}
		if body, err = env.Marshal(); err != nil {
			return signed{}, err
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", p.crypter.MsgSignature(ts, nonce, enc))
	}
	t := p.targets[max(seq, 0)%len(p.targets)]
	u := *t.url
	u.RawQuery = q.Encode()
	return signed{pool: t.pool, req: rawPost(&u, "text/xml", body)}, nil
}

// hostPort is the address to dial for an http URL.
func hostPort(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

func (p *scanPost) do(ctx context.Context, seq int, s *Session) (time.Time, error) {
	r, ok := p.ready[seq]
	if !ok {
		var err error
		if r, err = p.sign(seq, s, time.Now()); err != nil {
			return time.Now(), fmt.Errorf("build scan: %w", err)
		}
	}
	start := time.Now()
	code, err := r.pool.post(ctx, r.req)
	if err != nil {
		return start, fmt.Errorf("scan: %w", shortErr(err))
	}
	if code != http.StatusOK {
		return start, fmt.Errorf("scan: HTTP %d", code)
	}
	return start, nil
}

func (p *scanPost) Close() error {
	for _, t := range p.targets {
		t.pool.Close() // a shared pool closes twice: harmless
	}
	return nil
}

// Driven is the outcome of a rate phase, as the sender saw it.
type Driven struct {
	Sent      int               // requests made
	OK        int               // requests that succeeded
	Errors    map[string]int    // failures by message
	Late      int               // requests that left more than 10 ms behind schedule
	Elapsed   time.Duration     // from the first request to the last answer
	Starts    map[int]time.Time // scan mode: session index → start
	MaxBehind time.Duration     // worst lag behind schedule
}

// drive makes count requests at rate per second, open loop: request i is
// due at start + i/rate whatever happened to the others, with at most
// inflight outstanding. pick chooses the session of request i.
//
// A request goes to an idle worker goroutine, or to a new one when none is
// idle, so it never waits for another. Workers live until the end: a new
// goroutine per request would grow its stack along grpc-go's call path each
// time, a visible part of the tool's own CPU.
func drive(ctx context.Context, o op, count int, rate float64, inflight int, pick func(i int) *Session, keepStarts bool) *Driven {
	d := &Driven{Errors: map[string]int{}}
	if keepStarts {
		d.Starts = make(map[int]time.Time, count)
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		sem  = make(chan struct{}, inflight)
		jobs = make(chan func()) // unbuffered: a send succeeds only to an idle worker
	)
	defer close(jobs)
	worker := func(job func()) {
		for ok := true; ok; job, ok = <-jobs {
			job()
		}
	}
	interval := float64(time.Second) / rate
	begin := time.Now()
	for i := 0; i < count && ctx.Err() == nil; i++ {
		due := begin.Add(time.Duration(float64(i) * interval))
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		if lag := time.Since(due); lag > 10*time.Millisecond {
			d.Late++
			d.MaxBehind = max(d.MaxBehind, lag)
		}
		s := pick(i)
		d.Sent++
		wg.Add(1)
		job := func() {
			defer wg.Done()
			start, err := o.do(ctx, i, s)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				msg := err.Error()
				if len(d.Errors) < 20 || d.Errors[msg] > 0 {
					d.Errors[msg]++
				} else {
					d.Errors["other errors"]++
				}
				return
			}
			d.OK++
			if keepStarts {
				d.Starts[s.Idx] = start
			}
		}
		select {
		case jobs <- job:
		default:
			go worker(job)
		}
	}
	wg.Wait()
	d.Elapsed = time.Since(begin)
	return d
}

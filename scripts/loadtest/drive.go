package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

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

// A batchOp sends several pushes in one call.
type batchOp interface {
	// doBatch sends requests seq, seq+1, … to ss[0], ss[1], … in one call
	// (seq < 0: a warm-up, not measured). start is taken just before the
	// call leaves; errs has one entry per request, nil when it succeeded.
	// A call that fails as a whole fails each of its requests.
	doBatch(ctx context.Context, seq int, ss []*Session) (start time.Time, errs []error)
	Close() error
}

// singles makes calls of one request each.
type singles struct{ op }

func (o singles) doBatch(ctx context.Context, seq int, ss []*Session) (time.Time, []error) {
	start, err := o.do(ctx, seq, ss[0])
	return start, []error{err}
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

// Driven is the outcome of a rate phase, as the sender saw it. Requests
// are pushes or scans; a call carries one or more of them.
type Driven struct {
	Calls     int               // calls made
	Sent      int               // requests made
	OK        int               // requests that succeeded
	Errors    map[string]int    // failures by message
	Late      int               // requests whose call left more than 10 ms behind schedule
	Elapsed   time.Duration     // from the first call to the last answer
	Starts    map[int]time.Time // scan mode: session index → start
	MaxBehind time.Duration     // worst lag behind schedule
}

// drive makes count requests at rate per second, batch per call, open
// loop: call j, which carries requests j×batch …, is due at start +
// j×batch/rate whatever happened to the others, with at most inflight
// calls outstanding. pick chooses the session of request i.
//
// A call goes to an idle worker goroutine, or to a new one when none is
// idle, so it never waits for another. Workers live until the end: a new
// goroutine per call would grow its stack along grpc-go's call path each
// time, a visible part of the tool's own CPU.
func drive(ctx context.Context, o batchOp, count, batch int, rate float64, inflight int, pick func(i int) *Session, keepStarts bool) *Driven {
	d := &Driven{Errors: map[string]int{}}
	if keepStarts {
		d.Starts = make(map[int]time.Time, count)
	}
	batch = max(batch, 1)
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
	interval := float64(time.Second) * float64(batch) / rate
	begin := time.Now()
	for call := 0; call*batch < count && ctx.Err() == nil; call++ {
		due := begin.Add(time.Duration(float64(call) * interval))
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		first := call * batch
		ss := make([]*Session, min(batch, count-first))
		for k := range ss {
			ss[k] = pick(first + k)
		}
		if lag := time.Since(due); lag > 10*time.Millisecond {
			d.Late += len(ss)
			d.MaxBehind = max(d.MaxBehind, lag)
		}
		d.Calls++
		d.Sent += len(ss)
		wg.Add(1)
		job := func() {
			defer wg.Done()
			start, errs := o.doBatch(ctx, first, ss)
			<-sem
			mu.Lock()
			defer mu.Unlock()
			for k, err := range errs {
				if err != nil {
					msg := err.Error()
					if len(d.Errors) < 20 || d.Errors[msg] > 0 {
						d.Errors[msg]++
					} else {
						d.Errors["other errors"]++
					}
					continue
				}
				d.OK++
				if keepStarts {
					d.Starts[ss[k].Idx] = start
				}
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

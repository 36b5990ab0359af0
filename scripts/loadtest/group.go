package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// A group is a set of WebSocket connections held by one process: the
// coordinator itself (localGroup) or a worker it spawned (remoteGroup).

// Targets the load tool knows: what the first frame of a connection is.
const (
	targetScanlogin = "scanlogin" // first frame "qrcode": session, scene, ticket
	targetBaseline  = "baseline"  // first frame "hello": id
)

// GroupConfig tells a group which connections to open.
type GroupConfig struct {
	URLs        []string      `json:"urls"`          // ws:// URLs; connection i uses URLs[i % len]
	Target      string        `json:"target"`        // targetScanlogin or targetBaseline
	First       int           `json:"first"`         // global index of the group's first connection
	N           int           `json:"n"`             // connections to open
	Rate        float64       `json:"rate"`          // connections opened per second
	Concurrency int           `json:"concurrency"`   // handshakes in flight at most
	SrcIPs      int           `json:"src_ips"`       // source addresses 127.0.0.2 … 127.0.0.(1+SrcIPs)
	Timeout     time.Duration `json:"timeout"`       // dial + handshake + first frame of one connection
	Deadline    time.Duration `json:"deadline"`      // the whole connect phase
	ReadBufSize int           `json:"read_buf_size"` // client read buffer
}

// Session is one connected browser as the coordinator needs it.
type Session struct {
	Idx    int    `json:"idx"`              // global connection index
	ID     string `json:"id"`               // session id, or the baseline's client id
	Scene  string `json:"scene,omitempty"`  // scanlogin only
	Ticket string `json:"ticket,omitempty"` // scanlogin only
}

// ConnectResult is the outcome of a group's connect phase.
type ConnectResult struct {
	Sessions []Session `json:"sessions"`
	Failed   int       `json:"failed"`
	Errors   []string  `json:"errors"` // the first few distinct failures
	Latency  HistWire  `json:"latency"`
}

// Counts are a group's running totals, polled while draining.
type Counts struct {
	Received uint64 `json:"received"` // push frames
	Logins   uint64 `json:"logins"`   // login frames
	Warm     uint64 `json:"warm"`     // warm-up push frames, not measured
	Open     int64  `json:"open"`     // connections open
}

// GroupReport is what a group measured, collected at the end.
type GroupReport struct {
	Counts
	Push         HistWire         `json:"push"`            // latency of push frames
	LoginAt      [][2]int64       `json:"login_at"`        // [idx, unix nanoseconds of arrival]
	Dropped      uint64           `json:"dropped"`         // closed while we did not expect it
	DropReasons  map[string]int   `json:"drop_reasons"`    // first words of the errors, counted
	Frames       map[string]int64 `json:"frames"`          // frames received by type, after the first
	CPU          time.Duration    `json:"cpu"`             // this process's CPU time so far
	BadPushFrame uint64           `json:"bad_push_frames"` // message frames without our stamp
}

// group is the coordinator's view of a set of connections.
type group interface {
	Connect(ctx context.Context, cfg GroupConfig) (*ConnectResult, error)
	Counts(ctx context.Context) (Counts, error)
	Report(ctx context.Context) (*GroupReport, error)
	Close(ctx context.Context) error
	Pid() int
}

// frame is any server-to-browser message we read.
type frame struct {
	Type      string `json:"type"`
	Session   string `json:"session"`
	Scene     string `json:"scene"`
	QRCodeURL string `json:"qrcode_url"`
	ID        uint64 `json:"id"` // baseline hello
	Data      struct {
		ID int64 `json:"id"` // negative: a warm-up push, not measured
		T  int64 `json:"t"`
	} `json:"data"`
}

// localGroup holds connections in this process.
type localGroup struct {
	closing atomic.Bool
	open    atomic.Int64

	received atomic.Uint64
	warm     atomic.Uint64
	logins   atomic.Uint64
	dropped  atomic.Uint64
	badPush  atomic.Uint64

	mu      sync.Mutex
	conns   []*websocket.Conn
	push    Hist
	loginAt [][2]int64
	reasons map[string]int
	frames  map[string]int64

	wg sync.WaitGroup // reader goroutines
}

func newLocalGroup() *localGroup {
	return &localGroup{reasons: map[string]int{}, frames: map[string]int64{}}
}

func (g *localGroup) Pid() int { return 0 }

// srcAddr returns the local address connection idx dials from, or nil
// when the target is not on IPv4 loopback.
func srcAddr(target *url.URL, idx, k int) *net.TCPAddr {
	a, err := netip.ParseAddr(target.Hostname())
	if k <= 0 || err != nil || !a.Is4() || !a.IsLoopback() {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+idx%k))}
}

// Connect opens cfg.N connections at cfg.Rate and starts a reader on each.
func (g *localGroup) Connect(ctx context.Context, cfg GroupConfig) (*ConnectResult, error) {
	urls := make([]*url.URL, len(cfg.URLs))
	for i, raw := range cfg.URLs {
		u, err := checkURL("ws", raw, "ws")
		if err != nil {
			return nil, err
		}
		urls[i] = u
	}
	if len(urls) == 0 || cfg.N < 0 || cfg.Rate <= 0 || cfg.Concurrency <= 0 {
		return nil, errors.New("connect: bad group config")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Deadline)
	defer cancel()

	var (
		mu       sync.Mutex
		res      = &ConnectResult{Sessions: make([]Session, 0, cfg.N), Errors: []string{}}
		lat      Hist
		seenErrs = map[string]bool{}
		wg       sync.WaitGroup
		sem      = make(chan struct{}, cfg.Concurrency)
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		res.Failed++
		msg := err.Error()
		if !seenErrs[msg] && len(res.Errors) < 5 {
			seenErrs[msg] = true
			res.Errors = append(res.Errors, msg)
		}
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	for i := 0; i < cfg.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			fail(fmt.Errorf("connect phase deadline (%v) passed", cfg.Deadline))
			continue
		}
		idx := cfg.First + i
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			ws, s, err := dialOne(ctx, cfg, urls[idx%len(urls)], idx)
			<-sem
			if err != nil {
				fail(err)
				return
			}
			d := time.Since(t0)
			mu.Lock()
			lat.Record(d)
			res.Sessions = append(res.Sessions, s)
			mu.Unlock()
			g.mu.Lock()
			g.conns = append(g.conns, ws)
			g.mu.Unlock()
			g.open.Add(1)
			g.wg.Add(1)
			go g.read(ws, idx)
		}()
	}
	wg.Wait()
	sort.Slice(res.Sessions, func(i, j int) bool { return res.Sessions[i].Idx < res.Sessions[j].Idx })
	res.Latency = lat.Wire()
	pauseGC() // this process now only reads frames and measures
	return res, nil
}

// dialOne opens connection idx and reads its first frame.
func dialOne(ctx context.Context, cfg GroupConfig, u *url.URL, idx int) (*websocket.Conn, Session, error) {
	s := Session{Idx: idx}
	nd := &net.Dialer{Timeout: cfg.Timeout}
	if a := srcAddr(u, idx, cfg.SrcIPs); a != nil {
		nd.LocalAddr = a
	}
	d := websocket.Dialer{
		NetDialContext:   nd.DialContext,
		HandshakeTimeout: cfg.Timeout,
		ReadBufferSize:   cfg.ReadBufSize,
		WriteBufferSize:  256,
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	ws, resp, err := d.DialContext(cctx, u.String(), http.Header{})
	if err != nil {
		if resp != nil {
			return nil, s, fmt.Errorf("handshake: HTTP %d", resp.StatusCode)
		}
		return nil, s, fmt.Errorf("dial: %w", shortErr(err))
	}
	ws.SetReadDeadline(time.Now().Add(cfg.Timeout))
	_, msg, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, s, fmt.Errorf("first frame: %w", shortErr(err))
	}
	ws.SetReadDeadline(time.Time{})
	var f frame
	if err := json.Unmarshal(msg, &f); err != nil {
		ws.Close()
		return nil, s, fmt.Errorf("first frame: not JSON: %.80s", msg)
	}
	switch {
	case cfg.Target == targetScanlogin && f.Type == "qrcode":
		ticket, err := ticketOf(f.QRCodeURL)
		if err != nil || f.Session == "" || f.Scene == "" {
			ws.Close()
			return nil, s, fmt.Errorf("first frame: qrcode without session, scene or ticket: %.120s", msg)
		}
		s.ID, s.Scene, s.Ticket = f.Session, f.Scene, ticket
	case cfg.Target == targetBaseline && f.Type == "hello" && f.ID != 0:
		s.ID = fmt.Sprint(f.ID)
	default:
		ws.Close()
		return nil, s, fmt.Errorf("first frame: unexpected %.120s", msg)
	}
	return ws, s, nil
}

// ticketOf extracts the ticket from a qrcode_url
// (<WECHAT_MP_BASE>/cgi-bin/showqrcode?ticket=<url-encoded ticket>).
func ticketOf(qrcodeURL string) (string, error) {
	u, err := url.Parse(qrcodeURL)
	if err != nil {
		return "", err
	}
	t := u.Query().Get("ticket")
	if t == "" {
		return "", errors.New("no ticket")
	}
	return t, nil
}

// shortErr strips the addresses from network errors so that failures group
// well in the report.
func shortErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return fmt.Errorf("%s: %w", op.Op, op.Err)
	}
	return err
}

// read runs one connection until it ends, timing the frames that arrive.
func (g *localGroup) read(ws *websocket.Conn, idx int) {
	defer g.wg.Done()
	defer g.open.Add(-1)
	loggedIn := false
	for {
		_, msg, err := ws.ReadMessage()
		now := time.Now()
		if err != nil {
			ws.Close()
			if g.closing.Load() || (loggedIn && websocket.IsCloseError(err, websocket.CloseNormalClosure)) {
				return
			}
			g.dropped.Add(1)
			reason := err.Error()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				reason = fmt.Sprintf("close %d %s", ce.Code, ce.Text)
			} else if f := strings.Fields(reason); len(f) > 4 {
				reason = strings.Join(f[len(f)-4:], " ")
			}
			g.mu.Lock()
			g.reasons[reason]++
			g.mu.Unlock()
			return
		}
		var f frame
		if err := json.Unmarshal(msg, &f); err != nil {
			f.Type = "not_json"
		}
		switch f.Type {
		case "message":
			if f.Data.T == 0 {
				g.badPush.Add(1)
				break
			}
			if f.Data.ID < 0 {
				g.warm.Add(1)
				break
			}
			g.mu.Lock()
			g.push.Record(now.Sub(time.Unix(0, f.Data.T)))
			g.mu.Unlock()
			g.received.Add(1)
		case "login":
			loggedIn = true
			g.mu.Lock()
			g.loginAt = append(g.loginAt, [2]int64{int64(idx), now.UnixNano()})
			g.mu.Unlock()
			g.logins.Add(1)
		}
		g.mu.Lock()
		g.frames[f.Type]++
		g.mu.Unlock()
	}
}

// Counts implements group.
func (g *localGroup) Counts(context.Context) (Counts, error) {
	return Counts{Received: g.received.Load(), Logins: g.logins.Load(), Warm: g.warm.Load(), Open: g.open.Load()}, nil
}

// Report implements group.
func (g *localGroup) Report(context.Context) (*GroupReport, error) {
	c, _ := g.Counts(context.Background())
	self, err := readProc(os.Getpid())
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := &GroupReport{
		Counts:       c,
		Push:         g.push.Wire(),
		LoginAt:      append([][2]int64{}, g.loginAt...),
		Dropped:      g.dropped.Load(),
		DropReasons:  map[string]int{},
		Frames:       map[string]int64{},
		CPU:          self.CPU,
		BadPushFrame: g.badPush.Load(),
	}
	for k, v := range g.reasons {
		r.DropReasons[k] = v
	}
	for k, v := range g.frames {
		r.Frames[k] = v
	}
	return r, nil
}

// Close implements group: it closes every connection and waits, within
// ctx, for the readers to stop.
func (g *localGroup) Close(ctx context.Context) error {
	g.closing.Store(true)
	g.mu.Lock()
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, ws := range conns {
		// A polite close frame when it goes out at once; never wait for it.
		ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "load test done"), time.Now().Add(20*time.Millisecond))
		ws.Close()
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close: %d readers still running: %w", g.open.Load(), ctx.Err())
	}
}

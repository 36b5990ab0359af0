package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of the run subcommand's flags: the tool never runs away.
const (
	maxConns        = 200_000
	maxRate         = 50_000
	maxDuration     = 10 * time.Minute
	maxSettle       = 5 * time.Minute
	maxGrace        = time.Minute
	maxPerProcess   = 18_000 // open files are capped at 20,000 per process here
	maxInflight     = 10_000
	maxSrcIPs       = 250
	maxConnectPhase = 10 * time.Minute
	defaultPerProc  = 15_000
	maxBatch        = 1000 // pushes per call, as push-server's PushBatch takes
)

// Modes of the rate phase.
const (
	modePush  = "push"  // Push to random sessions
	modeBatch = "batch" // the same pushes, -batch per call
	modeScan  = "scan"  // signed WeChat scans POSTed to the callback, each session once
	modeIdle  = "idle"  // none: connections and memory only
)

// How pushes reach the server.
const (
	viaGRPC = "grpc" // scanlogin: PushService Push and PushBatch
	viaHTTP = "http" // scanlogin: the HTTP/JSON API; baseline: its only way
)

// runOptions are the run subcommand's settings.
type runOptions struct {
	label        string
	target       string
	wsURLs       []string
	n            int
	connRate     float64
	connConc     int
	connTO       time.Duration
	connDeadline time.Duration
	srcIPs       int
	perProc      int
	settle       time.Duration
	mode         string
	batch        int    // pushes per call: 1, or -batch in batch mode
	via          string // viaGRPC or viaHTTP
	apiURLs      []string
	rate         float64
	duration     time.Duration
	grace        time.Duration
	inflight     int
	opTimeout    time.Duration
	grpcAddrs    []string
	grpcAuth     string
	grpcWindow   int
	pushURLs     []string // baseline
	scan         ScanConfig
	serverPIDs   []int
	watch        map[string]int
	jsonPath     string
	cpuProfile   string
	seed         uint64
}

// Result is one run, as written to JSON.
type Result struct {
	Label    string    `json:"label"`
	Target   string    `json:"target"`
	Mode     string    `json:"mode"`
	Started  time.Time `json:"started"`
	Command  []string  `json:"command"`
	Settings struct {
		Connections int     `json:"connections"`
		Instances   int     `json:"instances"`
		Processes   int     `json:"processes"`
		SrcIPs      int     `json:"src_ips"`
		ConnectRate float64 `json:"connect_rate"`
		Rate        float64 `json:"rate"`  // requests (pushes, scans) per second
		Batch       int     `json:"batch"` // pushes per call
		Via         string  `json:"via,omitempty"`
		DurationS   float64 `json:"duration_s"`
		SettleS     float64 `json:"settle_s"`
		GraceS      float64 `json:"grace_s"`
		Requests    int     `json:"requests"` // planned for the rate phase
	} `json:"settings"`
	Connect struct {
		Connected int      `json:"connected"`
		Failed    int      `json:"failed"`
		Errors    []string `json:"errors"`
		Seconds   float64  `json:"seconds"`
		Latency   Latency  `json:"latency"` // dial to first frame (includes QR creation)
	} `json:"connect"`
	Server struct {
		PIDs           []int   `json:"pids"`
		Measured       bool    `json:"measured"`
		RSSBefore      int64   `json:"rss_before_bytes"`
		RSSIdle        int64   `json:"rss_idle_bytes"`
		RSSAfter       int64   `json:"rss_after_bytes"`
		RSSPerConn     float64 `json:"rss_per_conn_bytes"`
		CPUConnectS    float64 `json:"cpu_connect_s"` // the connect phase
		CPUIdleS       float64 `json:"cpu_idle_s"`    // the settle period
		CPULoadS       float64 `json:"cpu_load_s"`    // the rate phase and drain
		CPUPerOpMicros float64 `json:"cpu_per_op_us"`
		// SyscallsPerOp is the server's read and write system calls (of
		// any file: sockets, mostly) in the rate phase per request.
		SyscallsPerOp float64 `json:"syscalls_per_op"`
	} `json:"server"`
	Load struct {
		Calls       int            `json:"calls"`
		Sent        int            `json:"sent"`
		OK          int            `json:"ok"`
		Errors      int            `json:"errors"`
		ErrorKinds  map[string]int `json:"error_kinds"`
		Received    int            `json:"received"`
		Lost        int            `json:"lost"`
		Late        int            `json:"late"` // left >10 ms behind schedule
		MaxBehindMS float64        `json:"max_behind_ms"`
		Seconds     float64        `json:"seconds"`
		Achieved    float64        `json:"achieved_rate"`
		DrainS      float64        `json:"drain_s"`
		Latency     Latency        `json:"latency"`
	} `json:"load"`
	Conns struct {
		Dropped     uint64           `json:"dropped"` // closed by surprise during the run
		DropReasons map[string]int   `json:"drop_reasons"`
		Frames      map[string]int64 `json:"frames"`
		BadPush     uint64           `json:"bad_push_frames"`
	} `json:"conns"`
	Tool struct {
		CPULoadS float64 `json:"cpu_load_s"` // all load-tool processes, rate phase
		Cores    float64 `json:"cores"`      // CPU seconds per second of the rate phase
	} `json:"tool"`
	// Machine is the whole machine's CPU during the rate phase: how much
	// went to processes outside the measure (other people's work).
	Machine struct {
		BusyS   float64 `json:"busy_s"`   // all CPUs, all processes
		OthersS float64 `json:"others_s"` // busy minus server, tool and watched processes
		StealS  float64 `json:"steal_s"`  // taken by the hypervisor
		Seconds float64 `json:"seconds"`  // length of the rate phase and drain
		// A goroutine of the load tool sleeps 1 ms in a loop during the
		// rate phase: how late it woke up shows how long the machine left
		// the tool without a CPU.
		MaxStallMS float64 `json:"max_stall_ms"`
		Stalls10ms int     `json:"stalls_over_10ms"`
	} `json:"machine"`
	Watched        map[string]float64 `json:"watched_cpu_load_s,omitempty"`    // other processes (callback, simulator), rate phase
	WatchedConnect map[string]float64 `json:"watched_cpu_connect_s,omitempty"` // the same, connect phase
	// LoadAvg is /proc/loadavg at the start and at the end of the run: how
	// busy the machine was with other work.
	LoadAvg [2]string `json:"loadavg"`
	Notes   []string  `json:"notes"`
}

func parseRunFlags(args []string, stderr io.Writer) (*runOptions, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &runOptions{}
	var ws, grpcs, apis, pushes, callbacks, pids, watch string
	fs.StringVar(&o.label, "label", "", "name of this run in reports (default: target)")
	fs.StringVar(&o.target, "target", targetScanlogin, "scanlogin (first frame qrcode; Push over gRPC) or baseline (first frame hello; push over HTTP)")
	fs.StringVar(&ws, "ws", "ws://127.0.0.1:8080/ws", "comma list of WebSocket URLs, one per server instance; connections go round-robin")
	fs.IntVar(&o.n, "n", 1000, "connections to open")
	fs.Float64Var(&o.connRate, "connect-rate", 2000, "connections opened per second")
	fs.IntVar(&o.connConc, "connect-concurrency", 256, "handshakes in flight at most (per process)")
	fs.DurationVar(&o.connTO, "connect-timeout", 15*time.Second, "dial, handshake and first frame of one connection")
	fs.DurationVar(&o.connDeadline, "connect-deadline", 0, "bound of the whole connect phase (default 3 × n ÷ connect-rate + 1m)")
	fs.IntVar(&o.srcIPs, "src-ips", 16, "spread source addresses over 127.0.0.2 … 127.0.0.(1+K), for ephemeral ports")
	fs.IntVar(&o.perProc, "per-process", defaultPerProc, "connections per process; more than this spawns worker processes")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "wait with idle connections before reading the server's RSS")
	fs.StringVar(&o.mode, "mode", modePush, "rate phase: push (one per call), batch (-batch per call), scan or idle")
	fs.IntVar(&o.batch, "batch", 100, "batch mode: pushes per call (PushBatch, /v1/push/batch, the baseline's /push/batch)")
	fs.StringVar(&o.via, "via", "", "scanlogin pushes: grpc (PushService, the default) or http (the HTTP/JSON API at -api-url); the baseline only has http")
	fs.StringVar(&apis, "api-url", "http://127.0.0.1:9091", "-via http: comma list of push-server HTTP/JSON API base URLs (PUSH_API_ADDR); pushes go round-robin")
	fs.Float64Var(&o.rate, "rate", 2000, "requests (pushes or scans) per second in the rate phase; in batch mode, rate ÷ batch calls per second")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "length of the rate phase")
	fs.DurationVar(&o.grace, "grace", 5*time.Second, "after the rate phase, how long a frame may still arrive before it counts as lost")
	fs.IntVar(&o.inflight, "inflight", 1000, "requests outstanding at most; beyond, the schedule slips and requests count as late")
	fs.DurationVar(&o.opTimeout, "op-timeout", 5*time.Second, "timeout of one request")
	fs.StringVar(&grpcs, "grpc", "127.0.0.1:9090", "comma list of push-server gRPC addresses; Push goes round-robin")
	fs.StringVar(&o.grpcAuth, "grpc-auth", "", "GRPC_AUTH_TOKEN of the push server, if set (sent over gRPC and to the HTTP/JSON API)")
	fs.IntVar(&o.grpcWindow, "grpc-window", 0, "gRPC client: a fixed flow-control window of this many bytes (64 KiB or more), which turns off grpc-go's BDP pings; 0: grpc-go's defaults, one ping per answer")
	fs.StringVar(&pushes, "push-url", "", "baseline: comma list of push URLs (default: the -ws URLs with http and /push)")
	fs.StringVar(&callbacks, "callback", "http://127.0.0.1:8081/wechat/callback", "comma list of wechat-callback URLs (scan mode)")
	fs.StringVar(&o.scan.Token, "wechat-token", "", "WECHAT_TOKEN of the callback (scan mode)")
	fs.StringVar(&o.scan.AESKey, "aes-key", "", "WECHAT_AES_KEY of the callback; set: events are sent in safe mode")
	fs.StringVar(&o.scan.AppID, "appid", "", "WECHAT_APPID (safe mode)")
	fs.StringVar(&o.scan.ToUser, "to-user", "gh_0123456789ab", "ToUserName of the events (WECHAT_ORIGINAL_ID, if the callback checks it)")
	fs.StringVar(&o.scan.Event, "event", "scan", "scan mode events: scan (SCAN, existing follower), subscribe (new follower) or mixed")
	fs.StringVar(&pids, "server-pid", "", "comma list of server PIDs whose RSS and CPU are read from /proc (all instances)")
	fs.StringVar(&watch, "watch-pid", "", "comma list of name=PID whose CPU in the rate phase is reported too (callback, simulator)")
	fs.StringVar(&o.jsonPath, "json", "", "write the result as JSON to this file")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the random choice of sessions")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this (coordinator) process during the rate phase, to check that the tool is not the bottleneck")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.label == "" {
		o.label = o.target
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if o.target != targetScanlogin && o.target != targetBaseline {
		bad("-target must be scanlogin or baseline")
	}
	o.wsURLs = splitList(ws)
	if len(o.wsURLs) == 0 {
		bad("-ws: at least one URL")
	}
	for _, u := range o.wsURLs {
		if _, err := checkURL("ws", u, "ws"); err != nil {
			errs = append(errs, err)
		}
	}
	if o.n < 1 || o.n > maxConns {
		bad("-n must be 1..%d", maxConns)
	}
	if o.connRate <= 0 || o.connRate > maxRate {
		bad("-connect-rate must be in (0, %d]", maxRate)
	}
	if o.connConc < 1 || o.connConc > maxInflight {
		bad("-connect-concurrency must be 1..%d", maxInflight)
	}
	if o.connTO < 100*time.Millisecond || o.connTO > time.Minute {
		bad("-connect-timeout must be 100ms..1m")
	}
	if o.connDeadline < 0 || o.connDeadline > maxConnectPhase {
		bad("-connect-deadline must be 0..%v", maxConnectPhase)
	}
	if o.srcIPs < 0 || o.srcIPs > maxSrcIPs {
		bad("-src-ips must be 0..%d", maxSrcIPs)
	}
	if o.perProc < 1 || o.perProc > maxPerProcess {
		bad("-per-process must be 1..%d (open files are capped at 20,000 per process)", maxPerProcess)
	}
	if o.settle < 0 || o.settle > maxSettle {
		bad("-settle must be 0..%v", maxSettle)
	}
	if o.grace < 0 || o.grace > maxGrace {
		bad("-grace must be 0..%v", maxGrace)
	}
	if o.inflight < 1 || o.inflight > maxInflight {
		bad("-inflight must be 1..%d", maxInflight)
	}
	if o.opTimeout < 10*time.Millisecond || o.opTimeout > time.Minute {
		bad("-op-timeout must be 10ms..1m")
	}
	if o.grpcWindow != 0 && (o.grpcWindow < 64<<10 || o.grpcWindow > 1<<30) {
		bad("-grpc-window must be 0 or 64 KiB..1 GiB (grpc-go ignores smaller windows)")
	}
	switch o.mode {
	case modeIdle:
	case modePush, modeBatch, modeScan:
		if o.rate <= 0 || o.rate > maxRate {
			bad("-rate must be in (0, %d]", maxRate)
		}
		if o.duration <= 0 || o.duration > maxDuration {
			bad("-duration must be in (0, %v]", maxDuration)
		}
	default:
		bad("-mode must be push, batch, scan or idle")
	}
	if o.mode == modeBatch {
		if o.batch < 1 || o.batch > maxBatch {
			bad("-batch must be 1..%d", maxBatch)
		}
	} else {
		o.batch = 1
	}
	switch {
	case o.via == "" && o.target == targetBaseline:
		o.via = viaHTTP
	case o.via == "":
		o.via = viaGRPC
	case o.via != viaGRPC && o.via != viaHTTP:
		bad("-via must be grpc or http")
	case o.via == viaGRPC && o.target == targetBaseline:
		bad("-via grpc: the baseline only takes pushes over HTTP")
	}
	if o.pushes() && o.target == targetScanlogin && o.via == viaHTTP {
		o.apiURLs = splitList(apis)
		if len(o.apiURLs) == 0 {
			bad("-api-url: at least one URL")
		}
		for _, u := range o.apiURLs {
			if _, err := checkURL("api-url", u, "http"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if o.pushes() && o.target == targetScanlogin && o.via == viaGRPC {
		o.grpcAddrs = splitList(grpcs)
		if len(o.grpcAddrs) == 0 {
			bad("-grpc: at least one address")
		}
		for _, a := range o.grpcAddrs {
			if err := checkAddr("grpc", a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if o.pushes() && o.target == targetBaseline {
		o.pushURLs = splitList(pushes)
		if len(o.pushURLs) == 0 {
			for _, w := range o.wsURLs {
				u, _ := checkURL("ws", w, "ws")
				if u != nil {
					o.pushURLs = append(o.pushURLs, "http://"+u.Host+"/push")
				}
			}
		}
		for _, u := range o.pushURLs {
			if _, err := checkURL("push-url", u, "http"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if o.mode == modeScan {
		if o.target != targetScanlogin {
			bad("-mode scan needs -target scanlogin")
		}
		o.scan.URLs = splitList(callbacks)
		if len(o.scan.URLs) == 0 {
			bad("-callback: at least one URL")
		}
		for _, u := range o.scan.URLs {
			if _, err := checkURL("callback", u, "http"); err != nil {
				errs = append(errs, err)
			}
		}
		if o.scan.Token == "" {
			bad("-wechat-token is required in scan mode")
		}
		if o.scan.AESKey != "" && o.scan.AppID == "" {
			bad("-appid is required with -aes-key")
		}
		if e := o.scan.Event; e != "scan" && e != "subscribe" && e != "mixed" {
			bad("-event must be scan, subscribe or mixed")
		}
		// A session logs in once and is then closed: every scan needs
		// its own waiting session.
		if need := o.requests(); need > o.n {
			bad("-mode scan: %v/s for %v is %d scans but -n is %d; each session logs in only once, so use -n ≥ rate×duration (for example -rate 2000 -duration 5s with -n 10000)", o.rate, o.duration, need, o.n)
		}
	}
	for _, p := range splitList(pids) {
		pid, err := strconv.Atoi(p)
		if err != nil || pid <= 0 {
			bad("-server-pid: %q is not a PID", p)
			continue
		}
		o.serverPIDs = append(o.serverPIDs, pid)
	}
	o.watch = map[string]int{}
	for _, w := range splitList(watch) {
		name, p, ok := strings.Cut(w, "=")
		pid, err := strconv.Atoi(p)
		if !ok || name == "" || err != nil || pid <= 0 {
			bad("-watch-pid: %q is not name=PID", w)
			continue
		}
		o.watch[name] = pid
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return o, nil
}

// pushes reports whether the rate phase pushes, one or several per call.
func (o *runOptions) pushes() bool { return o.mode == modePush || o.mode == modeBatch }

// requests is the number of requests (pushes or scans) of the rate phase.
func (o *runOptions) requests() int {
	if o.mode == modeIdle {
		return 0
	}
	return int(math.Round(o.rate * o.duration.Seconds()))
}

// runRun is the "run" subcommand.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	// Stop on SIGINT or SIGTERM, and say which: a run that ends early
	// should tell why.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	var got atomic.Value
	go func() {
		select {
		case s := <-sigc:
			got.Store(s.String())
			logf(stderr, "%s: got %v; stopping", o.label, s)
			cancel()
		case <-ctx.Done():
		}
	}()
	res, err := runLoad(ctx, o, stderr)
	if s, ok := got.Load().(string); ok && res != nil {
		res.Notes = append(res.Notes, "stopped early by signal "+s)
	}
	if res != nil {
		res.Command = append([]string{"loadtest", "run"}, args...)
		if o.jsonPath != "" {
			b, jerr := json.MarshalIndent(res, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(o.jsonPath, append(b, '\n'), 0o644)
			}
			if jerr != nil {
				return errors.Join(err, fmt.Errorf("write -json: %w", jerr))
			}
		}
		printSummary(stdout, res)
	}
	return err
}

// logf prints a progress line on stderr.
func logf(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "loadtest: "+format+"\n", a...)
}

// runLoad runs the phases: connect, settle, rate, drain, report.
func runLoad(ctx context.Context, o *runOptions, stderr io.Writer) (*Result, error) {
	r := &Result{Label: o.label, Target: o.target, Mode: o.mode, Started: time.Now().UTC(), Notes: []string{}}
	r.LoadAvg[0] = loadAvg()
	defer func() { r.LoadAvg[1] = loadAvg() }()
	nproc := (o.n + o.perProc - 1) / o.perProc
	r.Settings.Connections = o.n
	r.Settings.Instances = len(o.wsURLs)
	r.Settings.Processes = nproc
	r.Settings.SrcIPs = o.srcIPs
	r.Settings.ConnectRate = o.connRate
	r.Settings.SettleS = o.settle.Seconds()
	r.Settings.GraceS = o.grace.Seconds()
	if o.mode != modeIdle {
		r.Settings.Rate = o.rate
		r.Settings.Batch = o.batch
		if o.pushes() {
			r.Settings.Via = o.via
		}
		r.Settings.DurationS = o.duration.Seconds()
		r.Settings.Requests = o.requests()
	}
	r.Server.PIDs = o.serverPIDs
	r.Server.Measured = len(o.serverPIDs) > 0

	connDeadline := o.connDeadline
	if connDeadline == 0 {
		connDeadline = min(time.Duration(float64(o.n)/o.connRate*float64(time.Second))*3+time.Minute, maxConnectPhase)
	}
	total := connDeadline + o.settle + 2*o.duration + o.grace + time.Minute
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()

	sample := func() (ProcSample, error) {
		if !r.Server.Measured {
			return ProcSample{}, nil
		}
		return readProcs(o.serverPIDs)
	}
	before, err := sample()
	if err != nil {
		return nil, err
	}
	r.Server.RSSBefore = before.RSS

	// The connections: this process alone, or workers.
	var groups []group
	if nproc == 1 {
		groups = []group{newLocalGroup()}
	} else {
		for i := 0; i < nproc; i++ {
			w, err := startWorker(total+time.Minute, stderr)
			if err != nil {
				closeGroups(groups)
				return nil, err
			}
			groups = append(groups, w)
		}
	}
	defer closeGroups(groups)

	watchBefore := watchCPU(o.watch)
	logf(stderr, "%s: opening %d connections at %v/s over %d instance(s) from %d process(es)", o.label, o.n, o.connRate, len(o.wsURLs), nproc)
	t0 := time.Now()
	sessions, err := connectAll(ctx, o, groups, connDeadline, r)
	if err != nil {
		return r, err
	}
	r.Connect.Seconds = time.Since(t0).Seconds()
	logf(stderr, "%s: %d connected, %d failed in %.1fs", o.label, r.Connect.Connected, r.Connect.Failed, r.Connect.Seconds)
	if len(sessions) == 0 {
		return r, errors.New("no connection succeeded: " + strings.Join(r.Connect.Errors, "; "))
	}
	afterConnect, err := sample()
	if err != nil {
		return r, err
	}
	r.Server.CPUConnectS = (afterConnect.CPU - before.CPU).Seconds()
	for name, v := range watchCPU(o.watch) {
		if r.WatchedConnect == nil {
			r.WatchedConnect = map[string]float64{}
		}
		r.WatchedConnect[name] = (v - watchBefore[name]).Seconds()
	}

	if o.settle > 0 {
		logf(stderr, "%s: settling %v", o.label, o.settle)
		select {
		case <-time.After(o.settle):
		case <-ctx.Done():
			return r, ctx.Err()
		}
	}
	idle, err := sample()
	if err != nil {
		return r, err
	}
	r.Server.RSSIdle = idle.RSS
	r.Server.CPUIdleS = (idle.CPU - afterConnect.CPU).Seconds()
	if r.Server.Measured {
		r.Server.RSSPerConn = float64(idle.RSS-before.RSS) / float64(len(sessions))
	}

	if o.mode != modeIdle {
		pauseGC() // also where every group is a worker process
		if err := ratePhase(ctx, o, groups, sessions, r, stderr); err != nil {
			return r, err
		}
	}
	after, err := sample()
	if err != nil {
		return r, err
	}
	r.Server.RSSAfter = after.RSS

	rep, err := collect(ctx, groups)
	if err != nil {
		return r, err
	}
	r.Conns.Dropped = rep.Dropped
	r.Conns.DropReasons = rep.DropReasons
	r.Conns.Frames = rep.Frames
	r.Conns.BadPush = rep.BadPushFrame
	if rep.Dropped > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d connections were closed by surprise", rep.Dropped))
	}
	return r, nil
}

// connectAll opens the connections, split over the groups, and returns the
// sessions by global index order.
func connectAll(ctx context.Context, o *runOptions, groups []group, deadline time.Duration, r *Result) ([]Session, error) {
	type out struct {
		res *ConnectResult
		err error
	}
	outs := make([]out, len(groups))
	done := make(chan struct{}, len(groups))
	first := 0
	for i, g := range groups {
		n := o.n / len(groups)
		if i < o.n%len(groups) {
			n++
		}
		cfg := GroupConfig{
			URLs: o.wsURLs, Target: o.target, First: first, N: n,
			Rate: o.connRate / float64(len(groups)), Concurrency: o.connConc,
			SrcIPs: o.srcIPs, Timeout: o.connTO, Deadline: deadline, ReadBufSize: 1024,
		}
		first += n
		go func() {
			res, err := g.Connect(ctx, cfg)
			outs[i] = out{res, err}
			done <- struct{}{}
		}()
	}
	for range groups {
		<-done
	}
	var (
		sessions []Session
		lat      Hist
		seen     = map[string]bool{}
	)
	r.Connect.Errors = []string{}
	for _, x := range outs {
		if x.err != nil {
			return nil, x.err
		}
		sessions = append(sessions, x.res.Sessions...)
		r.Connect.Failed += x.res.Failed
		for _, e := range x.res.Errors {
			if !seen[e] && len(r.Connect.Errors) < 10 {
				seen[e] = true
				r.Connect.Errors = append(r.Connect.Errors, e)
			}
		}
		h, err := FromWire(x.res.Latency)
		if err != nil {
			return nil, err
		}
		lat.Merge(h)
	}
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Idx < sessions[j].Idx })
	r.Connect.Connected = len(sessions)
	r.Connect.Latency = lat.Summary()
	return sessions, nil
}

// toolCPU sums the CPU time of this process and its workers.
func toolCPU(groups []group) time.Duration {
	var sum time.Duration
	pids := []int{os.Getpid()}
	for _, g := range groups {
		if p := g.Pid(); p != 0 {
			pids = append(pids, p)
		}
	}
	for _, p := range pids {
		if s, err := readProc(p); err == nil {
			sum += s.CPU
		}
	}
	return sum
}

// ratePhase drives the requests, waits for their frames and fills r.Load.
func ratePhase(ctx context.Context, o *runOptions, groups []group, sessions []Session, r *Result, stderr io.Writer) error {
	var (
		operation op
		err       error
	)
	switch {
	case o.pushes() && o.target == targetBaseline:
		operation, err = newBaselinePush(o.pushURLs, o.opTimeout)
	case o.pushes() && o.via == viaHTTP:
		operation, err = newAPIPush(o.apiURLs, o.grpcAuth, o.opTimeout)
	case o.pushes():
		operation, err = newGRPCPush(o.grpcAddrs, o.grpcAuth, o.grpcWindow, o.opTimeout)
	default:
		operation, err = newScanPost(o.scan, o.opTimeout)
	}
	if err != nil {
		return err
	}
	defer operation.Close()
	var calls batchOp = singles{operation}
	if p, ok := operation.(pusher); ok && o.mode == modeBatch {
		calls = p
	}

	count := o.requests()
	rng := rand.New(rand.NewPCG(o.seed, 0x5ca9))
	pick := func(int) *Session { return &sessions[rng.IntN(len(sessions))] }
	if o.mode == modeScan {
		if count > len(sessions) {
			r.Notes = append(r.Notes, fmt.Sprintf("only %d sessions connected: %d scans instead of %d", len(sessions), len(sessions), count))
			count = len(sessions)
		}
		perm := rng.Perm(len(sessions))
		pick = func(i int) *Session { return &sessions[perm[i]] }
		if sp, ok := operation.(*scanPost); ok {
			if err := sp.prepare(count, pick, time.Now()); err != nil {
				return fmt.Errorf("sign scans: %w", err)
			}
		}
	}
	// Warm the path once (connection set-up, first-call costs) outside the
	// measure, on a session the scans will not use.
	if o.pushes() {
		wctx, wcancel := context.WithTimeout(ctx, o.opTimeout)
		calls.doBatch(wctx, -1, []*Session{&sessions[0]})
		wcancel()
		if err := waitFor(ctx, groups, func(c Counts) bool { return c.Warm >= 1 }, time.Second); err != nil {
			return err
		}
	}
	base, err := sumCounts(ctx, groups)
	if err != nil {
		return err
	}

	var srvBefore, srvAfter ProcSample
	if r.Server.Measured {
		if srvBefore, err = readProcs(o.serverPIDs); err != nil {
			return err
		}
	}
	watchBefore := map[string]time.Duration{}
	for name, pid := range o.watch {
		if s, err := readProc(pid); err == nil {
			watchBefore[name] = s.CPU
		}
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	toolBefore := toolCPU(groups)
	machBefore, _ := readMachine()
	stallDone := make(chan struct{})
	stallRes := make(chan [2]float64, 1)
	go watchStalls(stallDone, stallRes)
	logf(stderr, "%s: %s at %v/s for %v (%d requests, %d per call)", o.label, o.mode, o.rate, o.duration, count, o.batch)
	t0 := time.Now()
	d := drive(ctx, calls, count, o.batch, o.rate, o.inflight, pick, o.mode == modeScan)

	// Drain: wait for every frame of a successful request, or the grace.
	want := uint64(d.OK)
	got := func(c Counts) uint64 {
		if o.mode == modeScan {
			return c.Logins - base.Logins
		}
		return c.Received - base.Received
	}
	drainStart := time.Now()
	if err := waitFor(ctx, groups, func(c Counts) bool { return got(c) >= want }, o.grace); err != nil {
		return err
	}
	r.Load.DrainS = time.Since(drainStart).Seconds()
	if o.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	elapsed := time.Since(t0)
	toolAfter := toolCPU(groups)
	machAfter, _ := readMachine()
	close(stallDone)
	st := <-stallRes
	r.Machine.MaxStallMS, r.Machine.Stalls10ms = st[0], int(st[1])
	if r.Server.Measured {
		if srvAfter, err = readProcs(o.serverPIDs); err != nil {
			return err
		}
	}
	for name, pid := range o.watch {
		s, err := readProc(pid)
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s (pid %d) could not be read after the rate phase: it had exited", name, pid))
			continue
		}
		if r.Watched == nil {
			r.Watched = map[string]float64{}
		}
		r.Watched[name] = (s.CPU - watchBefore[name]).Seconds()
	}

	rep, err := collect(ctx, groups)
	if err != nil {
		return err
	}
	var lat *Hist
	received := 0
	if o.mode == modeScan {
		lat = &Hist{}
		for _, la := range rep.LoginAt {
			if start, ok := d.Starts[int(la[0])]; ok {
				lat.Record(time.Duration(la[1] - start.UnixNano()))
				received++
			}
		}
	} else {
		if lat, err = FromWire(rep.Push); err != nil {
			return err
		}
		received = int(rep.Received - base.Received)
	}

	r.Load.Calls = d.Calls
	r.Load.Sent = d.Sent
	r.Load.OK = d.OK
	r.Load.Errors = d.Sent - d.OK
	r.Load.ErrorKinds = d.Errors
	r.Load.Received = received
	r.Load.Lost = max(0, d.OK-received)
	r.Load.Late = d.Late
	r.Load.MaxBehindMS = float64(d.MaxBehind) / 1e6
	r.Load.Seconds = d.Elapsed.Seconds()
	if d.Elapsed > 0 {
		r.Load.Achieved = float64(d.Sent) / d.Elapsed.Seconds()
	}
	r.Load.Latency = lat.Summary()
	toolUsed := toolAfter - toolBefore
	r.Tool.CPULoadS = toolUsed.Seconds()
	r.Tool.Cores = toolUsed.Seconds() / elapsed.Seconds()
	if r.Server.Measured {
		used := srvAfter.CPU - srvBefore.CPU
		r.Server.CPULoadS = used.Seconds()
		if d.Sent > 0 {
			r.Server.CPUPerOpMicros = float64(used.Microseconds()) / float64(d.Sent)
			r.Server.SyscallsPerOp = float64(srvAfter.Syscalls-srvBefore.Syscalls) / float64(d.Sent)
		}
	}
	r.Machine.Seconds = elapsed.Seconds()
	r.Machine.BusyS = (machAfter.Busy - machBefore.Busy).Seconds()
	r.Machine.StealS = (machAfter.Steal - machBefore.Steal).Seconds()
	others := r.Machine.BusyS - r.Tool.CPULoadS - r.Server.CPULoadS
	for _, v := range r.Watched {
		others -= v
	}
	r.Machine.OthersS = max(0, others)
	logf(stderr, "%s: sent %d, ok %d, received %d, lost %d, p99 %.3f ms", o.label, d.Sent, d.OK, received, r.Load.Lost, r.Load.Latency.P99)
	return nil
}

// sumCounts adds the groups' counts.
func sumCounts(ctx context.Context, groups []group) (Counts, error) {
	var sum Counts
	for _, g := range groups {
		c, err := g.Counts(ctx)
		if err != nil {
			return sum, err
		}
		sum.Received += c.Received
		sum.Logins += c.Logins
		sum.Warm += c.Warm
		sum.Open += c.Open
	}
	return sum, nil
}

// waitFor polls the groups until ok holds or limit passes.
func waitFor(ctx context.Context, groups []group, ok func(Counts) bool, limit time.Duration) error {
	end := time.Now().Add(limit)
	for {
		c, err := sumCounts(ctx, groups)
		if err != nil {
			return err
		}
		if ok(c) || time.Now().After(end) {
			return nil
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// collect merges the groups' reports.
func collect(ctx context.Context, groups []group) (*GroupReport, error) {
	sum := &GroupReport{DropReasons: map[string]int{}, Frames: map[string]int64{}}
	var push Hist
	for _, g := range groups {
		rep, err := g.Report(ctx)
		if err != nil {
			return nil, err
		}
		sum.Received += rep.Received
		sum.Logins += rep.Logins
		sum.Open += rep.Open
		sum.Dropped += rep.Dropped
		sum.BadPushFrame += rep.BadPushFrame
		sum.LoginAt = append(sum.LoginAt, rep.LoginAt...)
		for k, v := range rep.DropReasons {
			sum.DropReasons[k] += v
		}
		for k, v := range rep.Frames {
			sum.Frames[k] += v
		}
		h, err := FromWire(rep.Push)
		if err != nil {
			return nil, err
		}
		push.Merge(h)
	}
	sum.Push = push.Wire()
	return sum, nil
}

// closeGroups closes every group within a bounded time.
func closeGroups(groups []group) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{}, len(groups))
	for _, g := range groups {
		go func() { g.Close(ctx); done <- struct{}{} }()
	}
	for range groups {
		<-done
	}
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// watchCPU reads the CPU time of the -watch-pid processes; one that
// cannot be read is left out.
func watchCPU(watch map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range watch {
		if s, err := readProc(pid); err == nil {
			out[name] = s.CPU
		}
	}
	return out
}

// watchStalls sleeps 1 ms in a loop until done closes, then sends the
// longest oversleep in milliseconds and the number over 10 ms.
func watchStalls(done <-chan struct{}, res chan<- [2]float64) {
	var worst time.Duration
	n := 0
	for {
		select {
		case <-done:
			res <- [2]float64{float64(worst) / 1e6, float64(n)}
			return
		default:
		}
		t := time.Now()
		time.Sleep(time.Millisecond)
		late := time.Since(t) - time.Millisecond
		worst = max(worst, late)
		if late > 10*time.Millisecond {
			n++
		}
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// printSummary writes a run's figures for a human, then its table row.
func printSummary(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s (%s, %s): %d/%d connected in %.1fs (connect p99 %.1f ms)\n",
		r.Label, r.Target, r.Mode, r.Connect.Connected, r.Settings.Connections, r.Connect.Seconds, r.Connect.Latency.P99)
	if r.Server.Measured {
		fmt.Fprintf(w, "  server RSS %s → %s idle → %s after: %.2f KiB per idle connection; CPU connect %.2fs, idle %.2fs, load %.2fs\n",
			mib(r.Server.RSSBefore), mib(r.Server.RSSIdle), mib(r.Server.RSSAfter), r.Server.RSSPerConn/1024,
			r.Server.CPUConnectS, r.Server.CPUIdleS, r.Server.CPULoadS)
	}
	if r.Mode != modeIdle {
		l := r.Load
		fmt.Fprintf(w, "  %s: sent %d at %.0f/s, ok %d, received %d, lost %d, errors %d, late %d\n",
			r.Mode, l.Sent, l.Achieved, l.OK, l.Received, l.Lost, l.Errors, l.Late)
		if r.Mode == modeBatch {
			fmt.Fprintf(w, "  in %d calls of up to %d pushes (%s); the figures are per push\n", l.Calls, r.Settings.Batch, r.Settings.Via)
		}
		fmt.Fprintf(w, "  latency ms: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f; server CPU %.1f µs/op, %.2f syscalls/op; tool %.2f cores; others %.2f cores; tool stalls up to %.1f ms\n",
			l.Latency.P50, l.Latency.P90, l.Latency.P99, l.Latency.P999, l.Latency.Max, r.Server.CPUPerOpMicros, r.Server.SyscallsPerOp, r.Tool.Cores, r.Machine.OthersS/max(r.Machine.Seconds, 1e-9), r.Machine.MaxStallMS)
		for k, v := range l.ErrorKinds {
			fmt.Fprintf(w, "  error ×%d: %s\n", v, k)
		}
	}
	for _, e := range r.Connect.Errors {
		fmt.Fprintf(w, "  connect error: %s\n", e)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	fmt.Fprintln(w, tableHeader)
	fmt.Fprintln(w, tableRule)
	fmt.Fprintln(w, row(r))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

const (
	tableHeader = "| run | conns | RSS / idle conn | p50 | p90 | p99 | p99.9 | max | sent (achieved/s) | lost | errors | server CPU / op | tool CPU |"
	tableRule   = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)

// row renders a run as a markdown table row.
func row(r *Result) string {
	rss, cpu := "n/a", "n/a"
	if r.Server.Measured {
		rss = fmt.Sprintf("%.2f KiB", r.Server.RSSPerConn/1024)
	}
	lat := func(v float64) string { return fmt.Sprintf("%.3f ms", v) }
	l := r.Load
	label := r.Label
	if noisy(r) {
		label += " †"
	}
	cells := []string{label, fmt.Sprint(r.Connect.Connected), rss}
	if r.Mode == modeIdle {
		cells = append(cells, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—")
	} else {
		if r.Server.Measured {
			cpu = fmt.Sprintf("%.1f µs", r.Server.CPUPerOpMicros)
		}
		cells = append(cells, lat(l.Latency.P50), lat(l.Latency.P90), lat(l.Latency.P99), lat(l.Latency.P999), lat(l.Latency.Max),
			fmt.Sprintf("%d (%.0f)", l.Sent, l.Achieved), fmt.Sprint(l.Lost), fmt.Sprint(l.Errors), cpu, fmt.Sprintf("%.2f cores", r.Tool.Cores))
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// noisyCores is how much CPU other processes may take during a rate phase
// before the run is marked as disturbed.
const noisyCores = 0.25

// noisy reports whether other processes took more than noisyCores during
// the rate phase, or the machine left the load tool without a CPU for
// longer than noisyStallMS.
func noisy(r *Result) bool {
	return r.Machine.Seconds > 0 && (r.Machine.OthersS/r.Machine.Seconds > noisyCores || r.Machine.MaxStallMS > noisyStallMS)
}

// noisyStallMS is how long the load tool may go without a CPU before the
// run is marked as disturbed.
const noisyStallMS = 20

// ratio renders a/b as "×N" (how many times b is better when lower is
// better), or "—".
func ratio(base, ours float64) string {
	if base <= 0 || ours <= 0 {
		return "—"
	}
	return fmt.Sprintf("×%.2f", base/ours)
}

// ratioRow compares a baseline run with a scanlogin run, metric by metric:
// baseline ÷ scanlogin, so above 1 means scanlogin is cheaper or faster.
func ratioRow(base, ours *Result) string {
	cells := []string{"baseline ÷ " + ours.Label, "", ratio(base.Server.RSSPerConn, ours.Server.RSSPerConn)}
	if base.Mode == modeIdle || ours.Mode == modeIdle {
		cells = append(cells, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—")
	} else {
		b, o := base.Load.Latency, ours.Load.Latency
		cells = append(cells, ratio(b.P50, o.P50), ratio(b.P90, o.P90), ratio(b.P99, o.P99), ratio(b.P999, o.P999), ratio(b.Max, o.Max),
			"", "", "", ratio(base.Server.CPUPerOpMicros, ours.Server.CPUPerOpMicros), "")
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// Scenario is one table of the report.
type Scenario struct {
	Title string
	Text  string
	Runs  []string // result files; a baseline run followed by a scanlogin run gets a ratio row
	Skip  string   // set: the scenario was not run, and why
}

// ReportSpec is what renderReport assembles.
type ReportSpec struct {
	Title     string
	Intro     string
	Scenarios []Scenario
	Compare   string // markdown after the scenarios: single and batch pushes side by side
	Targets   string // markdown after the figures
	Commands  string // file with the exact commands, shown verbatim
	Kept      string // hand-written notes carried over from the previous report
	History   []string
}

// The standard profile's result files, as scripts/bench.sh names them in
// its work directory. A file <name>.skip instead of <name>.json says why a
// run did not happen.
const (
	filePushScanlogin  = "push-scanlogin"
	filePushWindow     = "push-scanlogin-window" // the same with a fixed client window; optional
	filePushBaseline   = "push-baseline"
	filePushJSON       = "push-scanlogin-json"  // single pushes over the HTTP/JSON API
	fileBatchBaseline  = "batch-baseline"       // the baseline's POST /push/batch
	fileBatchScanlogin = "batch-scanlogin"      // PushBatch over gRPC
	fileBatchJSON      = "batch-scanlogin-json" // POST /v1/push/batch
	fileScanScanlogin  = "scan-scanlogin"
	fileMemScanlogin   = "mem-scanlogin"
	fileMemBaseline    = "mem-baseline"
	fileScaleScanlogin = "scale-scanlogin"
)

// Markers of the parts of docs/benchmarks.md that survive regeneration.
const (
	notesBegin   = "<!-- notes:begin: hand-written; kept when make bench rewrites this file -->"
	notesEnd     = "<!-- notes:end -->"
	historyBegin = "<!-- history:begin: one row per make bench; kept when make bench rewrites this file -->"
	historyEnd   = "<!-- history:end -->"
	historyHead  = "| date (UTC) | revision | RSS / idle conn (19k) | push p50 / p99 (10k) | scan p50 / p99 (10k) | server CPU / push | lost | baseline: RSS / push p99 | other work (cores) | batch ×100: CPU / push, p99 |"
	historyRule  = "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
)

// runReport is the "report" subcommand: docs/benchmarks.md from the
// results of scripts/bench.sh.
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory with the runs' JSON (push-scanlogin.json, ...)")
	commands := fs.String("commands", "", "file with the exact commands that were run")
	out := fs.String("o", "", "write here instead of stdout; its notes and history are kept")
	rev := fs.String("rev", "", "revision measured, for the history")
	addHistory := fs.Bool("add-history", true, "append a row for these runs to the history (false: re-render the same runs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	var prev string
	if *out != "" {
		if b, err := os.ReadFile(*out); err == nil {
			prev = string(b)
		}
	}
	spec := standardSpec(*dir, *commands, *rev, prev, *addHistory)
	var md bytes.Buffer
	if err := renderReport(&md, spec); err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(md.Bytes())
		return err
	}
	return os.WriteFile(*out, md.Bytes(), 0o644)
}

// between returns the text strictly between two marker lines of doc.
func between(doc, begin, end string) (string, bool) {
	_, rest, ok := strings.Cut(doc, begin+"\n")
	if !ok {
		return "", false
	}
	in, _, ok := strings.Cut(rest, end)
	return in, ok
}

// standardSpec describes the standard profile's report.
func standardSpec(dir, commands, rev, prev string, addHistory bool) *ReportSpec {
	path := func(name string) string { return filepath.Join(dir, name+".json") }
	skip := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name+".skip"))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	get := func(name string) *Result {
		r, err := loadResult(path(name))
		if err != nil {
			return nil
		}
		return r
	}
	profile := func(name, fallback string) string {
		r := get(name)
		if r == nil {
			return fallback
		}
		s := fmt.Sprintf("%d connections to %d instance(s)", r.Settings.Connections, r.Settings.Instances)
		if r.Mode != modeIdle {
			s += fmt.Sprintf(", then %s at %.0f/s for %g s", r.Mode, r.Settings.Rate, r.Settings.DurationS)
		}
		return s
	}
	spec := &ReportSpec{
		Title: "Benchmarks",
		Intro: `Written by ` + "`make bench`" + ` (scripts/bench.sh with the load tool in scripts/loadtest/); do not edit the figures by hand: run it again. Text between the notes markers below is kept when the file is rewritten, and so is the history table at the end.

Every run starts fresh servers (the WeChat simulator, wechat-callback and push-server as separate processes, LOG_LEVEL=warn, LIMIT_CONNS_PER_IP=0, LIMIT_QR_PER_IP=0), opens the connections from the load tool on the same machine (source addresses spread over 127.0.0.2-17), waits 10 s, reads the server's RSS (VmRSS) from /proc, then drives the requests at a fixed rate, open loop, and times each one from just before the call to the arrival of its frame in the load tool's WebSocket reader. The baseline is the gorilla/websocket chat example made push-by-id (two goroutines per connection, default buffers, push over HTTP, and a batch endpoint that decodes a JSON array and pushes each in turn: ` + "`loadtest baseline`" + `), run the same way side by side. Ratio rows are baseline ÷ scanlogin: above 1, scanlogin costs less or answers faster.

Columns: RSS / idle conn = (RSS after connecting and settling − RSS before any connection) ÷ connections; p50…max = latency; lost = requests that succeeded but whose frame never arrived (5 s grace); server CPU / op = push-server utime+stime during the rate phase ÷ requests (a request is one pushed message, in batch runs too); tool CPU = CPU of the load tool's processes during the rate phase ÷ its length. The machine is shared with other work while this runs (see the load average in each run's notes): figures are noisy, tails most of all.`,
		Commands: commands,
	}
	pushRuns := []string{path(filePushBaseline), path(filePushScanlogin)}
	for _, name := range []string{filePushWindow, filePushJSON} {
		if get(name) != nil {
			pushRuns = append(pushRuns, path(name))
		}
	}
	batchSkip := skip(fileBatchScanlogin)
	if batchSkip == "" && get(fileBatchScanlogin) == nil && get(fileBatchJSON) == nil {
		batchSkip = "no batch run in this report"
	}
	spec.Scenarios = []Scenario{
		{Title: "Push, 10,000 connections",
			Text: "Push over gRPC (scanlogin) or HTTP POST /push?id=N (baseline) to a random connection per request: " + profile(filePushScanlogin, "not run") + ". " +
				"The scanlogin run uses grpc-go's client defaults, under which the client pings the server after each answer (bandwidth estimation); the \"fixed window\" run, on fresh servers, is the same with `-grpc-window 1048576` (a fixed flow-control window, no pings), as wechat-callback's client is configured. " +
				"The \"HTTP/JSON\" run pushes through push-server's `POST /v1/push` instead (`-via http`). Every HTTP push, the baseline's included, goes through the same client of the load tool (one request at a time per kept-alive connection).",
			Runs: pushRuns, Skip: skip(filePushScanlogin)},
		{Title: "Batch pushes, 100 per call, 10,000 connections",
			Text: "The same pushes at the same rate of messages, 100 per call (`-mode batch -batch 100`: 20 calls a second at 2,000 messages a second), to the same sequence of random connections as the single runs: gRPC `PushBatch`, push-server's `POST /v1/push/batch`, and the baseline's `POST /push/batch` (a JSON array of `{id, data}` decoded with encoding/json, each pushed in turn). " +
				"Each message is timed from just before its call left to the arrival of its frame, so its latency includes the frames the server wrote before it in the same call, and, on the same 2 cores, the load tool's reading of those frames; the server's CPU, the requests, lost and errors are per message, not per call. " + profile(fileBatchScanlogin, "PushBatch not run") + ".",
			Runs: []string{path(fileBatchBaseline), path(fileBatchScanlogin), path(fileBatchJSON)}, Skip: batchSkip},
		{Title: "Scan to login, 10,000 connections",
			Text: "Signed WeChat SCAN events (safe mode: AES-encrypted, signature and msg_signature) POSTed to wechat-callback for distinct waiting sessions, timed from just before the POST to the login frame; wechat-callback calls Notify on the push server, which sends the login frame and closes with 1000. Each session logs in once, so at 2,000/s with 10,000 connections the run lasts 5 s (10,000 scans), not 20 s: " + profile(fileScanScanlogin, "not run") + ". The baseline has no login flow.",
			Runs: []string{path(fileScanScanlogin)}, Skip: skip(fileScanScanlogin)},
		{Title: "Memory, 19,000 connections on one instance",
			Text: "The load tool splits itself over two processes (at most 15,000 connections each: open files are capped at 20,000 per process). " + profile(fileMemScanlogin, "not run") + ".",
			Runs: []string{path(fileMemBaseline), path(fileMemScanlogin)}, Skip: skip(fileMemScanlogin)},
		{Title: "Scale-out: 3 instances + Redis, 50,000 connections",
			Text: "Connections spread round-robin over the instances, opened at 1,000/s with at most 64 handshakes in flight per load-tool process (the simulator's QR creation is the limit); each Push enters the next instance round-robin, so most land on an instance that does not hold the connection. " + profile(fileScaleScanlogin, "not run") + ".",
			Runs: []string{path(fileScaleScanlogin)}, Skip: skip(fileScaleScanlogin)},
	}
	var perMessage []*Result
	for _, name := range []string{filePushBaseline, filePushScanlogin, filePushWindow, filePushJSON, fileBatchBaseline, fileBatchScanlogin, fileBatchJSON} {
		if r := get(name); r != nil {
			perMessage = append(perMessage, r)
		}
	}
	spec.Compare = compare(perMessage)
	spec.Targets = targets(targetRuns{
		mem: get(fileMemScanlogin), push: get(filePushScanlogin), scan: get(fileScanScanlogin),
		window: get(filePushWindow), pushJSON: get(filePushJSON), batch: get(fileBatchScanlogin), batchJSON: get(fileBatchJSON),
		pushBase: get(filePushBaseline),
	})
	if kept, ok := between(prev, notesBegin, notesEnd); ok {
		spec.Kept = kept
	}
	if h, ok := between(prev, historyBegin, historyEnd); ok {
		for line := range strings.Lines(h) {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| date") && !strings.HasPrefix(line, "| ---") {
				spec.History = append(spec.History, line)
			}
		}
	}
	if addHistory {
		spec.History = append(spec.History, historyRow(rev, get(fileMemScanlogin), get(filePushScanlogin), get(fileScanScanlogin), get(fileMemBaseline), get(filePushBaseline), get(fileBatchScanlogin)))
	}
	return spec
}

// targetRuns are the runs the targets are read from; any may be nil.
type targetRuns struct {
	mem, push, scan                    *Result
	window, pushJSON, batch, batchJSON *Result // more scanlogin push runs
	pushBase                           *Result // the baseline's single HTTP push
}

// targets compares the figures with the targets.
func targets(t targetRuns) string {
	var b strings.Builder
	b.WriteString("## Targets\n\n| target | measured | met |\n| --- | ---: | --- |\n")
	line := func(what, measured string, ok bool, have bool) {
		if !have {
			fmt.Fprintf(&b, "| %s | not run | — |\n", what)
			return
		}
		mark := "no"
		if ok {
			mark = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", what, measured, mark)
	}
	mem, push, scan := t.mem, t.push, t.scan
	if mem != nil {
		line("RSS per idle connection ≤ 4 KiB at 19,000 connections, one instance",
			fmt.Sprintf("%.2f KiB at %d", mem.Server.RSSPerConn/1024, mem.Connect.Connected), mem.Server.RSSPerConn <= 4096, mem.Server.Measured)
	} else {
		line("RSS per idle connection ≤ 4 KiB at 19,000 connections, one instance", "", false, false)
	}
	// p99 ≤ 1 ms at 2,000 messages/s, 0 lost, single or batch.
	fast := func(what string, r *Result) {
		if r == nil {
			line(what, "", false, false)
			return
		}
		l := r.Load
		line(what, fmt.Sprintf("%.3f ms, %d lost, %d errors", l.Latency.P99, l.Lost, l.Errors), l.Latency.P99 <= 1 && l.Lost == 0 && l.Errors == 0, true)
	}
	fast("Push p99 ≤ 1 ms at 2,000/s, 10,000 connections, 0 lost", push)
	if push != nil {
		line("push-server CPU per push ≤ 50 µs", fmt.Sprintf("%.1f µs", push.Server.CPUPerOpMicros), push.Server.CPUPerOpMicros <= 50, push.Server.Measured)
	} else {
		line("push-server CPU per push ≤ 50 µs", "", false, false)
	}
	if t.pushJSON != nil {
		fast("Push over HTTP/JSON: p99 ≤ 1 ms at 2,000/s, 0 lost", t.pushJSON)
	}
	fast("batch of 100 over gRPC: p99 ≤ 1 ms at 2,000 messages/s, 0 lost", t.batch)
	if t.batchJSON != nil {
		fast("batch of 100 over HTTP/JSON: p99 ≤ 1 ms at 2,000 messages/s, 0 lost", t.batchJSON)
	}
	cheap := func(what string, r *Result) {
		if r == nil {
			line(what, "", false, false)
			return
		}
		line(what, fmt.Sprintf("%.1f µs", r.Server.CPUPerOpMicros), r.Server.CPUPerOpMicros <= 20, r.Server.Measured)
	}
	cheap("batch of 100 over gRPC: push-server CPU per message ≤ 20 µs", t.batch)
	if t.batchJSON != nil {
		cheap("batch of 100 over HTTP/JSON: push-server CPU per message ≤ 20 µs", t.batchJSON)
	}
	// Single pushes cost push-server no more than the baseline's HTTP push
	// costs the baseline, in the same make bench.
	asBase := func(what string, r *Result) {
		base := t.pushBase
		if r == nil || base == nil || !r.Server.Measured || !base.Server.Measured {
			line(what, "", false, false)
			return
		}
		line(what, fmt.Sprintf("%.1f µs against %.1f µs", r.Server.CPUPerOpMicros, base.Server.CPUPerOpMicros), r.Server.CPUPerOpMicros <= base.Server.CPUPerOpMicros, true)
	}
	asBase("single Push over gRPC: push-server CPU per push ≤ the baseline's per HTTP push, same run", push)
	if t.window != nil {
		asBase("single Push over gRPC, fixed window: CPU per push ≤ the baseline's", t.window)
	}
	if t.pushJSON != nil {
		asBase("single Push over HTTP/JSON: CPU per push ≤ the baseline's", t.pushJSON)
	}
	if scan != nil {
		l := scan.Load
		line("scan-to-login p99 ≤ 2 ms at 2,000/s, 10,000 connections, 0 lost",
			fmt.Sprintf("%.3f ms, %d lost, %d errors", l.Latency.P99, l.Lost, l.Errors), l.Latency.P99 <= 2 && l.Lost == 0 && l.Errors == 0, true)
	} else {
		line("scan-to-login p99 ≤ 2 ms at 2,000/s, 10,000 connections, 0 lost", "", false, false)
	}
	return b.String()
}

// compare renders the push runs side by side, per pushed message: each
// run's CPU is also given as the baseline's of the same kind (single or
// batch) ÷ its own.
func compare(runs []*Result) string {
	if len(runs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("## Per pushed message: single and batch pushes\n\n" +
		"The push runs above, one message at a time or 100 per call, at the same rate of messages. Server CPU and syscalls are per message; the last column is the baseline's CPU per message in the run of the same kind (single or batch) ÷ this run's: above 1, this run costs its server less.\n\n" +
		"| run | way | per call | calls/s | p50 | p99 | lost | errors | server CPU / message | syscalls / message | baseline ÷ this (CPU) |\n" +
		"| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	var base [2]*Result // single, batch
	kind := func(r *Result) int {
		if r.Settings.Batch > 1 {
			return 1
		}
		return 0
	}
	for _, r := range runs {
		if r.Target == targetBaseline && base[kind(r)] == nil {
			base[kind(r)] = r
		}
	}
	for _, r := range runs {
		way := "gRPC"
		switch {
		case r.Target == targetBaseline:
			way = "HTTP"
		case r.Settings.Via == viaHTTP:
			way = "HTTP/JSON"
		}
		per := max(r.Settings.Batch, 1)
		cpu, sys, vs := "n/a", "n/a", "—"
		if r.Server.Measured {
			cpu = fmt.Sprintf("%.1f µs", r.Server.CPUPerOpMicros)
			sys = fmt.Sprintf("%.2f", r.Server.SyscallsPerOp)
			if bb := base[kind(r)]; bb != nil && bb != r && bb.Server.Measured {
				vs = ratio(bb.Server.CPUPerOpMicros, r.Server.CPUPerOpMicros)
			}
		}
		label := r.Label
		if noisy(r) {
			label += " †"
		}
		l := r.Load
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.3f ms | %.3f ms | %d | %d | %s | %s | %s |\n",
			label, way, per, r.Settings.Rate/float64(per), l.Latency.P50, l.Latency.P99, l.Lost, l.Errors, cpu, sys, vs)
	}
	return b.String()
}

// historyRow summarises this report in one row of the history table.
func historyRow(rev string, mem, push, scan, memBase, pushBase, batch *Result) string {
	na := "—"
	kib := func(r *Result) string {
		if r == nil || !r.Server.Measured {
			return na
		}
		return fmt.Sprintf("%.2f KiB", r.Server.RSSPerConn/1024)
	}
	p99 := func(r *Result) string {
		if r == nil {
			return na
		}
		return fmt.Sprintf("%.3f ms", r.Load.Latency.P99)
	}
	both := func(r *Result) string {
		if r == nil {
			return na
		}
		return fmt.Sprintf("%.2f / %.2f ms", r.Load.Latency.P50, r.Load.Latency.P99)
	}
	cpu, batchCell, lost, others := na, na, 0, []string{}
	when := time.Now()
	for _, r := range []*Result{push, scan, mem, batch} {
		if r == nil {
			continue
		}
		lost += r.Load.Lost
		if !r.Started.IsZero() && r.Started.Before(when) {
			when = r.Started
		}
		if r.Machine.Seconds > 0 {
			others = append(others, fmt.Sprintf("%.2f", r.Machine.OthersS/r.Machine.Seconds))
		}
	}
	if push != nil {
		cpu = fmt.Sprintf("%.1f µs", push.Server.CPUPerOpMicros)
	}
	if batch != nil {
		batchCell = fmt.Sprintf("%.1f µs, %.3f ms", batch.Server.CPUPerOpMicros, batch.Load.Latency.P99)
	}
	if rev == "" {
		rev = na
	}
	if len(others) == 0 {
		others = []string{na}
	}
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %d | %s / %s | %s | %s |", when.UTC().Format("2006-01-02 15:04"), rev,
		kib(mem), both(push), both(scan), cpu, lost, kib(memBase), p99(pushBase), strings.Join(others, ", "), batchCell)
}

func loadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func renderReport(w io.Writer, spec *ReportSpec) error {
	fmt.Fprintf(w, "# %s\n\n", spec.Title)
	if spec.Intro != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(spec.Intro))
	}
	fmt.Fprintf(w, "%s\n%s%s\n\n", notesBegin, spec.Kept, notesEnd)
	var when time.Time
	for _, sc := range spec.Scenarios {
		for _, p := range sc.Runs {
			if r, err := loadResult(p); err == nil && !r.Started.IsZero() && (when.IsZero() || r.Started.Before(when)) {
				when = r.Started
			}
		}
	}
	if when.IsZero() {
		when = time.Now()
	}
	fmt.Fprintf(w, "## Machine\n\n%s\n", machine(when))
	for _, sc := range spec.Scenarios {
		fmt.Fprintf(w, "## %s\n\n", sc.Title)
		if sc.Text != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(sc.Text))
		}
		if sc.Skip != "" {
			fmt.Fprintf(w, "Not run: %s\n\n", sc.Skip)
			continue
		}
		fmt.Fprintln(w, tableHeader)
		fmt.Fprintln(w, tableRule)
		var base *Result // the scenario's baseline run, if any
		var notes []string
		marked := false
		for _, p := range sc.Runs {
			r, err := loadResult(p)
			if err != nil {
				fmt.Fprintf(w, "| %s | (no result: %v) |\n", p, err)
				continue
			}
			fmt.Fprintln(w, row(r))
			switch {
			case r.Target == targetBaseline:
				base = r
			case base != nil && r.Target == targetScanlogin:
				fmt.Fprintln(w, ratioRow(base, r))
			}
			marked = marked || noisy(r)
			notes = append(notes, runNotes(r)...)
		}
		fmt.Fprintln(w)
		if marked {
			fmt.Fprintf(w, "† Disturbed: during the rate phase other processes on the machine used more than %.2f of its cores, or the load tool waited more than %d ms for a CPU. Such a run's latency tail says more about the machine than about the server.\n\n", noisyCores, noisyStallMS)
		}
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		if len(notes) > 0 {
			fmt.Fprintln(w)
		}
	}
	if spec.Compare != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(spec.Compare))
	}
	if spec.Targets != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(spec.Targets))
	}
	if spec.Commands != "" {
		b, err := os.ReadFile(spec.Commands)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "## Commands\n\nExactly what `make bench` ran (scripts/bench.sh):\n\n```sh\n%s```\n\n", b)
	}
	fmt.Fprintf(w, "## History\n\n%s\n%s\n%s\n", historyBegin, historyHead, historyRule)
	for _, h := range spec.History {
		fmt.Fprintln(w, h)
	}
	fmt.Fprintln(w, historyEnd)
	return nil
}

// runNotes lists what a reader of a run's row should know.
func runNotes(r *Result) []string {
	var out []string
	p := func(format string, a ...any) { out = append(out, r.Label+": "+fmt.Sprintf(format, a...)) }
	p("%d connections from %d process(es) to %d instance(s), opened in %.1f s at up to %.0f/s (dial to first frame p50 %.2f ms, p99 %.2f ms); server RSS %s before, %s idle, %s after; server CPU %.2f s while connecting, %.2f s in %.0f s idle",
		r.Connect.Connected, r.Settings.Processes, r.Settings.Instances, r.Connect.Seconds, r.Settings.ConnectRate, r.Connect.Latency.P50, r.Connect.Latency.P99,
		mib(r.Server.RSSBefore), mib(r.Server.RSSIdle), mib(r.Server.RSSAfter), r.Server.CPUConnectS, r.Server.CPUIdleS, r.Settings.SettleS)
	if len(r.WatchedConnect) > 0 {
		names := make([]string, 0, len(r.WatchedConnect))
		for k := range r.WatchedConnect {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			p("%s used %.2f CPU s while the connections opened", k, r.WatchedConnect[k])
		}
	}
	if r.Mode == modeBatch {
		p("batch: %d calls of up to %d pushes (%.0f calls/s); requests below are pushes", r.Load.Calls, r.Settings.Batch, r.Settings.Rate/float64(max(r.Settings.Batch, 1)))
	}
	if r.Mode != modeIdle {
		p("%s: %d requests planned at %.0f/s for %g s, %d sent in %.1f s, %d ok, %d received, %d late (max %.1f ms behind); server CPU %.2f s, %.2f read and write syscalls per request; load tool %.2f CPU s (%.2f cores)",
			r.Mode, r.Settings.Requests, r.Settings.Rate, r.Settings.DurationS, r.Load.Sent, r.Load.Seconds, r.Load.OK, r.Load.Received, r.Load.Late, r.Load.MaxBehindMS,
			r.Server.CPULoadS, r.Server.SyscallsPerOp, r.Tool.CPULoadS, r.Tool.Cores)
		if r.Machine.Seconds > 0 {
			p("other processes on the machine used about %.2f CPU s (%.2f cores) during the rate phase (from /proc/stat, approximate); steal %.2f s; the load tool waited up to %.1f ms for a CPU (%d waits over 10 ms)",
				r.Machine.OthersS, r.Machine.OthersS/r.Machine.Seconds, r.Machine.StealS, r.Machine.MaxStallMS, r.Machine.Stalls10ms)
		}
		names := make([]string, 0, len(r.Watched))
		for k := range r.Watched {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			p("%s used %.2f CPU s in the rate phase", k, r.Watched[k])
		}
		for k, v := range r.Load.ErrorKinds {
			p("error ×%d: %s", v, k)
		}
	}
	if r.LoadAvg[0] != "" {
		p("machine load average %s at the start, %s at the end (2 CPUs)", r.LoadAvg[0], r.LoadAvg[1])
	}
	if r.Connect.Failed > 0 {
		p("%d connections failed: %s", r.Connect.Failed, strings.Join(r.Connect.Errors, "; "))
	}
	if r.Conns.Dropped > 0 {
		p("%d connections dropped: %v", r.Conns.Dropped, r.Conns.DropReasons)
	}
	for _, n := range r.Notes {
		p("%s", n)
	}
	return out
}

// machine describes this machine for the report, with when the runs
// started.
func machine(when time.Time) string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb int64
				fmt.Sscan(rest, &kb)
				mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("| | |\n| --- | --- |\n| CPUs (nproc) | %d |\n| model | %s |\n| memory | %s |\n| kernel | %s |\n| Go | %s %s/%s |\n| measured | %s |\n",
		runtime.NumCPU(), model, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, when.UTC().Format("2006-01-02 15:04 MST"))
}

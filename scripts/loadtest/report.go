package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
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
		fmt.Fprintf(w, "  latency ms: p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f; server CPU %.1f µs/op; tool %.2f cores\n",
			l.Latency.P50, l.Latency.P90, l.Latency.P99, l.Latency.P999, l.Latency.Max, r.Server.CPUPerOpMicros, r.Tool.Cores)
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
	cells := []string{r.Label, fmt.Sprint(r.Connect.Connected), rss}
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
	cells := []string{"baseline ÷ scanlogin", "", ratio(base.Server.RSSPerConn, ours.Server.RSSPerConn)}
	if base.Mode == modeIdle || ours.Mode == modeIdle {
		cells = append(cells, "—", "—", "—", "—", "—", "—", "—", "—", "—", "—")
	} else {
		b, o := base.Load.Latency, ours.Load.Latency
		cells = append(cells, ratio(b.P50, o.P50), ratio(b.P90, o.P90), ratio(b.P99, o.P99), ratio(b.P999, o.P999), ratio(b.Max, o.Max),
			"", "", "", ratio(base.Server.CPUPerOpMicros, ours.Server.CPUPerOpMicros), "")
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// Scenario groups the runs of one table in the report.
type Scenario struct {
	Title string   `json:"title"`
	Text  string   `json:"text"`
	Runs  []string `json:"runs"` // JSON files; a baseline run followed by a scanlogin run gets a ratio row
	Skip  string   `json:"skip"` // set: the scenario was not run, and why
}

// ReportSpec is what "loadtest report" assembles.
type ReportSpec struct {
	Title     string     `json:"title"`
	Intro     string     `json:"intro"`
	Commands  string     `json:"commands"` // file with the exact commands, shown verbatim
	Scenarios []Scenario `json:"scenarios"`
	Targets   string     `json:"targets"` // markdown appended after the figures
	Outro     string     `json:"outro"`
}

// runReport is the "report" subcommand: it renders a ReportSpec (JSON
// file) with the runs it names into markdown.
func runReport(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	specPath := fs.String("spec", "", "JSON ReportSpec")
	out := fs.String("o", "", "write here instead of stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *specPath == "" {
		return errors.New("-spec is required")
	}
	b, err := os.ReadFile(*specPath)
	if err != nil {
		return err
	}
	var spec ReportSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("%s: %w", *specPath, err)
	}
	var md bytes.Buffer
	if err := renderReport(&md, &spec); err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(md.Bytes())
		return err
	}
	return os.WriteFile(*out, md.Bytes(), 0o644)
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
	fmt.Fprintf(w, "## Machine\n\n%s\n", machine())
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
		var prev *Result
		var notes []string
		for _, p := range sc.Runs {
			r, err := loadResult(p)
			if err != nil {
				fmt.Fprintf(w, "| %s | (no result: %v) |\n", p, err)
				prev = nil
				continue
			}
			fmt.Fprintln(w, row(r))
			if prev != nil && prev.Target == targetBaseline && r.Target == targetScanlogin {
				fmt.Fprintln(w, ratioRow(prev, r))
			}
			prev = r
			notes = append(notes, runNotes(r)...)
		}
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
		if len(notes) > 0 {
			fmt.Fprintln(w)
		}
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
	if spec.Outro != "" {
		fmt.Fprintf(w, "%s\n", strings.TrimSpace(spec.Outro))
	}
	return nil
}

// runNotes lists what a reader of a run's row should know.
func runNotes(r *Result) []string {
	var out []string
	p := func(format string, a ...any) { out = append(out, r.Label+": "+fmt.Sprintf(format, a...)) }
	p("%d connections from %d process(es) to %d instance(s), opened in %.1f s (dial to first frame p50 %.2f ms, p99 %.2f ms); server RSS %s before, %s idle, %s after; server CPU %.2f s while connecting, %.2f s in %.0f s idle",
		r.Connect.Connected, r.Settings.Processes, r.Settings.Instances, r.Connect.Seconds, r.Connect.Latency.P50, r.Connect.Latency.P99,
		mib(r.Server.RSSBefore), mib(r.Server.RSSIdle), mib(r.Server.RSSAfter), r.Server.CPUConnectS, r.Server.CPUIdleS, r.Settings.SettleS)
	if r.Mode != modeIdle {
		p("%s: %d requests planned at %.0f/s for %.0f s, %d sent in %.1f s, %d ok, %d received, %d late (max %.1f ms behind); server CPU %.2f s; load tool %.2f CPU s (%.2f cores)",
			r.Mode, r.Settings.Requests, r.Settings.Rate, r.Settings.DurationS, r.Load.Sent, r.Load.Seconds, r.Load.OK, r.Load.Received, r.Load.Late, r.Load.MaxBehindMS,
			r.Server.CPULoadS, r.Tool.CPULoadS, r.Tool.Cores)
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

// machine describes this machine for the report.
func machine() string {
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
	return fmt.Sprintf("| | |\n| --- | --- |\n| CPUs (nproc) | %d |\n| model | %s |\n| memory | %s |\n| kernel | %s |\n| Go | %s %s/%s |\n| date | %s |\n",
		runtime.NumCPU(), model, mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format("2006-01-02 15:04 MST"))
}

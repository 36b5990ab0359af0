// Package settings is the one environment parser of scanlogin's programs.
//
// Each program's config package makes an [Env] on the process environment,
// reads every variable with a typed getter (which also applies the default
// and checks the value), and then asks [Env.Err]: the first bad setting, as
// one line that names it, such as
//
//	config: LOGIN_TTL: "2" is not a duration like 120s or 5m
//
// A variable that is unset or blank takes its default, except where a getter
// says otherwise ([Env.Secret], [Env.Text]). [Main] and [Start] are how
// each program begins: signals, its one flag, its settings and its logger.
package settings

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main is each program's main: it runs run with the command line, the
// environment and stderr until run returns, its context cancelled by SIGINT
// (Ctrl-C) or SIGTERM so that run can shut down gracefully. A failure ends
// the process with status 1 and one line, "program: error".
func Main(program string, run func(ctx context.Context, args []string, lookupenv func(string) (string, bool), stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
		os.Exit(1)
	}
}

// Start is how each program begins. It reads the command line, which
// takes one flag, -check-config; loads the settings through lookupenv with
// load; and makes the program's logger, text lines on stderr at the level
// that level reads from the settings. With -check-config it logs the
// settings (their LogValue leaves secrets out) and reports done: the
// program ends there, having started nothing.
func Start[C any](program string, args []string, lookupenv func(string) (string, bool), stderr io.Writer,
	load func(func(string) (string, bool)) (C, error), level func(C) slog.Level) (cfg C, log *slog.Logger, done bool, err error) {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	fs.SetOutput(stderr)
	check := fs.Bool("check-config", false, "validate the settings, log those that are not secret, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-check-config]\nSettings come from the environment; see the README.\n", program)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, false, err
	}
	if fs.NArg() > 0 {
		return cfg, nil, false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg, err = load(lookupenv); err != nil {
		return cfg, nil, false, err
	}
	log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level(cfg)}))
	if *check {
		log.Info("config ok", "config", cfg)
		return cfg, log, true, nil
	}
	return cfg, log, false, nil
}

// Env reads a program's settings and keeps the first bad one.
type Env struct {
	lookup func(string) (string, bool)
	err    error
}

// NewEnv reads settings through lookup: os.LookupEnv, or [Map] in tests.
// Only [Env.Text] tells a variable set to "" from an unset one.
func NewEnv(lookup func(string) (string, bool)) *Env { return &Env{lookup: lookup} }

// Map is a lookup over m, for tests: a key of m is a variable that is set.
func Map(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// Check records err, if any, as the problem with the setting name; only the
// first problem is kept.
func (e *Env) Check(name string, err error) {
	if err != nil && e.err == nil {
		e.err = fmt.Errorf("config: %s: %w", name, err)
	}
}

// Err is the first problem recorded, as one line naming the setting.
func (e *Env) Err() error { return e.err }

// String returns the trimmed value of name, or def when it is unset or blank.
func (e *Env) String(name, def string) string {
	v, _ := e.lookup(name)
	if v = strings.TrimSpace(v); v != "" {
		return v
	}
	return def
}

// Secret returns the value of name exactly as set ("" when unset): secrets
// are compared byte for byte, so they are not trimmed.
func (e *Env) Secret(name string) string {
	v, _ := e.lookup(name)
	return v
}

// Required returns the trimmed value of name and records a problem when it
// is unset or blank.
func (e *Env) Required(name string) string {
	v := e.String(name, "")
	if v == "" {
		e.Check(name, errors.New("required"))
	}
	return v
}

// Text returns a text meant for people, as set: def when name is unset, and
// "" (no text) when it is set to the empty string or to "-".
func (e *Env) Text(name, def string) string {
	v, ok := e.lookup(name)
	switch {
	case !ok:
		return def
	case v == "-":
		return ""
	}
	return v
}

// Duration parses a Go duration ("120s", "5m") within lo..hi.
func (e *Env) Duration(name string, def, lo, hi time.Duration) time.Duration {
	s := e.String(name, "")
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		e.Check(name, fmt.Errorf("%q is not a duration like 120s or 5m", s))
		return def
	}
	if d < lo || d > hi {
		e.Check(name, fmt.Errorf("%s is outside %s..%s", d, lo, hi))
	}
	return d
}

// Int parses a whole number within lo..hi (math.MaxInt: no upper bound).
func (e *Env) Int(name string, def, lo, hi int) int {
	s := e.String(name, "")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		want := fmt.Sprintf("%d..%d", lo, hi)
		if hi == math.MaxInt {
			want = fmt.Sprintf("≥ %d", lo)
		}
		e.Check(name, fmt.Errorf("%q is not a whole number %s", s, want))
		return def
	}
	return n
}

// Bool parses true or false (also 1, 0, t, f as strconv.ParseBool reads).
func (e *Env) Bool(name string, def bool) bool {
	s := e.String(name, "")
	if s == "" {
		return def
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		e.Check(name, fmt.Errorf("%q is not true or false", s))
		return def
	}
	return b
}

// List splits a comma list, trimming blanks and dropping empty items.
func (e *Env) List(name, def string) []string {
	var out []string
	for _, p := range strings.Split(e.String(name, def), ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// HostPort returns a listen or dial address like ":8080" or
// "127.0.0.1:9090". An empty result (def "") means off and is not checked.
func (e *Env) HostPort(name, def string) string {
	s := e.String(name, def)
	if s == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		e.Check(name, fmt.Errorf("%q is not host:port", s))
	}
	return s
}

// URL returns an absolute http or https URL. An empty result (def "") means
// off and is not checked.
func (e *Env) URL(name, def string) string {
	s := e.String(name, def)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.Check(name, fmt.Errorf("%q is not an http(s) URL", s))
	}
	return s
}

// LogLevel parses debug, info, warn or error; unset is info.
func (e *Env) LogLevel(name string) slog.Level {
	var l slog.Level
	s := e.String(name, "info")
	if err := l.UnmarshalText([]byte(s)); err != nil {
		e.Check(name, fmt.Errorf("%q is not debug, info, warn or error", s))
		return slog.LevelInfo
	}
	return l
}

// Rate parses a rate setting (see [ParseRate]).
func (e *Env) Rate(name, def string) Rate {
	r, err := ParseRate(e.String(name, def))
	e.Check(name, err)
	return r
}

// Rate is "N per Per", as written "N/s", "N/m" or "N/h". The zero Rate
// means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

var rateUnits = map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}

// ParseRate parses "N/s", "N/m", "N/h" with N above 0, or "0" for no limit.
func ParseRate(s string) (Rate, error) {
	if s == "0" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	per := rateUnits[unit]
	if !ok || err != nil || n <= 0 || per == 0 {
		return Rate{}, fmt.Errorf("%q is not N/s, N/m or N/h with N above 0, or 0 for no limit", s)
	}
	return Rate{N: n, Per: per}, nil
}

// String formats r as ParseRate reads it.
func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	for unit, per := range rateUnits {
		if per == r.Per {
			return fmt.Sprintf("%d/%s", r.N, unit)
		}
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

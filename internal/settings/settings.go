// Package settings holds the small parsers scanlogin's programs use to read
// their environment, so that every program reports a bad setting the same
// way: the caller prefixes the variable's name.
package settings

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Duration parses a Go duration ("120s", "5m") within lo..hi.
func Duration(s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration like 120s or 5m", s)
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%s is outside %s..%s", d, lo, hi)
	}
	return d, nil
}

// Count parses a whole number ≥ 0.
func Count(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a whole number ≥ 0", s)
	}
	return n, nil
}

// Required fails for an empty value.
func Required(s string) error {
	if s == "" {
		return errors.New("required")
	}
	return nil
}

// HostPort checks a listen or dial address like ":8080" or "127.0.0.1:9090".
func HostPort(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	return nil
}

// HTTPURL checks an absolute http or https URL.
func HTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// List splits a comma list, trimming blanks and dropping empty items.
func List(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Env reads a program's settings through getenv and keeps the first bad
// one, named by its variable.
type Env struct {
	getenv func(string) string
	err    error
}

// NewEnv reads settings through getenv (os.Getenv, or a test's map).
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// Get returns the trimmed value of name, or def when it is unset or blank.
func (e *Env) Get(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
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

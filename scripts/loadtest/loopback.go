package main

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// The load tool only ever talks to this machine: every target is checked
// here before anything is sent.

// loopbackHost reports whether host (no port) is a loopback IP literal or
// "localhost".
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.IsLoopback()
}

// checkURL parses a URL with one of the schemes and refuses a host that is
// not loopback.
func checkURL(flagName, raw string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("-%s: %q is not a URL", flagName, raw)
	}
	ok := false
	for _, s := range schemes {
		ok = ok || u.Scheme == s
	}
	if !ok {
		return nil, fmt.Errorf("-%s: %q: scheme must be one of %v", flagName, raw, schemes)
	}
	if !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("-%s: %q is not a loopback address; the load tool only targets this machine", flagName, raw)
	}
	return u, nil
}

// checkAddr checks a host:port and refuses a host that is not loopback.
func checkAddr(flagName, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-%s: %q is not host:port", flagName, addr)
	}
	if !loopbackHost(host) {
		return fmt.Errorf("-%s: %q is not a loopback address; the load tool only targets this machine", flagName, addr)
	}
	return nil
}

// splitList splits a comma list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

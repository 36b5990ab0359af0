package config

import (
	"strings"
	"testing"
)

func TestAPIAddr(t *testing.T) {
	c, err := load(nil)
	if err != nil || c.APIAddr != "127.0.0.1:9091" {
		t.Fatalf("default PUSH_API_ADDR = %q, %v", c.APIAddr, err)
	}
	if c, err := load(map[string]string{"PUSH_API_ADDR": "10.0.0.1:80"}); err != nil || c.APIAddr != "10.0.0.1:80" {
		t.Fatalf("PUSH_API_ADDR = %v, %v", c, err)
	}
	if _, err := load(map[string]string{"PUSH_API_ADDR": "9091"}); err == nil || !strings.Contains(err.Error(), "PUSH_API_ADDR") {
		t.Fatalf("bad PUSH_API_ADDR: %v", err)
	}
}

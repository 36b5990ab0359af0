package redistest

import (
	"strings"
	"testing"
)

func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Start: %v", err)
	}
	if want := "redis://" + s.Addr() + "/0"; s.URL() != want {
		t.Errorf("URL() = %q, want %q", s.URL(), want)
	}
	addr := s.Addr()
	s.Kill()
	if err := ping(addr); err == nil {
		t.Fatal("ping after Kill succeeded")
	}
	s.Kill() // idempotent
	s.Restart()
	if s.Addr() != addr {
		t.Errorf("Restart moved from %s to %s", addr, s.Addr())
	}
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("ping after Restart: %v", err)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want loopback", s.Addr())
	}
}

func TestTwoServers(t *testing.T) {
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers on %s", a.Addr())
	}
}

func TestCluster(t *testing.T) {
	nodes := StartCluster(t, 3)
	for _, s := range nodes {
		info, err := command(s.Addr(), "CLUSTER INFO")
		if err != nil || !strings.Contains(info, "cluster_known_nodes:3") || !strings.Contains(info, "cluster_slots_assigned:16384") {
			t.Fatalf("node %s: %q %v", s.Addr(), info, err)
		}
	}
	// A key on another node's slot is redirected.
	if _, err := command(nodes[0].Addr(), "SET {b}x 1"); err != nil && !strings.Contains(err.Error(), "MOVED") {
		t.Fatalf("SET: %v", err)
	}
}

package login_test

import (
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/login/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) login.Store { return login.NewMemory(time.Minute) })
}

func TestMemorySweep(t *testing.T) {
	m := login.NewMemory(time.Minute)
	now := time.Now()
	m.Create(t.Context(), &login.Session{ID: "a", Scene: "sa", ExpiresAt: now})
	m.Create(t.Context(), &login.Session{ID: "b", Scene: "sb", ExpiresAt: now.Add(time.Hour)})
	if n := m.Sweep(now.Add(2 * time.Minute)); n != 1 || m.Len() != 1 {
		t.Fatalf("Sweep removed %d, %d left", n, m.Len())
	}
}

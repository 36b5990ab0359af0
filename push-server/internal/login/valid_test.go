package login

import (
	"strings"
	"testing"
)

func TestValidSessionID(t *testing.T) {
	for range 100 {
		if id := NewSessionID(); !ValidSessionID(id) {
			t.Fatalf("NewSessionID made %q, which ValidSessionID refuses", id)
		}
	}
	for _, id := range []string{"", "nope", "AAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAA\n", "AAAAAAAAAAAAAAAAAAAAA=", "AAAAAAAAAAAAAAAAAAAAA+"} {
		if ValidSessionID(id) {
			t.Errorf("ValidSessionID(%q) = true", id)
		}
	}
}

func TestValidEventName(t *testing.T) {
	for _, ev := range []string{"e", "order.paid", "a:b-c_d.E9", strings.Repeat("e", MaxEventName)} {
		if !ValidEventName(ev) {
			t.Errorf("ValidEventName(%q) = false", ev)
		}
	}
	for _, ev := range []string{"", "a b", "a\nb", `a"b`, "é", strings.Repeat("e", MaxEventName+1)} {
		if ValidEventName(ev) {
			t.Errorf("ValidEventName(%q) = true", ev)
		}
	}
}

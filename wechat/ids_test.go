package wechat

import (
	"strings"
	"testing"
)

func TestValidIDs(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"oUser_openid_0001", true},
		{"o6_bmjrPTlm6_2sgVt7hMZOPfL2M", true},
		{"", false},
		{"oVictim\nX", false},
		{"o victim", false},
		{"oé", false},
		{`o"x`, false},
		{strings.Repeat("a", MaxIDLen), true},
		{strings.Repeat("a", MaxIDLen+1), false},
	} {
		if got := ValidOpenID(tc.id); got != tc.want {
			t.Errorf("ValidOpenID(%q) = %v, want %v", tc.id, got, tc.want)
		}
		if got := ValidUnionID(tc.id); got != tc.want {
			t.Errorf("ValidUnionID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if ValidScene("a\nb") || !ValidScene("login_3f2a9c") {
		t.Error("ValidScene disagrees with validID")
	}
}

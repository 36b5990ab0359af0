package main

import (
	"context"
	"strings"
	"testing"

	"github.com/scanlogin/scanlogin/internal/settings"
)

// TestCheckConfig: -check-config validates, prints the settings that are not
// secret and returns without serving; a bad setting is one line naming it.
func TestCheckConfig(t *testing.T) {
	vars := map[string]string{
		"WECHAT_APPID":    "wxcheck",
		"WECHAT_SECRET":   "secret-value",
		"GRPC_AUTH_TOKEN": "grpc-token-value",
		"PUSH_HTTP_ADDR":  "127.0.0.1:1", // not bound: nothing is served
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"-check-config"}, settings.Map(vars), &out); err != nil {
		t.Fatalf("-check-config: %v", err)
	}
	if !strings.Contains(out.String(), "config ok") || !strings.Contains(out.String(), "wxcheck") {
		t.Errorf("output does not list the settings: %s", out.String())
	}
	for _, secret := range []string{"secret-value", "grpc-token-value"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output shows a secret: %s", out.String())
		}
	}

	vars["LOGIN_TTL"] = "soon"
	err := run(context.Background(), []string{"-check-config"}, settings.Map(vars), &out)
	if err == nil || !strings.HasPrefix(err.Error(), "config: LOGIN_TTL: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad LOGIN_TTL: err = %v", err)
	}
}

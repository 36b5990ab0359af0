package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
)

func load(extra map[string]string) (*Config, error) {
	vars := map[string]string{"WECHAT_APPID": "wx1", "WECHAT_SECRET": "s", "WECHAT_TOKEN": "tok"}
	for k, v := range extra {
		vars[k] = v
	}
	return Load(settings.Map(vars))
}

func TestDefaults(t *testing.T) {
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != DefaultHTTPAddr || c.CallbackURL != DefaultCallbackURL || c.TokenTTL != DefaultTokenTTL ||
		c.RetryAfter != DefaultRetryAfter || c.Retries != DefaultRetries || fmt.Sprint(c.Followers) != "[Alice]" ||
		strings.Join(c.WxaPages, ",") != DefaultWxaPages || c.PublicURL != "" ||
		c.MiniProgramDir != "" || c.MiniAPIBase != "http://127.0.0.1:8081" {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestParse(t *testing.T) {
	c, err := load(map[string]string{"SIM_FOLLOWERS": " None ", "SIM_PUBLIC_URL": "http://sim.example/", "SIM_RETRY_AFTER": "50ms",
		"SIM_CALLBACK_URL": "https://cb.example:8443/wechat/callback"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Followers != nil || c.PublicURL != "http://sim.example" || c.RetryAfter != 50*time.Millisecond || c.MiniAPIBase != "https://cb.example:8443" {
		t.Fatalf("parsed = %+v", c)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct{ key, val string }{
		{"WECHAT_APPID", ""},
		{"WECHAT_SECRET", ""},
		{"WECHAT_TOKEN", ""},
		{"WECHAT_TOKEN", "a b"},
		{"WECHAT_AES_KEY", "short"},
		{"SIM_HTTP_ADDR", "8090"},
		{"SIM_RETRIES", "11"},
		{"SIM_TOKEN_TTL", "1s"},
		{"SIM_ORIGINAL_ID", "gh 1"},
		{"SIM_MINIPROGRAM_API_BASE", "cb:8081"},
		{"LOG_LEVEL", "loud"},
	} {
		_, err := load(map[string]string{tc.key: tc.val})
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.key+": ") {
			t.Errorf("%s=%q: err = %v", tc.key, tc.val, err)
		}
	}
}

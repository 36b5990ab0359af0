package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
)

func load(env map[string]string) (*Config, error) {
	base := map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh"}
	for k, v := range env {
		base[k] = v
	}
	return Load(settings.Map(base))
}

func TestDefaults(t *testing.T) {
	c, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.GRPCAddr != "127.0.0.1:9090" || c.LoginTTL != 120*time.Second ||
		c.TokenTTL != 5*time.Minute || c.TokenIssuer != "scanlogin" || c.ConnsPerIP != 50 ||
		c.QRPerIP != (settings.Rate{N: 20, Per: time.Minute}) || c.APIBase != "https://api.weixin.qq.com" ||
		c.MPBase != "https://mp.weixin.qq.com" || c.LogLevel != slog.LevelInfo {
		t.Fatalf("defaults = %+v", c)
	}
}

func TestParse(t *testing.T) {
	c, err := load(map[string]string{
		"ALLOWED_ORIGINS": "https://a.example, HTTPS://B.example:8443",
		"TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1",
		"LOGIN_TTL":       "5m",
		"LIMIT_QR_PER_IP": "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c.AllowedOrigins) != "[https://a.example https://b.example:8443]" ||
		len(c.TrustedProxies) != 2 || c.LoginTTL != 5*time.Minute || c.QRPerIP.N != 0 {
		t.Fatalf("parsed = %+v", c)
	}
}

func TestErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct{ key, val string }{
		{"WECHAT_APPID", ""},
		{"WECHAT_SECRET", ""},
		{"LOGIN_TTL", "2"},
		{"LOGIN_TTL", "1500ms"},
		{"LOGIN_TTL", "31d"},
		{"TOKEN_TTL", "0s"},
		{"LIMIT_CONNS_PER_IP", "-1"},
		{"LIMIT_QR_PER_IP", "many"},
		{"ALLOWED_ORIGINS", "https://a.example/path"},
		{"TRUSTED_PROXIES", "proxy.local"},
		{"PUSH_HTTP_ADDR", "8080"},
		{"WECHAT_API_BASE", "ftp://x"},
		{"LOG_LEVEL", "loud"},
		{"REDIS_URL", "http://127.0.0.1:6379"},
	} {
		_, err := load(map[string]string{tc.key: tc.val})
		if err == nil || !strings.HasPrefix(err.Error(), "config: "+tc.key+":") {
			t.Errorf("%s=%q: err = %v", tc.key, tc.val, err)
		}
	}
}

func TestLogValueHasNoSecrets(t *testing.T) {
	c, _ := load(map[string]string{"GRPC_AUTH_TOKEN": "tok-123"})
	out := c.LogValue().String()
	if strings.Contains(out, "shh") || strings.Contains(out, "tok-123") {
		t.Fatalf("secrets in %s", out)
	}
}

func TestFlows(t *testing.T) {
	mini := map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh"}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		flows string
	}{
		{"oa only by default", map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh"}, "[oa]"},
		{"mini program only", mini, "[miniprogram]"},
		{"both, oa first", map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh",
			"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh"}, "[oa miniprogram]"},
		{"both, as listed", map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh",
			"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "LOGIN_FLOWS": " miniprogram , oa"}, "[miniprogram oa]"},
		{"one of two listed", map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh",
			"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "LOGIN_FLOWS": "miniprogram"}, "[miniprogram]"},
		// Credentials of a flow that is not listed are not checked.
		{"unlisted half pair", map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh",
			"WECHAT_APPID": "wxapp", "LOGIN_FLOWS": "miniprogram"}, "[miniprogram]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(settings.Map(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(c.Flows) != tc.flows {
				t.Errorf("flows = %v, want %s", c.Flows, tc.flows)
			}
			if c.MiniPage != "pages/login/login" || c.MiniEnv != "release" || c.SiteName != "" {
				t.Errorf("mini program defaults = %q %q %q", c.MiniPage, c.MiniEnv, c.SiteName)
			}
		})
	}
}

func TestFlowErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "config: WECHAT_APPID: required"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini"}, "config: MINIPROGRAM_SECRET: required for the miniprogram flow"},
		{map[string]string{"MINIPROGRAM_SECRET": "mshh"}, "config: MINIPROGRAM_APPID: required for the miniprogram flow"},
		{map[string]string{"WECHAT_APPID": "wxapp", "WECHAT_SECRET": "shh", "LOGIN_FLOWS": "oa,miniprogram"},
			"config: MINIPROGRAM_APPID: required for the miniprogram flow"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "LOGIN_FLOWS": "oa"},
			"config: WECHAT_APPID: required for the oa flow"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "LOGIN_FLOWS": "mini"},
			"config: LOGIN_FLOWS: \"mini\" is not a flow"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "LOGIN_FLOWS": "miniprogram,miniprogram"},
			"config: LOGIN_FLOWS: \"miniprogram\" is listed twice"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "MINIPROGRAM_PAGE": "/pages/login/login"},
			"config: MINIPROGRAM_PAGE:"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "MINIPROGRAM_PAGE": "pages/login/login?a=1"},
			"config: MINIPROGRAM_PAGE:"},
		{map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh", "MINIPROGRAM_ENV": "beta"},
			"config: MINIPROGRAM_ENV:"},
	} {
		_, err := Load(settings.Map(tc.env))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("env %v: err = %v, want one line starting %q", tc.env, err, tc.want)
		}
	}
}

func TestMiniProgramSettings(t *testing.T) {
	c, err := load(map[string]string{"MINIPROGRAM_APPID": "wxmini", "MINIPROGRAM_SECRET": "mshh",
		"MINIPROGRAM_PAGE": "pages/scan/index", "MINIPROGRAM_ENV": "develop", "SITE_NAME": "Example Shop"})
	if err != nil {
		t.Fatal(err)
	}
	if c.MiniAppID != "wxmini" || c.MiniSecret != "mshh" || c.MiniPage != "pages/scan/index" ||
		c.MiniEnv != "develop" || c.SiteName != "Example Shop" || !c.Enabled(FlowOA) || !c.Enabled(FlowMiniProgram) {
		t.Fatalf("parsed = %+v", c)
	}
	if out := c.LogValue().String(); strings.Contains(out, "mshh") || !strings.Contains(out, "wxmini") {
		t.Errorf("log value %s", out)
	}
}

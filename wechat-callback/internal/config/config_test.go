package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return settings.Map(m)
}

const aesKey = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

func TestLoadDefaults(t *testing.T) {
	c, err := Load(env("WECHAT_TOKEN", "pamtest"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8081" || c.PushTarget != "127.0.0.1:9090" || c.APIBase != DefaultAPIBase {
		t.Errorf("addresses = %q %q %q", c.HTTPAddr, c.PushTarget, c.APIBase)
	}
	if c.TimestampWindow != 5*time.Minute || c.DedupTTL != 10*time.Minute || c.Budget != 4*time.Second || c.NotifyTimeout != time.Second {
		t.Errorf("durations = %v %v %v %v", c.TimestampWindow, c.DedupTTL, c.Budget, c.NotifyTimeout)
	}
	if c.Replies.Welcome != DefaultReplyWelcome || c.Replies.LoginOK != DefaultReplyLoginOK {
		t.Errorf("replies = %+v", c.Replies)
	}
	if c.DecryptFailures != (Rate{N: 10, Per: time.Minute}) {
		t.Errorf("DecryptFailures = %v", c.DecryptFailures)
	}
	if c.RedisPrefix != "scanlogin:" {
		t.Errorf("RedisPrefix = %q", c.RedisPrefix)
	}
	if c.FetchUserInfo || c.LogLevel != slog.LevelInfo {
		t.Errorf("FetchUserInfo=%v LogLevel=%v", c.FetchUserInfo, c.LogLevel)
	}
}

func TestLoadAll(t *testing.T) {
	c, err := Load(env(
		"CALLBACK_HTTP_ADDR", "127.0.0.1:0",
		"WECHAT_TOKEN", "pamtest",
		"WECHAT_AES_KEY", aesKey,
		"WECHAT_APPID", "wxb11529c136998cb6",
		"WECHAT_SECRET", "s3cr3t",
		"WECHAT_API_BASE", "http://127.0.0.1:1",
		"WECHAT_ORIGINAL_ID", "gh_0123456789ab",
		"FETCH_USER_INFO", "true",
		"CALLBACK_DEDUP_TTL", "60s",
		"CALLBACK_TIMESTAMP_WINDOW", "0",
		"CALLBACK_REQUIRE_ENCRYPTION", "true",
		"CALLBACK_DECRYPT_FAILURES_PER_IP", "5/s",
		"REPLY_WELCOME", "-",
		"REPLY_EXPIRED", "old",
		"LOG_LEVEL", "debug",
		"REDIS_URL", "redis://127.0.0.1:6379/0",
		"REDIS_PREFIX", "x:",
	))
	if err != nil {
		t.Fatal(err)
	}
	if !c.FetchUserInfo || c.DedupTTL != time.Minute || c.TimestampWindow != 0 || c.LogLevel != slog.LevelDebug {
		t.Errorf("got %+v", c)
	}
	if c.DecryptFailures != (Rate{N: 5, Per: time.Second}) || c.DecryptFailures.String() != "5/s" {
		t.Errorf("DecryptFailures = %v", c.DecryptFailures)
	}
	if c.Replies.Welcome != "" || c.Replies.Expired != "old" {
		t.Errorf("replies = %+v", c.Replies)
	}
	if c.RedisPrefix != "x:" {
		t.Errorf("RedisPrefix = %q", c.RedisPrefix)
	}
}

// TestEmptyReplyMeansNoText: a REPLY_* set to the empty string (or "-")
// means "answer success, no text", while an unset one keeps its default.
func TestEmptyReplyMeansNoText(t *testing.T) {
	c, err := Load(env("WECHAT_TOKEN", "tok", "REPLY_WELCOME", "", "REPLY_NOT_FOUND", "-"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Replies.Welcome != "" || c.Replies.NotFound != "" || c.Replies.LoginOK != DefaultReplyLoginOK {
		t.Errorf("replies = %+v", c.Replies)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		env  []string
		want string // the variable the error must name
	}{
		{nil, "WECHAT_TOKEN"},
		{[]string{"WECHAT_TOKEN", "ab"}, "WECHAT_TOKEN"},
		{[]string{"WECHAT_TOKEN", "has space"}, "WECHAT_TOKEN"},
		{[]string{"WECHAT_TOKEN", strings.Repeat("a", 33)}, "WECHAT_TOKEN"},
		{[]string{"WECHAT_TOKEN", "tok", "WECHAT_AES_KEY", "short"}, "WECHAT_AES_KEY"},
		{[]string{"WECHAT_TOKEN", "tok", "WECHAT_AES_KEY", aesKey}, "WECHAT_APPID"},
		{[]string{"WECHAT_TOKEN", "tok", "FETCH_USER_INFO", "true"}, "WECHAT_APPID"},
		{[]string{"WECHAT_TOKEN", "tok", "FETCH_USER_INFO", "true", "WECHAT_APPID", "wx1"}, "WECHAT_SECRET"},
		{[]string{"WECHAT_TOKEN", "tok", "FETCH_USER_INFO", "yes please"}, "FETCH_USER_INFO"},
		{[]string{"WECHAT_TOKEN", "tok", "FETCH_USER_INFO", "1", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "WECHAT_API_BASE", "ftp://x"}, "WECHAT_API_BASE"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DEDUP_TTL", "59s"}, "CALLBACK_DEDUP_TTL"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DEDUP_TTL", "ten minutes"}, "CALLBACK_DEDUP_TTL"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_BUDGET", "5s"}, "CALLBACK_BUDGET"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "-1s"}, "CALLBACK_TIMESTAMP_WINDOW"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "0"}, "CALLBACK_TIMESTAMP_WINDOW"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DECRYPT_FAILURES_PER_IP", "10"}, "CALLBACK_DECRYPT_FAILURES_PER_IP"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DECRYPT_FAILURES_PER_IP", "10/d"}, "CALLBACK_DECRYPT_FAILURES_PER_IP"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DECRYPT_FAILURES_PER_IP", "0/m"}, "CALLBACK_DECRYPT_FAILURES_PER_IP"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_DECRYPT_FAILURES_PER_IP", "-1/m"}, "CALLBACK_DECRYPT_FAILURES_PER_IP"},
		{[]string{"WECHAT_TOKEN", "tok", "NOTIFY_TIMEOUT", "4500ms"}, "NOTIFY_TIMEOUT"},
		{[]string{"WECHAT_TOKEN", "tok", "USER_INFO_TIMEOUT", "0s"}, "USER_INFO_TIMEOUT"},
		{[]string{"WECHAT_TOKEN", "tok", "WECHAT_ORIGINAL_ID", "gh 1"}, "WECHAT_ORIGINAL_ID"},
		{[]string{"WECHAT_TOKEN", "tok", "REDIS_URL", "http://x"}, "REDIS_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "LOG_LEVEL", "loud"}, "LOG_LEVEL"},
		{[]string{"WECHAT_TOKEN", "tok", "CALLBACK_REQUIRE_ENCRYPTION", "true"}, "CALLBACK_REQUIRE_ENCRYPTION"},
		{[]string{"WECHAT_TOKEN", "tok", "MINIPROGRAM_APPID", "wx1"}, "MINIPROGRAM_SECRET"},
		{[]string{"WECHAT_TOKEN", "tok", "MINIPROGRAM_SECRET", "s"}, "MINIPROGRAM_APPID"},
		{[]string{"WECHAT_TOKEN", "tok", "MINIPROGRAM_APPID", "wx 1", "MINIPROGRAM_SECRET", "s"}, "MINIPROGRAM_APPID"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "WECHAT_AES_KEY", aesKey}, "WECHAT_TOKEN"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "MINIPROGRAM_SCANS_PER_IP", "5"}, "MINIPROGRAM_SCANS_PER_IP"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "MINIPROGRAM_CONFIRMS_PER_IP", "x/m"}, "MINIPROGRAM_CONFIRMS_PER_IP"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "MINIPROGRAM_SCANS_PER_SCENE", "-1"}, "MINIPROGRAM_SCANS_PER_SCENE"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "TRUSTED_PROXIES", "10.0.0.0/8, proxy"}, "TRUSTED_PROXIES"},
		{[]string{"MINIPROGRAM_APPID", "wx1", "MINIPROGRAM_SECRET", "s", "SITE_NAME", strings.Repeat("x", 101)}, "SITE_NAME"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s"}, "CALLBACK_PUBLIC_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "CALLBACK_PUBLIC_URL", "https://login.example.com"}, "WECHAT_APPID"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "CALLBACK_PUBLIC_URL", "https://login.example.com"}, "WECHAT_SECRET"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "http://login.example.com"}, "CALLBACK_PUBLIC_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "https://login.example.com/path"}, "CALLBACK_PUBLIC_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "https://user:pw@login.example.com"}, "CALLBACK_PUBLIC_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "login.example.com"}, "CALLBACK_PUBLIC_URL"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "https://login.example.com", "REPLY_CONFIRM", "no link here"}, "REPLY_CONFIRM"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "https://login.example.com", "WECHAT_OPEN_BASE", "ftp://x"}, "WECHAT_OPEN_BASE"},
		{[]string{"WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", "https://login.example.com", "OA_CONFIRM", "maybe"}, "OA_CONFIRM"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.env), func(t *testing.T) {
			_, err := Load(env(tt.env...))
			if err == nil || !strings.HasPrefix(err.Error(), "config: "+tt.want+": ") {
				t.Fatalf("Load() error = %v, want one starting with config: %s:", err, tt.want)
			}
		})
	}
}

// TestTimestampWindowZero: without the window, a captured plaintext request
// passes again (with any body) once the replay memory forgets its nonce, so
// 0 is refused unless every request must be encrypted.
func TestTimestampWindowZero(t *testing.T) {
	for _, vars := range [][]string{
		{"WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "0"},
		{"WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "0s", "WECHAT_AES_KEY", aesKey, "WECHAT_APPID", "wx1"},
		{"WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "0", "WECHAT_AES_KEY", aesKey, "WECHAT_APPID", "wx1", "CALLBACK_REQUIRE_ENCRYPTION", "false"},
	} {
		_, err := Load(env(vars...))
		if err == nil || err.Error() != "config: CALLBACK_TIMESTAMP_WINDOW: 0 (no check) needs CALLBACK_REQUIRE_ENCRYPTION=true" {
			t.Errorf("%v: Load error = %v", vars, err)
		}
	}
	c, err := Load(env("WECHAT_TOKEN", "tok", "CALLBACK_TIMESTAMP_WINDOW", "0", "WECHAT_AES_KEY", aesKey,
		"WECHAT_APPID", "wx1", "CALLBACK_REQUIRE_ENCRYPTION", "true"))
	if err != nil || c.TimestampWindow != 0 {
		t.Fatalf("with CALLBACK_REQUIRE_ENCRYPTION: %v, %v", c, err)
	}
}

// TestMiniProgramOnly: a deployment with only a Mini Program (no official
// account) needs no WECHAT_TOKEN.
func TestMiniProgramOnly(t *testing.T) {
	c, err := Load(env("MINIPROGRAM_APPID", "wxmini", "MINIPROGRAM_SECRET", "s", "SITE_NAME", "Example",
		"TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	m := c.MiniProgram
	if !m.Enabled() || m.SiteName != "Example" || len(m.TrustedProxies) != 2 {
		t.Errorf("MiniProgram = %+v", m)
	}
	if m.ScansPerIP != (Rate{N: 20, Per: time.Minute}) || m.ConfirmsPerIP != (Rate{N: 30, Per: time.Minute}) || m.ScansPerScene != 10 {
		t.Errorf("limits = %v %v %d", m.ScansPerIP, m.ConfirmsPerIP, m.ScansPerScene)
	}
	c, err = Load(env("WECHAT_TOKEN", "tok"))
	if err != nil || c.MiniProgram.Enabled() {
		t.Errorf("without MINIPROGRAM_APPID: %v, enabled %v", err, c.MiniProgram.Enabled())
	}
}

func TestLogValueHidesSecrets(t *testing.T) {
	c, err := Load(env("WECHAT_TOKEN", "tokenSECRET1", "WECHAT_AES_KEY", aesKey, "WECHAT_APPID", "wx1",
		"WECHAT_SECRET", "appSECRET2", "GRPC_AUTH_TOKEN", "grpcSECRET3", "REDIS_URL", "redis://:pwSECRET4@h:1/0",
		"MINIPROGRAM_APPID", "wxmini", "MINIPROGRAM_SECRET", "miniSECRET5"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "config", c)
	for _, secret := range []string{"tokenSECRET1", aesKey, "appSECRET2", "grpcSECRET3", "pwSECRET4", "miniSECRET5"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("log line contains a secret: %s", b.String())
		}
	}
}

func TestOAConfirmSettings(t *testing.T) {
	c, err := Load(env("WECHAT_TOKEN", "tok"))
	if err != nil || c.OAConfirm.Enabled || c.OAConfirm.OpenBase != DefaultOpenBase {
		t.Fatalf("defaults: %+v %v", c.OAConfirm, err)
	}
	for _, origin := range []string{"https://login.example.com", "https://login.example.com:8443/", "http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"} {
		c, err := Load(env("WECHAT_TOKEN", "tok", "OA_CONFIRM", "true", "WECHAT_APPID", "wx1", "WECHAT_SECRET", "s", "CALLBACK_PUBLIC_URL", origin))
		if err != nil || !c.OAConfirm.Enabled || strings.HasSuffix(c.OAConfirm.PublicURL, "/") {
			t.Errorf("%s: %+v %v", origin, c, err)
		}
	}
}

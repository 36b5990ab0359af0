// Package config reads wechat-callback's settings from the environment.
//
// [Load] reads every variable once at start and validates it; an error names
// the variable, so that the process can stop with one clear line. Secrets are
// kept out of [Config.LogValue].
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config is wechat-callback's configuration. The README documents each field
// under the name of its environment variable.
type Config struct {
	HTTPAddr string // CALLBACK_HTTP_ADDR

	Token      string // WECHAT_TOKEN (secret)
	AESKey     string // WECHAT_AES_KEY (secret); empty: plaintext mode only
	AppID      string // WECHAT_APPID
	Secret     string // WECHAT_SECRET (secret)
	APIBase    string // WECHAT_API_BASE
	OriginalID string // WECHAT_ORIGINAL_ID; empty: ToUserName not checked

	PushTarget    string // PUSH_GRPC_TARGET
	GRPCAuthToken string // GRPC_AUTH_TOKEN (secret)
	RedisURL      string // REDIS_URL (may hold a password)

	RequireEncryption bool // CALLBACK_REQUIRE_ENCRYPTION: refuse plaintext requests

	FetchUserInfo   bool          // FETCH_USER_INFO
	UserInfoTimeout time.Duration // USER_INFO_TIMEOUT

	TimestampWindow time.Duration // CALLBACK_TIMESTAMP_WINDOW; 0: not checked (only with RequireEncryption)
	DecryptFailures Rate          // CALLBACK_DECRYPT_FAILURES_PER_IP; zero: no limit
	DedupTTL        time.Duration // CALLBACK_DEDUP_TTL
	NotifyTimeout   time.Duration // NOTIFY_TIMEOUT
	Budget          time.Duration // CALLBACK_BUDGET

	Replies Replies

	LogLevel slog.Level // LOG_LEVEL
}

// Rate is "N per Per", as read from "N/s", "N/m" or "N/h". The zero Rate
// means no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// String formats r as the setting is written.
func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	return fmt.Sprintf("%d/%s", r.N, map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per])
}

// Replies is the wording of the text replies sent to the scanning user. An
// empty text means no text: WeChat is answered "success".
type Replies struct {
	LoginOK     string // REPLY_LOGIN_OK: the browser got (or will get) the login
	Expired     string // REPLY_EXPIRED: the QR code expired
	NotFound    string // REPLY_NOT_FOUND: unknown scene, wrong ticket, already used
	Unavailable string // REPLY_UNAVAILABLE: the push server cannot be reached
	Welcome     string // REPLY_WELCOME: a plain follow; empty answers "success"
}

// Defaults used when a variable is unset.
const (
	DefaultHTTPAddr        = ":8081"
	DefaultAPIBase         = "https://api.weixin.qq.com"
	DefaultPushTarget      = "127.0.0.1:9090"
	DefaultTimestampWindow = 5 * time.Minute
	DefaultDedupTTL        = 10 * time.Minute
	DefaultNotifyTimeout   = time.Second
	DefaultBudget          = 4 * time.Second
	DefaultUserInfoTimeout = 500 * time.Millisecond
	DefaultDecryptFailures = "10/m"

	DefaultReplyLoginOK     = "Login successful. You can continue in your browser."
	DefaultReplyExpired     = "This QR code has expired. Please refresh the login page and scan the new code."
	DefaultReplyNotFound    = "Sorry, this login request could not be completed. Please refresh the login page and try again."
	DefaultReplyUnavailable = "Login is temporarily unavailable. Please try again in a moment."
	DefaultReplyWelcome     = "Thanks for following!"
)

// Limits enforced by Validate.
const (
	MinDedupTTL = 60 * time.Second // WeChat retries for about 15 s; keep keys well past that
	MaxBudget   = 5 * time.Second  // WeChat gives up after 5 s
)

var (
	tokenRE      = regexp.MustCompile(`^[A-Za-z0-9]{3,32}$`)
	aesKeyRE     = regexp.MustCompile(`^[A-Za-z0-9]{43}$`)
	appIDRE      = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	originalIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Load reads the configuration through getenv (os.Getenv in production) and
// validates it. The error names the first bad variable.
func Load(getenv func(string) string) (*Config, error) {
	get := func(name, def string) string {
		if v, ok := lookup(getenv, name); ok {
			return v
		}
		return def
	}
	c := &Config{
		HTTPAddr:      get("CALLBACK_HTTP_ADDR", DefaultHTTPAddr),
		Token:         getenv("WECHAT_TOKEN"),
		AESKey:        getenv("WECHAT_AES_KEY"),
		AppID:         getenv("WECHAT_APPID"),
		Secret:        getenv("WECHAT_SECRET"),
		APIBase:       get("WECHAT_API_BASE", DefaultAPIBase),
		OriginalID:    getenv("WECHAT_ORIGINAL_ID"),
		PushTarget:    get("PUSH_GRPC_TARGET", DefaultPushTarget),
		GRPCAuthToken: getenv("GRPC_AUTH_TOKEN"),
		RedisURL:      getenv("REDIS_URL"),
		Replies: Replies{
			LoginOK:     get("REPLY_LOGIN_OK", DefaultReplyLoginOK),
			Expired:     get("REPLY_EXPIRED", DefaultReplyExpired),
			NotFound:    get("REPLY_NOT_FOUND", DefaultReplyNotFound),
			Unavailable: get("REPLY_UNAVAILABLE", DefaultReplyUnavailable),
			Welcome:     get("REPLY_WELCOME", DefaultReplyWelcome),
		},
	}
	var err error
	if c.FetchUserInfo, err = parseBool(getenv, "FETCH_USER_INFO", false); err != nil {
		return nil, err
	}
	if c.RequireEncryption, err = parseBool(getenv, "CALLBACK_REQUIRE_ENCRYPTION", false); err != nil {
		return nil, err
	}
	durations := []struct {
		dst  *time.Duration
		name string
		def  time.Duration
	}{
		{&c.TimestampWindow, "CALLBACK_TIMESTAMP_WINDOW", DefaultTimestampWindow},
		{&c.DedupTTL, "CALLBACK_DEDUP_TTL", DefaultDedupTTL},
		{&c.NotifyTimeout, "NOTIFY_TIMEOUT", DefaultNotifyTimeout},
		{&c.Budget, "CALLBACK_BUDGET", DefaultBudget},
		{&c.UserInfoTimeout, "USER_INFO_TIMEOUT", DefaultUserInfoTimeout},
	}
	for _, d := range durations {
		if *d.dst, err = parseDuration(getenv, d.name, d.def); err != nil {
			return nil, err
		}
	}
	if c.DecryptFailures, err = parseRate(get("CALLBACK_DECRYPT_FAILURES_PER_IP", DefaultDecryptFailures)); err != nil {
		return nil, fmt.Errorf("CALLBACK_DECRYPT_FAILURES_PER_IP: %w", err)
	}
	if c.LogLevel, err = parseLevel(getenv("LOG_LEVEL")); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks every setting and returns an error naming the first bad
// variable. It never quotes a secret.
func (c *Config) Validate() error {
	switch {
	case c.HTTPAddr == "":
		return errors.New("CALLBACK_HTTP_ADDR: must not be empty")
	case c.Token == "":
		return errors.New("WECHAT_TOKEN: required (the Token of the official account's server configuration)")
	case !tokenRE.MatchString(c.Token):
		return errors.New("WECHAT_TOKEN: must be 3 to 32 letters or digits")
	case c.AESKey != "" && !aesKeyRE.MatchString(c.AESKey):
		return errors.New("WECHAT_AES_KEY: must be empty or exactly 43 letters or digits (the EncodingAESKey)")
	case c.AESKey != "" && c.AppID == "":
		return errors.New("WECHAT_APPID: required when WECHAT_AES_KEY is set (the decrypted message names it)")
	case c.RequireEncryption && c.AESKey == "":
		return errors.New("CALLBACK_REQUIRE_ENCRYPTION: needs WECHAT_AES_KEY")
	case c.FetchUserInfo && c.AppID == "":
		return errors.New("WECHAT_APPID: required when FETCH_USER_INFO is true")
	case c.FetchUserInfo && c.Secret == "":
		return errors.New("WECHAT_SECRET: required when FETCH_USER_INFO is true")
	case c.AppID != "" && !appIDRE.MatchString(c.AppID):
		return fmt.Errorf("WECHAT_APPID: %q is not an AppID", c.AppID)
	case c.OriginalID != "" && !originalIDRE.MatchString(c.OriginalID):
		return fmt.Errorf("WECHAT_ORIGINAL_ID: %q is not an original id (gh_...)", c.OriginalID)
	case c.PushTarget == "":
		return errors.New("PUSH_GRPC_TARGET: must not be empty")
	case c.TimestampWindow < 0:
		return errors.New("CALLBACK_TIMESTAMP_WINDOW: must not be negative")
	case c.TimestampWindow == 0 && !c.RequireEncryption:
		// The replay memory forgets a (timestamp, nonce) pair after a
		// while; without the window a captured plaintext request, whose
		// body no signature covers, would then pass with any body.
		return errors.New("CALLBACK_TIMESTAMP_WINDOW: 0 (no check) needs CALLBACK_REQUIRE_ENCRYPTION=true")
	case c.DedupTTL < MinDedupTTL:
		return fmt.Errorf("CALLBACK_DEDUP_TTL: %v is below the minimum %v", c.DedupTTL, MinDedupTTL)
	case c.Budget <= 0 || c.Budget >= MaxBudget:
		return fmt.Errorf("CALLBACK_BUDGET: %v must be above 0 and below %v (WeChat waits 5 s)", c.Budget, MaxBudget)
	case c.NotifyTimeout <= 0 || c.NotifyTimeout > c.Budget:
		return fmt.Errorf("NOTIFY_TIMEOUT: %v must be above 0 and at most CALLBACK_BUDGET (%v)", c.NotifyTimeout, c.Budget)
	case c.UserInfoTimeout <= 0 || c.UserInfoTimeout >= c.Budget:
		return fmt.Errorf("USER_INFO_TIMEOUT: %v must be above 0 and below CALLBACK_BUDGET (%v)", c.UserInfoTimeout, c.Budget)
	}
	if c.FetchUserInfo {
		if err := checkURL(c.APIBase); err != nil {
			return fmt.Errorf("WECHAT_API_BASE: %w", err)
		}
	}
	if c.RedisURL != "" {
		u, err := url.Parse(c.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
			return errors.New("REDIS_URL: must be a redis://, rediss:// or unix:// URL")
		}
	}
	return nil
}

// LogValue lists the settings that are not secret, for the start-up log line.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.Bool("safe_mode", c.AESKey != ""),
		slog.Bool("require_encryption", c.RequireEncryption),
		slog.String("appid", c.AppID),
		slog.Bool("original_id_check", c.OriginalID != ""),
		slog.String("push_target", c.PushTarget),
		slog.Bool("grpc_auth", c.GRPCAuthToken != ""),
		slog.Bool("redis", c.RedisURL != ""),
		slog.Bool("fetch_user_info", c.FetchUserInfo),
		slog.String("api_base", c.APIBase),
		slog.Duration("timestamp_window", c.TimestampWindow),
		slog.String("decrypt_failures_per_ip", c.DecryptFailures.String()),
		slog.Duration("dedup_ttl", c.DedupTTL),
		slog.Duration("notify_timeout", c.NotifyTimeout),
		slog.Duration("budget", c.Budget),
		slog.String("log_level", c.LogLevel.String()),
	)
}

// lookup returns the value of name and whether it is set. getenv cannot tell
// unset from empty, so an empty value counts as unset; for the reply texts
// "-" stands for "set to empty" (main maps a set-but-empty REPLY_* to "-").
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	if v == "" {
		return "", false
	}
	if strings.HasPrefix(name, "REPLY_") && v == "-" {
		return "", true
	}
	return v, true
}

func parseBool(getenv func(string) string, name string, def bool) (bool, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not true or false", name, v)
	}
	return b, nil
}

func parseDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration such as 500ms, 30s or 5m", name, v)
	}
	return d, nil
}

// parseRate reads "N/s", "N/m", "N/h" with N > 0, or "0" for no limit.
func parseRate(s string) (Rate, error) {
	if s == "0" {
		return Rate{}, nil
	}
	num, unit, ok := strings.Cut(s, "/")
	n, err := strconv.Atoi(num)
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	if !ok || err != nil || n <= 0 || per == 0 {
		return Rate{}, fmt.Errorf("%q is not N/s, N/m or N/h with N above 0, or 0 for no limit", s)
	}
	return Rate{N: n, Per: per}, nil
}

func parseLevel(v string) (slog.Level, error) {
	var l slog.Level
	if v == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return 0, fmt.Errorf("LOG_LEVEL: %q is not debug, info, warn or error", v)
	}
	return l, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Package config reads the simulator's settings from the environment,
// once, at start. wechat-sim/README.md documents every variable.
package config

import (
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/wechat"
)

// Config is the simulator's configuration.
type Config struct {
	HTTPAddr    string        // SIM_HTTP_ADDR
	PublicURL   string        // SIM_PUBLIC_URL; empty: derived from the bound address
	AppID       string        // WECHAT_APPID
	Secret      string        // WECHAT_SECRET (secret)
	Token       string        // WECHAT_TOKEN (secret)
	AESKey      string        // WECHAT_AES_KEY (secret); empty: plaintext mode
	CallbackURL string        // SIM_CALLBACK_URL
	TokenTTL    time.Duration // SIM_TOKEN_TTL
	OriginalID  string        // SIM_ORIGINAL_ID
	RetryAfter  time.Duration // SIM_RETRY_AFTER
	Retries     int           // SIM_RETRIES
	Followers   []string      // SIM_FOLLOWERS: nicknames of users who follow from the start
	WxaPages    []string      // SIM_WXA_PAGES: published Mini Program pages
	LogLevel    slog.Level    // LOG_LEVEL
}

// Defaults of the settings that have one.
const (
	DefaultHTTPAddr    = "127.0.0.1:8090"
	DefaultCallbackURL = "http://127.0.0.1:8081/wechat/callback"
	DefaultTokenTTL    = 7200 * time.Second
	DefaultOriginalID  = "gh_0123456789ab"
	DefaultRetryAfter  = 5 * time.Second
	DefaultRetries     = 3
	DefaultFollowers   = "Alice"
	DefaultWxaPages    = "pages/index/index"
)

var (
	tokenRE      = regexp.MustCompile(`^[A-Za-z0-9]{3,32}$`)
	originalIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Load reads the configuration through getenv and validates it. The error
// names the first bad variable.
func Load(getenv func(string) string) (*Config, error) {
	e := settings.NewEnv(getenv)
	env, check := e.Get, e.Check
	c := &Config{
		HTTPAddr:    env("SIM_HTTP_ADDR", DefaultHTTPAddr),
		PublicURL:   strings.TrimRight(env("SIM_PUBLIC_URL", ""), "/"),
		AppID:       env("WECHAT_APPID", ""),
		Secret:      getenv("WECHAT_SECRET"),
		Token:       getenv("WECHAT_TOKEN"),
		AESKey:      getenv("WECHAT_AES_KEY"),
		CallbackURL: env("SIM_CALLBACK_URL", DefaultCallbackURL),
		OriginalID:  env("SIM_ORIGINAL_ID", DefaultOriginalID),
		Followers:   settings.List(env("SIM_FOLLOWERS", DefaultFollowers)),
		WxaPages:    settings.List(env("SIM_WXA_PAGES", DefaultWxaPages)),
	}
	if strings.EqualFold(strings.TrimSpace(getenv("SIM_FOLLOWERS")), "none") {
		c.Followers = nil
	}
	var err error
	check("SIM_HTTP_ADDR", settings.HostPort(c.HTTPAddr))
	if c.PublicURL != "" {
		check("SIM_PUBLIC_URL", settings.HTTPURL(c.PublicURL))
	}
	check("WECHAT_APPID", settings.Required(c.AppID))
	check("WECHAT_SECRET", settings.Required(c.Secret))
	switch {
	case c.Token == "":
		check("WECHAT_TOKEN", errors.New("required"))
	case !tokenRE.MatchString(c.Token):
		check("WECHAT_TOKEN", errors.New("must be 3 to 32 letters or digits"))
	}
	if c.AESKey != "" && c.AppID != "" && c.Token != "" {
		if _, err := wechat.NewCrypter(c.Token, c.AESKey, c.AppID); err != nil {
			check("WECHAT_AES_KEY", errors.New("must be 43 letters or digits (the EncodingAESKey)"))
		}
	}
	check("SIM_CALLBACK_URL", settings.HTTPURL(c.CallbackURL))
	if !originalIDRE.MatchString(c.OriginalID) {
		check("SIM_ORIGINAL_ID", errors.New("must be like gh_0123456789ab"))
	}
	c.TokenTTL, err = settings.Duration(env("SIM_TOKEN_TTL", DefaultTokenTTL.String()), 2*time.Second, 30*24*time.Hour)
	check("SIM_TOKEN_TTL", err)
	c.RetryAfter, err = settings.Duration(env("SIM_RETRY_AFTER", DefaultRetryAfter.String()), 10*time.Millisecond, time.Minute)
	check("SIM_RETRY_AFTER", err)
	c.Retries, err = strconv.Atoi(env("SIM_RETRIES", strconv.Itoa(DefaultRetries)))
	if err != nil || c.Retries < 0 || c.Retries > 10 {
		check("SIM_RETRIES", errors.New("must be a whole number 0..10"))
	}
	check("LOG_LEVEL", c.LogLevel.UnmarshalText([]byte(env("LOG_LEVEL", "info"))))
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// LogValue lists the settings that are not secret, for the start-up line.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("public_url", c.PublicURL),
		slog.String("appid", c.AppID),
		slog.Bool("safe_mode", c.AESKey != ""),
		slog.String("callback_url", c.CallbackURL),
		slog.Duration("token_ttl", c.TokenTTL),
		slog.String("original_id", c.OriginalID),
		slog.Duration("retry_after", c.RetryAfter),
		slog.Int("retries", c.Retries),
		slog.Any("followers", c.Followers),
	)
}

// DerivePublicURL returns the base URL of a server bound to addr (as
// net.Listener.Addr reports it): http://host:port, with "localhost" for an
// unspecified host.
func DerivePublicURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

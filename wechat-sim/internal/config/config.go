// Package config reads the simulator's settings from the environment,
// once, at start. wechat-sim/README.md documents every variable.
package config

import (
	"errors"
	"log/slog"
	"net"
	"net/url"
	"regexp"
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
	// MiniProgramDir is SIM_MINIPROGRAM_DIR, the folder of the shipped
	// Mini Program page; empty: DefaultMiniProgramDir if it is there.
	MiniProgramDir string
	// MiniAPIBase is SIM_MINIPROGRAM_API_BASE: where the Mini Program
	// page's wx.request calls go (the wechat-callback origin); default the
	// origin of CallbackURL.
	MiniAPIBase string
	LogLevel    slog.Level // LOG_LEVEL
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
	DefaultWxaPages    = "pages/index/index,pages/login/login"
	// DefaultMiniProgramDir is the shipped Mini Program folder relative to
	// the working directory: the repository root, where make run-all runs.
	DefaultMiniProgramDir = "miniprogram"
)

var (
	tokenRE      = regexp.MustCompile(`^[A-Za-z0-9]{3,32}$`)
	originalIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// Load reads the configuration through lookup (os.LookupEnv) and validates
// it. The error names the first bad variable.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	e := settings.NewEnv(lookup)
	c := &Config{
		HTTPAddr:       e.HostPort("SIM_HTTP_ADDR", DefaultHTTPAddr),
		PublicURL:      strings.TrimRight(e.URL("SIM_PUBLIC_URL", ""), "/"),
		AppID:          e.Required("WECHAT_APPID"),
		Secret:         e.Secret("WECHAT_SECRET"),
		Token:          e.Secret("WECHAT_TOKEN"),
		AESKey:         e.Secret("WECHAT_AES_KEY"),
		CallbackURL:    e.URL("SIM_CALLBACK_URL", DefaultCallbackURL),
		TokenTTL:       e.Duration("SIM_TOKEN_TTL", DefaultTokenTTL, 2*time.Second, 30*24*time.Hour),
		OriginalID:     e.String("SIM_ORIGINAL_ID", DefaultOriginalID),
		RetryAfter:     e.Duration("SIM_RETRY_AFTER", DefaultRetryAfter, 10*time.Millisecond, time.Minute),
		Retries:        e.Int("SIM_RETRIES", DefaultRetries, 0, 10),
		Followers:      e.List("SIM_FOLLOWERS", DefaultFollowers),
		WxaPages:       e.List("SIM_WXA_PAGES", DefaultWxaPages),
		MiniProgramDir: e.String("SIM_MINIPROGRAM_DIR", ""),
		MiniAPIBase:    strings.TrimRight(e.URL("SIM_MINIPROGRAM_API_BASE", ""), "/"),
		LogLevel:       e.LogLevel("LOG_LEVEL"),
	}
	if c.MiniAPIBase == "" && c.CallbackURL != "" {
		if u, err := url.Parse(c.CallbackURL); err == nil {
			c.MiniAPIBase = u.Scheme + "://" + u.Host
		}
	}
	if len(c.Followers) == 1 && strings.EqualFold(c.Followers[0], "none") {
		c.Followers = nil
	}
	if c.Secret == "" {
		e.Check("WECHAT_SECRET", errors.New("required"))
	}
	switch {
	case c.Token == "":
		e.Check("WECHAT_TOKEN", errors.New("required"))
	case !tokenRE.MatchString(c.Token):
		e.Check("WECHAT_TOKEN", errors.New("must be 3 to 32 letters or digits"))
	}
	if c.AESKey != "" && c.AppID != "" && c.Token != "" {
		if _, err := wechat.NewCrypter(c.Token, c.AESKey, c.AppID); err != nil {
			e.Check("WECHAT_AES_KEY", errors.New("must be 43 letters or digits (the EncodingAESKey)"))
		}
	}
	if !originalIDRE.MatchString(c.OriginalID) {
		e.Check("SIM_ORIGINAL_ID", errors.New("must be like gh_0123456789ab"))
	}
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
		slog.Any("wxa_pages", c.WxaPages),
		slog.String("miniprogram_dir", c.MiniProgramDir),
		slog.String("miniprogram_api_base", c.MiniAPIBase),
		slog.String("log_level", c.LogLevel.String()),
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

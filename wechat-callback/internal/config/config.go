// Package config reads wechat-callback's settings from the environment.
//
// [Load] reads every variable once at start and validates it; an error names
// the variable, so that the process can stop with one clear line. Everything
// a setting means is decided here (defaults, an empty reply text). Secrets
// are kept out of [Config.LogValue].
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/scanlogin/scanlogin/internal/redisurl"
	"github.com/scanlogin/scanlogin/internal/settings"
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
	RedisPrefix   string // REDIS_PREFIX: starts every Redis key

	// TrustedProxies (TRUSTED_PROXIES) are the proxies whose
	// X-Forwarded-For names the client, for every per-address limit.
	TrustedProxies []string

	RequireEncryption bool // CALLBACK_REQUIRE_ENCRYPTION: refuse plaintext requests

	FetchUserInfo   bool          // FETCH_USER_INFO
	UserInfoTimeout time.Duration // USER_INFO_TIMEOUT

	TimestampWindow time.Duration // CALLBACK_TIMESTAMP_WINDOW; 0: not checked (only with RequireEncryption)
	DecryptFailures Rate          // CALLBACK_DECRYPT_FAILURES_PER_IP; zero: no limit
	DedupTTL        time.Duration // CALLBACK_DEDUP_TTL
	NotifyTimeout   time.Duration // NOTIFY_TIMEOUT
	Budget          time.Duration // CALLBACK_BUDGET

	Replies Replies

	MiniProgram MiniProgram

	OAConfirm OAConfirm

	LogLevel slog.Level // LOG_LEVEL
}

// MiniProgram configures the Mini Program backend API (/miniprogram/*),
// served when AppID is set.
type MiniProgram struct {
	AppID          string   // MINIPROGRAM_APPID; empty: the API is not served
	Secret         string   // MINIPROGRAM_SECRET (secret)
	SiteName       string   // SITE_NAME: shown on the phone
	TrustedProxies []string // TRUSTED_PROXIES: whose X-Forwarded-For names the client
	ScansPerIP     Rate     // MINIPROGRAM_SCANS_PER_IP; zero: no limit
	ConfirmsPerIP  Rate     // MINIPROGRAM_CONFIRMS_PER_IP; zero: no limit
	ScansPerScene  int      // MINIPROGRAM_SCANS_PER_SCENE; 0: no limit
}

// Enabled reports whether the Mini Program API is served.
func (m MiniProgram) Enabled() bool { return m.AppID != "" }

// OAConfirm configures the confirmation inside WeChat of official-account
// scans: with Enabled, a scan only binds the scanner and the reply links to
// /oa/confirm, where the scanner confirms or cancels.
type OAConfirm struct {
	Enabled   bool   // OA_CONFIRM
	PublicURL string // CALLBACK_PUBLIC_URL: an origin, without a trailing slash
	OpenBase  string // WECHAT_OPEN_BASE: host of /connect/oauth2/authorize
	PerIP     Rate   // OA_CONFIRM_PER_IP: requests to /oa/confirm per client; zero: no limit
	// SiteName and TrustedProxies are the SITE_NAME and TRUSTED_PROXIES
	// settings, as for the Mini Program API.
	SiteName       string
	TrustedProxies []string
}

// Rate is the CALLBACK_DECRYPT_FAILURES_PER_IP setting: N per Per, the
// zero Rate meaning no limit.
type Rate = settings.Rate

// Replies is the wording of the text replies sent to the scanning user. An
// empty text means no text: WeChat is answered "success". A REPLY_* variable
// set to the empty string or to "-" reads as the empty text.
type Replies struct {
	LoginOK     string // REPLY_LOGIN_OK: the browser got (or will get) the login
	Expired     string // REPLY_EXPIRED: the QR code expired
	NotFound    string // REPLY_NOT_FOUND: unknown scene, wrong ticket, already used
	Unavailable string // REPLY_UNAVAILABLE: the push server cannot be reached
	Welcome     string // REPLY_WELCOME: a plain follow; empty answers "success"
	// Confirm is REPLY_CONFIRM, the answer to a scan with OA_CONFIRM: it
	// names who asks and links to the confirm page. Placeholders: {site}
	// {browser} {os} {ip} {link}; it must hold {link}.
	Confirm string
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
	DefaultRedisPrefix     = "scanlogin:"

	DefaultScansPerIP    = "20/m"
	DefaultConfirmsPerIP = "30/m"
	DefaultScansPerScene = 10

	DefaultReplyLoginOK     = "Login successful. You can continue in your browser."
	DefaultReplyExpired     = "This QR code has expired. Please refresh the login page and scan the new code."
	DefaultReplyNotFound    = "Sorry, this login request could not be completed. Please refresh the login page and try again."
	DefaultReplyUnavailable = "Login is temporarily unavailable. Please try again in a moment."
	DefaultReplyWelcome     = "Thanks for following!"
	DefaultReplyConfirm     = "Log in to {site} on {browser}, {os} (IP {ip})? Open this link to confirm or cancel: {link}\nIf you did not ask to log in, ignore this message."

	DefaultOpenBase     = "https://open.weixin.qq.com"
	DefaultOAConfirmIPs = "30/m"
)

// Limits enforced by Load.
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

// maxScansPerScene bounds MINIPROGRAM_SCANS_PER_SCENE.
const maxScansPerScene = 1000

// maxSiteName bounds SITE_NAME, which every scan answer carries.
const maxSiteName = 100

// maxDuration bounds the duration settings that have no tighter limit.
const maxDuration = 30 * 24 * time.Hour

// Load reads the configuration through lookup (os.LookupEnv, or settings.Map)
// and validates it. The error names the first bad variable.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	e := settings.NewEnv(lookup)
	c := &Config{
		HTTPAddr:          e.HostPort("CALLBACK_HTTP_ADDR", DefaultHTTPAddr),
		Token:             e.Secret("WECHAT_TOKEN"),
		AESKey:            e.Secret("WECHAT_AES_KEY"),
		AppID:             e.String("WECHAT_APPID", ""),
		Secret:            e.Secret("WECHAT_SECRET"),
		APIBase:           e.URL("WECHAT_API_BASE", DefaultAPIBase),
		OriginalID:        e.String("WECHAT_ORIGINAL_ID", ""),
		PushTarget:        e.String("PUSH_GRPC_TARGET", DefaultPushTarget),
		GRPCAuthToken:     e.Secret("GRPC_AUTH_TOKEN"),
		RedisURL:          e.String("REDIS_URL", ""),
		RedisPrefix:       e.String("REDIS_PREFIX", DefaultRedisPrefix),
		TrustedProxies:    e.List("TRUSTED_PROXIES", ""),
		RequireEncryption: e.Bool("CALLBACK_REQUIRE_ENCRYPTION", false),
		FetchUserInfo:     e.Bool("FETCH_USER_INFO", false),
		UserInfoTimeout:   e.Duration("USER_INFO_TIMEOUT", DefaultUserInfoTimeout, 0, maxDuration),
		TimestampWindow:   e.Duration("CALLBACK_TIMESTAMP_WINDOW", DefaultTimestampWindow, 0, maxDuration),
		DecryptFailures:   e.Rate("CALLBACK_DECRYPT_FAILURES_PER_IP", DefaultDecryptFailures),
		DedupTTL:          e.Duration("CALLBACK_DEDUP_TTL", DefaultDedupTTL, MinDedupTTL, maxDuration),
		NotifyTimeout:     e.Duration("NOTIFY_TIMEOUT", DefaultNotifyTimeout, 0, maxDuration),
		Budget:            e.Duration("CALLBACK_BUDGET", DefaultBudget, 0, maxDuration),
		Replies: Replies{
			LoginOK:     e.Text("REPLY_LOGIN_OK", DefaultReplyLoginOK),
			Expired:     e.Text("REPLY_EXPIRED", DefaultReplyExpired),
			NotFound:    e.Text("REPLY_NOT_FOUND", DefaultReplyNotFound),
			Unavailable: e.Text("REPLY_UNAVAILABLE", DefaultReplyUnavailable),
			Welcome:     e.Text("REPLY_WELCOME", DefaultReplyWelcome),
			Confirm:     e.Text("REPLY_CONFIRM", DefaultReplyConfirm),
		},
		MiniProgram: MiniProgram{
			AppID:         e.String("MINIPROGRAM_APPID", ""),
			Secret:        e.Secret("MINIPROGRAM_SECRET"),
			SiteName:      e.String("SITE_NAME", ""),
			ScansPerIP:    e.Rate("MINIPROGRAM_SCANS_PER_IP", DefaultScansPerIP),
			ConfirmsPerIP: e.Rate("MINIPROGRAM_CONFIRMS_PER_IP", DefaultConfirmsPerIP),
			ScansPerScene: e.Int("MINIPROGRAM_SCANS_PER_SCENE", DefaultScansPerScene, 0, maxScansPerScene),
		},
		OAConfirm: OAConfirm{
			Enabled:   e.Bool("OA_CONFIRM", false),
			PublicURL: strings.TrimSuffix(e.String("CALLBACK_PUBLIC_URL", ""), "/"),
			OpenBase:  strings.TrimSuffix(e.URL("WECHAT_OPEN_BASE", DefaultOpenBase), "/"),
			PerIP:     e.Rate("OA_CONFIRM_PER_IP", DefaultOAConfirmIPs),
			SiteName:  e.String("SITE_NAME", ""),
		},
		LogLevel: e.LogLevel("LOG_LEVEL"),
	}
	c.MiniProgram.TrustedProxies = c.TrustedProxies
	c.OAConfirm.TrustedProxies = c.TrustedProxies
	c.validate(e)
	c.MiniProgram.validate(e)
	c.validateOAConfirm(e)
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// validate checks the settings against each other and against WeChat's
// formats, recording problems on e. It never quotes a secret.
func (c *Config) validate(e *settings.Env) {
	var name, problem string
	switch {
	case c.Token == "" && c.MiniProgram.AppID == "":
		name, problem = "WECHAT_TOKEN", "required (the Token of the official account's server configuration), unless MINIPROGRAM_APPID is set"
	case c.Token == "" && c.AESKey != "":
		name, problem = "WECHAT_TOKEN", "required when WECHAT_AES_KEY is set"
	case c.Token != "" && !tokenRE.MatchString(c.Token):
		name, problem = "WECHAT_TOKEN", "must be 3 to 32 letters or digits"
	case c.AESKey != "" && !aesKeyRE.MatchString(c.AESKey):
		name, problem = "WECHAT_AES_KEY", "must be empty or exactly 43 letters or digits (the EncodingAESKey)"
	case c.AESKey != "" && c.AppID == "":
		name, problem = "WECHAT_APPID", "required when WECHAT_AES_KEY is set (the decrypted message names it)"
	case c.RequireEncryption && c.AESKey == "":
		name, problem = "CALLBACK_REQUIRE_ENCRYPTION", "needs WECHAT_AES_KEY"
	case c.FetchUserInfo && c.AppID == "":
		name, problem = "WECHAT_APPID", "required when FETCH_USER_INFO is true"
	case c.FetchUserInfo && c.Secret == "":
		name, problem = "WECHAT_SECRET", "required when FETCH_USER_INFO is true"
	case c.AppID != "" && !appIDRE.MatchString(c.AppID):
		name, problem = "WECHAT_APPID", fmt.Sprintf("%q is not an AppID", c.AppID)
	case c.OriginalID != "" && !originalIDRE.MatchString(c.OriginalID):
		name, problem = "WECHAT_ORIGINAL_ID", fmt.Sprintf("%q is not an original id (gh_...)", c.OriginalID)
	case c.TimestampWindow == 0 && !c.RequireEncryption:
		// The replay memory forgets a (timestamp, nonce) pair after a
		// while; without the window a captured plaintext request, whose
		// body no signature covers, would then pass with any body.
		name, problem = "CALLBACK_TIMESTAMP_WINDOW", "0 (no check) needs CALLBACK_REQUIRE_ENCRYPTION=true"
	case c.Budget <= 0 || c.Budget >= MaxBudget:
		name, problem = "CALLBACK_BUDGET", fmt.Sprintf("%v must be above 0 and below %v (WeChat waits 5 s)", c.Budget, MaxBudget)
	case c.NotifyTimeout <= 0 || c.NotifyTimeout > c.Budget:
		name, problem = "NOTIFY_TIMEOUT", fmt.Sprintf("%v must be above 0 and at most CALLBACK_BUDGET (%v)", c.NotifyTimeout, c.Budget)
	case c.UserInfoTimeout <= 0 || c.UserInfoTimeout >= c.Budget:
		name, problem = "USER_INFO_TIMEOUT", fmt.Sprintf("%v must be above 0 and below CALLBACK_BUDGET (%v)", c.UserInfoTimeout, c.Budget)
	case c.RedisURL != "":
		if _, err := redisurl.Parse(c.RedisURL); err != nil {
			name, problem = "REDIS_URL", err.Error()
		}
	}
	if name != "" {
		e.Check(name, errors.New(problem))
	}
}

// validate checks the Mini Program settings, recording problems on e.
func (m *MiniProgram) validate(e *settings.Env) {
	switch {
	case m.AppID != "" && !appIDRE.MatchString(m.AppID):
		e.Check("MINIPROGRAM_APPID", fmt.Errorf("%q is not an AppID", m.AppID))
	case m.AppID != "" && m.Secret == "":
		e.Check("MINIPROGRAM_SECRET", errors.New("required when MINIPROGRAM_APPID is set"))
	case m.AppID == "" && m.Secret != "":
		e.Check("MINIPROGRAM_APPID", errors.New("required when MINIPROGRAM_SECRET is set"))
	case len(m.SiteName) > maxSiteName || !utf8.ValidString(m.SiteName):
		e.Check("SITE_NAME", fmt.Errorf("must be valid UTF-8 of at most %d bytes", maxSiteName))
	}
	for _, p := range m.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			e.Check("TRUSTED_PROXIES", fmt.Errorf("%q is not an IP address or CIDR", p))
			return
		}
	}
}

// validateOAConfirm checks the settings of OA_CONFIRM, recording problems on e.
func (c *Config) validateOAConfirm(e *settings.Env) {
	o := c.OAConfirm
	if !o.Enabled {
		return
	}
	switch {
	case c.Token == "":
		e.Check("WECHAT_TOKEN", errors.New("required when OA_CONFIRM is true"))
	case o.PublicURL == "":
		e.Check("CALLBACK_PUBLIC_URL", errors.New("required when OA_CONFIRM is true (the origin at which WeChat users reach this service)"))
	case c.AppID == "":
		e.Check("WECHAT_APPID", errors.New("required when OA_CONFIRM is true (web authorization)"))
	case c.Secret == "":
		e.Check("WECHAT_SECRET", errors.New("required when OA_CONFIRM is true (web authorization)"))
	case !strings.Contains(c.Replies.Confirm, "{link}"):
		e.Check("REPLY_CONFIRM", errors.New("must contain {link} when OA_CONFIRM is true"))
	}
	if o.PublicURL != "" {
		if err := checkOrigin(o.PublicURL); err != nil {
			e.Check("CALLBACK_PUBLIC_URL", err)
		}
	}
}

// checkOrigin accepts an origin: https://host[:port], or http:// for a
// loopback host (development), with no path, query or credentials.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an origin like https://login.example.com", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip, err := netip.ParseAddr(host); (err == nil && ip.IsLoopback()) || host == "localhost" {
			return nil
		}
		return fmt.Errorf("%q must be https (http only for a loopback host)", s)
	}
	return fmt.Errorf("%q is not an origin like https://login.example.com", s)
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
		slog.String("redis", redisurl.Safe(c.RedisURL)),
		slog.String("redis_prefix", c.RedisPrefix),
		slog.Bool("fetch_user_info", c.FetchUserInfo),
		slog.String("api_base", c.APIBase),
		slog.Duration("timestamp_window", c.TimestampWindow),
		slog.String("decrypt_failures_per_ip", c.DecryptFailures.String()),
		slog.Duration("dedup_ttl", c.DedupTTL),
		slog.Duration("notify_timeout", c.NotifyTimeout),
		slog.Duration("budget", c.Budget),
		slog.String("miniprogram_appid", c.MiniProgram.AppID),
		slog.String("site_name", c.MiniProgram.SiteName),
		slog.Any("trusted_proxies", c.MiniProgram.TrustedProxies),
		slog.String("miniprogram_scans_per_ip", c.MiniProgram.ScansPerIP.String()),
		slog.String("miniprogram_confirms_per_ip", c.MiniProgram.ConfirmsPerIP.String()),
		slog.Int("miniprogram_scans_per_scene", c.MiniProgram.ScansPerScene),
		slog.Bool("oa_confirm", c.OAConfirm.Enabled),
		slog.String("callback_public_url", c.OAConfirm.PublicURL),
		slog.String("open_base", c.OAConfirm.OpenBase),
		slog.String("oa_confirm_per_ip", c.OAConfirm.PerIP.String()),
		slog.String("log_level", c.LogLevel.String()),
	)
}

// Package config reads the push server's settings from the environment,
// once, at start. Every setting is documented in the README.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/internal/redisurl"
	"github.com/scanlogin/scanlogin/internal/settings"
)

// Config is the push server's configuration.
type Config struct {
	HTTPAddr        string        // PUSH_HTTP_ADDR
	GRPCAddr        string        // PUSH_GRPC_ADDR
	APIAddr         string        // PUSH_API_ADDR: the HTTP/JSON push API
	Flows           []string      // LOGIN_FLOWS: FlowOA, FlowMiniProgram; the first is /ws's default
	AppID           string        // WECHAT_APPID: the official account (oa flow)
	Secret          string        // WECHAT_SECRET (secret)
	MiniAppID       string        // MINIPROGRAM_APPID: the Mini Program (miniprogram flow)
	MiniSecret      string        // MINIPROGRAM_SECRET (secret)
	MiniPage        string        // MINIPROGRAM_PAGE: the page its codes open
	MiniEnv         string        // MINIPROGRAM_ENV: env_version of its codes
	SiteName        string        // SITE_NAME: the name the phone shows; empty: the page's host
	APIBase         string        // WECHAT_API_BASE
	MPBase          string        // WECHAT_MP_BASE
	LoginTTL        time.Duration // LOGIN_TTL
	TokenKeyFile    string        // TOKEN_KEY_FILE
	TokenIssuer     string        // TOKEN_ISSUER
	TokenTTL        time.Duration // TOKEN_TTL
	AllowedOrigins  []string      // ALLOWED_ORIGINS
	RedisURL        string        // REDIS_URL (may hold a password)
	RedisPrefix     string        // REDIS_PREFIX
	GRPCAuthToken   string        // GRPC_AUTH_TOKEN (secret)
	ConnsPerIP      int           // LIMIT_CONNS_PER_IP
	QRPerIP         settings.Rate // LIMIT_QR_PER_IP
	TrustedProxies  []string      // TRUSTED_PROXIES
	MaxRefresh      int           // PUSH_MAX_REFRESH
	ShutdownTimeout time.Duration // PUSH_SHUTDOWN_TIMEOUT
	SimulatorURL    string        // PUSH_SIMULATOR_URL: dev only, linked from the login page
	DebugAddr       string        // PUSH_DEBUG_ADDR: net/http/pprof, off when empty
	LogLevel        slog.Level    // LOG_LEVEL
}

// Load reads the configuration through lookup (os.LookupEnv) and validates
// it. The error names the first bad setting.
func Load(lookup func(string) (string, bool)) (*Config, error) {
	e := settings.NewEnv(lookup)
	c := &Config{
		HTTPAddr:     e.HostPort("PUSH_HTTP_ADDR", ":8080"),
		GRPCAddr:     e.HostPort("PUSH_GRPC_ADDR", "127.0.0.1:9090"),
		APIAddr:      e.HostPort("PUSH_API_ADDR", "127.0.0.1:9091"),
		AppID:        e.String("WECHAT_APPID", ""),
		Secret:       e.Secret("WECHAT_SECRET"),
		MiniAppID:    e.String("MINIPROGRAM_APPID", ""),
		MiniSecret:   e.Secret("MINIPROGRAM_SECRET"),
		MiniPage:     e.String("MINIPROGRAM_PAGE", "pages/login/login"),
		MiniEnv:      e.String("MINIPROGRAM_ENV", "release"),
		SiteName:     e.String("SITE_NAME", ""),
		APIBase:      e.URL("WECHAT_API_BASE", "https://api.weixin.qq.com"),
		MPBase:       e.URL("WECHAT_MP_BASE", "https://mp.weixin.qq.com"),
		LoginTTL:     e.Duration("LOGIN_TTL", 120*time.Second, time.Second, 30*24*time.Hour),
		TokenKeyFile: e.String("TOKEN_KEY_FILE", ""),
		TokenIssuer:  e.String("TOKEN_ISSUER", "scanlogin"),
		TokenTTL:     e.Duration("TOKEN_TTL", 5*time.Minute, time.Second, 30*24*time.Hour),
		RedisURL:     e.String("REDIS_URL", ""),
		RedisPrefix:  e.String("REDIS_PREFIX", "scanlogin:"),
		// The auth token is compared byte for byte: no trimming.
		GRPCAuthToken:   e.Secret("GRPC_AUTH_TOKEN"),
		ConnsPerIP:      e.Int("LIMIT_CONNS_PER_IP", 50, 0, math.MaxInt),
		QRPerIP:         e.Rate("LIMIT_QR_PER_IP", "20/m"),
		MaxRefresh:      e.Int("PUSH_MAX_REFRESH", 10, 0, math.MaxInt),
		ShutdownTimeout: e.Duration("PUSH_SHUTDOWN_TIMEOUT", 10*time.Second, 100*time.Millisecond, 5*time.Minute),
		SimulatorURL:    e.URL("PUSH_SIMULATOR_URL", ""),
		DebugAddr:       e.HostPort("PUSH_DEBUG_ADDR", ""),
		LogLevel:        e.LogLevel("LOG_LEVEL"),
	}
	c.Flows = c.loadFlows(e)
	if strings.HasPrefix(c.MiniPage, "/") || strings.ContainsAny(c.MiniPage, "?# ") {
		e.Check("MINIPROGRAM_PAGE", fmt.Errorf("%q is not a page path like pages/login/login (no leading /, no query)", c.MiniPage))
	}
	switch c.MiniEnv {
	case "release", "trial", "develop":
	default:
		e.Check("MINIPROGRAM_ENV", fmt.Errorf("%q is not release, trial or develop", c.MiniEnv))
	}
	if c.LoginTTL%time.Second != 0 {
		e.Check("LOGIN_TTL", errors.New("must be whole seconds (it is the QR code's expire_seconds)"))
	}
	var err error
	c.AllowedOrigins, err = origins(e.List("ALLOWED_ORIGINS", ""))
	e.Check("ALLOWED_ORIGINS", err)
	c.TrustedProxies, err = proxies(e.List("TRUSTED_PROXIES", ""))
	e.Check("TRUSTED_PROXIES", err)
	if c.RedisURL != "" {
		_, err := redisurl.Parse(c.RedisURL)
		e.Check("REDIS_URL", err)
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// The login flows.
const (
	FlowOA          = "oa"          // official-account temporary QR codes
	FlowMiniProgram = "miniprogram" // Mini Program codes
)

// loadFlows reads LOGIN_FLOWS and checks that every flow enabled has its
// credentials. By default a flow is enabled when any of its credentials is
// set (so a half-set pair is reported), oa first.
func (c *Config) loadFlows(e *settings.Env) []string {
	creds := map[string][2]string{
		FlowOA:          {c.AppID, c.Secret},
		FlowMiniProgram: {c.MiniAppID, c.MiniSecret},
	}
	names := map[string][2]string{
		FlowOA:          {"WECHAT_APPID", "WECHAT_SECRET"},
		FlowMiniProgram: {"MINIPROGRAM_APPID", "MINIPROGRAM_SECRET"},
	}
	flows := e.List("LOGIN_FLOWS", "")
	why := "required for the %s flow"
	if len(flows) == 0 {
		why = "required for the %s flow (its other setting is set)"
		for _, f := range []string{FlowOA, FlowMiniProgram} {
			if creds[f][0] != "" || creds[f][1] != "" {
				flows = append(flows, f)
			}
		}
		if len(flows) == 0 {
			e.Check("WECHAT_APPID", errors.New("required (or set MINIPROGRAM_APPID and MINIPROGRAM_SECRET for Mini Program codes only)"))
			return nil
		}
	}
	for i, f := range flows {
		if _, ok := creds[f]; !ok {
			e.Check("LOGIN_FLOWS", fmt.Errorf("%q is not a flow (oa, miniprogram)", f))
			return nil
		}
		if slices.Contains(flows[:i], f) {
			e.Check("LOGIN_FLOWS", fmt.Errorf("%q is listed twice", f))
			return nil
		}
		for j, v := range creds[f] {
			if v == "" {
				e.Check(names[f][j], fmt.Errorf(why, f))
			}
		}
	}
	return flows
}

// Enabled reports whether flow is one of Flows.
func (c *Config) Enabled(flow string) bool { return slices.Contains(c.Flows, flow) }

// LogValue lists the settings that are not secret, for the start-up log line.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("grpc_addr", c.GRPCAddr),
		slog.String("api_addr", c.APIAddr),
		slog.Any("flows", c.Flows),
		slog.String("appid", c.AppID),
		slog.String("miniprogram_appid", c.MiniAppID),
		slog.String("miniprogram_page", c.MiniPage),
		slog.String("miniprogram_env", c.MiniEnv),
		slog.String("site_name", c.SiteName),
		slog.String("api_base", c.APIBase),
		slog.String("mp_base", c.MPBase),
		slog.Duration("login_ttl", c.LoginTTL),
		slog.Bool("token_key_file", c.TokenKeyFile != ""),
		slog.String("token_issuer", c.TokenIssuer),
		slog.Duration("token_ttl", c.TokenTTL),
		slog.Any("allowed_origins", c.AllowedOrigins),
		slog.String("redis", redisurl.Safe(c.RedisURL)),
		slog.Bool("grpc_auth", c.GRPCAuthToken != ""),
		slog.Int("conns_per_ip", c.ConnsPerIP),
		slog.String("qr_per_ip", c.QRPerIP.String()),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.Int("max_refresh", c.MaxRefresh),
	)
}

// origins checks a list of "scheme://host[:port]" and lowercases it.
func origins(list []string) ([]string, error) {
	var out []string
	for _, o := range list {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%q is not an origin like https://example.com", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

// proxies checks a list of IP addresses and CIDRs.
func proxies(list []string) ([]string, error) {
	for _, p := range list {
		if _, err := netip.ParsePrefix(p); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(p); err != nil {
			return nil, fmt.Errorf("%q is not an IP address or CIDR", p)
		}
	}
	return list, nil
}

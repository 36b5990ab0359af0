// Package config reads the push server's settings from the environment,
// once, at start. Every setting is documented in the README.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/internal/redisurl"
	"github.com/scanlogin/scanlogin/internal/settings"
	"github.com/scanlogin/scanlogin/push-server/internal/limit"
)

// Config is the push server's configuration.
type Config struct {
	HTTPAddr        string        // PUSH_HTTP_ADDR
	GRPCAddr        string        // PUSH_GRPC_ADDR
	AppID           string        // WECHAT_APPID
	Secret          string        // WECHAT_SECRET (secret)
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
	QRPerIP         limit.Rate    // LIMIT_QR_PER_IP
	TrustedProxies  []string      // TRUSTED_PROXIES
	MaxRefresh      int           // PUSH_MAX_REFRESH
	ShutdownTimeout time.Duration // PUSH_SHUTDOWN_TIMEOUT
	SimulatorURL    string        // PUSH_SIMULATOR_URL: dev only, linked from the login page
	DebugAddr       string        // PUSH_DEBUG_ADDR: net/http/pprof, off when empty
	LogLevel        slog.Level    // LOG_LEVEL
}

// Load reads the configuration through getenv and validates it. The error
// names the first bad setting.
func Load(getenv func(string) string) (*Config, error) {
	e := settings.NewEnv(getenv)
	env, check := e.Get, e.Check
	c := &Config{
		HTTPAddr:     env("PUSH_HTTP_ADDR", ":8080"),
		GRPCAddr:     env("PUSH_GRPC_ADDR", "127.0.0.1:9090"),
		AppID:        env("WECHAT_APPID", ""),
		Secret:       env("WECHAT_SECRET", ""),
		APIBase:      env("WECHAT_API_BASE", "https://api.weixin.qq.com"),
		MPBase:       env("WECHAT_MP_BASE", "https://mp.weixin.qq.com"),
		TokenKeyFile: env("TOKEN_KEY_FILE", ""),
		TokenIssuer:  env("TOKEN_ISSUER", "scanlogin"),
		RedisURL:     env("REDIS_URL", ""),
		RedisPrefix:  env("REDIS_PREFIX", "scanlogin:"),
		// The auth token is compared byte for byte: no trimming.
		GRPCAuthToken: getenv("GRPC_AUTH_TOKEN"),
		SimulatorURL:  env("PUSH_SIMULATOR_URL", ""),
		DebugAddr:     env("PUSH_DEBUG_ADDR", ""),
	}
	var err error
	c.LoginTTL, err = settings.Duration(env("LOGIN_TTL", "120s"), time.Second, 30*24*time.Hour)
	if err == nil && c.LoginTTL%time.Second != 0 {
		err = errors.New("must be whole seconds (it is the QR code's expire_seconds)")
	}
	check("LOGIN_TTL", err)
	c.TokenTTL, err = settings.Duration(env("TOKEN_TTL", "5m"), time.Second, 30*24*time.Hour)
	check("TOKEN_TTL", err)
	c.ShutdownTimeout, err = settings.Duration(env("PUSH_SHUTDOWN_TIMEOUT", "10s"), 100*time.Millisecond, 5*time.Minute)
	check("PUSH_SHUTDOWN_TIMEOUT", err)
	c.ConnsPerIP, err = settings.Count(env("LIMIT_CONNS_PER_IP", "50"))
	check("LIMIT_CONNS_PER_IP", err)
	c.MaxRefresh, err = settings.Count(env("PUSH_MAX_REFRESH", "10"))
	check("PUSH_MAX_REFRESH", err)
	c.QRPerIP, err = limit.ParseRate(env("LIMIT_QR_PER_IP", "20/m"))
	check("LIMIT_QR_PER_IP", err)
	c.AllowedOrigins, err = origins(env("ALLOWED_ORIGINS", ""))
	check("ALLOWED_ORIGINS", err)
	c.TrustedProxies, err = proxies(env("TRUSTED_PROXIES", ""))
	check("TRUSTED_PROXIES", err)
	check("LOG_LEVEL", c.LogLevel.UnmarshalText([]byte(env("LOG_LEVEL", "info"))))
	check("PUSH_HTTP_ADDR", settings.HostPort(c.HTTPAddr))
	check("PUSH_GRPC_ADDR", settings.HostPort(c.GRPCAddr))
	check("WECHAT_APPID", settings.Required(c.AppID))
	check("WECHAT_SECRET", settings.Required(c.Secret))
	check("WECHAT_API_BASE", settings.HTTPURL(c.APIBase))
	check("WECHAT_MP_BASE", settings.HTTPURL(c.MPBase))
	if c.DebugAddr != "" {
		check("PUSH_DEBUG_ADDR", settings.HostPort(c.DebugAddr))
	}
	if c.SimulatorURL != "" {
		check("PUSH_SIMULATOR_URL", settings.HTTPURL(c.SimulatorURL))
	}
	if c.RedisURL != "" {
		_, err := redisurl.Parse(c.RedisURL)
		check("REDIS_URL", err)
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// LogValue lists the settings that are not secret, for the start-up log line.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("grpc_addr", c.GRPCAddr),
		slog.String("appid", c.AppID),
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

// origins parses a comma list of "scheme://host[:port]".
func origins(s string) ([]string, error) {
	var out []string
	for _, o := range settings.List(s) {
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%q is not an origin like https://example.com", o)
		}
		out = append(out, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	return out, nil
}

// proxies parses a comma list of IP addresses and CIDRs.
func proxies(s string) ([]string, error) {
	list := settings.List(s)
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

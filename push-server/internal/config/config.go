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
		AppID:        e.Required("WECHAT_APPID"),
		Secret:       e.Secret("WECHAT_SECRET"),
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
	if c.Secret == "" {
		e.Check("WECHAT_SECRET", errors.New("required"))
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

// LogValue lists the settings that are not secret, for the start-up log line.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.String("grpc_addr", c.GRPCAddr),
		slog.String("api_addr", c.APIAddr),
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

package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// Defaults of [Config].
const (
	DefaultAPIBase = "https://api.weixin.qq.com"
	DefaultMPBase  = "https://mp.weixin.qq.com"
	// DefaultHTTPTimeout bounds one HTTP exchange of the default client.
	DefaultHTTPTimeout = 5 * time.Second
	// MaxIdleConnsPerHost is how many kept-alive connections NewHTTPClient
	// holds to one host: about one per QR code being created at the same
	// moment. With net/http's default of 2, a wave of browsers made nearly
	// every request open a connection (a TLS handshake) and close another.
	// Idle connections are closed after 90 s. docs/benchmarks.md has the
	// measurements behind the number.
	MaxIdleConnsPerHost = 100
)

const (
	// maxBody bounds every response body we read.
	maxBody = 1 << 20
	// tokenMargin is how long before WeChat's expiry we stop using a
	// token; see tokenLifetime.
	tokenMargin = 5 * time.Minute
	// fetchTimeout bounds one token fetch, which runs on behalf of every
	// waiting caller and so outlives any one caller's context.
	fetchTimeout = 15 * time.Second
)

// Config configures a [Client]. AppID and Secret are required.
type Config struct {
	// APIBase is the API host, default DefaultAPIBase. Point it at the
	// simulator or a wechattest.Server in development and tests.
	APIBase string
	// MPBase is the host of /cgi-bin/showqrcode, default DefaultMPBase.
	MPBase string
	// AppID and Secret are the official account's credentials.
	AppID, Secret string
	// HTTPClient sends the requests; default: NewHTTPClient with
	// DefaultHTTPTimeout.
	HTTPClient *http.Client
	// Tokens caches the access token; default: a new MemoryTokenCache.
	// Share one cache (e.g. Redis) among processes of one account.
	Tokens TokenCache
	// Logger gets debug and warning records; default: discard. Secrets
	// and tokens are never logged.
	Logger *slog.Logger
}

// Client calls the WeChat API of one official account. It fetches the
// access token with /cgi-bin/stable_token, caches it, refreshes it one
// fetch at a time, and retries a call once with a fresh token when WeChat
// reports the token invalid. A Client is safe for concurrent use.
type Client struct {
	apiBase string
	mpBase  string
	appID   string
	secret  string
	hc      *http.Client
	tokens  TokenCache
	log     *slog.Logger
	flight  singleflight.Group
	now     func() time.Time // replaced in tests
}

// NewClient checks cfg and returns a Client. AppID and Secret must be
// non-empty; base URLs must be absolute http or https URLs without query.
func NewClient(cfg Config) (*Client, error) {
	if cfg.AppID == "" {
		return nil, errors.New("wechat: config: empty AppID")
	}
	if cfg.Secret == "" {
		return nil, errors.New("wechat: config: empty Secret")
	}
	apiBase, err := baseURL("APIBase", cfg.APIBase, DefaultAPIBase)
	if err != nil {
		return nil, err
	}
	mpBase, err := baseURL("MPBase", cfg.MPBase, DefaultMPBase)
	if err != nil {
		return nil, err
	}
	c := &Client{
		apiBase: apiBase,
		mpBase:  mpBase,
		appID:   cfg.AppID,
		secret:  cfg.Secret,
		hc:      cfg.HTTPClient,
		tokens:  cfg.Tokens,
		log:     cfg.Logger,
		now:     time.Now,
	}
	if c.hc == nil {
		c.hc = NewHTTPClient(DefaultHTTPTimeout)
	}
	if c.tokens == nil {
		c.tokens = new(MemoryTokenCache)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// NewHTTPClient returns an HTTP client for the WeChat API (and, in the
// simulator, for WeChat's calls of the callback): net/http's default
// transport (proxy from the environment, HTTP/2 where the server offers it),
// keeping up to MaxIdleConnsPerHost connections per host alive, with
// timeout for each exchange (0: none).
func NewHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = MaxIdleConnsPerHost
	t.MaxIdleConnsPerHost = MaxIdleConnsPerHost
	return &http.Client{Timeout: timeout, Transport: t}
}

func baseURL(name, s, def string) (string, error) {
	if s == "" {
		s = def
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("wechat: config: %s is not a URL", name)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		// Redacted hides a password; never echo credentials.
		return "", fmt.Errorf("wechat: config: %s %q is not an absolute http(s) URL without credentials or query", name, u.Redacted())
	}
	return strings.TrimRight(s, "/"), nil
}

// APIError is an answer of WeChat with a non-zero errcode. Use errors.As
// to get it, and [IsTokenInvalid] to classify it.
type APIError struct {
	Op   string // the API, e.g. "qrcode/create"
	Code int    // WeChat's errcode
	Msg  string // WeChat's errmsg
}

// Error returns e.g. "wechat qrcode/create: errcode 40001: invalid credential".
func (e *APIError) Error() string {
	return fmt.Sprintf("wechat %s: errcode %d: %s", e.Op, e.Code, e.Msg)
}

// WeChat errcodes that mean "this access token is not valid (any more)".
const (
	ErrCodeInvalidCredential = 40001
	ErrCodeInvalidToken      = 40014
	ErrCodeTokenExpired      = 42001
)

// IsTokenInvalid reports whether err is an *APIError with errcode 40001,
// 40014 or 42001, which the client answers with one refresh and one retry.
func IsTokenInvalid(err error) bool {
	var e *APIError
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code {
	case ErrCodeInvalidCredential, ErrCodeInvalidToken, ErrCodeTokenExpired:
		return true
	}
	return false
}

// AccessToken returns a valid access token, from the cache when it holds one
// that has not reached its ExpiresAt, else from /cgi-bin/stable_token in
// normal mode. Concurrent callers of one Client share a single fetch. A
// failing cache is logged and bypassed, so that logins keep working.
func (c *Client) AccessToken(ctx context.Context) (string, error) {
	if t, ok := c.loadToken(ctx); ok {
		return t.Value, nil
	}
	ch := c.flight.DoChan("token", func() (any, error) {
		// The fetch serves every waiter: do not let one caller's
		// cancellation fail the others.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		if t, ok := c.loadToken(fctx); ok {
			return t.Value, nil // another process stored one meanwhile
		}
		t, err := c.fetchToken(fctx)
		if err != nil {
			return "", err
		}
		if err := c.tokens.Store(fctx, t); err != nil {
			c.log.Warn("wechat: store access token", "err", err)
		}
		return t.Value, nil
	})
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("wechat: access token: %w", context.Cause(ctx))
	case r := <-ch:
		if r.Err != nil {
			return "", fmt.Errorf("wechat: access token: %w", r.Err)
		}
		return r.Val.(string), nil
	}
}

func (c *Client) loadToken(ctx context.Context) (Token, bool) {
	t, ok, err := c.tokens.Load(ctx)
	if err != nil {
		c.log.Warn("wechat: load access token", "err", err)
		return Token{}, false
	}
	if !ok || t.Value == "" || !c.now().Before(t.ExpiresAt) {
		return Token{}, false
	}
	return t, true
}

// tokenLifetime is how long we use a token WeChat says lives expiresIn:
// expiresIn less tokenMargin, but at least half of expiresIn, so that short
// tokens (a simulator's 60 s) are still cached.
func tokenLifetime(expiresIn time.Duration) time.Duration {
	return expiresIn - min(tokenMargin, expiresIn/2)
}

func (c *Client) fetchToken(ctx context.Context) (Token, error) {
	const op = "stable_token"
	body := map[string]any{
		"grant_type":    "client_credential",
		"appid":         c.appID,
		"secret":        c.secret,
		"force_refresh": false,
	}
	var resp struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	start := c.now()
	if err := c.call(ctx, op, http.MethodPost, "/cgi-bin/stable_token", nil, body, &resp, ""); err != nil {
		return Token{}, err
	}
	if resp.AccessToken == "" || resp.ExpiresIn <= 0 {
		return Token{}, fmt.Errorf("wechat %s: answer without access_token or expires_in", op)
	}
	life := tokenLifetime(time.Duration(resp.ExpiresIn) * time.Second)
	c.log.Debug("wechat: fetched access token", "expires_in", resp.ExpiresIn, "cached_for", life)
	return Token{Value: resp.AccessToken, ExpiresAt: start.Add(life)}, nil
}

// withToken runs fn with an access token. If WeChat says the token is
// invalid, it invalidates that token in the cache (only if still cached),
// gets a fresh one and runs fn exactly once more.
func (c *Client) withToken(ctx context.Context, op string, fn func(token string) error) error {
	tok, err := c.AccessToken(ctx)
	if err != nil {
		return err
	}
	err = fn(tok)
	if !IsTokenInvalid(err) {
		return err
	}
	c.log.Info("wechat: access token rejected, refreshing", "op", op, "err", err)
	c.invalidate(ctx, tok)
	tok, err = c.AccessToken(ctx)
	if err != nil {
		return err
	}
	err = fn(tok)
	if IsTokenInvalid(err) {
		// Do not loop; let the next call start from a fresh token.
		c.invalidate(ctx, tok)
	}
	return err
}

func (c *Client) invalidate(ctx context.Context, tok string) {
	if err := c.tokens.Invalidate(ctx, tok); err != nil {
		c.log.Warn("wechat: invalidate access token", "err", err)
	}
}

// call sends one request to the API host and decodes the JSON answer into
// out. token, when set, goes into the access_token query parameter and is
// kept out of every error. A non-200 status is a transport error; a
// non-zero errcode is an *APIError.
func (c *Client) call(ctx context.Context, op, method, path string, query url.Values, in, out any, token string) error {
	raw, err := c.send(ctx, op, method, path, query, in, token)
	if err != nil {
		return err
	}
	if err := apiError(op, raw, token); err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("wechat %s: decode answer: %w", op, err)
		}
	}
	return nil
}

// send sends one request to the API host and returns the body of its 200
// answer (at most maxBody bytes). token, when set, goes into the
// access_token query parameter and is kept out of every error.
func (c *Client) send(ctx context.Context, op, method, path string, query url.Values, in any, token string) ([]byte, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	if token != "" {
		q.Set("access_token", token)
	}
	u := c.apiBase + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("wechat %s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", op, redact(err))
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("wechat %s: %w", op, redact(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("wechat %s: read answer: %w", op, redact(err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("wechat %s: HTTP status %d", op, resp.StatusCode)
	}
	if len(raw) > maxBody {
		return nil, fmt.Errorf("wechat %s: answer larger than %d bytes", op, maxBody)
	}
	return raw, nil
}

// apiError decodes the errcode of a JSON answer: an *APIError when it is
// not zero, nil when it is zero or absent, and a decode error when raw is
// not JSON. token is cut out of WeChat's errmsg.
func apiError(op string, raw []byte, token string) error {
	var status struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(raw, &status); err != nil {
		return fmt.Errorf("wechat %s: decode answer: %w", op, err)
	}
	if status.ErrCode != 0 {
		msg := status.ErrMsg
		if token != "" {
			msg = strings.ReplaceAll(msg, token, "[redacted]")
		}
		return &APIError{Op: op, Code: status.ErrCode, Msg: msg}
	}
	return nil
}

// redact strips the query (access_token, and any credential) from the URL
// that net/http puts into its errors.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u := ue.URL
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return &url.Error{Op: ue.Op, URL: u, Err: ue.Err}
}

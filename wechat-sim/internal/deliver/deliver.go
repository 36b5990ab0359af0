// Package deliver POSTs events to an official account's callback URL the
// way WeChat does, and reads the reply the way WeChat does.
//
// A request carries signature, timestamp, nonce and openid in its query and
// the event XML as its body. With an EncodingAESKey it is a safe-mode
// request: the body holds only ToUserName and the encrypted message, and the
// query adds encrypt_type=aes and msg_signature. When no answer comes within
// the retry delay (WeChat: 5 s), the identical request is sent again, up to
// the configured number of retries. docs/wechat.md describes all three.
//
// The reply is what the user would see in the chat: "success" or an empty
// body show nothing; a text reply shows its content, which in safe mode must
// be encrypted with a valid MsgSignature; anything else, or no answer at
// all, shows WeChat's "this official account cannot provide service" notice.
package deliver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
)

// ServiceNotice is what WeChat shows the user when the account's server did
// not answer in time or answered something WeChat cannot use.
const ServiceNotice = "该公众号暂时无法提供服务，请稍后再试 (This official account cannot provide service at the moment. Please try again later.)"

// Defaults of Config.
const (
	DefaultRetryAfter = 5 * time.Second
	DefaultRetries    = 3
	// maxReply bounds the reply body read.
	maxReply = 64 << 10
)

// Config configures a Sender.
type Config struct {
	// URL is the callback, e.g. http://127.0.0.1:8081/wechat/callback.
	URL string
	// Token is the Token of the account's server configuration.
	Token string
	// AESKey is the EncodingAESKey; empty: plaintext mode.
	AESKey string
	// AppID is the account's AppID, inside every encrypted message.
	AppID string
	// OriginalID is the account's gh_ id, the events' ToUserName.
	OriginalID string
	// RetryAfter is how long to wait for an answer before sending the same
	// request again; default DefaultRetryAfter.
	RetryAfter time.Duration
	// Retries is how many times a request is sent again; default
	// DefaultRetries. Negative: never.
	Retries int
	// Client sends the requests; default: wechat.NewHTTPClient without
	// timeout (each attempt has its own deadline).
	Client *http.Client
	// Logger gets a line per attempt; default: discard.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sender delivers events to one callback. It is safe for concurrent use.
type Sender struct {
	cfg     Config
	crypter *wechat.Crypter // nil in plaintext mode
	log     *slog.Logger
	now     func() time.Time
}

// New checks cfg and returns a Sender.
func New(cfg Config) (*Sender, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("deliver: callback URL %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Token == "" {
		return nil, errors.New("deliver: empty token")
	}
	s := &Sender{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	if cfg.AESKey != "" {
		if s.crypter, err = wechat.NewCrypter(cfg.Token, cfg.AESKey, cfg.AppID); err != nil {
			return nil, fmt.Errorf("deliver: %w", err)
		}
	}
	if s.cfg.RetryAfter <= 0 {
		s.cfg.RetryAfter = DefaultRetryAfter
	}
	if s.cfg.Retries == 0 {
		s.cfg.Retries = DefaultRetries
	}
	if s.cfg.Client == nil { // as WeChat does, keep connections to the callback alive
		s.cfg.Client = wechat.NewHTTPClient(0)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// SafeMode reports whether events are encrypted.
func (s *Sender) SafeMode() bool { return s.crypter != nil }

// Event is what happened on the phone.
type Event struct {
	OpenID   string // the user, FromUserName
	Event    string // wechat.EventSubscribe, wechat.EventScan, ...
	EventKey string // "qrscene_"+scene for a subscribe by QR code, the scene for SCAN
	Ticket   string // the scanned code's ticket
}

// Request is the HTTP request sent, identical on every attempt.
type Request struct {
	URL string // with the query
	// Plain is the event XML before encryption.
	Plain string
	// Body is what was POSTed: Plain, or the safe-mode envelope.
	Body      string
	Encrypted bool
}

// Attempt is one sending of the request.
type Attempt struct {
	Status   int           // HTTP status; 0 when there was no answer
	Duration time.Duration // until the answer or the give-up
	Err      string        // why there was no answer
}

// Reply kinds.
const (
	ReplyText    = "text"    // a text message the user sees
	ReplyNone    = "none"    // "success" or empty: nothing to see
	ReplyFailure = "failure" // WeChat shows ServiceNotice
)

// Reply is what the user sees in the chat after the event.
type Reply struct {
	Kind string // ReplyText, ReplyNone or ReplyFailure
	// Text is the message shown: the reply's Content, or ServiceNotice.
	Text string
	// Raw is the body of the answer, as received.
	Raw string
	// Plain is the reply XML, decrypted in safe mode.
	Plain string
	// Encrypted reports a safe-mode reply whose MsgSignature verified.
	Encrypted bool
	// Problem explains a ReplyFailure, for the developer.
	Problem string
}

// Result is the whole exchange.
type Result struct {
	Request  Request
	Attempts []Attempt
	Reply    Reply
}

// Send delivers ev and returns what happened. It fails only when the
// request cannot be built; an unreachable or misbehaving callback is a
// Result whose Reply is a ReplyFailure.
func (s *Sender) Send(ctx context.Context, ev Event) (*Result, error) {
	req, err := s.build(ev)
	if err != nil {
		return nil, err
	}
	res := &Result{Request: req}
	for i := 0; i <= max(s.cfg.Retries, 0); i++ {
		if i > 0 {
			s.log.Info("no answer in time, sending the same request again", "retry", i, "after", s.cfg.RetryAfter)
		}
		next := time.Now().Add(s.cfg.RetryAfter)
		a, body := s.attempt(ctx, req)
		res.Attempts = append(res.Attempts, a)
		s.log.Info("event sent", "attempt", i+1, "event", ev.Event, "openid", ev.OpenID, "status", a.Status, "dur", a.Duration.Round(time.Millisecond), "err", a.Err)
		if a.Status != 0 {
			res.Reply = s.readReply(ev, a.Status, body)
			return res, nil
		}
		if i == max(s.cfg.Retries, 0) {
			break
		}
		// A quick failure (connection refused) still waits out the delay,
		// so attempts are RetryAfter apart as WeChat's are.
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			break
		}
	}
	res.Reply = Reply{Kind: ReplyFailure, Text: ServiceNotice,
		Problem: fmt.Sprintf("no answer after %d attempts, %s apart", len(res.Attempts), s.cfg.RetryAfter)}
	return res, nil
}

// build makes the request: the event XML, signed, and in safe mode
// encrypted and signed again.
func (s *Sender) build(ev Event) (Request, error) {
	now := s.now().Unix()
	ts := strconv.FormatInt(now, 10)
	nonce, err := rand.Int(rand.Reader, big.NewInt(1e10))
	if err != nil {
		return Request{}, fmt.Errorf("deliver: nonce: %w", err)
	}
	n := nonce.String()
	m := &wechat.Message{
		ToUserName:   s.cfg.OriginalID,
		FromUserName: ev.OpenID,
		CreateTime:   now,
		MsgType:      wechat.MsgTypeEvent,
		Event:        ev.Event,
		EventKey:     ev.EventKey,
		Ticket:       ev.Ticket,
	}
	plain, err := m.Marshal()
	if err != nil {
		return Request{}, fmt.Errorf("deliver: event xml: %w", err)
	}
	q := url.Values{}
	q.Set("signature", wechat.Signature(s.cfg.Token, ts, n))
	q.Set("timestamp", ts)
	q.Set("nonce", n)
	q.Set("openid", ev.OpenID)
	body := plain
	if s.crypter != nil {
		enc, err := s.crypter.Encrypt(plain)
		if err != nil {
			return Request{}, fmt.Errorf("deliver: encrypt: %w", err)
		}
		env := &wechat.Message{ToUserName: s.cfg.OriginalID, Encrypt: enc}
		if body, err = env.Marshal(); err != nil {
			return Request{}, fmt.Errorf("deliver: envelope xml: %w", err)
		}
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", s.crypter.MsgSignature(ts, n, enc))
	}
	u := s.cfg.URL
	if strings.Contains(u, "?") {
		u += "&" + q.Encode()
	} else {
		u += "?" + q.Encode()
	}
	return Request{URL: u, Plain: string(plain), Body: string(body), Encrypted: s.crypter != nil}, nil
}

// attempt sends req once and waits at most RetryAfter for the whole answer.
func (s *Sender) attempt(ctx context.Context, req Request) (Attempt, []byte) {
	start := s.now()
	actx, cancel := context.WithTimeout(ctx, s.cfg.RetryAfter)
	defer cancel()
	a, body := s.exchange(actx, req)
	a.Duration = s.now().Sub(start)
	return a, body
}

func (s *Sender) exchange(ctx context.Context, req Request) (Attempt, []byte) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, req.URL, strings.NewReader(req.Body))
	if err != nil {
		return Attempt{Err: err.Error()}, nil
	}
	hr.Header.Set("Content-Type", "text/xml")
	hr.Header.Set("User-Agent", "Mozilla/4.0 (wechat-sim)")
	resp, err := s.cfg.Client.Do(hr)
	if err != nil {
		return Attempt{Err: describe(ctx, err)}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return Attempt{Err: "reading the answer: " + describe(ctx, err)}, nil
	}
	return Attempt{Status: resp.StatusCode}, body
}

func describe(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// readReply interprets the callback's answer as WeChat would.
func (s *Sender) readReply(ev Event, status int, body []byte) Reply {
	r := Reply{Raw: string(body)}
	fail := func(format string, args ...any) Reply {
		r.Kind, r.Text, r.Problem = ReplyFailure, ServiceNotice, fmt.Sprintf(format, args...)
		return r
	}
	if status != http.StatusOK {
		return fail("HTTP status %d", status)
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || string(trimmed) == "success" {
		r.Kind = ReplyNone
		return r
	}
	plain := trimmed
	if s.crypter != nil {
		env, err := wechat.ParseEncryptedReply(trimmed)
		if err != nil {
			return fail("safe mode needs an encrypted reply: %v", err)
		}
		if !s.crypter.VerifyMsgSignature(env.MsgSignature, env.TimeStamp, env.Nonce, env.Encrypt) {
			return fail("MsgSignature of the reply does not verify")
		}
		if plain, err = s.crypter.Decrypt(env.Encrypt); err != nil {
			return fail("decrypt the reply: %v", err)
		}
		r.Encrypted = true
	}
	r.Plain = string(plain)
	var m struct {
		XMLName      xml.Name `xml:"xml"`
		ToUserName   string   `xml:"ToUserName"`
		FromUserName string   `xml:"FromUserName"`
		CreateTime   string   `xml:"CreateTime"`
		MsgType      string   `xml:"MsgType"`
		Content      *string  `xml:"Content"`
	}
	if err := xml.Unmarshal(plain, &m); err != nil {
		return fail("the reply is not XML: %v", err)
	}
	switch {
	case m.ToUserName != ev.OpenID:
		return fail("reply ToUserName %q is not the user %q", m.ToUserName, ev.OpenID)
	case m.FromUserName != s.cfg.OriginalID:
		return fail("reply FromUserName %q is not the account %q", m.FromUserName, s.cfg.OriginalID)
	case strings.TrimSpace(m.CreateTime) == "":
		return fail("reply without CreateTime")
	case m.MsgType != wechat.MsgTypeText:
		return fail("reply MsgType %q is not supported by the simulator (only text)", m.MsgType)
	case m.Content == nil:
		return fail("text reply without Content")
	}
	r.Kind, r.Text = ReplyText, *m.Content
	return r
}

package login

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/browser"
	"github.com/scanlogin/scanlogin/wechat"
)

// QRCode is a login code made by WeChat: an official account's temporary
// QR code, or a Mini Program code.
type QRCode struct {
	// Ticket names the code: WeChat's ticket of a QR code, which Notify
	// must present, or the key of a Mini Program code's image.
	Ticket   string
	ImageURL string // URL of the image
	URL      string // what the image encodes (WeChat's "url"); empty for a Mini Program code
}

// QRIssuer creates the login codes of one flow for a scene: temporary QR
// codes with a string scene (QR_STR_SCENE), or Mini Program codes.
type QRIssuer interface {
	CreateQR(ctx context.Context, scene string, expire time.Duration) (QRCode, error)
	// ImageURL is the URL of the image of the code with ticket; sessions
	// keep only the ticket.
	ImageURL(ticket string) string
}

// Minter mints the login token handed to a browser whose scan was accepted.
type Minter interface {
	Mint(openid, unionid, sessionID string, now time.Time) (string, error)
}

// Router reaches the browser connections of a session or a user, wherever
// they are held. Counts are connections that were handed the frame.
type Router interface {
	ToSession(ctx context.Context, id string, f browser.Frame) (int, error)
	ToUser(ctx context.Context, openid string, f browser.Frame) (int, error)
	// Attached reports whether any connection is attached to the session.
	Attached(ctx context.Context, id string) (bool, error)
}

// Observer is told what the Service did, for metrics. Its methods must be
// fast and safe for concurrent use.
type Observer interface {
	SessionState(s State)
	NotifyResult(r Result, duplicate bool)
	NotifyDelivered(d time.Duration)
	Pushed(target string, delivered int, stored bool)
}

// Config is what the Service needs to know.
type Config struct {
	TTL time.Duration // life of a QR code and its session (LOGIN_TTL)
	// LoginResume is how long after a confirmation a resume may still be
	// handed the login, once (ResumeWindow); zero: ResumeWindow(0).
	LoginResume time.Duration
}

// ResumeWindow is how long after a confirmation a resume may be handed the
// login: a minute, or half of tokenTTL when shorter, so the token it carries
// is never stale, let alone expired.
func ResumeWindow(tokenTTL time.Duration) time.Duration {
	if tokenTTL <= 0 {
		return time.Minute
	}
	return min(time.Minute, tokenTTL/2)
}

// Service creates, resumes and completes login sessions and delivers what
// happens to them.
type Service struct {
	log     *slog.Logger
	cfg     Config
	store   Store
	issuers map[Flow]QRIssuer // the enabled flows; never changed after NewService
	tokens  Minter
	router  Router
	obs     Observer
	now     func() time.Time
}

// NewService wires a Service. issuers holds the code issuer of each enabled
// flow; Start refuses the others.
func NewService(log *slog.Logger, cfg Config, store Store, issuers map[Flow]QRIssuer, tokens Minter, router Router, obs Observer) *Service {
	if cfg.LoginResume <= 0 {
		cfg.LoginResume = ResumeWindow(0)
	}
	return &Service{log: log, cfg: cfg, store: store, issuers: maps.Clone(issuers), tokens: tokens, router: router, obs: obs, now: time.Now}
}

// Errors the Service returns besides the store's.
var (
	// ErrInvalid: an argument is missing or malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrUpstream: WeChat did not give us a QR code.
	ErrUpstream = errors.New("wechat unavailable")
)

// Started is a new session as its browser sees it.
type Started struct {
	Session *Session
	Resume  string        // the resume secret, only ever given to the browser
	Frame   browser.Frame // the qrcode message
}

// Start creates a login session of req.Flow with a fresh scene and code,
// and records what the phone will show about the requester. A flow that is
// not enabled is ErrInvalid; WeChat's failure is ErrUpstream, wrapping
// WeChat's error.
func (s *Service) Start(ctx context.Context, req Request) (*Started, error) {
	issuer, ok := s.issuers[req.Flow]
	if !ok {
		return nil, fmt.Errorf("%w: flow %q not enabled", ErrInvalid, req.Flow)
	}
	scene := NewScene()
	qr, err := issuer.CreateQR(ctx, scene, s.cfg.TTL)
	if err != nil {
		return nil, fmt.Errorf("%w: create %s code: %w", ErrUpstream, req.Flow, err)
	}
	if req.Flow == FlowMiniProgram {
		qr.URL = "" // the image is all there is
	}
	now := s.now()
	resume := NewResumeSecret()
	req.From.At = now
	sess := &Session{
		ID:         NewSessionID(),
		Flow:       req.Flow,
		ResumeHash: HashResume(resume),
		Scene:      scene,
		Ticket:     qr.Ticket,
		ScanURL:    qr.URL,
		Requester:  req.From,
		ExpiresAt:  now.Add(s.cfg.TTL),
		State:      StateWaiting,
	}
	if err := s.store.Create(ctx, sess); err != nil {
		return nil, fmt.Errorf("start session: %w", err)
	}
	s.obs.SessionState(StateWaiting)
	return &Started{Session: sess, Resume: resume, Frame: s.QRCodeFrame(sess, resume)}, nil
}

// Refresh ends the session old (its code stops working) and starts a new
// one of req.Flow (the caller keeps the connection's flow).
func (s *Service) Refresh(ctx context.Context, old string, req Request) (*Started, error) {
	if old != "" {
		if err := s.store.Expire(ctx, old, s.now()); err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("expire old session: %w", err)
		}
	}
	return s.Start(ctx, req)
}

// Resume returns the live session id whose resume secret is secret, and
// tells the connections attached to it that it was taken over (they close
// with browser.SessionTaken): a session has one browser connection. A wrong
// secret, an unknown id, an expired session, and a confirmed one whose
// login a resume took already or whose LoginResume window has passed are
// all ErrNotFound, so a guesser learns nothing.
func (s *Service) Resume(ctx context.Context, id, secret string) (*Session, error) {
	sess, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	now := s.now()
	if !sess.ResumeOK(secret) || sess.StateAt(now) == StateExpired ||
		sess.State == StateConfirmed && !CanTakeLogin(sess, now.Add(-s.cfg.LoginResume)) {
		return nil, fmt.Errorf("resume: %w", ErrNotFound)
	}
	if _, err := s.router.ToSession(ctx, id, browser.SessionTaken); err != nil {
		s.log.Debug("resume: tell the displaced connection", "err", err)
	}
	return sess, nil
}

// Catchup returns the session id as it is now and what a browser that just
// attached to it missed, oldest first: the latest state message (scanned,
// login or cancelled) and the pushes kept while it was away. A login is
// handed out only within the LoginResume window and to one resume only
// (Store.TakeLogin): a confirmed session without a login among the missed
// messages is one this browser cannot have.
func (s *Service) Catchup(ctx context.Context, id string) (*Session, []browser.Frame, error) {
	sess, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("catch up: %w", err)
	}
	var out []browser.Frame
	last, ok := sess.LastFrame()
	switch {
	case ok && last.Kind == browser.KindLogin:
		msg, err := s.store.TakeLogin(ctx, id, s.now().Add(-s.cfg.LoginResume))
		if err != nil {
			s.log.Warn("catch up: take login", "err", err)
		}
		if msg != nil {
			out = append(out, browser.Frame{Kind: browser.KindLogin, JSON: msg})
		}
	case ok:
		out = append(out, last)
		if !sess.Delivered {
			if err := s.store.MarkDelivered(ctx, id); err != nil {
				s.log.Warn("mark delivered", "err", err)
			}
		}
	}
	pending, err := s.store.TakePending(ctx, id)
	if err != nil {
		return sess, out, fmt.Errorf("catch up: %w", err)
	}
	return sess, append(out, pushFrames(pending)...), nil
}

// pushFrames are the frames of pushes kept by the store.
func pushFrames(kept [][]byte) []browser.Frame {
	out := make([]browser.Frame, len(kept))
	for i, m := range kept {
		out[i] = browser.Frame{Kind: browser.KindMessage, JSON: m}
	}
	return out
}

// Redeliver hands the browsers of sessions ids what they may have missed
// while deliveries failed (Redis was away): a state message that reached no
// connection, and kept pushes. A session that is gone (Redis came back
// empty) gets browser.Expired, so its browser asks for a new code.
func (s *Service) Redeliver(ctx context.Context, ids []string) {
	for _, id := range ids {
		sess, err := s.store.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			_, _ = s.router.ToSession(ctx, id, browser.Expired)
			continue
		}
		if err != nil {
			continue
		}
		if last, ok := sess.LastFrame(); ok && !sess.Delivered {
			if n, _ := s.router.ToSession(ctx, id, last); n > 0 {
				_ = s.store.MarkDelivered(ctx, id)
			}
		}
		pending, err := s.store.TakePending(ctx, id)
		if err != nil {
			continue
		}
		for _, f := range pushFrames(pending) {
			_, _ = s.router.ToSession(ctx, id, f)
		}
	}
}

// Expired reports whether session id has expired (or is gone) at now.
func (s *Service) Expired(ctx context.Context, id string) (bool, error) {
	sess, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("check expiry: %w", err)
	}
	return sess.StateAt(s.now()) == StateExpired, nil
}

// QRCodeFrame renders the qrcode message for sess.
func (s *Service) QRCodeFrame(sess *Session, resume string) browser.Frame {
	left := max(sess.ExpiresAt.Sub(s.now()), 0)
	flow := sess.flow()
	imageURL := ""
	if issuer, ok := s.issuers[flow]; ok {
		imageURL = issuer.ImageURL(sess.Ticket)
	}
	return browser.QRCode{
		Session:   sess.ID,
		Resume:    resume,
		Flow:      string(flow),
		Scene:     sess.Scene,
		QRCodeURL: imageURL,
		ScanURL:   sess.ScanURL,
		ExpiresIn: int64((left + time.Second - 1) / time.Second),
		ExpiresAt: sess.ExpiresAt.UnixMilli(),
	}.Frame()
}

// Limits on Notify and Push arguments.
const (
	maxField = 256
	// MaxPushData bounds the data of one Push.
	MaxPushData = 64 << 10
)

func (ev *Event) validate() error {
	switch {
	case !wechat.ValidScene(ev.Scene):
		return fmt.Errorf("%w: scene must be 1..%d of A-Z a-z 0-9 _ -", ErrInvalid, wechat.MaxSceneLen)
	case len(ev.Ticket) > maxField:
		return fmt.Errorf("%w: ticket must be at most %d bytes", ErrInvalid, maxField)
	case ev.Kind < KindSubscribe || ev.Kind > KindCancelled:
		return fmt.Errorf("%w: unknown event", ErrInvalid)
	case ev.Confirm != "" && ev.Kind != KindConfirmed && ev.Kind != KindCancelled:
		return fmt.Errorf("%w: confirm goes only with confirmed and cancelled", ErrInvalid)
	case ev.Confirm != "" && !ValidConfirm(ev.Confirm):
		return fmt.Errorf("%w: confirm is not a confirm secret", ErrInvalid)
	case !wechat.ValidOpenID(ev.User.OpenID):
		return fmt.Errorf("%w: user.openid must be 1..%d of A-Z a-z 0-9 _ -", ErrInvalid, wechat.MaxIDLen)
	case ev.User.UnionID != "" && !wechat.ValidUnionID(ev.User.UnionID):
		return fmt.Errorf("%w: user.unionid must be empty or 1..%d of A-Z a-z 0-9 _ -", ErrInvalid, wechat.MaxIDLen)
	case len(ev.User.Nickname) > maxField || len(ev.User.AvatarURL) > 2048:
		return fmt.Errorf("%w: user field too long", ErrInvalid)
	case ev.EventID == "" || len(ev.EventID) > maxField:
		return fmt.Errorf("%w: event_id must be 1..%d bytes", ErrInvalid, maxField)
	}
	return nil
}

// Reply is what Notify answers.
type Reply struct {
	Result    Result
	Duplicate bool // the event id was seen before; Result is the first answer
	// Confirmation is set when a two-step scan was accepted (also again,
	// for the same user): what the phone shows, and the secret that
	// confirms. A duplicate carries none: the secret was handed out once
	// and only its hash is kept.
	Confirmation *Confirmation
}

// Confirmation is what a two-step flow's phone needs to ask its user.
type Confirmation struct {
	Secret    string // the one-time confirm secret, bound to the session and the scanner
	ExpiresAt time.Time
	Requester Requester
	Flow      Flow
}

// Notify applies a scan event to its session and tells the browser. The
// same event id twice is answered as the first time; a rejected event
// leaves the session as it was. The scanner scanning again while the
// session waits for the confirmation gets a new secret, and the browser is
// not told again.
func (s *Service) Notify(ctx context.Context, ev Event) (Reply, error) {
	start := s.now()
	if err := ev.validate(); err != nil {
		return Reply{}, err
	}
	out, err := s.store.Apply(ctx, ev, start, s.render(ev.Kind))
	if err != nil {
		return Reply{}, fmt.Errorf("notify: %w", err)
	}
	if out.Duplicate || out.Result != ResultStored {
		s.obs.NotifyResult(out.Result, out.Duplicate)
		return Reply{Result: out.Result, Duplicate: out.Duplicate}, nil
	}
	reply := Reply{Result: ResultStored}
	if out.Confirm != "" {
		reply.Confirmation = &Confirmation{
			Secret: out.Confirm, ExpiresAt: out.Session.ExpiresAt, Requester: out.Session.Requester, Flow: out.Session.flow(),
		}
	}
	if out.Rescan {
		if out.Session.Delivered {
			reply.Result = ResultDelivered
		}
		s.obs.NotifyResult(reply.Result, false)
		return reply, nil
	}
	s.obs.SessionState(out.Session.State)
	last, _ := out.Session.LastFrame()
	n, err := s.router.ToSession(ctx, out.Session.ID, last)
	if err != nil {
		s.log.Warn("notify: deliver failed; kept for resume", "err", err)
	}
	if n > 0 {
		reply.Result = ResultDelivered
		s.obs.NotifyDelivered(s.now().Sub(start))
		if err := s.store.MarkDelivered(ctx, out.Session.ID); err != nil {
			s.log.Warn("notify: mark delivered", "err", err)
		}
	}
	s.obs.NotifyResult(reply.Result, false)
	return reply, nil
}

// render returns the function that builds the browser message for an
// accepted event of kind k, kept as Session.Last.
func (s *Service) render(k Kind) func(*Session) ([]byte, error) {
	return func(sess *Session) ([]byte, error) {
		switch k {
		case KindScanned:
			return browser.Scanned.JSON, nil
		case KindCancelled:
			return browser.Cancelled.JSON, nil
		}
		tok, err := s.tokens.Mint(sess.User.OpenID, sess.User.UnionID, sess.ID, s.now())
		if err != nil {
			return nil, fmt.Errorf("mint token: %w", err)
		}
		u := sess.User
		return browser.Login{Token: tok, User: browser.User{
			OpenID: u.OpenID, UnionID: u.UnionID, Nickname: u.Nickname, AvatarURL: u.AvatarURL,
		}}.Frame().JSON, nil
	}
}

// Target names who a Push goes to: exactly one of SessionID and OpenID.
type Target struct {
	SessionID string
	OpenID    string
}

// Push sends event with JSON data to the target's connections. A push for a
// session whose browser is away is kept and sent when it resumes.
func (s *Service) Push(ctx context.Context, to Target, event string, data []byte) (int, bool, error) {
	if len(data) == 0 {
		data = []byte("null")
	}
	if err := CheckPush(to, event, data); err != nil {
		return 0, false, err
	}
	f := browser.PushFrame(event, data)
	if to.OpenID != "" {
		n, err := s.router.ToUser(ctx, to.OpenID, f)
		if err != nil {
			return 0, false, fmt.Errorf("push to user: %w", err)
		}
		s.obs.Pushed("user", n, false)
		return n, false, nil
	}
	n, stored, err := s.pushSession(ctx, to.SessionID, f)
	if err != nil {
		return 0, false, fmt.Errorf("push to session: %w", err)
	}
	s.obs.Pushed("session", n, stored)
	return n, stored, nil
}

// pushSession delivers f to session id's connections, or keeps it for the
// browser's resume when none took it.
func (s *Service) pushSession(ctx context.Context, id string, f browser.Frame) (int, bool, error) {
	n, err := s.router.ToSession(ctx, id, f)
	if err != nil || n > 0 {
		return n, false, err
	}
	return s.keepPush(ctx, id, f)
}

// keepPush keeps push f for session id, which no connection took, for its
// browser's resume.
func (s *Service) keepPush(ctx context.Context, id string, f browser.Frame) (int, bool, error) {
	if err := s.store.AddPending(ctx, id, f.JSON); err != nil {
		return 0, false, err
	}
	// A browser may have attached, and taken what was pending, between
	// the delivery and AddPending: hand it what we just kept.
	attached, err := s.router.Attached(ctx, id)
	if err != nil || !attached {
		return 0, true, err
	}
	pending, err := s.store.TakePending(ctx, id)
	if err != nil {
		return 0, true, err
	}
	n := 0
	for _, m := range pushFrames(pending) {
		if n, err = s.router.ToSession(ctx, id, m); err != nil {
			return 0, false, err
		}
	}
	return n, false, nil
}

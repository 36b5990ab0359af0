package phone

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat-sim/internal/deliver"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// Values of ScanRequest.Follow.
const (
	// FollowAuto: the user follows or not as the account remembers.
	FollowAuto = ""
	// FollowNew: the user does not follow yet (if they did, as if they had
	// unfollowed earlier), so the scan ends in a follow: a subscribe event
	// with EventKey "qrscene_"+scene.
	FollowNew = "new"
	// FollowExisting: the user already follows (if not, as if they had
	// followed earlier some other way): a SCAN event with EventKey scene.
	FollowExisting = "follower"
)

// Errors of Scan.
var (
	ErrUnknownCode = errors.New("not a QR code of this simulator, or one it has forgotten")
	ErrExpired     = errors.New("this QR code has expired")
	ErrBadRequest  = errors.New("bad scan request")
)

var openIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ScanRequest says who scans and whether they follow.
type ScanRequest struct {
	// OpenID is the user; empty: a new user with a fresh OpenID.
	OpenID string
	// Follow is FollowAuto, FollowNew or FollowExisting.
	Follow string
	// Nickname is shown by the simulator only.
	Nickname string
}

// ScanResult is a scan and its delivery.
type ScanResult struct {
	QR       wechattest.QR
	OpenID   string
	Event    string
	EventKey string
	Time     time.Time
	Result   *deliver.Result
}

// Scan is a user scanning the code with id: the account updates who
// follows, and the event goes to the callback. It returns ErrUnknownCode,
// ErrExpired or ErrBadRequest (wrapped) before anything is sent.
func (p *Phone) Scan(ctx context.Context, id string, req ScanRequest) (*ScanResult, error) {
	qr, ok := p.acct.QRByID(id)
	if !ok {
		return nil, ErrUnknownCode
	}
	if qr.ExpiredAt(p.acct.Now()) {
		// WeChat tells the user and sends nothing.
		return nil, ErrExpired
	}
	openid := req.OpenID
	if openid == "" {
		openid = wechattest.NewOpenID()
	}
	if !openIDRE.MatchString(openid) {
		return nil, fmt.Errorf("%w: openid must be 1 to 64 characters from [A-Za-z0-9_-]", ErrBadRequest)
	}
	switch req.Follow {
	case FollowAuto:
	case FollowNew:
		p.acct.Unfollow(openid)
	case FollowExisting:
		p.acct.Follow(openid, "", req.Nickname)
	default:
		return nil, fmt.Errorf("%w: follow must be %q, %q or empty", ErrBadRequest, FollowNew, FollowExisting)
	}
	ev := deliver.Event{OpenID: openid, Ticket: qr.Ticket}
	if already := p.acct.Follow(openid, qr.Scene, req.Nickname); already {
		ev.Event, ev.EventKey = wechat.EventScan, qr.Scene
	} else {
		ev.Event, ev.EventKey = wechat.EventSubscribe, wechat.EventKeyScenePrefix+qr.Scene
	}
	p.log.Info("scan", "openid", openid, "event", ev.Event, "scene", qr.Scene)
	res, err := p.sender.Send(ctx, ev)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	out := &ScanResult{QR: qr, OpenID: openid, Event: ev.Event, EventKey: ev.EventKey, Time: p.acct.Now(), Result: res}
	p.remember(out)
	return out, nil
}

// maxHistory is how many scans the home page lists.
const maxHistory = 20

func (p *Phone) remember(r *ScanResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.history = append([]*ScanResult{r}, p.history...)
	if len(p.history) > maxHistory {
		p.history = p.history[:maxHistory]
	}
}

// History returns the latest scans, newest first.
func (p *Phone) History() []*ScanResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*ScanResult(nil), p.history...)
}

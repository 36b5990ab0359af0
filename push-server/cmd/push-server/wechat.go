package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/codeimage"
	"github.com/scanlogin/scanlogin/push-server/internal/httpapi"
	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/metrics"
	"github.com/scanlogin/scanlogin/wechat"
)

// qrIssuer adapts the WeChat client to login.QRIssuer for the oa flow
// (temporary QR codes) and counts WeChat's errors by errcode.
type qrIssuer struct {
	wc      *wechat.Client
	metrics *metrics.Metrics
}

func (q qrIssuer) CreateQR(ctx context.Context, scene string, expire time.Duration) (login.QRCode, error) {
	qr, err := q.wc.CreateTempQR(ctx, scene, expire)
	if err != nil {
		countWeChatError(q.metrics, err)
		return login.QRCode{}, err
	}
	return login.QRCode{Ticket: qr.Ticket, ImageURL: qr.ImageURL, URL: qr.URL}, nil
}

func (q qrIssuer) ImageURL(ticket string) string { return q.wc.QRImageURL(ticket) }

// countWeChatError counts a failed WeChat call by errcode ("transport" when
// WeChat gave no errcode).
func countWeChatError(m *metrics.Metrics, err error) {
	code := "transport"
	var ae *wechat.APIError
	if errors.As(err, &ae) {
		code = strconv.Itoa(ae.Code)
	}
	m.WeChatErrors.WithLabelValues(code).Inc()
}

// Mini Program codes.
const (
	// miniCodeWidth is the width in pixels asked of WeChat: its smallest,
	// which scans well on a screen and keeps the stored image small.
	miniCodeWidth = 280
	// imageMargin keeps a code's image a little longer than its session,
	// so that a page showing the code until the session's last second
	// still gets it.
	imageMargin = 10 * time.Second
)

// miniIssuer is login.QRIssuer for the miniprogram flow. WeChat answers a
// Mini Program code as image bytes, which it keeps in images under a fresh
// unguessable key for as long as the session lives: the key is the session's
// ticket, and the image is served at httpapi.CodeImagePath+key from any
// instance.
type miniIssuer struct {
	wc      *wechat.Client
	images  codeimage.Store
	page    string // MINIPROGRAM_PAGE
	env     string // MINIPROGRAM_ENV
	metrics *metrics.Metrics
}

func (q miniIssuer) CreateQR(ctx context.Context, scene string, expire time.Duration) (login.QRCode, error) {
	img, _, err := q.wc.CreateWxaCode(ctx, wechat.WxaCodeRequest{
		Scene:      scene,
		Page:       q.page,
		EnvVersion: q.env,
		// Only a published page can be checked; trial and develop
		// versions are not published.
		CheckPath: q.env == "release",
		Width:     miniCodeWidth,
	})
	if err != nil {
		countWeChatError(q.metrics, err)
		return login.QRCode{}, err
	}
	key := codeimage.NewKey()
	if err := q.images.Put(ctx, key, img, expire+imageMargin); err != nil {
		return login.QRCode{}, fmt.Errorf("mini program code: %w", err)
	}
	return login.QRCode{Ticket: key, ImageURL: q.ImageURL(key)}, nil
}

func (miniIssuer) ImageURL(ticket string) string { return httpapi.CodeImagePath + ticket }

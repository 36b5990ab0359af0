package main

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/scanlogin/scanlogin/push-server/internal/login"
	"github.com/scanlogin/scanlogin/push-server/internal/metrics"
	"github.com/scanlogin/scanlogin/wechat"
)

// qrIssuer adapts the WeChat client to login.QRIssuer and counts WeChat's
// errors by errcode.
type qrIssuer struct {
	wc      *wechat.Client
	metrics *metrics.Metrics
}

func (q qrIssuer) CreateQR(ctx context.Context, scene string, expire time.Duration) (login.QRCode, error) {
	qr, err := q.wc.CreateTempQR(ctx, scene, expire)
	if err != nil {
		code := "transport"
		var ae *wechat.APIError
		if errors.As(err, &ae) {
			code = strconv.Itoa(ae.Code)
		}
		q.metrics.WeChatErrors.WithLabelValues(code).Inc()
		return login.QRCode{}, err
	}
	return login.QRCode{Ticket: qr.Ticket, ImageURL: qr.ImageURL, URL: qr.URL}, nil
}

func (q qrIssuer) ImageURL(ticket string) string { return q.wc.QRImageURL(ticket) }

package wechat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Limits of temporary QR codes.
const (
	// MaxSceneLen is the longest scene_str WeChat accepts.
	MaxSceneLen = 64
	// MaxQRExpire is the longest life of a temporary QR code: 30 days.
	MaxQRExpire = 30 * 24 * time.Hour
)

// Errors of [Client.CreateTempQR] for arguments it refuses before calling
// WeChat; they are the caller's bug, not an upstream failure.
var (
	ErrInvalidScene  = errors.New("wechat: scene must be 1..64 characters from [A-Za-z0-9_-]")
	ErrInvalidExpire = errors.New("wechat: QR expiry must be whole seconds between 1s and 30 days")
)

// QRCode is a temporary parametric QR code created by [Client.CreateTempQR].
type QRCode struct {
	// Ticket identifies the code; scan events carry it in Ticket.
	Ticket string
	// ExpireSeconds is the life WeChat granted, as it answered.
	ExpireSeconds int
	// URL is the content WeChat encodes in the QR image (its "url"); a
	// page may render its own QR code from it.
	URL string
	// ImageURL is <MPBase>/cgi-bin/showqrcode?ticket=<escaped ticket>, the
	// QR image served by WeChat. The ticket is query-escaped because it
	// may contain '+', '/' and '='.
	ImageURL string
}

// ValidScene reports whether scene is acceptable for [Client.CreateTempQR]:
// 1 to 64 ASCII letters, digits, '_' or '-'. WeChat documents neither the
// character set nor whether the limit counts bytes, so we stay safe.
func ValidScene(scene string) bool { return validID(scene, MaxSceneLen) }

// CreateTempQR creates a temporary QR code (QR_STR_SCENE) for scene that
// expires after expire. Scanning it sends the callback a subscribe event
// with EventKey "qrscene_"+scene (new follower) or a SCAN event with
// EventKey scene (follower). See ValidScene and MaxQRExpire for the limits.
func (c *Client) CreateTempQR(ctx context.Context, scene string, expire time.Duration) (*QRCode, error) {
	if !ValidScene(scene) {
		return nil, ErrInvalidScene
	}
	if expire < time.Second || expire > MaxQRExpire || expire%time.Second != 0 {
		return nil, ErrInvalidExpire
	}
	type sceneStr struct {
		SceneStr string `json:"scene_str"`
	}
	type actionInfo struct {
		Scene sceneStr `json:"scene"`
	}
	body := struct {
		ExpireSeconds int64      `json:"expire_seconds"`
		ActionName    string     `json:"action_name"`
		ActionInfo    actionInfo `json:"action_info"`
	}{int64(expire / time.Second), "QR_STR_SCENE", actionInfo{sceneStr{scene}}}
	var resp struct {
		Ticket        string `json:"ticket"`
		ExpireSeconds int    `json:"expire_seconds"`
		URL           string `json:"url"`
	}
	err := c.withToken(ctx, "qrcode/create", func(token string) error {
		return c.call(ctx, "qrcode/create", http.MethodPost, "/cgi-bin/qrcode/create", nil, body, &resp, token)
	})
	if err != nil {
		return nil, fmt.Errorf("wechat: create qr: %w", err)
	}
	if resp.Ticket == "" {
		return nil, errors.New("wechat: create qr: answer without ticket")
	}
	return &QRCode{
		Ticket:        resp.Ticket,
		ExpireSeconds: resp.ExpireSeconds,
		URL:           resp.URL,
		ImageURL:      c.QRImageURL(resp.Ticket),
	}, nil
}

// QRImageURL returns the showqrcode URL of ticket on MPBase, with the ticket
// query-escaped.
func (c *Client) QRImageURL(ticket string) string {
	return c.mpBase + "/cgi-bin/showqrcode?ticket=" + url.QueryEscape(ticket)
}

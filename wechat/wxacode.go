package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
)

// Content types of the images WeChat answers, told by their first bytes.
const (
	ContentTypePNG  = "image/png"
	ContentTypeJPEG = "image/jpeg"
)

// ImageType returns ContentTypePNG or ContentTypeJPEG when b starts with
// the magic bytes of a PNG or a JPEG image, and "" otherwise.
func ImageType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return ContentTypePNG
	case bytes.HasPrefix(b, []byte("\xff\xd8\xff")):
		return ContentTypeJPEG
	}
	return ""
}

// WxaCodeRequest asks for a Mini Program code (wxa/getwxacodeunlimit).
type WxaCodeRequest struct {
	// Scene is what the code carries to the page's query.scene: at most
	// 32 characters of digits, letters and !#$&'()*+,/:;=?@-._~
	Scene string
	// Page is the page the code opens, e.g. "pages/login/login": no
	// leading '/', no query. Empty: the Mini Program's home page.
	Page string
	// EnvVersion is "release", "trial" or "develop"; empty: release.
	EnvVersion string
	// CheckPath asks WeChat to check that Page exists in the published
	// version (41030 otherwise). Turn it off for trial and develop.
	CheckPath bool
	// Width is the image's width in pixels, 280 to 1280; 0: WeChat's 430.
	Width int
}

// CreateWxaCode creates a Mini Program code with /wxa/getwxacodeunlimit and
// returns its image and content type (ContentTypeJPEG or ContentTypePNG).
// Success is told by the image's magic bytes, never by the answer's
// Content-Type, which WeChat does not set reliably: a JSON answer is an
// *APIError with WeChat's errcode, anything else is an error. An invalid
// access token (40001, 40014, 42001) is refreshed once and the call
// retried, as for CreateTempQR.
func (c *Client) CreateWxaCode(ctx context.Context, req WxaCodeRequest) ([]byte, string, error) {
	const op = "getwxacodeunlimit"
	body := struct {
		Scene      string `json:"scene"`
		Page       string `json:"page,omitempty"`
		CheckPath  bool   `json:"check_path"`
		EnvVersion string `json:"env_version,omitempty"`
		Width      int    `json:"width,omitempty"`
	}{req.Scene, req.Page, req.CheckPath, req.EnvVersion, req.Width}
	var img []byte
	var typ string
	err := c.withToken(ctx, op, func(token string) error {
		raw, err := c.send(ctx, op, http.MethodPost, "/wxa/getwxacodeunlimit", nil, body, token)
		if err != nil {
			return err
		}
		if typ = ImageType(raw); typ != "" {
			img = raw
			return nil
		}
		if err := apiError(op, raw, token); err != nil {
			var ae *APIError
			if errors.As(err, &ae) {
				return err
			}
		}
		return fmt.Errorf("wechat %s: answer is neither a PNG or JPEG image nor a WeChat error (%d bytes)", op, len(raw))
	})
	if err != nil {
		return nil, "", fmt.Errorf("wechat: create mini program code: %w", err)
	}
	return img, typ, nil
}

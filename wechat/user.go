package wechat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// UserInfo is what /cgi-bin/user/info tells about a user of the account
// (docs/wechat.md). Since 2021 WeChat returns Nickname and HeadImgURL empty;
// UnionID is set only for accounts bound to an Open Platform account; when
// Subscribe is 0 most fields are empty. The JSON tags are WeChat's names.
type UserInfo struct {
	Subscribe      int     `json:"subscribe"`
	OpenID         string  `json:"openid"`
	UnionID        string  `json:"unionid,omitempty"`
	Nickname       string  `json:"nickname,omitempty"`
	HeadImgURL     string  `json:"headimgurl,omitempty"`
	Language       string  `json:"language,omitempty"`
	Remark         string  `json:"remark,omitempty"`
	SubscribeScene string  `json:"subscribe_scene,omitempty"`
	QRSceneStr     string  `json:"qr_scene_str,omitempty"`
	SubscribeTime  int64   `json:"subscribe_time,omitempty"`
	QRScene        int64   `json:"qr_scene,omitempty"`
	GroupID        int64   `json:"groupid,omitempty"`
	TagIDList      []int64 `json:"tagid_list,omitempty"`
}

// UnmarshalJSON decodes WeChat's answer leniently: numbers may come as
// JSON numbers or numeric strings, any field may be null or missing, and
// unknown fields are ignored.
func (u *UserInfo) UnmarshalJSON(b []byte) error {
	var v struct {
		Subscribe      lenientInt   `json:"subscribe"`
		OpenID         lenientStr   `json:"openid"`
		UnionID        lenientStr   `json:"unionid"`
		Nickname       lenientStr   `json:"nickname"`
		HeadImgURL     lenientStr   `json:"headimgurl"`
		Language       lenientStr   `json:"language"`
		Remark         lenientStr   `json:"remark"`
		SubscribeScene lenientStr   `json:"subscribe_scene"`
		QRSceneStr     lenientStr   `json:"qr_scene_str"`
		SubscribeTime  lenientInt   `json:"subscribe_time"`
		QRScene        lenientInt   `json:"qr_scene"`
		GroupID        lenientInt   `json:"groupid"`
		TagIDList      []lenientInt `json:"tagid_list"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*u = UserInfo{
		Subscribe:      int(v.Subscribe),
		OpenID:         string(v.OpenID),
		UnionID:        string(v.UnionID),
		Nickname:       string(v.Nickname),
		HeadImgURL:     string(v.HeadImgURL),
		Language:       string(v.Language),
		Remark:         string(v.Remark),
		SubscribeScene: string(v.SubscribeScene),
		QRSceneStr:     string(v.QRSceneStr),
		SubscribeTime:  int64(v.SubscribeTime),
		QRScene:        int64(v.QRScene),
		GroupID:        int64(v.GroupID),
	}
	for _, id := range v.TagIDList {
		u.TagIDList = append(u.TagIDList, int64(id))
	}
	return nil
}

// lenientInt accepts a JSON number, a numeric string, "" or null.
type lenientInt int64

func (n *lenientInt) UnmarshalJSON(b []byte) error {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	var s string
	switch v := v.(type) {
	case nil:
		return nil
	case json.Number:
		s = v.String()
	case string:
		s = v
	case bool:
		if v {
			*n = 1
		}
		return nil
	default:
		return fmt.Errorf("want a number, got %s", b)
	}
	if s == "" {
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		*n = lenientInt(i)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("want a number, got %s", b)
	}
	*n = lenientInt(f)
	return nil
}

// lenientStr accepts a JSON string, a number (kept as written) or null.
type lenientStr string

func (s *lenientStr) UnmarshalJSON(b []byte) error {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
	case string:
		*s = lenientStr(v)
	case json.Number:
		*s = lenientStr(v.String())
	default:
		return fmt.Errorf("want a string, got %s", b)
	}
	return nil
}

// UserInfo fetches /cgi-bin/user/info for openid (lang zh_CN). Callers
// should not block the 5-second callback window on it.
func (c *Client) UserInfo(ctx context.Context, openid string) (*UserInfo, error) {
	if openid == "" {
		return nil, errors.New("wechat: user info: empty openid")
	}
	q := url.Values{"openid": {openid}, "lang": {"zh_CN"}}
	var u UserInfo
	err := c.withToken(ctx, "user/info", func(token string) error {
		u = UserInfo{}
		return c.call(ctx, "user/info", http.MethodGet, "/cgi-bin/user/info", q, nil, &u, token)
	})
	if err != nil {
		return nil, fmt.Errorf("wechat: user info: %w", err)
	}
	return &u, nil
}

package wechattest

import "strconv"

// WeChat errcodes the fake answers with.
const (
	ErrSystem             = -1
	ErrInvalidCredential  = 40001 // unknown or superseded access token
	ErrInvalidGrantType   = 40002
	ErrInvalidOpenID      = 40003
	ErrInvalidAppID       = 40013
	ErrInvalidToken       = 40014
	ErrInvalidCode        = 40029 // js_code unknown or expired
	ErrInvalidActionInfo  = 40053
	ErrInvalidURL         = 40066
	ErrInvalidArgs        = 40097
	ErrInvalidSecret      = 40125
	ErrInvalidScene       = 40129
	ErrCodeUsed           = 40163
	ErrInvalidSceneLength = 40169 // also: the body is not JSON
	ErrTokenMissing       = 41001
	ErrAppIDMissing       = 41002
	ErrSecretMissing      = 41004
	ErrCodeMissing        = 41008
	ErrInvalidPage        = 41030
	ErrTokenExpired       = 42001
	ErrRequireGET         = 43001
	ErrRequirePOST        = 43002
	ErrDailyQuota         = 45009
	ErrMinuteQuota        = 45011
	ErrDataFormat         = 47001
)

var errMsgs = map[int]string{
	ErrSystem:             "system error",
	ErrInvalidCredential:  "invalid credential, access_token is invalid or not latest",
	ErrInvalidGrantType:   "invalid grant_type",
	ErrInvalidOpenID:      "invalid openid",
	ErrInvalidAppID:       "invalid appid",
	ErrInvalidToken:       "invalid access_token",
	ErrInvalidCode:        "invalid code",
	ErrInvalidActionInfo:  "invalid action info",
	ErrInvalidURL:         "invalid url",
	ErrInvalidArgs:        "invalid args",
	ErrInvalidSecret:      "invalid appsecret",
	ErrInvalidScene:       "invalid scene",
	ErrCodeUsed:           "code been used",
	ErrInvalidSceneLength: "invalid length for scene, or the data is not json string",
	ErrTokenMissing:       "access_token missing",
	ErrAppIDMissing:       "appid missing",
	ErrSecretMissing:      "appsecret missing",
	ErrCodeMissing:        "missing code",
	ErrInvalidPage:        "invalid page",
	ErrTokenExpired:       "access_token expired",
	ErrRequireGET:         "require GET method",
	ErrRequirePOST:        "require POST method",
	ErrDailyQuota:         "reach max api daily quota limit",
	ErrMinuteQuota:        "api minute-quota reach limit  mustslower  retry next minute",
	ErrDataFormat:         "data format error",
}

// ErrMsg returns WeChat's errmsg for errcode. Answers append " rid: " and
// a request id to it, as WeChat does.
func ErrMsg(errcode int) string {
	if m, ok := errMsgs[errcode]; ok {
		return m
	}
	return "error " + strconv.Itoa(errcode)
}

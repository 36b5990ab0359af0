package callback

import (
	"testing"
	"time"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

func TestFetchUserInfo(t *testing.T) {
	api := wechattest.New(t, testAppID, "s3cret")
	api.AddUser(wechat.UserInfo{Subscribe: 1, OpenID: testOpenID, UnionID: "uUnion_1", Nickname: "Ann", HeadImgURL: "http://img/1"})
	client, err := wechat.NewClient(api.Config())
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withUsers(client), withEnv("USER_INFO_TIMEOUT", "300ms"))
	e.push.SetResult("s1", pushv1.Result_RESULT_DELIVERED)

	e.post(e.query(), event(testOpenID, time.Now().Unix(), "SCAN", "s1", "T"))
	calls := e.push.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d Notify calls", len(calls))
	}
	u := calls[0].GetUser()
	if u.GetOpenid() != testOpenID || u.GetUnionid() != "uUnion_1" || u.GetNickname() != "Ann" || u.GetAvatarUrl() != "http://img/1" {
		t.Fatalf("user %v", u)
	}

	// WeChat slow: the login goes on without user info, on time.
	api.SetLatency(3 * time.Second)
	start := time.Now()
	r := e.post(e.query(), event(testOpenID, time.Now().Unix()+1, "SCAN", "s1", "T"))
	if d := time.Since(start); d > time.Second {
		t.Fatalf("answered after %v", d)
	}
	if r.status != 200 {
		t.Fatalf("answer %+v", r)
	}
	calls = e.push.Calls()
	if len(calls) != 2 || calls[1].GetUser().GetOpenid() != testOpenID || calls[1].GetUser().GetUnionid() != "" {
		t.Fatalf("Notify calls %v", calls)
	}
	if got := e.counter("wechat_callback_user_info_total", "result", "slow"); got != 1 {
		t.Errorf("user_info{slow} = %v", got)
	}

	// WeChat failing: same.
	api.SetLatency(0)
	api.FailNext(wechattest.PathUserInfo, 40003, 1)
	e.post(e.query(), event(testOpenID, time.Now().Unix()+2, "SCAN", "s1", "T"))
	if calls = e.push.Calls(); len(calls) != 3 || calls[2].GetUser().GetUnionid() != "" {
		t.Fatalf("Notify calls %v", calls)
	}
	if got := e.counter("wechat_callback_user_info_total", "result", "error"); got != 1 {
		t.Errorf("user_info{error} = %v", got)
	}
}

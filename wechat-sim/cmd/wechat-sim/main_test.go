package main

import (
	"context"
	"encoding/json"
	"github.com/scanlogin/scanlogin/internal/proctest"
	"github.com/scanlogin/scanlogin/internal/settings"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

var listening = regexp.MustCompile(`msg=listening http=(\S+) url=(\S+)`)

func env(extra map[string]string) func(string) (string, bool) {
	vars := map[string]string{
		"SIM_HTTP_ADDR":    "127.0.0.1:0",
		"WECHAT_APPID":     "wx0123456789abcdef",
		"WECHAT_SECRET":    "s3cret",
		"WECHAT_TOKEN":     "tok123",
		"WECHAT_AES_KEY":   "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
		"SIM_CALLBACK_URL": "http://127.0.0.1:1/wechat/callback",
	}
	for k, v := range extra {
		vars[k] = v
	}
	return settings.Map(vars)
}

func TestRun(t *testing.T) {
	prog, err := proctest.Run(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, nil, env(nil), stderr)
	}, listening)
	if err != nil {
		t.Fatal(err)
	}
	logs := prog.Logs
	addr, public := prog.Listening[0], prog.Listening[1]
	if public != "http://"+addr {
		t.Fatalf("public URL %q for %q", public, addr)
	}
	resp, err := http.Get(public + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	// The QR code's URL is on the public URL.
	resp, err = http.Post(public+"/cgi-bin/stable_token", "application/json",
		strings.NewReader(`{"grant_type":"client_credential","appid":"wx0123456789abcdef","secret":"s3cret"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	resp, err = http.Post(public+"/cgi-bin/qrcode/create?access_token="+tok.AccessToken, "application/json",
		strings.NewReader(`{"expire_seconds":60,"action_name":"QR_STR_SCENE","action_info":{"scene":{"scene_str":"s"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var qr struct{ URL string }
	json.NewDecoder(resp.Body).Decode(&qr)
	resp.Body.Close()
	if !strings.HasPrefix(qr.URL, public+"/scan/") {
		t.Fatalf("scan URL %q", qr.URL)
	}
	if resp, err = http.Get(qr.URL); err != nil || resp.StatusCode != 200 {
		t.Fatalf("phone page: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := prog.Stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, secret := range []string{"s3cret", "tok123", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret is in the logs:\n%s", logs)
		}
	}
}

func TestRunConfigErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"WECHAT_TOKEN": ""}, "WECHAT_TOKEN: required"},
		{map[string]string{"WECHAT_TOKEN": "a b"}, "WECHAT_TOKEN"},
		{map[string]string{"WECHAT_APPID": ""}, "WECHAT_APPID: required"},
		{map[string]string{"WECHAT_AES_KEY": "short"}, "WECHAT_AES_KEY"},
		{map[string]string{"SIM_TOKEN_TTL": "soon"}, "SIM_TOKEN_TTL"},
		{map[string]string{"SIM_RETRY_AFTER": "2h"}, "SIM_RETRY_AFTER"},
		{map[string]string{"SIM_CALLBACK_URL": "localhost:8081"}, "SIM_CALLBACK_URL"},
		{map[string]string{"SIM_PUBLIC_URL": "example.com"}, "SIM_PUBLIC_URL"},
		{map[string]string{"SIM_HTTP_ADDR": busy.Addr().String()}, "SIM_HTTP_ADDR"},
	} {
		err := run(context.Background(), nil, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want it to name %s", tc.env, err, tc.want)
		}
	}
}

// TestCheckConfig: -check-config validates, prints the settings that are not
// secret and returns without serving; a bad setting is one line naming it.
func TestCheckConfig(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), []string{"-check-config"}, env(nil), &out); err != nil {
		t.Fatalf("-check-config: %v", err)
	}
	if !strings.Contains(out.String(), "config ok") || !strings.Contains(out.String(), "wx0123456789abcdef") ||
		strings.Contains(out.String(), "listening") {
		t.Errorf("output: %s", out.String())
	}
	for _, secret := range []string{"s3cret", "tok123", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output shows a secret: %s", out.String())
		}
	}
	err := run(context.Background(), []string{"-check-config"}, env(map[string]string{"SIM_RETRIES": "11"}), io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "config: SIM_RETRIES: ") || strings.Contains(err.Error(), "\n") {
		t.Errorf("bad SIM_RETRIES: err = %v", err)
	}
}

// TestMountAuthorize: WeChat's web authorization page reaches the account,
// whether or not the account's Register routes it itself.
func TestMountAuthorize(t *testing.T) {
	acct := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	for _, registered := range []string{"", "/connect/", authorizePath, "GET " + authorizePath} {
		mux := http.NewServeMux()
		if registered != "" {
			mux.Handle(registered, acct)
		}
		mountAuthorize(mux, acct) // must not panic on a route that exists
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, authorizePath+"?appid=x#wechat_redirect", nil))
		if rec.Code != http.StatusTeapot {
			t.Errorf("registered %q: GET %s answered %d, not by the account", registered, authorizePath, rec.Code)
		}
	}
}

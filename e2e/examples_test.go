package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/scanlogin/scanlogin/internal/browsertest"
	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
	"github.com/scanlogin/scanlogin/wechat/wechattest"
)

// apiListening names the address of the HTTP/JSON API in push-server's
// listening line.
var apiListening = regexp.MustCompile(`msg=listening .* api=(\S+)`)

// example is one of the clients in examples/: how to run it, and where
// what it needs comes from.
type example struct {
	name     string
	program  string   // interpreter looked up on PATH, or "" for a built binary
	debian   string   // the Debian package that has the interpreter
	argv     []string // the command, to which the push's arguments are added
	grpc     bool     // speaks gRPC (its error codes are gRPC's names)
	batchCmd []string // the example's batch command, if it has one
}

// examples are the single-push clients of examples/, with the batch
// command of those that have one. The Go example is built by the test.
func examples(goBinary string) []example {
	return []example{
		{name: "curl", program: "curl", debian: "curl", argv: []string{"bash", "../examples/curl/push.sh"},
			batchCmd: []string{"bash", "../examples/curl/push-batch.sh"}},
		{name: "php", program: "php", debian: "php-cli", argv: []string{"php", "../examples/php/push.php"}},
		{name: "python", program: "python3", debian: "python3", argv: []string{"python3", "../examples/python/push.py"},
			batchCmd: []string{"python3", "../examples/python/push_batch.py"}},
		{name: "node", program: "node", debian: "nodejs", argv: []string{"node", "../examples/node/push.mjs"},
			batchCmd: []string{"node", "../examples/node/push.mjs", "batch"}},
		{name: "go", argv: []string{goBinary}, grpc: true},
	}
}

// runExample runs the command with env added to the test's environment and stdin,
// and returns its standard output and exit code.
func runExample(t *testing.T, argv []string, env []string, stdin string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if _, ok := errors.AsType[*exec.ExitError](err); err != nil && !ok {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	if stderr.Len() > 0 {
		t.Logf("%s: stderr: %s", t.Name(), stderr.String())
	}
	return stdout.String(), cmd.ProcessState.ExitCode()
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("not JSON: %q: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("not JSON: %q: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

// expectMessage reads the browser's next message and checks it is the
// push of event with data.
func expectMessage(t *testing.T, b *browsertest.Conn, event, data string) {
	t.Helper()
	m := b.Expect("message")
	if m.Event != event || !jsonEqual(t, string(m.Data), data) {
		t.Fatalf("browser got event %q data %s, want %q %s", m.Event, m.Data, event, data)
	}
}

// TestExamples runs each client of examples/ against a push-server with the
// bearer token set: a push to a browser's login session and one to a
// logged-in user's tab arrive with their event and data, a wrong token is
// an error exit, and the batch examples deliver the good pushes of a batch
// and exit non-zero for the bad one.
func TestExamples(t *testing.T) {
	goBinary := filepath.Join(t.TempDir(), "gopush")
	build := exec.Command("go", "build", "-o", goBinary, "../examples/go/push.go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/go: %v\n%s", err, out)
	}

	token := randomHex(16)
	ps := startPushServer(t, wechattest.New(t, devAppID, devSecret), "GRPC_AUTH_TOKEN="+token)
	m := apiListening.FindStringSubmatch(ps.prog.Logs.String())
	if m == nil {
		t.Fatalf("no API address in the listening line:\n%s", ps.prog.Logs)
	}
	env := []string{"PYTHONDONTWRITEBYTECODE=1", "PUSH_API_URL=http://" + m[1], "PUSH_GRPC_TARGET=" + ps.grpc, "GRPC_AUTH_TOKEN=" + token}
	authCtx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)

	for _, ex := range examples(goBinary) {
		t.Run(ex.name, func(t *testing.T) {
			if ex.program != "" {
				lookPath(t, ex.program, ex.debian)
			}
			okAnswer := `{"delivered": 1, "stored": false}`

			// To a browser's login session.
			b := ps.mustDial("")
			qr := b.Expect("qrcode")
			data := `{"lang": "` + ex.name + `", "items": [1, 2.5, "三"], "ok": true, "none": null}`
			out, code := runExample(t, append(ex.argv, "session", qr.Session, "example."+ex.name, data), env, "")
			if code != 0 || !jsonEqual(t, out, okAnswer) {
				t.Fatalf("push to the session: exit %d, output %q", code, out)
			}
			expectMessage(t, b, "example."+ex.name, data)

			// Without data: the browser gets null.
			out, code = runExample(t, append(ex.argv, "session", qr.Session, "ping:"+ex.name), env, "")
			if code != 0 || !jsonEqual(t, out, okAnswer) {
				t.Fatalf("push without data: exit %d, output %q", code, out)
			}
			expectMessage(t, b, "ping:"+ex.name, `null`)

			// To a user: log the session in, then open the user's tab with
			// the login token.
			openid := "oExample_" + ex.name
			ticket, _ := ps.wechat.TicketForScene(qr.Scene)
			if _, err := ps.client.Notify(authCtx, &pushv1.NotifyRequest{Scene: qr.Scene, Ticket: ticket,
				Event: pushv1.Event_EVENT_SCAN, User: &pushv1.User{Openid: openid}, EventId: "ev-" + ex.name}); err != nil {
				t.Fatalf("Notify: %v", err)
			}
			login := b.Expect("login")
			tab := ps.mustDial("token=" + login.Token)
			// The server reads a connection once it is bound to its user:
			// a pong says pushes to the user reach this tab.
			tab.Send(`{"type":"ping"}`)
			tab.Expect("pong")
			out, code = runExample(t, append(ex.argv, "openid", openid, "order.paid", `{"order": "A1001"}`), env, "")
			if code != 0 || !jsonEqual(t, out, okAnswer) {
				t.Fatalf("push to the user: exit %d, output %q", code, out)
			}
			expectMessage(t, tab, "order.paid", `{"order": "A1001"}`)

			// Error answers are printed and end in a non-zero exit.
			wantCode := map[bool][2]string{false: {"unauthenticated", "invalid_argument"}, true: {"Unauthenticated", "InvalidArgument"}}[ex.grpc]
			wrong := append(slicesClone(env), "GRPC_AUTH_TOKEN=not-"+token)
			out, code = runExample(t, append(ex.argv, "openid", openid, "order.paid"), wrong, "")
			if code != 1 || !strings.Contains(out, `"`+wantCode[0]+`"`) {
				t.Fatalf("wrong token: exit %d, output %q; want exit 1 and %s", code, out, wantCode[0])
			}
			out, code = runExample(t, append(ex.argv, "openid", openid, "order paid!"), env, "")
			switch {
			case ex.name == "curl" && code != 2: // the shell example refuses it before it asks
				t.Fatalf("bad event: exit %d, output %q; want exit 2", code, out)
			case ex.name != "curl" && (code != 1 || !strings.Contains(out, `"`+wantCode[1]+`"`)):
				t.Fatalf("bad event: exit %d, output %q; want exit 1 and %s", code, out, wantCode[1])
			}
			// The bad pushes reached nobody: the next message is the next good push.
			out, code = runExample(t, append(ex.argv, "openid", openid, "after.errors"), env, "")
			if code != 0 {
				t.Fatalf("push after the errors: exit %d, output %q", code, out)
			}
			expectMessage(t, tab, "after.errors", `null`)

			if ex.batchCmd == nil {
				return
			}
			// A batch: two good pushes around a bad one.
			pushes := `[{"openid": "` + openid + `", "event": "batch.one", "data": {"n": 1}},
				{"openid": "` + openid + `", "event": "bad event"},
				{"openid": "` + openid + `", "event": "batch.two", "data": [2]}]`
			out, code = runExample(t, ex.batchCmd, env, `{"pushes": `+pushes+`}`)
			var answer struct {
				Results []struct {
					Delivered int
					Stored    bool
					Error     *struct{ Code, Message string }
				}
			}
			if err := json.Unmarshal([]byte(out), &answer); err != nil || code != 1 || len(answer.Results) != 3 {
				t.Fatalf("batch: exit %d, output %q; want exit 1 and 3 results", code, out)
			}
			r := answer.Results
			if r[0].Error != nil || r[0].Delivered != 1 || r[1].Error == nil || r[1].Error.Code != "invalid_argument" || r[2].Error != nil || r[2].Delivered != 1 {
				t.Fatalf("batch results %+v", r)
			}
			expectMessage(t, tab, "batch.one", `{"n": 1}`)
			expectMessage(t, tab, "batch.two", `[2]`)

			// A batch of good pushes only: exit 0.
			stdin := `{"pushes": [{"openid": "` + openid + `", "event": "batch.three"}]}`
			if out, code = runExample(t, ex.batchCmd, env, stdin); code != 0 || !jsonEqual(t, out, `{"results": [`+okAnswer+`]}`) {
				t.Fatalf("good batch: exit %d, output %q", code, out)
			}
			expectMessage(t, tab, "batch.three", `null`)
		})
	}
}

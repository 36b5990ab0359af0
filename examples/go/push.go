//go:build ignore

// Command push sends one message to a browser through push-server's gRPC
// PushService: the client of the README's "The gRPC API", as a program.
//
//	go run push.go session <session id> <event> [<data JSON>]
//	go run push.go openid <openid> <event> [<data JSON>]
//
// PUSH_GRPC_TARGET: push-server's gRPC address (default 127.0.0.1:9090);
// GRPC_AUTH_TOKEN: its token, if it has one. Prints the answer as JSON;
// exits 1 when the server refuses the push, 2 on a usage error.
//
// In this repository it builds inside the workspace (go.work provides the
// proto module and grpc), named as a file; the build tag keeps it out of
// the root module's packages, which need neither. Copied into a service,
// it loses the build line, and that service's go.mod requires
// github.com/scanlogin/scanlogin/proto and google.golang.org/grpc.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	pushv1 "github.com/scanlogin/scanlogin/proto/push/v1"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) < 3 || len(args) > 4 || (args[0] != "session" && args[0] != "openid") {
		fmt.Fprintln(os.Stderr, "usage: push session|openid <id> <event> [<data JSON>]")
		return 2
	}
	req := &pushv1.PushRequest{Event: args[2]}
	if args[0] == "session" {
		req.Target = &pushv1.PushRequest_SessionId{SessionId: args[1]}
	} else {
		req.Target = &pushv1.PushRequest_Openid{Openid: args[1]}
	}
	if len(args) == 4 {
		if !json.Valid([]byte(args[3])) {
			fmt.Fprintln(os.Stderr, "data is not JSON")
			return 2
		}
		req.Data = []byte(args[3])
	}

	target := os.Getenv("PUSH_GRPC_TARGET")
	if target == "" {
		target = "127.0.0.1:9090"
	}
	// One connection per process in a real service: it multiplexes calls.
	// Fixed flow-control windows spare push-server a ping per call.
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<20), grpc.WithInitialConnWindowSize(1<<20))
	if err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		return 1
	}
	defer cc.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if token := os.Getenv("GRPC_AUTH_TOKEN"); token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := pushv1.NewPushServiceClient(cc).Push(ctx, req)
	if err != nil {
		// InvalidArgument, Unauthenticated, NotFound (no such session) or
		// Unavailable (Redis away: retry).
		st := status.Convert(err)
		out, _ := json.Marshal(map[string]string{"code": st.Code().String(), "message": st.Message()})
		fmt.Println(string(out))
		fmt.Fprintln(os.Stderr, "push refused:", st.Code())
		return 1
	}
	out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		fmt.Fprintln(os.Stderr, "push:", err)
		return 1
	}
	fmt.Println(string(out))
	return 0
}

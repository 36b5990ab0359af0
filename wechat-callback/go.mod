module github.com/scanlogin/scanlogin/wechat-callback

go 1.26.0

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/scanlogin/scanlogin/proto v0.0.0-00010101000000-000000000000
	github.com/scanlogin/scanlogin/testkit v0.0.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/scanlogin/scanlogin/proto => ../proto
	github.com/scanlogin/scanlogin/testkit => ../testkit
	github.com/scanlogin/scanlogin/wechat => ../wechat
)

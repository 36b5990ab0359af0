module github.com/scanlogin/scanlogin/wechat-sim

go 1.26.0

require github.com/scanlogin/scanlogin/wechat v0.0.0

require (
	github.com/scanlogin/scanlogin v0.0.0
	golang.org/x/sync v0.24.0 // indirect
	rsc.io/qr v0.2.0 // indirect
)

replace github.com/scanlogin/scanlogin/wechat => ../wechat

replace github.com/scanlogin/scanlogin => ../

module github.com/scanlogin/scanlogin/wechat

go 1.26.0

require golang.org/x/sync v0.24.0

require (
	github.com/makiuchi-d/gozxing v0.1.1
	github.com/redis/go-redis/v9 v9.23.0
	rsc.io/qr v0.2.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/scanlogin/scanlogin v0.0.0
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.3.7 // indirect
	golang.org/x/xerrors v0.0.0-20200804184101-5ec99f83aff1 // indirect
)

replace github.com/scanlogin/scanlogin => ../

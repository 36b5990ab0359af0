module github.com/scanlogin/scanlogin/wechat-sim

go 1.26.0

module github.com/scanlogin/scanlogin/wechat-callback

go 1.26.0

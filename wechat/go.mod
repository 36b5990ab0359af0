module github.com/scanlogin/scanlogin/wechat

go 1.26.0

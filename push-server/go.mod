module github.com/scanlogin/scanlogin/push-server

go 1.26.0

module github.com/scanlogin/scanlogin/settings

go 1.26.0

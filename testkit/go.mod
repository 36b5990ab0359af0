module github.com/scanlogin/scanlogin/testkit

go 1.26.0

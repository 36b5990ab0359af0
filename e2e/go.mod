module github.com/scanlogin/scanlogin/e2e

go 1.26.0

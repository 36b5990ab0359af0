module github.com/scanlogin/scanlogin/scripts/loadtest

go 1.26.0

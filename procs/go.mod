module github.com/scanlogin/scanlogin/procs

go 1.26.0

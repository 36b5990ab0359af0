package settings

import (
	"fmt"
	"testing"
	"time"
)

func TestParsers(t *testing.T) {
	if d, err := Duration("90s", time.Second, time.Hour); err != nil || d != 90*time.Second {
		t.Errorf("Duration = %v, %v", d, err)
	}
	for _, bad := range []string{"90", "2h", "0s"} {
		if _, err := Duration(bad, time.Second, time.Hour); err == nil {
			t.Errorf("Duration(%q) accepted", bad)
		}
	}
	if n, err := Count("0"); err != nil || n != 0 {
		t.Errorf("Count(0) = %d, %v", n, err)
	}
	for _, bad := range []string{"-1", "x", ""} {
		if _, err := Count(bad); err == nil {
			t.Errorf("Count(%q) accepted", bad)
		}
	}
	if Required("") == nil || Required("x") != nil {
		t.Error("Required")
	}
	if HostPort(":8080") != nil || HostPort("8080") == nil {
		t.Error("HostPort")
	}
	if HTTPURL("https://a.example") != nil || HTTPURL("ftp://a") == nil || HTTPURL("/x") == nil {
		t.Error("HTTPURL")
	}
	if got := fmt.Sprint(List(" a, ,b ,")); got != "[a b]" {
		t.Errorf("List = %s", got)
	}
}

func TestEnvKeepsTheFirstProblem(t *testing.T) {
	e := NewEnv(func(k string) string { return map[string]string{"A": "  x ", "B": " "}[k] })
	if e.Get("A", "d") != "x" || e.Get("B", "d") != "d" || e.Get("C", "d") != "d" {
		t.Fatal("Get does not trim or default")
	}
	e.Check("OK", nil)
	if e.Err() != nil {
		t.Fatal("nil error recorded")
	}
	e.Check("FIRST", Required(""))
	e.Check("SECOND", Required(""))
	if e.Err() == nil || e.Err().Error() != "config: FIRST: required" {
		t.Fatalf("Err = %v", e.Err())
	}
}

package redisurl

import (
	"github.com/redis/go-redis/v9"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		addrs   string
		master  string
		cluster bool
		db      int
		pass    string
	}{
		{"redis://127.0.0.1:6379/2", "127.0.0.1:6379", "", false, 2, ""},
		{"redis://:pw@127.0.0.1:6380", "127.0.0.1:6380", "", false, 0, "pw"},
		{"redis://a:7000?addr=b:7001&addr=c:7002", "a:7000,b:7001,c:7002", "", true, 0, ""},
		{"redis://:pw@s1:26379/1?master_name=mymaster&addr=s2:26379", "s1:26379,s2:26379", "mymaster", false, 1, "pw"},
	} {
		o, err := Parse(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if strings.Join(o.Addrs, ",") != tc.addrs || o.MasterName != tc.master || o.IsClusterMode != tc.cluster ||
			o.DB != tc.db || o.Password != tc.pass {
			t.Errorf("%s: got %+v", tc.in, o)
		}
	}
	for _, bad := range []string{"http://x", "redis://host:port:bad", "::"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if _, err := Parse("redis://:hunter2@host:bad/0"); err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("password in error: %v", err)
	}
	if s := Safe("redis://user:hunter2@h:1/0"); strings.Contains(s, "hunter2") || !strings.Contains(s, "user:***@h:1") {
		t.Errorf("Safe = %s", s)
	}
}

func TestNewClient(t *testing.T) {
	c, err := NewClient("unix:///tmp/redis.sock?db=3", func(o *redis.UniversalOptions) { o.MaxRetries = -1 }) // -1: none; go-redis stores it as 0
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	single, ok := c.(*redis.Client)
	if !ok || single.Options().Network != "unix" || single.Options().Addr != "/tmp/redis.sock" ||
		single.Options().DB != 3 || single.Options().MaxRetries != 0 {
		t.Fatalf("client = %T %+v", c, single.Options())
	}
	cc, err := NewClient("redis://a:7000?addr=b:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, ok := cc.(*redis.ClusterClient); !ok {
		t.Fatalf("cluster URL gave %T", cc)
	}
}

// Package redisurl turns the REDIS_URL setting of scanlogin's services into
// go-redis UniversalOptions, so one setting reaches a single node, a
// Sentinel-managed primary, or a Cluster.
//
//	redis://[user:pass@]host:port/db                  single node (also rediss://, unix://)
//	redis://[user:pass@]host:port?addr=host2:port&...  Cluster: every addr is a seed node
//	redis://[user:pass@]sentinel:26379?master_name=mymaster&addr=sentinel2:26379
//	                                                  Sentinel: the addrs are sentinels
package redisurl

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NewClient connects to the Redis deployment REDIS_URL names (lazily: no
// command is sent until the client is used). Each tune function may adjust
// the options first, e.g. timeouts.
func NewClient(raw string, tune ...func(*redis.UniversalOptions)) (redis.UniversalClient, error) {
	o, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	for _, f := range tune {
		f(o)
	}
	if o.MasterName == "" && !o.IsClusterMode {
		// A single node, through redis.Options, which also knows unix sockets.
		single, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("parse redis url: %w", redact(err))
		}
		so := o.Simple()
		so.Network, so.Addr = single.Network, single.Addr
		return redis.NewClient(so), nil
	}
	return redis.NewUniversalClient(o), nil
}

// Parse reads a REDIS_URL into UniversalOptions.
func Parse(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", redact(err))
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		master := q.Get("master_name")
		q.Del("master_name")
		addrs := append([]string{u.Host}, q["addr"]...)
		q.Del("addr")
		u.RawQuery = q.Encode()
		single, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, fmt.Errorf("parse redis sentinel url: %w", redact(err))
		}
		return &redis.UniversalOptions{
			Addrs: addrs, MasterName: master, DB: single.DB,
			Username: single.Username, Password: single.Password, TLSConfig: single.TLSConfig,
		}, nil
	case q.Has("addr"):
		c, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("parse redis cluster url: %w", redact(err))
		}
		return &redis.UniversalOptions{
			Addrs: c.Addrs, IsClusterMode: true,
			Username: c.Username, Password: c.Password, TLSConfig: c.TLSConfig,
		}, nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", redact(err))
	}
	return &redis.UniversalOptions{
		Addrs: []string{o.Addr}, DB: o.DB,
		Username: o.Username, Password: o.Password, TLSConfig: o.TLSConfig,
	}, nil
}

// redact keeps a password out of error text.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// Safe returns raw with any password replaced, for logs.
func Safe(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return strings.Replace(u.String(), "xxxxx", "***", 1)
}

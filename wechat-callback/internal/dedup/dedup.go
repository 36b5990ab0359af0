// Package dedup remembers which WeChat requests and events wechat-callback
// has seen, so that a replayed request is rejected and a duplicate event is
// answered as the first copy was, and processed once.
//
// Two operations are offered, each with an in-process implementation
// ([Memory]) and one shared by every callback instance ([Redis]):
//
//   - Remember ties a key (a request's timestamp and nonce) to a digest (of
//     its body) and reports whether an earlier request used the key with a
//     different digest.
//   - Claim, Finish and Answer implement "first copy processes, others wait
//     for its answer": Claim reserves a key for a short lease, Finish stores
//     the answer for a longer time, Answer reads it.
//
// [Fallback] puts the in-process store behind the shared one for the time the
// shared one fails, so that a Redis outage degrades duplicate detection to
// per instance instead of stopping logins.
package dedup

import (
	"context"
	"time"
)

// Store is what wechat-callback needs from a duplicate memory. Keys are
// short, opaque strings chosen by the caller.
type Store interface {
	// Remember records digest under key for ttl unless key is already
	// known. It reports false when key is known with a different digest.
	Remember(ctx context.Context, key, digest string, ttl time.Duration) (bool, error)
	// Claim reserves key for lease and reports whether the caller got it
	// (false: another copy holds it or has finished it).
	Claim(ctx context.Context, key string, lease time.Duration) (bool, error)
	// Finish stores answer under key for ttl, ending the claim.
	Finish(ctx context.Context, key, answer string, ttl time.Duration) error
	// Answer returns the answer stored under key; done is false while the
	// key is only claimed or unknown.
	Answer(ctx context.Context, key string) (answer string, done bool, err error)
}

// Values stored under a claimed key: pending, or done followed by the answer.
const (
	pending = "p"
	done    = "d"
)

// Package dedup remembers which WeChat requests and events wechat-callback
// has seen, so that a replayed request is rejected and a duplicate event is
// answered as the first copy was, and processed once.
//
// Two memories are offered, each with an in-process implementation
// ([Memory]) and one shared by every callback instance ([Redis]):
//
//   - [Nonces] (replay memory): Remember ties a key (a request's timestamp
//     and nonce) to a digest (of its body) and reports whether an earlier
//     request used the key with a different digest.
//   - Claim, Finish and Answer (duplicate memory) implement "first copy
//     processes, others wait for its answer": Claim reserves a key for a
//     short lease, Finish stores the answer for a longer time, Answer reads
//     it.
//
// [Fallback] combines Redis with this instance's memory. The two memories
// fail differently on purpose: the replay memory fails closed (a Redis
// failure is an error, the request must not be processed), while the
// duplicate memory falls back to this instance, as a duplicate that slips
// through is harmless.
package dedup

import (
	"context"
	"time"
)

// Nonces is the replay memory. A request's key is new only if Remember says
// so without an error.
type Nonces interface {
	// Remember records digest under key for ttl unless key is already
	// known. It reports false when key is known with a different digest.
	// An error means it cannot tell: the caller must treat the key as not
	// new.
	Remember(ctx context.Context, key, digest string, ttl time.Duration) (bool, error)
}

// Store is what wechat-callback needs from its memory: replays and
// duplicates. Keys are short, opaque strings chosen by the caller.
type Store interface {
	Nonces
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

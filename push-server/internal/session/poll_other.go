//go:build !linux

package session

// newPoller off Linux: a goroutine per connection.
func newPoller(*Manager) (poller, error) { return &goroutines{}, nil }

//go:build !linux

package wsconn

// newPoller off Linux: a goroutine per connection.
func newPoller(*Manager) (poller, error) { return &goroutines{}, nil }

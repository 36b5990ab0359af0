// Package web serves the login page at "/": an embedded page and a small
// reusable script that speaks the browser WebSocket protocol.
package web

import "net/http"

// Options configure the page.
type Options struct {
	// SimulatorURL, when set (dev mode), is linked from the page so a
	// developer can open the WeChat simulator's phone page.
	SimulatorURL string
}

// Handler serves the page and its assets.
func Handler(opt Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
}

// Package scanloginjs holds the browser client, scanlogin.js, for Go
// programs: push-server serves this very file at /scanlogin.js, so the
// login page and the npm package never differ. The package is the
// repository's root module's, since go:embed cannot reach outside a module.
package scanloginjs

import _ "embed"

// Source is scanlogin.js, an ES module with no dependencies.
//
//go:embed scanlogin.js
var Source []byte

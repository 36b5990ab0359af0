package login

// Flow is a way to log in: which kind of code the browser shows.
type Flow string

// The flows.
const (
	FlowOA          Flow = "oa"          // official-account temporary QR codes
	FlowMiniProgram Flow = "miniprogram" // Mini Program codes
)

// Request asks for a new session.
type Request struct {
	Flow      Flow
	UserAgent string // the browser's User-Agent
	IP        string // the browser's address
}

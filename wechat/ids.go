package wechat

// MaxIDLen is the longest OpenID or UnionID we accept. WeChat's are 28
// characters today; it does not promise a length, so we leave room.
const MaxIDLen = 64

// ValidOpenID reports whether id has the shape of a WeChat OpenID: 1 to
// MaxIDLen ASCII letters, digits, '_' or '-'. Anything else (a newline, a
// space, a quote) cannot come from WeChat and is refused at every entry.
func ValidOpenID(id string) bool { return validID(id, MaxIDLen) }

// ValidUnionID reports whether id has the shape of a WeChat UnionID; the
// rules are those of ValidOpenID.
func ValidUnionID(id string) bool { return validID(id, MaxIDLen) }

// validID reports whether s is 1 to max characters of [A-Za-z0-9_-].
func validID(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

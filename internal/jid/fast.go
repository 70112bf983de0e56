package jid

import "strings"

// prepareASCII prepares s without the Unicode machinery when every part is
// printable ASCII whose full preparation is known to change nothing but
// ASCII case. ok is false for anything else, including every invalid JID:
// the caller then runs prepareFull, which also produces the error.
// FuzzFastPath checks that wherever ok is true, prepareFull returns the
// same JID.
func prepareASCII(s string) (j JID, ok bool) {
	local, domain, resource, hasLocal, hasResource := split(s)
	if j.Domain, ok = domainASCII(domain); !ok {
		return JID{}, false
	}
	if hasLocal {
		if j.Local, ok = localASCII(local); !ok {
			return JID{}, false
		}
	}
	if hasResource {
		if j.Resource, ok = resourceASCII(resource); !ok {
			return JID{}, false
		}
	}
	return j, true
}

// localASCII: PRECIS IdentifierClass allows U+0021..U+007E in ASCII, and
// UsernameCaseMapped only lowercases them; RFC 7622 excludes " & ' / : < >
// @ on top.
func localASCII(s string) (string, bool) {
	if len(s) == 0 || len(s) > maxPart {
		return "", false
	}
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c <= ' ' || c >= 0x7F:
			return "", false
		case c == '"' || c == '&' || c == '\'' || c == '/' || c == ':' || c == '<' || c == '>' || c == '@':
			return "", false
		case 'A' <= c && c <= 'Z':
			upper = true
		}
	}
	if upper {
		return lowerASCII(s), true
	}
	return s, true
}

// resourceASCII: PRECIS FreeformClass allows U+0020..U+007E in ASCII, and
// OpaqueString changes none of them.
func resourceASCII(s string) (string, bool) {
	if len(s) == 0 || len(s) > maxPart {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7F {
			return "", false
		}
	}
	return s, true
}

// domainASCII accepts an LDH host name that UTS #46 only lowercases: labels
// of 1..63 letters, digits and hyphens, no hyphen first or last or in both
// the third and fourth place (so no A-label), at most 253 octets, and a last
// label that is not all digits (numeric names and IPv4 addresses take the
// full path).
func domainASCII(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return "", false
	}
	upper := false
	start := 0     // first octet of the current label
	digits := true // the current label is all digits so far
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			n := i - start
			if n == 0 || n > 63 || s[start] == '-' || s[i-1] == '-' ||
				(n >= 4 && s[start+2] == '-' && s[start+3] == '-') {
				return "", false
			}
			if i == len(s) && digits {
				return "", false
			}
			start, digits = i+1, true
			continue
		}
		switch c := s[i]; {
		case '0' <= c && c <= '9':
		case 'a' <= c && c <= 'z', c == '-':
			digits = false
		case 'A' <= c && c <= 'Z':
			digits, upper = false, true
		default:
			return "", false
		}
	}
	if upper {
		return lowerASCII(s), true
	}
	return s, true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

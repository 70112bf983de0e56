package policy

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// normalizeDomain returns a domain, or a "*.domain" wildcard pattern, in
// the form decisions compare: lower case, A-labels (IDNA 2008 lookup
// profile), no trailing dot. "*" alone is kept as is.
func normalizeDomain(d string) (string, error) {
	d = strings.TrimSuffix(strings.TrimSpace(d), ".")
	if d == "*" {
		return d, nil
	}
	prefix := ""
	if rest, ok := strings.CutPrefix(d, "*."); ok {
		prefix, d = "*.", rest
	}
	if d == "" {
		return "", fmt.Errorf("empty domain")
	}
	if isLowerASCIIDomain(d) {
		for label := range strings.SplitSeq(d, ".") {
			if label == "" || len(label) > 63 {
				return "", fmt.Errorf("domain %q has an empty or over-long label", prefix+d)
			}
		}
		return prefix + d, nil
	}
	a, err := idna.Lookup.ToASCII(strings.ToLower(d))
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid (internationalised) domain name: %w", prefix+d, err)
	}
	return prefix + a, nil
}

// isLowerASCIIDomain reports whether d needs no IDNA mapping: only
// lower-case letters, digits, '-' and '.'.
func isLowerASCIIDomain(d string) bool {
	for i := 0; i < len(d); i++ {
		b := d[i]
		if !('a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return true
}

// lookupDomain is the cheap normalisation of a domain at decision time:
// the gateway sends A-labels, so only case and a trailing dot are folded.
func lookupDomain(d string) string {
	d = strings.TrimSuffix(d, ".")
	for i := 0; i < len(d); i++ {
		if b := d[i]; 'A' <= b && b <= 'Z' {
			return strings.ToLower(d)
		}
	}
	return d
}

// domainMatcher finds the entries of a partner list whose pattern matches
// a domain, the most specific pattern winning: an exact domain before any
// wildcard, a longer wildcard suffix before a shorter one, "*" last.
// "*.example.org" matches one or more labels in front of example.org
// (chat.example.org, a.chat.example.org), never example.org itself and
// never badexample.org: labels are compared whole.
type domainMatcher[T any] struct {
	exact    map[string][]T
	wildcard map[string][]T // "example.org" for "*.example.org"
	any      []T            // "*"
}

func newDomainMatcher[T any]() *domainMatcher[T] {
	return &domainMatcher[T]{exact: map[string][]T{}, wildcard: map[string][]T{}}
}

// add adds an entry under a pattern (normalised with normalizeDomain).
func (m *domainMatcher[T]) add(pattern string, v T) error {
	p, err := normalizeDomain(pattern)
	if err != nil {
		return err
	}
	switch {
	case p == "*":
		m.any = append(m.any, v)
	case strings.HasPrefix(p, "*."):
		m.wildcard[p[2:]] = append(m.wildcard[p[2:]], v)
	default:
		m.exact[p] = append(m.exact[p], v)
	}
	return nil
}

// lookup returns the entries of the most specific matching pattern.
func (m *domainMatcher[T]) lookup(domain string) []T {
	d := lookupDomain(domain)
	if d == "" {
		return nil
	}
	if v, ok := m.exact[d]; ok {
		return v
	}
	if len(m.wildcard) > 0 {
		for i := 0; i < len(d); i++ {
			if d[i] == '.' {
				if v, ok := m.wildcard[d[i+1:]]; ok {
					return v
				}
			}
		}
	}
	return m.any
}

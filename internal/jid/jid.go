package jid

import "strings"

// JID is a prepared XMPP address. Local and Resource are "" when absent;
// Domain is never "" in a JID returned by Prepare. Two prepared JIDs name
// the same entity exactly when they are equal.
type JID struct {
	Local, Domain, Resource string
}

// String returns the JID as local@domain/resource, leaving out the absent
// parts.
func (j JID) String() string {
	if j.Local == "" && j.Resource == "" {
		return j.Domain
	}
	var b strings.Builder
	b.Grow(len(j.Local) + len(j.Domain) + len(j.Resource) + 2)
	if j.Local != "" {
		b.WriteString(j.Local)
		b.WriteByte('@')
	}
	b.WriteString(j.Domain)
	if j.Resource != "" {
		b.WriteByte('/')
		b.WriteString(j.Resource)
	}
	return b.String()
}

// Bare returns the JID without its resourcepart, as a string: local@domain,
// or domain.
func (j JID) Bare() string {
	if j.Local == "" {
		return j.Domain
	}
	return j.Local + "@" + j.Domain
}

// DomainASCII returns j's domainpart in A-label form (bücher.example ->
// xn--bcher-kva.example): the form DNS uses, and the one policy data keeps
// its domains in. See [DomainASCII].
func (j JID) DomainASCII() string { return DomainASCII(j.Domain) }

// DomainASCII converts a domainpart prepared by [Prepare] or
// [PrepareDomain] to its A-label form; an ASCII domain (IP literals
// included) is returned as it is. It returns "" for a string that is not
// a prepared domainpart.
func DomainASCII(prepared string) string {
	if isASCII(prepared) {
		return prepared
	}
	a, err := domainProfile.ToASCII(prepared)
	if err != nil {
		return ""
	}
	return a
}

// IsDomain reports whether j has neither a localpart nor a resourcepart:
// it addresses a server itself.
func (j JID) IsDomain() bool { return j.Local == "" && j.Resource == "" }

// Part names used in [Error].Part.
const (
	PartLocal    = "localpart"
	PartDomain   = "domainpart"
	PartResource = "resourcepart"
	PartJID      = "jid" // the address as a whole
)

// Error says why a string is not a valid JID (or domain).
type Error struct {
	Part   string // PartLocal, PartDomain, PartResource or PartJID
	Reason string // what is wrong, in words
	Err    error  // the underlying PRECIS, IDNA or address error, or nil
}

func (e *Error) Error() string {
	s := "jid: " + e.Part + ": " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

const (
	// maxPart is RFC 7622's limit for each prepared part, in octets.
	maxPart = 1023
	// maxRawPart bounds the work spent on one part: a longer part is
	// refused before preparation.
	maxRawPart = 4096
	maxRawJID  = 3*maxRawPart + 2
)

// Prepare parses s as a JID and prepares every part into its canonical
// form (see the package documentation). The error is always an *Error.
func Prepare(s string) (JID, error) {
	if j, ok := prepareASCII(s); ok {
		return j, nil
	}
	return prepareFull(s)
}

// PrepareDomain prepares s as a domainpart alone (a stream header's from or
// to, a configured domain, a domain in policy data). A '@' or '/' in s is
// an error. The error is always an *Error.
func PrepareDomain(s string) (string, error) {
	if d, ok := domainASCII(s); ok {
		return d, nil
	}
	if i := strings.IndexAny(s, "@/"); i >= 0 {
		return "", &Error{Part: PartDomain, Reason: "contains '" + s[i:i+1] + "': not a bare domain"}
	}
	return prepareDomain(s)
}

// split divides s per RFC 7622 §3.1: the resourcepart follows the first
// '/', the localpart precedes the first '@' before that. hasLocal and
// hasResource say whether the separators were present.
func split(s string) (local, domain, resource string, hasLocal, hasResource bool) {
	domain = s
	if i := strings.IndexByte(domain, '/'); i >= 0 {
		resource, domain, hasResource = domain[i+1:], domain[:i], true
	}
	if i := strings.IndexByte(domain, '@'); i >= 0 {
		local, domain, hasLocal = domain[:i], domain[i+1:], true
	}
	return local, domain, resource, hasLocal, hasResource
}

package jid

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
	"golang.org/x/text/unicode/norm"
)

// domainProfile is the UTS #46 / IDNA2008 processing for domainparts,
// spelled out here rather than taken from idna.Display, whose options may
// change between library versions.
var domainProfile = idna.New(
	idna.MapForLookup(),        // UTS #46 mapping, STD3 rules, label validation
	idna.Transitional(false),   // IDNA2008: ß stays ß (deviations refused below)
	idna.BidiRule(),            // RFC 5893
	idna.CheckHyphens(true),    // no leading/trailing '-', no "--" at 3-4
	idna.CheckJoiners(true),    // RFC 5892 ContextJ
	idna.VerifyDNSLength(true), // no empty labels; lengths in ToASCII
)

// prepareFull is the complete preparation; prepareASCII must agree with it
// wherever it answers.
func prepareFull(s string) (JID, error) {
	if len(s) > maxRawJID {
		return JID{}, &Error{Part: PartJID, Reason: "longer than three parts of 4096 octets"}
	}
	local, domain, resource, hasLocal, hasResource := split(s)
	var j JID
	var err error
	if j.Domain, err = prepareDomain(domain); err != nil {
		return JID{}, err
	}
	if hasLocal {
		if j.Local, err = prepareLocal(local); err != nil {
			return JID{}, err
		}
	}
	if hasResource {
		if j.Resource, err = prepareResource(resource); err != nil {
			return JID{}, err
		}
	}
	return j, nil
}

func checkRaw(part, s string) error {
	switch {
	case s == "":
		return &Error{Part: part, Reason: "empty"}
	case len(s) > maxRawPart:
		return &Error{Part: part, Reason: "longer than 4096 octets before preparation"}
	case !utf8.ValidString(s):
		return &Error{Part: part, Reason: "not valid UTF-8"}
	}
	return nil
}

func checkPrepared(part, s string) error {
	switch {
	case s == "":
		return &Error{Part: part, Reason: "empty after preparation"}
	case len(s) > maxPart:
		return &Error{Part: part, Reason: "longer than 1023 octets after preparation"}
	}
	return nil
}

// foldCaser is stateless and safe for concurrent use.
var foldCaser = cases.Fold()

func prepareLocal(s string) (string, error) {
	if err := checkRaw(PartLocal, s); err != nil {
		return "", err
	}
	p, err := precis.UsernameCaseMapped.String(s)
	if err != nil {
		return "", &Error{Part: PartLocal, Reason: "not allowed by PRECIS UsernameCaseMapped", Err: err}
	}
	if err := checkPrepared(PartLocal, p); err != nil {
		return "", err
	}
	if i := strings.IndexAny(p, `"&'/:<>@`); i >= 0 {
		return "", &Error{Part: PartLocal, Reason: "contains " + quoteRune(p[i:]) + ", excluded by RFC 7622 §3.3.1"}
	}
	if i := strings.IndexAny(p, "\u200c\u200d"); i >= 0 {
		return "", &Error{Part: PartLocal, Reason: "contains " + quoteRune(p[i:]) + ": stringprep servers delete it"}
	}
	if !isASCII(p) && norm.NFC.String(foldCaser.String(p)) != p {
		return "", &Error{Part: PartLocal, Reason: "changed by Unicode case folding (e.g. ß, ς): stringprep servers read it as another name"}
	}
	return p, nil
}

func prepareResource(s string) (string, error) {
	if err := checkRaw(PartResource, s); err != nil {
		return "", err
	}
	p, err := precis.OpaqueString.String(s)
	if err != nil {
		return "", &Error{Part: PartResource, Reason: "not allowed by PRECIS OpaqueString", Err: err}
	}
	if err := checkPrepared(PartResource, p); err != nil {
		return "", err
	}
	return p, nil
}

func prepareDomain(s string) (string, error) {
	// RFC 7622 §3.2: a final dot is stripped before anything else; it
	// belongs to domain names, not to IP literals.
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, ".") {
		return "", &Error{Part: PartDomain, Reason: "an IP literal takes no final dot"}
	}
	s = strings.TrimSuffix(s, ".")
	if err := checkRaw(PartDomain, s); err != nil {
		return "", err
	}
	if s[0] == '[' {
		return prepareIPv6(s)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return a.String(), nil
	}
	u, err := domainProfile.ToUnicode(s)
	if err != nil {
		return "", &Error{Part: PartDomain, Reason: "not a valid domain name (UTS #46 / IDNA2008)", Err: err}
	}
	a, err := domainProfile.ToASCII(u)
	if err != nil {
		return "", &Error{Part: PartDomain, Reason: "not a valid domain name (DNS lengths)", Err: err}
	}
	// The A-label form (what DNS and the policy use) must read back as the
	// same domain: a name that only survives one direction of the mapping
	// (e.g. a digit with a combining grapheme joiner) would be judged as one
	// domain and resolved as another.
	if back, err := domainProfile.ToUnicode(a); err != nil || back != u {
		return "", &Error{Part: PartDomain, Reason: "not a stable domain name: its A-label form does not map back to it", Err: err}
	}
	if strings.HasSuffix(u, ".") {
		// A second final dot, or a mapped one (U+3002).
		return "", &Error{Part: PartDomain, Reason: "empty label"}
	}
	if i := strings.IndexAny(u, "ßς\u200c\u200d"); i >= 0 {
		return "", &Error{Part: PartDomain, Reason: "contains the IDNA deviation character " + quoteRune(u[i:]) + ": IDNA2003 servers read it as another domain"}
	}
	last := u[strings.LastIndexByte(u, '.')+1:]
	if isDigits(last) {
		if a, err := netip.ParseAddr(u); err == nil && a.Is4() {
			return a.String(), nil
		}
		return "", &Error{Part: PartDomain, Reason: "last label is all digits but the domain is not an IPv4 address"}
	}
	if err := checkPrepared(PartDomain, u); err != nil {
		return "", err
	}
	return u, nil
}

func prepareIPv6(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != ']' {
		return "", &Error{Part: PartDomain, Reason: "IP literal without a closing ']'"}
	}
	a, err := netip.ParseAddr(s[1 : len(s)-1])
	switch {
	case err != nil:
		return "", &Error{Part: PartDomain, Reason: "not an IPv6 address", Err: err}
	case !a.Is6() || a.Zone() != "":
		return "", &Error{Part: PartDomain, Reason: "IP literal is not a plain IPv6 address"}
	case a.Is4In6():
		return "", &Error{Part: PartDomain, Reason: "IPv4-mapped IPv6 literal: write the IPv4 address"}
	}
	return "[" + a.String() + "]", nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// quoteRune returns the first rune of s quoted, with its code point.
func quoteRune(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	return fmt.Sprintf("%q (%U)", r, r)
}

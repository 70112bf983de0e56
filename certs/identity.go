package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Object identifiers used in the SubjectAltName extension.
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidOnDNSSRV       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7} // id-on-dnsSRV, RFC 4985
	oidOnXmppAddr     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5} // id-on-xmppAddr, RFC 6120
)

// srvXMPPServerPrefix is the service label of an SRV-ID for XMPP servers.
const srvXMPPServerPrefix = "_xmpp-server."

// subjectAltNames are the identities a certificate's SubjectAltName
// extension carries, as written in the certificate.
type subjectAltNames struct {
	DNSNames  []string // dNSName
	SRVNames  []string // otherName id-on-dnsSRV, e.g. "_xmpp-server.example.org"
	XmppAddrs []string // otherName id-on-xmppAddr
}

// all returns every identity, for logs.
func (s subjectAltNames) all() []string {
	names := make([]string, 0, len(s.DNSNames)+len(s.SRVNames)+len(s.XmppAddrs))
	names = append(names, s.DNSNames...)
	names = append(names, s.SRVNames...)
	names = append(names, s.XmppAddrs...)
	return names
}

// Context-specific tags of GeneralName (RFC 5280 §4.2.1.6).
const (
	tagOtherName = 0
	tagDNSName   = 2
)

// maxSANEntries bounds the work done on a hostile certificate.
const maxSANEntries = 1024

// parseSubjectAltNames parses the DER value of a SubjectAltName extension
// (GeneralNames) and returns the DNS names, SRV names and XmppAddrs in
// it. Other kinds of names are skipped. Malformed input is an error.
func parseSubjectAltNames(der []byte) (subjectAltNames, error) {
	var names subjectAltNames
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return names, fmt.Errorf("subjectAltName is not valid DER: %w", err)
	}
	if len(rest) != 0 {
		return names, errors.New("subjectAltName has trailing data")
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return names, errors.New("subjectAltName is not a SEQUENCE")
	}
	entries := seq.Bytes
	for count := 0; len(entries) > 0; count++ {
		if count >= maxSANEntries {
			return names, fmt.Errorf("subjectAltName has more than %d names", maxSANEntries)
		}
		var gn asn1.RawValue
		entries, err = asn1.Unmarshal(entries, &gn)
		if err != nil {
			return names, fmt.Errorf("subjectAltName entry is not valid DER: %w", err)
		}
		if gn.Class != asn1.ClassContextSpecific {
			return names, fmt.Errorf("subjectAltName entry has class %d, want context-specific", gn.Class)
		}
		switch gn.Tag {
		case tagDNSName:
			if gn.IsCompound {
				return names, errors.New("subjectAltName dNSName is constructed")
			}
			if !isIA5(gn.Bytes) {
				return names, errors.New("subjectAltName dNSName is not an IA5String")
			}
			names.DNSNames = append(names.DNSNames, string(gn.Bytes))
		case tagOtherName:
			if !gn.IsCompound {
				return names, errors.New("subjectAltName otherName is not constructed")
			}
			if err := parseOtherName(gn.Bytes, &names); err != nil {
				return names, err
			}
		}
	}
	return names, nil
}

// parseOtherName parses the contents of an otherName
// (type-id OBJECT IDENTIFIER, value [0] EXPLICIT ANY) and records the
// kinds XMPP uses.
func parseOtherName(der []byte, names *subjectAltNames) error {
	var typeID asn1.ObjectIdentifier
	rest, err := asn1.Unmarshal(der, &typeID)
	if err != nil {
		return fmt.Errorf("subjectAltName otherName has no valid type: %w", err)
	}
	var explicit asn1.RawValue
	rest, err = asn1.Unmarshal(rest, &explicit)
	if err != nil {
		return fmt.Errorf("subjectAltName otherName value is not valid DER: %w", err)
	}
	if len(rest) != 0 {
		return errors.New("subjectAltName otherName has trailing data")
	}
	if explicit.Class != asn1.ClassContextSpecific || explicit.Tag != 0 || !explicit.IsCompound {
		return errors.New("subjectAltName otherName value is not tagged [0] EXPLICIT")
	}

	wantTag := 0
	switch {
	case typeID.Equal(oidOnDNSSRV):
		wantTag = asn1.TagIA5String
	case typeID.Equal(oidOnXmppAddr):
		wantTag = asn1.TagUTF8String
	default:
		return nil // an otherName XMPP does not use
	}
	var value asn1.RawValue
	rest, err = asn1.Unmarshal(explicit.Bytes, &value)
	if err != nil {
		return fmt.Errorf("subjectAltName otherName %v value is not valid DER: %w", typeID, err)
	}
	if len(rest) != 0 || value.Class != asn1.ClassUniversal || value.Tag != wantTag || value.IsCompound {
		return fmt.Errorf("subjectAltName otherName %v value has the wrong type", typeID)
	}
	switch wantTag {
	case asn1.TagIA5String:
		if !isIA5(value.Bytes) {
			return errors.New("subjectAltName SRVName is not an IA5String")
		}
		names.SRVNames = append(names.SRVNames, string(value.Bytes))
	case asn1.TagUTF8String:
		if !utf8.Valid(value.Bytes) {
			return errors.New("subjectAltName XmppAddr is not valid UTF-8")
		}
		names.XmppAddrs = append(names.XmppAddrs, string(value.Bytes))
	}
	return nil
}

func isIA5(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// certificateNames returns the identities of cert. A certificate without
// a SubjectAltName extension has none; its common name is not an identity
// (RFC 9525 §6.2.1).
func certificateNames(cert *x509.Certificate) (subjectAltNames, error) {
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSubjectAltName) {
			return parseSubjectAltNames(ext.Value)
		}
	}
	// A certificate built by hand rather than parsed has no Extensions.
	return subjectAltNames{DNSNames: cert.DNSNames}, nil
}

// identitySet is a certificate's identities normalised for matching:
// lowercase A-labels without a trailing dot.
type identitySet struct {
	exact     map[string]struct{} // DNS-IDs, _xmpp-server SRV-IDs, XmppAddrs
	wildcards map[string]struct{} // parent domains of "*.parent" DNS-IDs
}

// newIdentitySet normalises names. Names that are not valid domain names
// are dropped: they can never match.
func newIdentitySet(names subjectAltNames) identitySet {
	set := identitySet{exact: map[string]struct{}{}, wildcards: map[string]struct{}{}}
	for _, name := range names.DNSNames {
		if parent, ok := strings.CutPrefix(name, "*."); ok {
			if p, err := normalizeDomain(parent); err == nil {
				set.wildcards[p] = struct{}{}
			}
			continue
		}
		if d, err := normalizeDomain(name); err == nil {
			set.exact[d] = struct{}{}
		}
	}
	for _, name := range names.SRVNames {
		// Service labels are ASCII and case-insensitive.
		if len(name) < len(srvXMPPServerPrefix) || !strings.EqualFold(name[:len(srvXMPPServerPrefix)], srvXMPPServerPrefix) {
			continue
		}
		if d, err := normalizeDomain(name[len(srvXMPPServerPrefix):]); err == nil {
			set.exact[d] = struct{}{}
		}
	}
	for _, name := range names.XmppAddrs {
		// Only a bare domain JID identifies a server.
		if strings.ContainsAny(name, "@/") {
			continue
		}
		if d, err := normalizeDomain(name); err == nil {
			set.exact[d] = struct{}{}
		}
	}
	return set
}

// matches reports whether the set holds an identity for domain, which
// must already be normalised.
func (s identitySet) matches(domain string) bool {
	if _, ok := s.exact[domain]; ok {
		return true
	}
	// "*.example.org" matches "chat.example.org": exactly one label.
	if _, parent, ok := strings.Cut(domain, "."); ok && parent != "" {
		if _, ok := s.wildcards[parent]; ok {
			return true
		}
	}
	return false
}

// covered returns the normalised names, wildcards as "*.parent".
func (s identitySet) covered() []string {
	names := make([]string, 0, len(s.exact)+len(s.wildcards))
	for n := range s.exact {
		names = append(names, n)
	}
	for n := range s.wildcards {
		names = append(names, "*."+n)
	}
	return names
}

// ServerName is the TLS server name (SNI, RFC 6066 §3) for a connection to
// domain: its A-label form, lowercase, without a trailing dot ("bücher.test"
// is sent as "xn--bcher-kva.test"). A name that is not a valid domain name
// is returned as given (crypto/tls then sends what it can, or nothing for an
// IP literal).
func ServerName(domain string) string {
	if n, err := normalizeDomain(domain); err == nil {
		return n
	}
	return domain
}

// normalizeDomain returns domain in the form identities are compared in:
// A-labels (IDNA lookup profile), lowercase, no trailing dot. It rejects
// names that are not valid domain names, including any containing '*'.
func normalizeDomain(domain string) (string, error) {
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" {
		return "", errors.New("empty domain")
	}
	if strings.ContainsAny(domain, "*") {
		return "", fmt.Errorf("domain %q contains a wildcard", domain)
	}
	if !utf8.ValidString(domain) {
		return "", fmt.Errorf("domain %q is not valid UTF-8", domain)
	}
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid domain name: %w", domain, err)
	}
	ascii = strings.ToLower(ascii)
	// The A-label form must itself be valid (the IDNA mapping can produce
	// labels that do not convert back), so that every spelling of a name
	// normalises to the same thing.
	if again, err := idna.Lookup.ToASCII(ascii); err != nil || again != ascii {
		return "", fmt.Errorf("domain %q has no stable A-label form", domain)
	}
	if ascii == "" || strings.HasPrefix(ascii, ".") || strings.HasSuffix(ascii, ".") || strings.Contains(ascii, "..") {
		return "", fmt.Errorf("domain %q has an empty label", domain)
	}
	return ascii, nil
}

// MatchIdentity reports whether cert carries an XMPP server identity for
// domain, following RFC 6125 / RFC 9525:
//
//   - DNS-ID: a dNSName subjectAltName equal to domain, or a wildcard
//     "*.parent" whose "*" is the whole left-most label and stands for
//     exactly one label ("*.example.org" matches "chat.example.org", not
//     "example.org" nor "a.b.example.org"); partial wildcards such as
//     "f*.example.org" or "xn--*.example.org" never match;
//   - SRV-ID: an otherName id-on-dnsSRV "_xmpp-server.DOMAIN" (other
//     services such as _xmpp-client do not identify a server);
//   - XmppAddr: an otherName id-on-xmppAddr holding the bare domain.
//
// The subject common name is never used. Names are compared in A-label
// form, case-insensitively, ignoring a trailing dot, so "bücher.example"
// matches "xn--bcher-kva.example". A certificate whose SubjectAltName
// extension cannot be parsed matches nothing.
func MatchIdentity(cert *x509.Certificate, domain string) bool {
	if cert == nil {
		return false
	}
	want, err := normalizeDomain(domain)
	if err != nil {
		return false
	}
	names, err := certificateNames(cert)
	if err != nil {
		return false
	}
	return newIdentitySet(names).matches(want)
}

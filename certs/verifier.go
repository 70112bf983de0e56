package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Verifier checks a peer's certificate chain for an XMPP domain: PKIX
// validation against the system roots (optional) plus extra CA files,
// then the XMPP identity (MatchIdentity). A Verifier is immutable and
// safe for concurrent use.
type Verifier struct {
	roots *x509.CertPool
	// POSH (posh.go); the cache is the only mutable state, behind a lock.
	poshClient *http.Client
	posh       *poshCache
	// DANE (dane.go): a resolver given with WithTLSAResolver, else one is
	// made per call from VerifyDANE's resolver address.
	tlsa TLSAResolver
}

// VerifierOption changes a default of NewVerifier.
type VerifierOption func(*Verifier)

// WithPOSHClient sets the HTTP client VerifyPOSH fetches POSH files with
// (default: a client with a 10 second timeout and the system roots). Its
// transport decides which roots the HTTPS server must chain to.
func WithPOSHClient(c *http.Client) VerifierOption {
	return func(v *Verifier) { v.poshClient = c }
}

// WithTLSAResolver sets how VerifyDANE looks up TLSA records; the resolver
// address passed to VerifyDANE is then ignored.
func WithTLSAResolver(r TLSAResolver) VerifierOption {
	return func(v *Verifier) { v.tlsa = r }
}

// NewVerifier returns a Verifier trusting the system roots when
// systemRoots is true, plus every certificate in the PEM files caFiles.
// Each CA file must exist and hold at least one certificate.
func NewVerifier(caFiles []string, systemRoots bool, opts ...VerifierOption) (*Verifier, error) {
	var roots *x509.CertPool
	if systemRoots {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("cannot load the system's trusted root certificates (set system roots off and list CA files instead): %w", err)
		}
		roots = pool
	} else {
		roots = x509.NewCertPool()
	}
	for _, file := range caFiles {
		certs, err := readCertificatesFile(file)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: %w", file, err)
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	v := &Verifier{roots: roots, posh: newPOSHCache()}
	for _, o := range opts {
		o(v)
	}
	if v.poshClient == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		transport.TLSClientConfig = Harden(nil)
		v.poshClient = &http.Client{
			Transport: transport,
			Timeout:   10 * time.Second,
			// A POSH file is fetched from the domain itself over https; a
			// redirect elsewhere (another host, plain http, an internal
			// address) is not followed.
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if req.URL.Scheme != "https" || len(via) == 0 || req.URL.Host != via[0].URL.Host {
					return http.ErrUseLastResponse
				}
				return nil
			},
		}
	}
	return v, nil
}

// readCertificatesFile reads every CERTIFICATE block of a PEM file.
func readCertificatesFile(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %w", err)
	}
	certs, err := parseCertificatesPEM(data)
	if err != nil {
		return nil, err
	}
	return certs, nil
}

// parseCertificatesPEM parses every CERTIFICATE block; other blocks are
// ignored. No certificate at all is an error.
func parseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	blocks := pemBlocks(data)
	for _, block := range blocks {
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d cannot be parsed: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(blocks) == 0 {
		return nil, errors.New("is not PEM (expected -----BEGIN CERTIFICATE-----)")
	}
	if len(certs) == 0 {
		return nil, errors.New("holds no CERTIFICATE block")
	}
	return certs, nil
}

// Verdict is the outcome of verifying a peer's certificate for a domain.
type Verdict struct {
	// Valid is true when the chain is trusted at the time of verification
	// and the leaf carries an identity for the domain.
	Valid bool
	// Reason says why the verdict is not valid, for logs and audit, e.g.
	// "certificate signed by unknown authority",
	// "certificate has expired (not after 2026-01-01T00:00:00Z)",
	// "certificate is not valid for partner.test (names: a.test, b.test)",
	// "no certificate presented". Empty when Valid.
	Reason string
	// Issuer is the issuer of the leaf: its common name, or its whole
	// distinguished name when it has no common name.
	Issuer string
	// Names are the identities found in the leaf (DNS-IDs, SRV-IDs,
	// XmppAddrs) as written in it, for logs.
	Names []string
	// Method says how a valid verdict was reached: "pkix" (Verify),
	// "dane-ee" or "dane-ta" (VerifyDANE), "posh" (VerifyPOSH). Empty
	// when not valid.
	Method string
}

// Verification methods of Verdict.Method.
const (
	MethodPKIX   = "pkix"
	MethodDANEEE = "dane-ee"
	MethodDANETA = "dane-ta"
	MethodPOSH   = "posh"
)

// Verify checks chain (leaf first, as in tls.ConnectionState's
// PeerCertificates) for domain at the time now. The chain must lead to a
// trusted root and be usable for server or client authentication, and the
// leaf must carry an identity for domain. Verify never panics on a
// hostile chain; every failure is a Verdict with a Reason.
func (v *Verifier) Verify(chain []*x509.Certificate, domain string, now time.Time) Verdict {
	if len(chain) == 0 || chain[0] == nil {
		return Verdict{Reason: "no certificate presented"}
	}
	leaf := chain[0]
	verdict := Verdict{Issuer: issuerName(leaf)}
	names, err := certificateNames(leaf)
	if err != nil {
		verdict.Reason = "certificate has a malformed subjectAltName: " + err.Error()
		return verdict
	}
	verdict.Names = names.all()

	// Validity of the leaf first: the clearest reason for the most common
	// failure.
	if now.After(leaf.NotAfter) {
		verdict.Reason = fmt.Sprintf("certificate has expired (not after %s)", leaf.NotAfter.UTC().Format(time.RFC3339))
		return verdict
	}
	if now.Before(leaf.NotBefore) {
		verdict.Reason = fmt.Sprintf("certificate is not yet valid (not before %s)", leaf.NotBefore.UTC().Format(time.RFC3339))
		return verdict
	}

	leaf = withoutHandledCriticalSAN(leaf)
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil {
			intermediates.AddCert(c)
		}
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		// An initiating server presents its server certificate as a TLS
		// client certificate; accept either usage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		verdict.Reason = chainFailureReason(err)
		return verdict
	}

	want, err := normalizeDomain(domain)
	if err != nil || !newIdentitySet(names).matches(want) {
		verdict.Reason = fmt.Sprintf("certificate is not valid for %s (%s)", domain, describeNames(verdict.Names))
		return verdict
	}
	verdict.Valid = true
	verdict.Method = MethodPKIX
	return verdict
}

// withoutHandledCriticalSAN returns leaf, or a shallow copy of it whose
// list of unhandled critical extensions no longer holds the
// SubjectAltName. crypto/x509 reports a critical SubjectAltName that holds
// only otherNames (a certificate with an empty subject and only SRV-IDs
// or XmppAddrs, RFC 5280 §4.2.1.6) as unhandled; this package parses and
// uses those names, so the extension is handled. The caller's
// certificate is not modified.
func withoutHandledCriticalSAN(leaf *x509.Certificate) *x509.Certificate {
	i := slices.IndexFunc(leaf.UnhandledCriticalExtensions, func(oid asn1.ObjectIdentifier) bool {
		return oid.Equal(oidSubjectAltName)
	})
	if i < 0 {
		return leaf
	}
	cp := *leaf
	cp.UnhandledCriticalExtensions = slices.Delete(slices.Clone(leaf.UnhandledCriticalExtensions), i, i+1)
	return &cp
}

func describeNames(names []string) string {
	if len(names) == 0 {
		return "it names no domain"
	}
	return "names: " + strings.Join(names, ", ")
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// chainFailureReason turns an x509 verification error into a reason a
// person understands.
func chainFailureReason(err error) string {
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return "certificate signed by unknown authority"
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return "certificate chain is not valid at this time (an issuing certificate has expired or is not yet valid)"
		case x509.IncompatibleUsage:
			return "certificate is not allowed for server or client authentication (extended key usage)"
		case x509.NotAuthorizedToSign:
			return "certificate chain includes a certificate that is not allowed to sign certificates"
		case x509.CANotAuthorizedForThisName:
			return "certificate chain violates the issuing CA's name constraints"
		case x509.TooManyIntermediates:
			return "certificate chain is too long"
		}
		return "certificate is invalid: " + invalid.Error()
	}
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) {
		return hostErr.Error()
	}
	var sysErr x509.SystemRootsError
	if errors.As(err, &sysErr) {
		return "no trusted root certificates are configured"
	}
	return "certificate chain is not valid: " + err.Error()
}

// outcomeName names outcome n of a check (DANE, POSH) whose outcomes,
// numbered from 0, are names; any other n is shown as kind(n).
func outcomeName(kind string, n int, names ...string) string {
	if n >= 0 && n < len(names) {
		return names[n]
	}
	return fmt.Sprintf("%s(%d)", kind, n)
}

package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DANEStatus is the outcome of a DANE check.
type DANEStatus int

const (
	// DANENotApplicable: no TLSA records, none usable, or the answer was
	// not authenticated (no AD bit): verify with PKIX instead.
	DANENotApplicable DANEStatus = iota
	// DANEMatched: an authenticated TLSA record matches the chain.
	DANEMatched
	// DANEFailed: authenticated, usable TLSA records exist and none
	// matches: the peer is not authenticated, whatever PKIX says.
	DANEFailed
	// DANELookupFailed: the TLSA lookup failed (timeout, SERVFAIL — which
	// a validating resolver also answers for bogus data). Policy decides.
	DANELookupFailed
)

func (s DANEStatus) String() string {
	return outcomeName("DANEStatus", int(s), "not applicable", "matched", "failed", "lookup failed")
}

// DANEResult is the outcome of VerifyDANE.
type DANEResult struct {
	Status DANEStatus
	// Verdict is valid only when Status is DANEMatched (Method "dane-ee"
	// or "dane-ta"); otherwise its Reason says why.
	Verdict Verdict
	// Records is the number of usable TLSA records found.
	Records int
}

// TLSAResolver looks up the TLSA records of a name. authenticated is the
// resolver's AD bit: the records were validated with DNSSEC.
type TLSAResolver interface {
	LookupTLSA(ctx context.Context, name string) (records []*dns.TLSA, authenticated bool, err error)
}

// DNSSECResolver asks one validating resolver (e.g. a local unbound) at
// Addr ("IP:PORT") with the DO bit and trusts its AD bit. Use it only
// with a resolver reached over a trusted path (loopback).
type DNSSECResolver struct {
	Addr    string
	Timeout time.Duration // per query; 0 means 5 seconds
}

// LookupTLSA implements TLSAResolver. NXDOMAIN and NODATA are no records
// and no error.
func (r DNSSECResolver) LookupTLSA(ctx context.Context, name string) ([]*dns.TLSA, bool, error) {
	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), dns.TypeTLSA)
	msg.RecursionDesired = true
	msg.AuthenticatedData = true // ask for AD (RFC 6840 §5.7)
	msg.SetEdns0(4096, true)     // DO
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	client := &dns.Client{Net: "udp", Timeout: timeout}
	in, _, err := client.ExchangeContext(ctx, msg, r.Addr)
	if err == nil && in.Truncated {
		client.Net = "tcp"
		in, _, err = client.ExchangeContext(ctx, msg, r.Addr)
	}
	if err != nil {
		return nil, false, fmt.Errorf("asking %s for TLSA %s: %w", r.Addr, name, err)
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
	default:
		return nil, in.AuthenticatedData, fmt.Errorf("resolver %s answered %s for TLSA %s", r.Addr, dns.RcodeToString[in.Rcode], name)
	}
	var records []*dns.TLSA
	for _, rr := range in.Answer {
		if t, ok := rr.(*dns.TLSA); ok {
			records = append(records, t)
		}
	}
	return records, in.AuthenticatedData, nil
}

// TLSA certificate usages, selectors and matching types used by RFC 7673.
const (
	tlsaUsageDANETA   = 2
	tlsaUsageDANEEE   = 3
	tlsaSelectorCert  = 0
	tlsaSelectorSPKI  = 1
	tlsaMatchFull     = 0
	tlsaMatchSHA256   = 1
	tlsaMatchSHA512   = 2
	maxTLSARecordsUse = 64
)

// DANEQuery names what VerifyDANEWith checks.
type DANEQuery struct {
	Host string // the SRV target (or the domain itself without SRV)
	Port uint16 // 5269, or 5270 for direct TLS
	// Domain is the XMPP domain the peer claims; a DANE-TA match also
	// needs the leaf to carry an identity for Domain or Host (RFC 7673
	// §4). "" means Host.
	Domain string
}

// VerifyDANE checks chain against the TLSA records of _PORT._tcp.HOST
// (RFC 7673), asked from the validating resolver at resolver ("IP:PORT")
// unless the Verifier has a TLSAResolver (WithTLSAResolver). See
// VerifyDANEWith.
func (v *Verifier) VerifyDANE(ctx context.Context, chain []*x509.Certificate, host string, port uint16, resolver string) DANEResult {
	r := v.tlsa
	if r == nil {
		if resolver == "" {
			return DANEResult{Verdict: Verdict{Reason: "DANE: " + errNoResolver.Error()}}
		}
		r = DNSSECResolver{Addr: resolver}
	}
	return v.VerifyDANEWith(ctx, chain, DANEQuery{Host: host, Port: port}, r)
}

// VerifyDANEWith checks chain against the TLSA records of
// _PORT._tcp.HOST looked up with r. Records count only when the answer is
// authenticated (AD). DANE-EE (usage 3) matches the leaf; its name and
// validity dates are not checked (RFC 7671 §5.1). DANE-TA (usage 2)
// matches a CA certificate of the chain, which then must be a valid
// chain from the leaf to it at this time, with an identity for Domain or
// Host. Selectors 0 (certificate) and 1 (SubjectPublicKeyInfo), matching
// types 0 (exact), 1 (SHA-256) and 2 (SHA-512); other records are
// unusable and ignored.
func (v *Verifier) VerifyDANEWith(ctx context.Context, chain []*x509.Certificate, q DANEQuery, r TLSAResolver) DANEResult {
	host, err := normalizeDomain(q.Host)
	if err != nil {
		return DANEResult{Verdict: Verdict{Reason: "DANE: " + err.Error()}}
	}
	name := fmt.Sprintf("_%d._tcp.%s.", q.Port, host)
	records, authenticated, err := r.LookupTLSA(ctx, name)
	if err != nil {
		return DANEResult{Status: DANELookupFailed, Verdict: Verdict{Reason: "DANE: TLSA lookup failed: " + err.Error()}}
	}
	if len(records) == 0 {
		return DANEResult{Verdict: Verdict{Reason: "DANE: no TLSA records at " + name}}
	}
	if !authenticated {
		return DANEResult{Verdict: Verdict{Reason: "DANE: the TLSA answer for " + name + " is not DNSSEC-authenticated (no AD bit)"}}
	}
	var usable []*dns.TLSA
	for _, t := range records {
		if (t.Usage == tlsaUsageDANEEE || t.Usage == tlsaUsageDANETA) &&
			t.Selector <= tlsaSelectorSPKI && t.MatchingType <= tlsaMatchSHA512 && len(usable) < maxTLSARecordsUse {
			usable = append(usable, t)
		}
	}
	if len(usable) == 0 {
		return DANEResult{Verdict: Verdict{Reason: fmt.Sprintf("DANE: none of the %d TLSA records at %s is usable (DANE-EE/DANE-TA)", len(records), name)}}
	}
	res := DANEResult{Status: DANEFailed, Records: len(usable)}
	if len(chain) == 0 || chain[0] == nil {
		res.Verdict = Verdict{Reason: "DANE: no certificate presented"}
		return res
	}
	leaf := chain[0]
	res.Verdict = Verdict{Issuer: issuerName(leaf)}
	if names, err := certificateNames(leaf); err == nil {
		res.Verdict.Names = names.all()
	}
	domain := q.Domain
	if domain == "" {
		domain = q.Host
	}
	var taFailure string
	for _, t := range usable {
		switch t.Usage {
		case tlsaUsageDANEEE:
			if tlsaMatches(t, leaf) {
				res.Status = DANEMatched
				res.Verdict.Valid, res.Verdict.Method = true, MethodDANEEE
				return res
			}
		case tlsaUsageDANETA:
			for i := 1; i < len(chain); i++ {
				if chain[i] == nil || !tlsaMatches(t, chain[i]) {
					continue
				}
				if reason := v.checkTAChain(chain[:i+1], domain, host); reason != "" {
					taFailure = reason
					continue
				}
				res.Status = DANEMatched
				res.Verdict.Valid, res.Verdict.Method = true, MethodDANETA
				return res
			}
		}
	}
	res.Verdict.Reason = fmt.Sprintf("DANE: the certificate matches none of the %d TLSA records at %s", len(usable), name)
	if taFailure != "" {
		res.Verdict.Reason = "DANE: " + taFailure
	}
	return res
}

// checkTAChain verifies that chain (leaf first, trust anchor last) is a
// valid chain at this time and that the leaf names domain or host; it
// returns why not, or "".
func (v *Verifier) checkTAChain(chain []*x509.Certificate, domain, host string) string {
	ta := chain[len(chain)-1]
	roots := x509.NewCertPool()
	roots.AddCert(ta)
	intermediates := x509.NewCertPool()
	for _, c := range chain[1 : len(chain)-1] {
		intermediates.AddCert(c)
	}
	leaf := withoutHandledCriticalSAN(chain[0])
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: intermediates, CurrentTime: time.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "the chain to the DANE-TA trust anchor is not valid: " + chainFailureReason(err)
	}
	if !MatchIdentity(chain[0], domain) && !MatchIdentity(chain[0], host) {
		names, _ := certificateNames(chain[0])
		return fmt.Sprintf("certificate under the DANE-TA trust anchor is not valid for %s (%s)", domain, describeNames(names.all()))
	}
	return ""
}

// tlsaMatches reports whether cert matches the selector, matching type
// and data of t.
func tlsaMatches(t *dns.TLSA, cert *x509.Certificate) bool {
	want, err := hex.DecodeString(strings.TrimSpace(t.Certificate))
	if err != nil || len(want) == 0 {
		return false
	}
	var selected []byte
	switch t.Selector {
	case tlsaSelectorCert:
		selected = cert.Raw
	case tlsaSelectorSPKI:
		selected = cert.RawSubjectPublicKeyInfo
	default:
		return false
	}
	var got []byte
	switch t.MatchingType {
	case tlsaMatchFull:
		got = selected
	case tlsaMatchSHA256:
		h := sha256.Sum256(selected)
		got = h[:]
	case tlsaMatchSHA512:
		h := sha512.Sum512(selected)
		got = h[:]
	default:
		return false
	}
	return bytes.Equal(got, want)
}

// errNoResolver is returned when neither a resolver address nor a
// TLSAResolver is configured.
var errNoResolver = errors.New("no validating resolver is configured")

package posture

import (
	"strings"
)

// Posture is what a session showed of its security.
type Posture struct {
	TLS       string `json:"tls"`            // "TLS 1.3", "TLS 1.2", "" without TLS
	Auth      string `json:"auth"`           // "sasl_external" | "dialback"
	CertValid bool   `json:"cert_valid"`     // the peer's certificate is valid for its domain
	DANE      bool   `json:"dane,omitempty"` // … by DANE (TLSA records under DNSSEC)
}

// Auth ranks of a posture, weakest first.
const (
	AuthNone        = 0
	AuthDialback    = 1
	AuthCertificate = 2 // dialback with a valid certificate
	AuthSASL        = 3 // SASL EXTERNAL
)

// TLSRank is the rank of a TLS version name: 0 without TLS (or an
// unknown, older version), 1 for TLS 1.2, 2 for TLS 1.3.
func TLSRank(v string) int {
	switch v {
	case "TLS 1.2":
		return 1
	case "TLS 1.3":
		return 2
	}
	return 0
}

// AuthRank ranks the authentication (one of the Auth… constants).
func (p Posture) AuthRank() int {
	switch {
	case p.Auth == "sasl_external":
		return AuthSASL
	case p.Auth == "dialback" && p.CertValid:
		return AuthCertificate
	case p.Auth == "dialback":
		return AuthDialback
	}
	return AuthNone
}

// AuthName names the authentication as require_posture does: dialback,
// certificate (dialback with a valid certificate) or sasl_external.
func (p Posture) AuthName() string {
	switch p.AuthRank() {
	case AuthSASL:
		return "sasl_external"
	case AuthCertificate:
		return "certificate"
	case AuthDialback:
		return "dialback"
	}
	return "none"
}

func (p Posture) String() string {
	tls := p.TLS
	if tls == "" {
		tls = "no TLS"
	}
	s := tls + ", " + p.AuthName()
	if p.DANE {
		s += ", DANE"
	}
	return s
}

// Best is the best of p and q in each dimension (the TLS version, the
// authentication with its certificate, DANE).
func Best(p, q Posture) Posture {
	out := p
	if TLSRank(q.TLS) > TLSRank(p.TLS) {
		out.TLS = q.TLS
	}
	if q.AuthRank() > p.AuthRank() {
		out.Auth, out.CertValid = q.Auth, q.CertValid
	}
	out.DANE = p.DANE || q.DANE
	return out
}

// Weaker lists the dimensions in which p is weaker than best, e.g.
// ["TLS 1.2 < TLS 1.3", "dialback < sasl_external"]; none: not a
// downgrade.
func Weaker(p, best Posture) []string {
	var out []string
	if TLSRank(p.TLS) < TLSRank(best.TLS) {
		out = append(out, orNoTLS(p.TLS)+" < "+best.TLS)
	}
	if p.AuthRank() < best.AuthRank() {
		out = append(out, p.AuthName()+" < "+best.AuthName())
	}
	if best.DANE && !p.DANE {
		out = append(out, "no DANE < DANE")
	}
	return out
}

// Stronger reports whether p is stronger than best in any dimension.
func Stronger(p, best Posture) bool {
	return TLSRank(p.TLS) > TLSRank(best.TLS) || p.AuthRank() > best.AuthRank() || p.DANE && !best.DANE
}

func orNoTLS(v string) string {
	if v == "" {
		return "no TLS"
	}
	return v
}

// describe joins Weaker's list for a reason.
func describe(weaker []string) string { return strings.Join(weaker, "; ") }

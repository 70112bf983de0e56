package metrics

import (
	"strings"
	"sync/atomic"
)

// Label values. Methods accept these (case-insensitively) and report
// anything else as Other.
const (
	Other = "other"
	None  = "none"

	LegInside  = "inside"
	LegOutside = "outside"

	RoleIncoming = "incoming" // the peer connected to us
	RoleOutgoing = "outgoing" // we connected to the peer

	AuthSASLExternal = "sasl_external"
	AuthDialback     = "dialback"
	AuthMixed        = "mixed" // several pairs on one stream, authenticated differently

	DirInbound  = "inbound"  // stanzas from the Internet to the company
	DirOutbound = "outbound" // stanzas from the company to the Internet

	BytesReceived = "received"
	BytesSent     = "sent"

	// Session failure reasons.
	FailDNS         = "dns"
	FailConnect     = "connect"
	FailTLS         = "tls"
	FailAuth        = "auth"
	FailPolicy      = "policy"
	FailTimeout     = "timeout"
	FailStreamError = "stream_error"

	KindMessage  = "message"
	KindPresence = "presence"
	KindIQ       = "iq"

	OutcomeRelayed       = "relayed"
	OutcomeDenied        = "denied"
	OutcomeBounced       = "bounced"
	OutcomeUndeliverable = "undeliverable"

	// Stanza reasons: the RFC 6120 stanza error conditions xmppedge uses, or
	// None for relayed stanzas.
	ReasonPolicyViolation      = "policy-violation"
	ReasonRemoteServerNotFound = "remote-server-not-found"
	ReasonRemoteServerTimeout  = "remote-server-timeout"
	ReasonResourceConstraint   = "resource-constraint"
	ReasonInternalServerError  = "internal-server-error"
	ReasonServiceUnavailable   = "service-unavailable"
	ReasonJIDMalformed         = "jid-malformed"

	// Limits that refuse a connection or a stanza (LimitRefused).
	LimitConnectionsPerIP    = "connections_per_ip"
	LimitNewConnectionsPerIP = "new_connections_per_ip"
	LimitStanzaRate          = "stanza_rate"

	PolicyKindSession = "session"
	PolicyKindStanza  = "stanza"

	// Results of TLS handshakes and reloads.
	ResultSuccess = "success"
	ResultFailure = "failure"

	// Our role in a dialback exchange (XEP-0220) and its result.
	DialbackOriginating   = "originating"
	DialbackReceiving     = "receiving"
	DialbackAuthoritative = "authoritative"
	DialbackValid         = "valid"
	DialbackInvalid       = "invalid"
	DialbackError         = "error"
	DialbackTimeout       = "timeout"
	// DialbackValidCert (receiving): answered valid without db:verify,
	// the peer's certificate being valid for the originating domain, or
	// matching the DNSSEC-authenticated TLSA records of its servers
	// (XEP-0344, "dialback without dialback").
	DialbackValidCert = "valid_cert"

	// Why an outgoing stream fell back to dialback (SASLExternalFallback):
	// the peer refused our certificate in SASL EXTERNAL (a <failure/>, or
	// the end of the stream with no answer) or in the TLS handshake.
	FallbackSASL = "sasl"
	FallbackTLS  = "tls"

	// TLS versions as label values (TLSHandshake also accepts "TLS 1.3").
	TLSVersion10 = "1.0"
	TLSVersion11 = "1.1"
	TLSVersion12 = "1.2"
	TLSVersion13 = "1.3"

	QTypeSRV  = "SRV"
	QTypeA    = "A"
	QTypeAAAA = "AAAA"
)

// labelSet is the bounded vocabulary of one label. The last value is the
// fallback for anything not in the set.
type labelSet []string

// index returns the position of v in the set, or the fallback's. An empty v
// maps to "none" when the set has it. It does not allocate.
func (s labelSet) index(v string) int {
	if v == "" {
		v = None
	}
	for i, known := range s[:len(s)-1] {
		if strings.EqualFold(v, known) {
			return i
		}
	}
	return len(s) - 1
}

var (
	legSet      = labelSet{LegInside, LegOutside, Other}
	roleSet     = labelSet{RoleIncoming, RoleOutgoing, Other}
	authSet     = labelSet{AuthSASLExternal, AuthDialback, AuthMixed, None, Other}
	stanzaDirs  = labelSet{DirInbound, DirOutbound, Other}
	byteDirs    = labelSet{BytesReceived, BytesSent, Other}
	failSet     = labelSet{FailDNS, FailConnect, FailTLS, FailAuth, FailPolicy, FailTimeout, FailStreamError, Other}
	kindSet     = labelSet{KindMessage, KindPresence, KindIQ, Other}
	outcomeSet  = labelSet{OutcomeRelayed, OutcomeDenied, OutcomeBounced, OutcomeUndeliverable, Other}
	reasonSet   = labelSet{ReasonPolicyViolation, ReasonRemoteServerNotFound, ReasonRemoteServerTimeout, ReasonResourceConstraint, ReasonInternalServerError, ReasonServiceUnavailable, ReasonJIDMalformed, None, Other}
	limitSet    = labelSet{LimitConnectionsPerIP, LimitNewConnectionsPerIP, LimitStanzaRate, Other}
	policyKinds = labelSet{PolicyKindSession, PolicyKindStanza, Other}
	qtypeSet    = labelSet{QTypeSRV, QTypeA, QTypeAAAA, Other}
	resultSet   = labelSet{ResultSuccess, ResultFailure, Other}
	tlsVersions = labelSet{TLSVersion10, TLSVersion11, TLSVersion12, TLSVersion13, None, Other}
	dbRoles     = labelSet{DialbackOriginating, DialbackReceiving, DialbackAuthoritative, Other}
	dbResults   = labelSet{DialbackValid, DialbackInvalid, DialbackError, DialbackTimeout, DialbackValidCert, Other}
	fallbacks   = labelSet{FallbackSASL, FallbackTLS, Other}
)

// authIndex maps an auth method to authSet. Incoming streams report one
// method per pair, joined with commas: all the same is that method,
// different ones are "mixed".
func authIndex(v string) int {
	if !strings.Contains(v, ",") {
		return authSet.index(v)
	}
	first := -1
	for part := range strings.SplitSeq(v, ",") {
		i := authSet.index(strings.TrimSpace(part))
		switch {
		case first < 0:
			first = i
		case i != first:
			return authSet.index(AuthMixed)
		}
	}
	return first
}

// tlsVersionIndex accepts "TLS 1.3" (tls.VersionName), "TLSv1.3", "TLS1.3"
// and "1.3"; "" is none.
func tlsVersionIndex(v string) int {
	if len(v) >= 3 && strings.EqualFold(v[:3], "tls") {
		v = strings.TrimPrefix(strings.TrimPrefix(v[3:], " "), "v")
	}
	return tlsVersions.index(v)
}

// lazyVec caches the children of a metric vector whose labels are all
// bounded. Children are created on first use (so unused combinations do not
// appear as series) and then found by array index without allocation.
type lazyVec[T any] struct {
	sets  []labelSet
	with  func(values ...string) T
	cells []atomic.Pointer[cell[T]]
}

type cell[T any] struct{ v T }

func newLazyVec[T any](with func(values ...string) T, sets ...labelSet) *lazyVec[T] {
	n := 1
	for _, s := range sets {
		n *= len(s)
	}
	return &lazyVec[T]{sets: sets, with: with, cells: make([]atomic.Pointer[cell[T]], n)}
}

// at returns the child for the flat index i (see idx).
func (v *lazyVec[T]) at(i int) T {
	if c := v.cells[i].Load(); c != nil {
		return c.v
	}
	values := make([]string, len(v.sets))
	rest := i
	for k := len(v.sets) - 1; k >= 0; k-- {
		n := len(v.sets[k])
		values[k] = v.sets[k][rest%n]
		rest /= n
	}
	child := v.with(values...)
	// A concurrent first use stores the same child: WithLabelValues
	// returns one child per label combination.
	v.cells[i].Store(&cell[T]{v: child})
	return child
}

// Flat indexes from per-label positions, for 1 to 4 labels.
func (v *lazyVec[T]) idx2(a, b int) int { return a*len(v.sets[1]) + b }
func (v *lazyVec[T]) idx3(a, b, c int) int {
	return (a*len(v.sets[1])+b)*len(v.sets[2]) + c
}
func (v *lazyVec[T]) idx4(a, b, c, d int) int {
	return ((a*len(v.sets[1])+b)*len(v.sets[2])+c)*len(v.sets[3]) + d
}

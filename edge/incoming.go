package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// maxVerifications bounds the dialback verifications of the whole node
// (each opens a connection to an authoritative server; one stream may have
// s2s.MaxPendingDialback of them). A verification ends with its stream.
const maxVerifications = 256

// headerTimeout bounds how long a peer may take to send a stream header or
// a negotiation element.
const headerTimeout = s2s.HeaderTimeout

// domainPair is an authenticated (remote → local) pair on an incoming
// stream: stanzas whose from is in Remote and to in Local may pass.
type domainPair struct{ remote, local string }

// pairState is what was established for one authenticated pair: how, and
// the session facts the policy decided on (re-decided at every reload).
type pairState struct {
	method string
	facts  *policy.SessionInput
	rate   *policy.Rate // the partner's stanza rate from its session decision; nil: limits' default
}

// inDeps are what an incoming session uses of its node.
type inDeps struct {
	ctx           context.Context // the node's: ends at shutdown
	bg            *sync.WaitGroup // dialback verifications
	log           *slog.Logger
	m             *metrics.Metrics
	rec           recorder
	path          stanzaHandler  // the stanza path
	sessionPath   sessionHandler // session decisions
	isLocal       func(domain string) bool
	certs         func() *certs.Store
	verifier      *certs.Verifier
	serverTLS     func(leg Leg, to string, alpn bool) *tls.Config
	requireTLS    bool    // the outside leg refuses streams without TLS
	insideTLS     TLSMode // the inside leg's TLS
	preAuthLimit  func() time.Duration
	limits        func() *Limits
	streamLimits  func() xmlstream.Limits
	verifications chan struct{} // the node's verification slots
	secret        string        // the dialback secret
	dialer        *Dialer       // dialback verification against the authoritative server
	noBidi        func(leg Leg) bool
	// dialbackShortcut: XEP-0344 on the outside leg (receiving.go,
	// DialbackCertificate).
	dialbackShortcut bool
	posture          *postureWatch // the partners' postures (posture.go)
	// stanzas recycles the *inStanza of each stanza handled (pipeline.go).
	stanzas *sync.Pool
}

// inDeps is what the gateway gives its incoming sessions: made once, in
// New, after everything it refers to, and shared (Gateway.in).
func (g *Gateway) inDeps() *inDeps {
	return &inDeps{
		ctx: g.ctx, bg: &g.bg, log: g.log, m: g.m, rec: g.rec,
		path: g.path, sessionPath: g.sessionPath,
		isLocal: g.isLocal, certs: g.certs, verifier: g.opt.Verifier, serverTLS: g.serverTLS,
		requireTLS: g.opt.Outside.RequireTLS, insideTLS: g.opt.Inside.TLS,
		preAuthLimit: g.preAuthLimit, limits: g.limits, streamLimits: g.streamLimits,
		verifications: g.verifications, secret: g.opt.DialbackSecret, dialer: g.dialer,
		noBidi:           func(leg Leg) bool { return !g.bidiOn(leg) },
		posture:          g.posture,
		dialbackShortcut: !g.opt.Outside.NoDialbackShortcut,
		stanzas:          &sync.Pool{New: func() any { return new(inStanza) }},
	}
}

// inSession is a stream a peer opened to one of our listeners: we are the
// receiving server. Negotiation is internal/s2s's receiving side; the
// session implements its s2s.Receiver (receiving.go).
type inSession struct {
	d         *inDeps
	id        string
	leg       Leg
	directTLS bool
	sc        *stream.Conn
	peerNS    map[string]string // the namespaces of the peer's current header
	log       *slog.Logger
	started   time.Time

	mu      sync.Mutex
	pairs   map[domainPair]*pairState // authenticated pairs
	verdict *certs.Verdict            // the peer certificate, checked against the header's from
	closing bool
	opened  string // the auth label the session was counted open with ("" = not yet)
	cutWhy  string // why we cut the stream ourselves (policy reload, administrator)

	stanzas atomic.Uint64
	bidi    atomic.Bool   // the peer asked to use the stream both ways (XEP-0288)
	gone    chan struct{} // closed when the stream has ended

	ctx    context.Context // ends with the session: cancels its dialback verifications
	cancel context.CancelFunc
}

func (g *Gateway) newInSession(c net.Conn, leg Leg, directTLS bool) *inSession {
	id := g.newSessionID("in-")
	ctx, cancel := context.WithCancel(g.ctx)
	return &inSession{
		ctx: ctx, cancel: cancel,
		d: g.in, id: id, leg: leg, directTLS: directTLS,
		sc:      stream.NewConn(c, stream.Options{Limits: g.streamLimits(), WriteBuffer: stream.IncomingWriteBuffer}),
		log:     g.log.With("session", id, "leg", leg.String(), "role", "incoming", "remote_addr", c.RemoteAddr().String(), "local_addr", c.LocalAddr().String()),
		started: time.Now(),
		pairs:   make(map[domainPair]*pairState),
		gone:    make(chan struct{}),
	}
}

func (s *inSession) info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := SessionInfo{
		ID: s.id, Leg: s.leg.String(), Role: "incoming",
		RemoteAddr: s.sc.RemoteAddr().String(),
		TLSVersion: s.sc.TLSVersion(),
		Stanzas:    s.stanzas.Load(),
		Started:    s.started,
		Bidi:       s.bidi.Load(),
	}
	var auths []string
	for p, ps := range s.pairs {
		in.Local = append(in.Local, p.local)
		in.Remote = append(in.Remote, p.remote)
		auths = append(auths, ps.method)
	}
	in.Auth = strings.Join(auths, ",")
	if s.verdict != nil {
		in.PeerCert = verdictString(*s.verdict)
	}
	return in
}

func verdictString(v certs.Verdict) string {
	if v.Valid {
		return "valid"
	}
	return v.Reason
}

// recheck re-decides every pair of the stream; if one is now refused, the
// stream is closed with policy-violation. It reports whether it closed.
func (s *inSession) recheck(cause string) bool {
	s.mu.Lock()
	type item struct {
		p  domainPair
		ps *pairState
	}
	var items []item
	for p, ps := range s.pairs {
		items = append(items, item{p, ps})
	}
	s.mu.Unlock()
	for _, it := range items {
		d, ok := decideSession(s.d.ctx, s.d.sessionPath, it.ps.facts, it.ps.facts.TLS.PeerCertValid)
		if ok {
			s.mu.Lock()
			it.ps.rate = d.Rate // a reload may change the partner's rate
			s.mu.Unlock()
			continue
		}
		s.log.Warn("session no longer allowed by the policy: closing", "remote_domain", it.ps.facts.RemoteDomain, "local_domain", it.ps.facts.LocalDomain, "reason", d.Reason, "policy_revision", d.Revision)
		s.cut(cause+" (revision "+d.Revision+"): "+d.Reason, d.Reason)
		return true
	}
	return false
}

// cut closes the stream at once with a policy-violation stream error; why
// goes to the session.close audit record, text to the peer.
func (s *inSession) cut(why, text string) {
	s.mu.Lock()
	s.closing = true
	s.cutWhy = why
	s.mu.Unlock()
	s.sc.Fail(&stream.Error{Condition: stream.PolicyViolation, Text: text}, "", "")
}

// beginClose asks the peer to close: we send </stream:stream> and keep
// reading until it answers in kind (or the bound passes).
func (s *inSession) beginClose() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.sc.Close()
	s.sc.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
}

// serve runs the stream until it ends.
func (s *inSession) serve() {
	defer close(s.gone)
	defer s.sc.Abort()
	defer s.cancel()
	s.log.Debug("connection accepted")
	if s.directTLS && !s.directHandshake() {
		return
	}
	err := s2s.Receive(s.ctx, s.sc, s)
	s.closed(s.ended(err))
}

// directHandshake runs the TLS handshake of a direct TLS listener; false
// ends the connection (a failure, or an ACME TLS-ALPN-01 validation).
func (s *inSession) directHandshake() bool {
	ctx, cancel := context.WithTimeout(s.d.ctx, headerTimeout)
	err := s.sc.StartTLS(ctx, s.d.serverTLS(s.leg, "", true), false)
	cancel()
	if err != nil {
		s.d.m.TLSHandshake(s.leg.String(), metrics.ResultFailure, "")
		s.log.Info("direct TLS handshake failed", "err", err)
		return false
	}
	st := s.sc.TLS()
	if st.NegotiatedProtocol == certs.ALPNACMETLS {
		// An ACME CA validating TLS-ALPN-01: the handshake was all.
		s.log.Info("answered an ACME TLS-ALPN-01 challenge")
		return false
	}
	s.d.m.TLSHandshake(s.leg.String(), metrics.ResultSuccess, tls.VersionName(st.Version))
	return true
}

// ended finishes the stream the way its error says and returns the reason
// for the session.close record.
func (s *inSession) ended(err error) string {
	se := stream.ToError(err)
	var ee *s2s.EndError
	switch {
	case errors.Is(err, xmlstream.ErrStreamEnd):
		s.log.Info("stream closed by peer")
		s.sc.Close()
		return "closed by the peer"
	case se != nil:
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing && se.Condition == stream.ConnectionTimeout {
			s.log.Info("stream closed at shutdown")
			return "closed at shutdown"
		}
		reason := "stream error " + string(se.Condition)
		if se.Text != "" {
			reason += ": " + se.Text
		}
		s.log.Warn("stream error", "condition", se.Condition, "text", se.Text)
		peer := s.sc.Peer()
		s.sc.Fail(se, peer.To, peer.From)
		return reason
	case errors.As(err, &ee):
		s.log.Info("stream ended", "reason", err.Error())
		s.sc.Close()
		return err.Error()
	case err != nil:
		s.log.Info("stream ended", "err", err)
		return "connection ended: " + err.Error()
	}
	return "closed"
}

// closed records the end of a session that had authenticated a pair: a
// session.close audit record per pair and the session gauge.
func (s *inSession) closed(reason string) {
	s.mu.Lock()
	opened := s.opened
	if s.cutWhy != "" {
		reason = s.cutWhy
	}
	var facts []*policy.SessionInput
	for _, ps := range s.pairs {
		facts = append(facts, ps.facts)
	}
	s.mu.Unlock()
	if opened == "" {
		return
	}
	s.d.m.SessionClosed(s.leg.String(), metrics.RoleIncoming, opened)
	for _, f := range facts {
		auditSession(s.d.rec, s.d.log, sessionRecord(audit.EventSessionClose, s.id, s.leg, f, s.sc.RemoteAddr().String(), "", reason, ""))
	}
}

// OfferBidi: XEP-0288 is offered unless the leg's options turn it off.
func (s *inSession) OfferBidi(*s2s.Stream) bool { return !s.d.noBidi(s.leg) }

// BidiRequested marks the stream usable both ways: once a pair is
// authenticated on it, the router writes the reverse pair's stanzas here
// (Gateway.bidiStream).
func (s *inSession) BidiRequested(*s2s.Stream) {
	if !s.bidi.Swap(true) {
		s.log.Info("the peer uses this stream both ways (XEP-0288)")
	}
}

// reverse returns the stream as the way to send from → to, when the
// pair to → from is authenticated on it (nil otherwise, or once it is
// closing).
func (s *inSession) reverse(from, to string) *bidiStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.pairs[domainPair{remote: to, local: from}]
	if ps == nil || s.closing {
		return nil
	}
	os := &outStream{sc: s.sc, leg: s.leg, from: from, to: to, auth: ps.method}
	if s.verdict != nil && s.sc.Peer().From == to {
		v := *s.verdict // the certificate was checked against the header's from
		os.verdict = &v
	}
	return &bidiStream{os: os, owner: s.id, gone: s.gone}
}

// methodReverseInside is the auth label of the reverse pair of an outgoing
// inside stream (XEP-0288): the internal server at its configured address.
const methodReverseInside = "bidi"

// reverseSession is the receiving side of an outgoing stream we ask its
// server to use both ways (XEP-0288): an inSession over the outgoing
// stream's connection, whose one pair — the reverse of the stream's,
// os.to → os.from — is authorised and audited as an incoming stream's
// pair is. On the outside leg the server's certificate is valid for
// os.to (Dialer.bidiPossible): that is the pair's authentication, as
// SASL EXTERNAL's would be. The outgoing session's reader hands it the
// stanzas the server sends.
func (g *Gateway) reverseSession(os *outStream, id string) (*inSession, error) {
	ctx, cancel := context.WithCancel(g.ctx)
	s := &inSession{
		ctx: ctx, cancel: cancel,
		d: g.in, id: id, leg: os.leg, sc: os.sc, peerNS: os.sc.Peer().Namespaces,
		log:     g.log.With("session", id, "leg", os.leg.String(), "role", "outgoing", "direction", "reverse (XEP-0288)"),
		started: time.Now(),
		pairs:   make(map[domainPair]*pairState),
		gone:    make(chan struct{}),
	}
	method := s2s.MethodSASLExternal
	if os.leg == LegInside {
		method = methodReverseInside
	}
	facts := s.facts(os.to, os.from, method)
	d, err := s.authorize(facts, "the reverse direction of our stream, which we asked the server to use both ways (XEP-0288)")
	if err != nil {
		cancel()
		return nil, err
	}
	s.pairs[domainPair{remote: os.to, local: os.from}] = &pairState{method: method, facts: facts, rate: d.Rate}
	return s, nil
}

// pairMethod is how the pair remote → local was authenticated ("" if not).
func (s *inSession) pairMethod(remote, local string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ps := s.pairs[domainPair{remote: remote, local: local}]; ps != nil {
		return ps.method
	}
	return ""
}

// markOpened counts the session open when its first pair authenticates.
func (s *inSession) markOpened(auth string) {
	s.mu.Lock()
	first := s.opened == ""
	if first {
		s.opened = auth
	}
	s.mu.Unlock()
	if first {
		s.d.m.SessionOpened(s.leg.String(), metrics.RoleIncoming, auth)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

package edge

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// maxPendingDialback bounds the dialback verifications one stream may have
// under way at once (each opens a connection to an authoritative server),
// and maxVerifications those of the whole node. A verification ends with
// its stream.
const (
	maxPendingDialback = 16
	maxVerifications   = 256
)

// headerTimeout bounds how long a peer may take to send a stream header or
// a negotiation element.
const headerTimeout = 30 * time.Second

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

// inSession is a stream a peer opened to one of our listeners: we are the
// receiving server.
type inSession struct {
	g         *Gateway
	id        string
	leg       Leg
	directTLS bool
	sc        *streamConn
	log       *slog.Logger
	started   time.Time

	mu       sync.Mutex
	pairs    map[domainPair]*pairState // authenticated pairs
	pending  map[domainPair]bool       // dialback verifications under way
	verdict  *certs.Verdict            // the peer certificate, checked against the header's from
	closing  bool
	saslDone bool
	opened   string // the auth label the session was counted open with ("" = not yet)
	cutWhy   string // why we cut the stream ourselves (policy reload, administrator)

	stanzas atomic.Uint64

	ctx    context.Context // ends with the session: cancels its dialback verifications
	cancel context.CancelFunc
}

func (g *Gateway) newInSession(c net.Conn, leg Leg, directTLS bool) *inSession {
	id := g.newSessionID("in-")
	ctx, cancel := context.WithCancel(g.ctx)
	return &inSession{
		ctx: ctx, cancel: cancel,
		g: g, id: id, leg: leg, directTLS: directTLS,
		sc:      newStreamConn(c, g.streamLimits(), incomingWriteBuffer),
		log:     g.log.With("session", id, "leg", leg.String(), "role", "incoming", "remote_addr", c.RemoteAddr().String()),
		started: time.Now(),
		pairs:   make(map[domainPair]*pairState),
		pending: make(map[domainPair]bool),
	}
}

func (s *inSession) info() SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := SessionInfo{
		ID: s.id, Leg: s.leg.String(), Role: "incoming",
		RemoteAddr: s.sc.connection().RemoteAddr().String(),
		TLSVersion: s.sc.tlsVersion(),
		Stanzas:    s.stanzas.Load(),
		Started:    s.started,
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
func (s *inSession) recheck() bool {
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
		d, ok := s.g.decideSession(it.ps.facts, it.ps.facts.TLS.PeerCertValid)
		if ok {
			s.mu.Lock()
			it.ps.rate = d.Rate // a reload may change the partner's rate
			s.mu.Unlock()
			continue
		}
		s.log.Warn("session no longer allowed by the policy: closing", "remote_domain", it.ps.facts.RemoteDomain, "local_domain", it.ps.facts.LocalDomain, "reason", d.Reason, "policy_revision", d.Revision)
		s.cut("policy reload (revision "+d.Revision+"): "+d.Reason, d.Reason)
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
	s.sc.streamError(&StreamError{Condition: "policy-violation", Text: text}, "", "")
}

// beginClose asks the peer to close: we send </stream:stream> and keep
// reading until it answers in kind (or the bound passes).
func (s *inSession) beginClose() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.sc.closeStream()
	s.sc.connection().SetReadDeadline(time.Now().Add(3 * time.Second))
}

// serve runs the stream until it ends.
func (s *inSession) serve() {
	defer s.sc.connection().Close()
	defer s.cancel()
	s.log.Debug("connection accepted")
	if s.directTLS {
		tc := tls.Server(s.sc.conn, s.g.serverTLS(s.leg, "", true))
		ctx, cancel := context.WithTimeout(s.g.ctx, headerTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.g.m.TLSHandshake(s.leg.String(), metrics.ResultFailure, "")
			s.log.Info("direct TLS handshake failed", "err", err)
			return
		}
		if tc.ConnectionState().NegotiatedProtocol == certs.ALPNACMETLS {
			// An ACME CA validating TLS-ALPN-01: the handshake was all.
			s.log.Info("answered an ACME TLS-ALPN-01 challenge")
			return
		}
		s.g.m.TLSHandshake(s.leg.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
		s.sc.upgradeTLS(tc)
	}
	err := s.run()
	reason := "closed"
	se := asStreamError(err)
	switch {
	case errors.Is(err, xmlstream.ErrStreamEnd):
		reason = "closed by the peer"
		s.log.Info("stream closed by peer")
		s.sc.closeStream()
	case se != nil:
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing && se.Condition == "connection-timeout" {
			reason = "closed at shutdown"
			s.log.Info("stream closed at shutdown")
		} else {
			reason = "stream error " + se.Condition
			if se.Text != "" {
				reason += ": " + se.Text
			}
			s.log.Warn("stream error", "condition", se.Condition, "text", se.Text)
			s.sc.streamError(se, s.sc.peer.To, s.sc.peer.From)
		}
	case errors.As(err, new(errPeerStreamError)):
		reason = err.Error()
		s.log.Info("stream ended", "reason", err.Error())
		s.sc.closeStream()
	case err != nil:
		reason = "connection ended: " + err.Error()
		s.log.Info("stream ended", "err", err)
	}
	s.closed(reason)
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
	s.g.m.SessionClosed(s.leg.String(), metrics.RoleIncoming, opened)
	for _, f := range facts {
		s.g.auditSession("session.close", s.id, s.leg, f, s.sc.conn.RemoteAddr().String(), "", reason, "")
	}
}

// headerWait bounds the wait for the next stream header: headerTimeout,
// and while nothing is authenticated no longer than what is left of the
// pre-authentication bound (a peer must not hold a slot by restarting
// streams slowly).
func (s *inSession) headerWait() time.Duration {
	s.mu.Lock()
	authed := len(s.pairs) > 0
	s.mu.Unlock()
	wait := headerTimeout
	if !authed {
		if left := s.g.preAuthLimit() - time.Since(s.started); left < wait {
			wait = max(left, time.Millisecond)
		}
	}
	return wait
}

// errPeerStreamError ends a stream the peer gave up on (it sent a stream
// error) or that we end without a stream error of our own.
type errPeerStreamError struct{ condition string }

func (e errPeerStreamError) Error() string { return "stream ended: " + e.condition }

// errRestart tells run that the stream restarts (after STARTTLS or SASL).
var errRestart = errors.New("stream restart")

func (s *inSession) run() error {
	for {
		err := s.negotiate()
		if err == errRestart {
			continue
		}
		return err
	}
}

// negotiate handles one stream (from header to restart or end).
func (s *inSession) negotiate() error {
	h, err := s.sc.readHeader(s.headerWait())
	if err != nil {
		return err
	}
	// Our header answers with the domain the peer asked for.
	s.sc.setStreamID(dialback.NewStreamID())
	// Domains are compared in their RFC 7622 canonical form; one that is
	// not a valid domain counts as absent.
	to := canonicalDomain(h.To)
	from := canonicalDomain(h.From)
	if err := s.sc.writeHeader(to, from, s.sc.streamID); err != nil {
		return err
	}
	if to == "" {
		return &StreamError{Condition: "host-unknown", Text: "the stream header has no valid 'to'"}
	}
	if s.leg == LegOutside && !s.g.isLocal(to) {
		return &StreamError{Condition: "host-unknown", Text: "this gateway does not serve " + to}
	}
	if s.leg == LegInside && s.g.isLocal(to) {
		return &StreamError{Condition: "host-unknown", Text: to + " is a local domain: the internal server serves it"}
	}
	encrypted := s.sc.tls != nil
	if encrypted && from != "" && s.sc.tls != nil {
		// PKIX only: nothing an unauthenticated peer says may make us
		// reach out (POSH, DANE) before the policy has allowed its domain.
		v := s.g.opt.Verifier.Verify(s.sc.tls.PeerCertificates, from, time.Now())
		s.mu.Lock()
		s.verdict = &v
		s.mu.Unlock()
	}
	var offerTLS, tlsRequired bool
	if s.leg == LegOutside {
		offerTLS = !encrypted && s.g.certs().Certificate(to) != nil
		tlsRequired = s.g.opt.Outside.RequireTLS && !encrypted
	} else {
		offerTLS = !encrypted && s.g.opt.Inside.TLS != TLSOff
		tlsRequired = s.g.opt.Inside.TLS == TLSRequired && !encrypted
	}
	offerSASL := false
	s.mu.Lock()
	if encrypted && !s.saslDone && s.verdict != nil && s.verdict.Valid {
		offerSASL = true
	}
	s.mu.Unlock()

	if h.Version != "" {
		var f []byte
		f = append(f, "<stream:features>"...)
		if offerTLS {
			f = append(f, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"...)
			if tlsRequired {
				f = append(f, "<required/>"...)
			}
			f = append(f, "</starttls>"...)
		}
		if !tlsRequired {
			if offerSASL {
				f = append(f, "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"...)
			}
			f = append(f, "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"...)
		}
		f = append(f, "</stream:features>"...)
		if err := s.sc.writeRaw(f); err != nil {
			return err
		}
	}

	for {
		s.mu.Lock()
		authed := len(s.pairs) > 0
		closing := s.closing
		s.mu.Unlock()
		timeout := headerTimeout
		if authed {
			timeout = 0 // established streams may stay idle; the peer decides
		} else if left := s.g.preAuthLimit() - time.Since(s.started); left <= 0 {
			// Streams that only ever ask db:verify are short; one that
			// authenticates nothing for this long is holding a slot.
			return &StreamError{Condition: "connection-timeout", Text: "no domain authenticated on this stream in time"}
		} else if left < timeout {
			timeout = left
		}
		if closing {
			timeout = 3 * time.Second
		}
		el, err := s.sc.next(timeout)
		if err != nil {
			return err
		}
		switch {
		case el.Space == xmlstream.NSServer && (el.Local == "message" || el.Local == "presence" || el.Local == "iq"):
			if err := s.handleStanza(&el); err != nil {
				return err
			}
		case el.Space == xmlstream.NSDialback && el.Local == "result":
			if tlsRequired {
				return &StreamError{Condition: "policy-violation", Text: "TLS is required: use STARTTLS first"}
			}
			if err := s.handleDialbackResult(&el); err != nil {
				return err
			}
		case el.Space == xmlstream.NSDialback && el.Local == "verify":
			if tlsRequired {
				return &StreamError{Condition: "policy-violation", Text: "TLS is required: use STARTTLS first"}
			}
			if err := s.handleDialbackVerify(&el); err != nil {
				return err
			}
		case el.Space == xmlstream.NSStream && el.Local == "error":
			// The peer gives up: never answer a stream error with one.
			return errPeerStreamError{describeStreamError(el.Raw, s.sc.peer.Namespaces)}
		case el.Space == xmlstream.NSTLS && el.Local == "starttls":
			if !offerTLS {
				// RFC 6120 §5.4.2.2: <failure/>, then close.
				s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
				s.sc.closeStream()
				return errPeerStreamError{"STARTTLS was not offered"}
			}
			s.mu.Lock()
			busy := len(s.pending) > 0
			s.mu.Unlock()
			if busy {
				// A dialback answer for the old layer would land in the
				// middle of the handshake.
				s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
				s.sc.closeStream()
				return errPeerStreamError{"STARTTLS while dialback verifications were under way"}
			}
			if s.sc.r.Buffered() != 0 {
				// Bytes sent after <starttls/> before the handshake would be
				// read as if they came over TLS (CVE-2011-0411 class).
				return &StreamError{Condition: "policy-violation", Text: "data after <starttls/> before the TLS handshake"}
			}
			if err := s.sc.writeRaw([]byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
				return err
			}
			tc := tls.Server(s.sc.conn, s.g.serverTLS(s.leg, to, false))
			ctx, cancel := context.WithTimeout(s.g.ctx, headerTimeout)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				s.g.m.TLSHandshake(s.leg.String(), metrics.ResultFailure, "")
				s.log.Info("TLS handshake failed", "err", err)
				return err
			}
			s.g.m.TLSHandshake(s.leg.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
			s.sc.upgradeTLS(tc)
			// RFC 6120 §5.4.3.3: what was authenticated before TLS is
			// forgotten.
			s.mu.Lock()
			clear(s.pairs)
			s.mu.Unlock()
			s.log.Debug("stream encrypted", "tls", s.sc.tlsVersion())
			return errRestart
		case el.Space == xmlstream.NSSASL && el.Local == "auth":
			if !offerSASL {
				s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"))
				continue
			}
			ok, err := s.handleSASL(&el, from, to)
			if err != nil {
				return err
			}
			if ok {
				return errRestart
			}
		default:
			return &StreamError{Condition: "unsupported-stanza-type", Text: "unexpected element <" + el.Local + "> in namespace " + el.Space}
		}
	}
}

// handleSASL runs SASL EXTERNAL (XEP-0178): the peer's certificate was
// already found valid for the header's from.
func (s *inSession) handleSASL(el *xmlstream.Element, from, to string) (bool, error) {
	n, err := xmlstream.ParseNode(el.Raw, s.sc.peer.Namespaces)
	if err != nil {
		return false, &StreamError{Condition: "not-well-formed", Text: err.Error()}
	}
	if n.Attr("mechanism") != "EXTERNAL" {
		return false, s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-mechanism/></failure>"))
	}
	authz := strings.TrimSpace(n.Text)
	if authz != "" && authz != "=" {
		dec, err := base64.StdEncoding.DecodeString(authz)
		if err != nil {
			return false, s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><incorrect-encoding/></failure>"))
		}
		if !strings.EqualFold(string(dec), from) {
			return false, s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><invalid-authzid/></failure>"))
		}
	}
	// The certificate proves the peer is `from`; it must still be a domain
	// that may originate on this leg (the outside: not one of ours; the
	// inside: one of ours).
	if okOrig, _ := s.sides(from, to); !okOrig {
		return false, s.sc.writeRaw([]byte("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"))
	}
	facts := s.facts(from, to, "sasl_external")
	d, err := s.authorize(facts)
	if err != nil {
		return false, err
	}
	if err := s.sc.writeRaw([]byte("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.saslDone = true
	s.pairs[domainPair{remote: from, local: to}] = &pairState{method: "sasl_external", facts: facts, rate: d.Rate}
	s.mu.Unlock()
	s.markOpened("sasl_external")
	s.log.Info("peer authenticated", "method", "sasl_external", "remote_domain", from, "local_domain", to, "tls", s.sc.tlsVersion())
	s.sc.restart()
	return true, nil
}

// sides reports whether remote may originate and local receive on this leg:
// on the outside leg remote domains talk to local ones; on the inside leg
// local domains talk to remote ones.
func (s *inSession) sides(originating, receiving string) (okOrig, okRecv bool) {
	if s.leg == LegOutside {
		return originating != "" && !s.g.isLocal(originating), s.g.isLocal(receiving)
	}
	return s.g.isLocal(originating), receiving != "" && !s.g.isLocal(receiving)
}

// handleDialbackResult is the receiving role of XEP-0220: verify the key
// with the originating domain's authoritative server.
func (s *inSession) handleDialbackResult(el *xmlstream.Element) error {
	if el.Type != "" {
		// We never send <db:result/> requests on a stream we receive: a
		// typed result here is unsolicited (the 2012 dialback bypass).
		return &StreamError{Condition: "not-authorized", Text: "unsolicited dialback result"}
	}
	n, err := xmlstream.ParseNode(el.Raw, s.sc.peer.Namespaces)
	if err != nil {
		return &StreamError{Condition: "not-well-formed", Text: err.Error()}
	}
	orig, recv := canonicalDomain(el.From), canonicalDomain(el.To)
	key := strings.TrimSpace(n.Text)
	okOrig, okRecv := s.sides(orig, recv)
	switch {
	case !okRecv:
		return s.sc.writeRaw(dialbackError("result", recv, orig, "", "cancel", "item-not-found"))
	case !okOrig:
		return s.sc.writeRaw(dialbackError("result", recv, orig, "", "auth", "forbidden"))
	case key == "":
		return &StreamError{Condition: "bad-format", Text: "dialback result without a key"}
	}
	p := domainPair{remote: orig, local: recv}
	s.mu.Lock()
	if _, done := s.pairs[p]; done {
		s.mu.Unlock()
		return s.sc.writeRaw(dialbackResult("result", recv, orig, "", "valid"))
	}
	if s.pending[p] {
		s.mu.Unlock()
		return nil
	}
	if len(s.pending) >= maxPendingDialback {
		s.mu.Unlock()
		return s.sc.writeRaw(dialbackError("result", recv, orig, "", "wait", "resource-constraint"))
	}
	select {
	case s.g.verifications <- struct{}{}: // released when the verification ends
	default:
		s.mu.Unlock()
		s.log.Warn("too many dialback verifications under way on this node: refusing one", "limit", maxVerifications)
		return s.sc.writeRaw(dialbackError("result", recv, orig, "", "wait", "resource-constraint"))
	}
	others := len(s.pairs) > 0
	s.mu.Unlock()
	// Ask the policy before verifying: a domain that may not federate is
	// refused without us connecting to its server.
	facts := s.facts(orig, recv, "dialback")
	d, err := s.authorize(facts)
	if err != nil {
		<-s.g.verifications
		if others {
			return s.sc.writeRaw(dialbackError("result", recv, orig, "", "auth", "forbidden"))
		}
		return err
	}
	s.mu.Lock()
	s.pending[p] = true
	s.mu.Unlock()
	streamID := s.sc.streamID
	s.g.bg.Add(1)
	go func() {
		defer s.g.bg.Done()
		defer func() { <-s.g.verifications }()
		s.verifyDialback(p, key, streamID, &pairState{method: "dialback", facts: facts, rate: d.Rate})
	}()
	return nil
}

// facts are the session facts of a pair on this stream, as the policy
// sees them. On the inside leg the pair is local → remote (outbound), and
// the outside connection is not made yet: tls and auth are left empty.
func (s *inSession) facts(remote, local, auth string) *policy.SessionInput {
	if s.leg == LegInside {
		return &policy.SessionInput{Direction: "outbound", LocalDomain: remote, RemoteDomain: local}
	}
	in := &policy.SessionInput{Direction: "inbound", LocalDomain: local, RemoteDomain: remote, RemoteIP: remoteIP(s.sc.conn), Auth: auth}
	var v *certs.Verdict
	if s.sc.tls != nil {
		vv := s.g.opt.Verifier.Verify(s.sc.tls.PeerCertificates, remote, time.Now())
		v = &vv
	}
	in.TLS = tlsInfo(s.sc.tls, v)
	return in
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
		s.g.m.SessionOpened(s.leg.String(), metrics.RoleIncoming, auth)
	}
}

// authorize asks the policy about a pair and audits the answer. A deny is
// returned as the policy-violation stream error to close with.
func (s *inSession) authorize(facts *policy.SessionInput) (policy.SessionDecision, error) {
	d, ok := s.g.decideSession(facts, facts.TLS.PeerCertValid)
	decision := "allow"
	switch {
	case !ok:
		decision = "deny"
	case d.WouldDeny:
		decision = "would-deny"
	}
	if err := s.g.auditSession("session.auth", s.id, s.leg, facts, s.sc.conn.RemoteAddr().String(), decision, d.Reason, d.Revision); err != nil {
		return d, &StreamError{Condition: "internal-server-error", Text: "the audit log cannot be written"}
	}
	if !ok {
		s.g.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, metrics.FailPolicy)
		s.log.Warn("session refused by policy", "remote_domain", facts.RemoteDomain, "local_domain", facts.LocalDomain, "direction", facts.Direction, "reason", d.Reason, "policy_revision", d.Revision)
		return d, &StreamError{Condition: "policy-violation", Text: d.Reason}
	}
	if d.WouldDeny {
		s.log.Info("dry-run: the policy would refuse this session", "remote_domain", facts.RemoteDomain, "reason", d.Reason)
	}
	return d, nil
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

func (s *inSession) verifyDialback(p domainPair, key, streamID string, ps *pairState) {
	facts := ps.facts
	ctx, cancel := context.WithTimeout(s.ctx, 2*s.g.limits().ConnectTimeout)
	defer cancel()
	valid, err := s.g.verifyKey(ctx, s.leg, p.remote, p.local, streamID, key)
	s.mu.Lock()
	delete(s.pending, p)
	others := len(s.pairs)
	if err == nil && valid {
		s.pairs[p] = ps
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		s.g.m.Dialback(metrics.DialbackReceiving, metrics.DialbackError)
		s.g.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, dialFailureKind(err))
	case valid:
		s.g.m.Dialback(metrics.DialbackReceiving, metrics.DialbackValid)
		s.markOpened("dialback")
	default:
		s.g.m.Dialback(metrics.DialbackReceiving, metrics.DialbackInvalid)
		s.g.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, metrics.FailAuth)
	}
	if err != nil || !valid {
		why := "dialback key invalid"
		if err != nil {
			why = "dialback verification failed: " + err.Error()
		}
		s.g.auditSession("session.auth", s.id, s.leg, facts, s.sc.connection().RemoteAddr().String(), "deny", why, "")
	}
	log := s.log.With("remote_domain", p.remote, "local_domain", p.local)
	switch {
	case err != nil:
		log.Warn("dialback verification failed", "err", err)
		cond := dialbackCondition(err)
		s.sc.writeRaw(dialbackError("result", p.local, p.remote, "", dialbackErrorType(cond), cond))
	case valid:
		log.Info("peer authenticated", "method", "dialback", "tls", s.sc.tlsVersion())
		s.sc.writeRaw(dialbackResult("result", p.local, p.remote, "", "valid"))
	case others == 0:
		log.Warn("dialback key invalid: closing the stream")
		s.sc.writeRaw(dialbackResult("result", p.local, p.remote, "", "invalid"))
		s.sc.streamError(&StreamError{Condition: "not-authorized", Text: "dialback key invalid"}, p.local, p.remote)
	default:
		log.Warn("dialback key invalid for an additional domain pair")
		s.sc.writeRaw(dialbackError("result", p.local, p.remote, "", "auth", "forbidden"))
	}
}

// handleDialbackVerify is the authoritative role: answer whether we issued
// the key. On the outside leg we answer only for our local domains, on the
// inside leg only for the remote domains we stand in for.
func (s *inSession) handleDialbackVerify(el *xmlstream.Element) error {
	if el.Type != "" {
		return &StreamError{Condition: "not-authorized", Text: "unsolicited dialback verify response"}
	}
	n, err := xmlstream.ParseNode(el.Raw, s.sc.peer.Namespaces)
	if err != nil {
		return &StreamError{Condition: "not-well-formed", Text: err.Error()}
	}
	recv, orig := canonicalDomain(el.From), canonicalDomain(el.To)
	// The originating domain (the one that claims to have sent the key) must
	// be one we issue keys for on this leg.
	ours := s.g.isLocal(orig)
	if s.leg == LegInside {
		ours = orig != "" && !s.g.isLocal(orig)
	}
	typ := "invalid"
	if ours && el.ID != "" && recv != "" {
		want := dialback.Key(s.g.opt.DialbackSecret, recv, orig, el.ID)
		if dialback.Equal(want, strings.TrimSpace(n.Text)) {
			typ = "valid"
		}
	}
	s.g.m.Dialback(metrics.DialbackAuthoritative, typ)
	s.log.Info("answered dialback verify", "originating", orig, "receiving", recv, "result", typ)
	return s.sc.writeRaw(dialbackResult("verify", orig, recv, el.ID, typ))
}

// dialbackHead starts a <db:result/> or <db:verify/>: the element name and
// its from, to and (when set) id attributes, ending inside the start tag.
func dialbackHead(name, from, to, id string) []byte {
	b := append([]byte(nil), "<db:"...)
	b = append(b, name...)
	b = append(b, " from='"...)
	b = xmlstream.AppendEscapedAttr(b, from)
	b = append(b, "' to='"...)
	b = xmlstream.AppendEscapedAttr(b, to)
	if id != "" {
		b = append(b, "' id='"...)
		b = xmlstream.AppendEscapedAttr(b, id)
	}
	return append(b, '\'')
}

// dialbackResult builds a dialback answer of type typ.
func dialbackResult(name, from, to, id, typ string) []byte {
	b := dialbackHead(name, from, to, id)
	b = append(b, " type='"...)
	b = append(b, typ...)
	return append(b, "'/>"...)
}

// dialbackRequest builds a <db:result/> or <db:verify/> request (no type).
func dialbackRequest(name, from, to, id, key string) []byte {
	b := append(dialbackHead(name, from, to, id), '>')
	b = xmlstream.AppendEscapedText(b, key)
	b = append(b, "</db:"...)
	b = append(b, name...)
	return append(b, '>')
}

func dialbackError(name, from, to, id, errType, cond string) []byte {
	b := dialbackResult(name, from, to, id, "error")
	b = b[:len(b)-2] // drop "/>"
	b = append(b, "><error type='"...)
	b = append(b, errType...)
	b = append(b, "'><"...)
	b = append(b, cond...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:"...)
	b = append(b, name...)
	return append(b, '>')
}

package edge

import (
	"context"
	"crypto/tls"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// What the relay decides for the streams it receives: inSession is the
// s2s.Receiver of its stream.
var _ s2s.Receiver = (*inSession)(nil)

// Accept checks the domains of a new stream's header: to must be a domain
// this leg serves.
func (s *inSession) Accept(st *s2s.Stream) error {
	s.peerNS = s.sc.Peer().Namespaces
	to, from := st.To(), st.From()
	switch {
	case to == "":
		return &stream.Error{Condition: stream.HostUnknown, Text: "the stream header has no valid 'to'"}
	case s.leg == LegOutside && !s.d.isLocal(to):
		return &stream.Error{Condition: stream.HostUnknown, Text: "this gateway does not serve " + to}
	case s.leg == LegInside && s.d.isLocal(to):
		return &stream.Error{Condition: stream.HostUnknown, Text: to + " is a local domain: the internal server serves it"}
	}
	if ts := s.sc.TLS(); ts != nil && from != "" {
		// PKIX only: nothing an unauthenticated peer says may make us
		// reach out (POSH, DANE) before the policy has allowed its domain.
		v := s.d.verifier.Verify(ts.PeerCertificates, from, time.Now())
		s.mu.Lock()
		s.verdict = &v
		s.mu.Unlock()
	}
	return nil
}

// RequireTLS: the outside leg's tls_required, the inside leg's TLS mode.
func (s *inSession) RequireTLS() bool {
	if s.leg == LegOutside {
		return s.d.requireTLS
	}
	return s.d.insideTLS == TLSRequired
}

// HeaderTimeout bounds the wait for the next stream header: headerTimeout,
// and while nothing is authenticated no longer than what is left of the
// pre-authentication bound (a peer must not hold a slot by restarting
// streams slowly).
func (s *inSession) HeaderTimeout() time.Duration {
	s.mu.Lock()
	authed := len(s.pairs) > 0
	s.mu.Unlock()
	wait := headerTimeout
	if !authed {
		if left := s.d.preAuthLimit() - time.Since(s.started); left < wait {
			wait = max(left, time.Millisecond)
		}
	}
	return wait
}

// ReadTimeout: established streams may stay idle (the peer decides);
// others get headerTimeout, within the pre-authentication bound.
func (s *inSession) ReadTimeout() (time.Duration, error) {
	s.mu.Lock()
	authed := len(s.pairs) > 0
	closing := s.closing
	s.mu.Unlock()
	timeout := headerTimeout
	if authed {
		timeout = 0
	} else if left := s.d.preAuthLimit() - time.Since(s.started); left <= 0 {
		// Streams that only ever ask db:verify are short; one that
		// authenticates nothing for this long is holding a slot.
		return 0, &stream.Error{Condition: stream.ConnectionTimeout, Text: "no domain authenticated on this stream in time"}
	} else if left < timeout {
		timeout = left
	}
	if closing {
		timeout = 3 * time.Second
	}
	return timeout, nil
}

// Stanza walks a stanza through the stanza path; t is done when its fate
// is final (stream management's count).
func (s *inSession) Stanza(el *xmlstream.Element, t s2s.Ticket) error { return s.handleStanza(el, t) }

// StreamManagement: XEP-0198 acknowledgements are offered on both legs,
// so that a sending server holds what this node has not handled and
// bounces it if the node dies (s2s.StreamManagement).
func (s *inSession) StreamManagement(*s2s.Stream) bool { return true }

// OfferTLS: on the outside leg when we have a certificate for to; on the
// inside leg unless its TLS is off.
func (s *inSession) OfferTLS(to string) bool {
	if s.leg == LegOutside {
		return s.d.certs().Certificate(to) != nil
	}
	return s.d.insideTLS != TLSOff
}

func (s *inSession) ServerTLS(to string) *tls.Config { return s.d.serverTLS(s.leg, to, false) }

// TLSDone counts the handshake; RFC 6120 §5.4.3.3: what was authenticated
// before TLS is forgotten.
func (s *inSession) TLSDone(err error) {
	if err != nil {
		s.d.m.TLSHandshake(s.leg.String(), metrics.ResultFailure, "")
		s.log.Info("TLS handshake failed", "err", err)
		return
	}
	s.d.m.TLSHandshake(s.leg.String(), metrics.ResultSuccess, s.sc.TLSVersion())
	s.mu.Lock()
	clear(s.pairs)
	s.mu.Unlock()
	s.log.Debug("stream encrypted", "tls", s.sc.TLSVersion())
}

// CertificateValid: the peer's certificate is valid for the header's from
// (PKIX, checked in Accept).
func (s *inSession) CertificateValid(*s2s.Stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verdict != nil && s.verdict.Valid
}

// MayOriginate: the certificate proves the peer is from; it must still be
// a domain that may originate on this leg.
func (s *inSession) MayOriginate(from, to string) bool {
	okOrig, _ := s.sides(from, to)
	return okOrig
}

// AuthenticateSASL authorises and records a pair authenticated by SASL
// EXTERNAL (XEP-0178).
func (s *inSession) AuthenticateSASL(from, to string) error {
	facts := s.facts(from, to, s2s.MethodSASLExternal)
	d, err := s.authorize(facts, "")
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pairs[domainPair{remote: from, local: to}] = &pairState{method: s2s.MethodSASLExternal, facts: facts, rate: d.Rate}
	s.mu.Unlock()
	s.markOpened(s2s.MethodSASLExternal)
	s.log.Info("peer authenticated", "method", s2s.MethodSASLExternal, "remote_domain", from, "local_domain", to, "tls", s.sc.TLSVersion())
	s.observePosture(facts, false)
	return nil
}

// Sides implements s2s.DialbackReceiver with sides.
func (s *inSession) Sides(originating, receiving string) (okOrig, okRecv bool) {
	return s.sides(originating, receiving)
}

// sides reports whether originating may originate and receiving receive
// on this leg: on the outside leg remote domains talk to local ones; on
// the inside leg local domains talk to remote ones.
func (s *inSession) sides(originating, receiving string) (okOrig, okRecv bool) {
	if s.leg == LegOutside {
		return originating != "" && !s.d.isLocal(originating), s.d.isLocal(receiving)
	}
	return s.d.isLocal(originating), receiving != "" && !s.d.isLocal(receiving)
}

func (s *inSession) Authenticated(p s2s.Pair) (done, any bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, done = s.pairs[domainPair{remote: p.From, local: p.To}]
	return done, len(s.pairs) > 0
}

func (s *inSession) AcquireVerification() bool {
	select {
	case s.d.verifications <- struct{}{}:
		return true
	default:
		s.log.Warn("too many dialback verifications under way on this node: refusing one", "limit", maxVerifications)
		return false
	}
}

func (s *inSession) ReleaseVerification() { <-s.d.verifications }

// DialbackCertificate is XEP-0344's "dialback without dialback" on the
// outside leg (unless outside.dialback_shortcut is off): the peer's
// certificate, checked now, is valid (PKIX and RFC 6125 identity, as for
// SASL EXTERNAL) for the db:result's from — not merely for the stream
// header's. Local only, like Accept's check: nothing an unauthenticated
// peer says makes us reach out before the policy allowed its domain. The
// inside leg's db:results are always verified with the internal server.
func (s *inSession) DialbackCertificate(_ *s2s.Stream, p s2s.Pair) bool {
	if s.leg != LegOutside || !s.d.dialbackShortcut {
		return false
	}
	ts := s.sc.TLS()
	if ts == nil {
		return false
	}
	return s.d.verifier.Verify(ts.PeerCertificates, p.From, time.Now()).Valid
}

// AuthorizeDialback asks the policy before a key is verified: a domain
// that may not federate is refused without us connecting to its server.
// The pair is authenticated by dialback either way (the policy's auth is
// "dialback", its requirements apply as to any dialback); byCertificate
// (XEP-0344, no db:verify) is said in the session.auth record's reason,
// the log and xmppedge_dialback_total{result="valid_cert"}.
func (s *inSession) AuthorizeDialback(p s2s.Pair, byCertificate bool) (func(valid, settled bool, err error), error) {
	facts := s.facts(p.From, p.To, s2s.MethodDialback)
	note := ""
	if byCertificate {
		if !facts.TLS.PeerCertValid {
			// DialbackCertificate found it valid a moment ago: it
			// expired in between.
			return nil, &stream.Error{Condition: stream.NotAuthorized, Text: "the certificate is not valid for " + p.From + ": " + facts.TLS.PeerCertError}
		}
		note = dialbackByCertificate(p.From)
	}
	d, err := s.authorize(facts, note)
	if err != nil {
		return nil, err
	}
	ps := &pairState{method: s2s.MethodDialback, facts: facts, rate: d.Rate}
	return func(valid, settled bool, err error) {
		// Settled later than the record of this decision: by DANE.
		dane := settled && !byCertificate
		s.dialbackVerified(p, ps, valid, settled, dane, err)
	}, nil
}

// observePosture compares an authenticated outside pair's posture with
// its partner's best (posture.go); dane: settled by DANE records.
func (s *inSession) observePosture(facts *policy.SessionInput, dane bool) {
	if s.leg != LegOutside {
		return
	}
	s.mu.Lock()
	dane = dane || isDANE(s.verdict)
	s.mu.Unlock()
	s.d.posture.observe(s.id, facts, s.sc.RemoteAddr().String(), dane)
}

// dialbackByCertificate is the reason of the session.auth record of a
// pair whose db:result the certificate settled (XEP-0344).
func dialbackByCertificate(from string) string {
	return "XEP-0344: the certificate is valid for " + from + ", dialback answered without db:verify"
}

// dialbackByDANE is the reason of the second session.auth record of a pair
// whose db:result DNSSEC-authenticated TLSA records settled (XEP-0344 with
// DANE), after the policy allowed it.
func dialbackByDANE(from string) string {
	return "XEP-0344: the certificate matches the DNSSEC-authenticated TLSA records (DANE) of " + from + "'s servers, dialback answered without db:verify"
}

// DialbackDANE is XEP-0344 with DNSSEC (DANE) on the outside leg, with tls.dane on
// and the shortcut not off: the certificate that failed PKIX for p.From
// matches the authenticated TLSA records (RFC 7673: DANE-EE, or DANE-TA
// with an identity for p.From) of one of p.From's servers — the
// targets of its SRV records when their answer was DNSSEC-authenticated,
// or p.From itself without SRV, as the dialer's own check of the servers
// it connects to (verifyPeer) — so the peer presents the certificate
// p.From's own servers are published with. Asked only after the policy
// allowed p: the lookups are made for a domain that may federate.
func (s *inSession) DialbackDANE(ctx context.Context, _ *s2s.Stream, p s2s.Pair) bool {
	dl := s.d.dialer
	if s.leg != LegOutside || !s.d.dialbackShortcut || !dl.DANE || dl.Resolver == nil {
		return false
	}
	ts := s.sc.TLS()
	if ts == nil || len(ts.PeerCertificates) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.limits().ConnectTimeout)
	defer cancel()
	log := s.log.With("remote_domain", p.From, "local_domain", p.To)
	targets, err := dl.Resolver.LookupS2S(ctx, p.From)
	if err != nil {
		log.Debug("DANE for dialback: the servers of the originating domain cannot be found", "err", err)
		return false
	}
	for _, t := range targets {
		if !t.Secure && !strings.EqualFold(t.Host, p.From) {
			continue
		}
		r := s.d.verifier.VerifyDANEWith(ctx, ts.PeerCertificates, certs.DANEQuery{Host: t.Host, Port: t.Port, Domain: p.From}, certs.DNSSECResolver{Addr: dl.DANEResolver})
		if r.Status == certs.DANEMatched {
			log.Debug("DANE for dialback: the certificate matches", "host", t.Host, "port", t.Port, "dane", r.Verdict.Method)
			return true
		}
		log.Debug("DANE for dialback: no match", "host", t.Host, "port", t.Port, "status", r.Status.String(), "reason", r.Verdict.Reason)
	}
	return false
}

// dialbackVerified records the outcome of a dialback verification
// (settled: by the certificate, XEP-0344, not by db:verify; dane: by
// DANE, after the session.auth record, which a second one completes).
func (s *inSession) dialbackVerified(p s2s.Pair, ps *pairState, valid, settled, dane bool, err error) {
	log := s.log.With("remote_domain", p.From, "local_domain", p.To)
	switch {
	case err != nil:
		s.d.m.Dialback(metrics.DialbackReceiving, metrics.DialbackError)
		s.d.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, dialFailureKind(err))
		log.Warn("dialback verification failed", "err", err)
	case valid && dane:
		// Recorded before the pair may carry stanzas (fail closed: not
		// recorded, not authenticated).
		if _, err := s.d.rec.record(sessionRecord(audit.EventSessionAuth, s.id, s.leg, ps.facts, s.sc.RemoteAddr().String(), audit.DecisionAllow, dialbackByDANE(p.From), "")); err != nil {
			s.d.log.Error("AUDIT LOG NOT WRITABLE: session refused", "event", audit.EventSessionAuth, "session", s.id, "err", err)
			s.d.m.Dialback(metrics.DialbackReceiving, metrics.DialbackError)
			// The stream ends before the valid answer can be sent.
			s.sc.Fail(&stream.Error{Condition: stream.InternalServerError, Text: "the audit log cannot be written"}, "", "")
			return
		}
		fallthrough
	case valid:
		s.mu.Lock()
		s.pairs[domainPair{remote: p.From, local: p.To}] = ps
		s.mu.Unlock()
		s.markOpened(s2s.MethodDialback)
		s.observePosture(ps.facts, dane)
		if settled {
			how := "certificate (XEP-0344, no db:verify)"
			if dane {
				how = "certificate matching DANE TLSA records (XEP-0344, no db:verify)"
			}
			s.d.m.Dialback(metrics.DialbackReceiving, metrics.DialbackValidCert)
			log.Info("peer authenticated", "method", s2s.MethodDialback, "verified_by", how, "tls", s.sc.TLSVersion())
			return
		}
		s.d.m.Dialback(metrics.DialbackReceiving, metrics.DialbackValid)
		log.Info("peer authenticated", "method", s2s.MethodDialback, "verified_by", "authoritative server (db:verify)", "tls", s.sc.TLSVersion())
		return
	default:
		s.d.m.Dialback(metrics.DialbackReceiving, metrics.DialbackInvalid)
		s.d.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, metrics.FailAuth)
		log.Warn("dialback key invalid")
	}
	why := "dialback key invalid"
	if err != nil {
		why = "dialback verification failed: " + err.Error()
	}
	auditSession(s.d.rec, s.d.log, sessionRecord(audit.EventSessionAuth, s.id, s.leg, ps.facts, s.sc.RemoteAddr().String(), audit.DecisionDeny, why, ""))
}

// VerifyKey asks the authoritative server of p.From (within twice the
// connect timeout).
func (s *inSession) VerifyKey(ctx context.Context, p s2s.Pair, streamID, key string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*s.d.limits().ConnectTimeout)
	defer cancel()
	return s.d.dialer.verifyKey(ctx, s.leg, p.From, p.To, streamID, key)
}

func (s *inSession) DialbackCondition(err error) stanza.Condition { return dialbackCondition(err) }

func (s *inSession) Go(f func()) {
	s.d.bg.Add(1)
	go func() {
		defer s.d.bg.Done()
		f()
	}()
}

// IssuesKeysFor: on the outside leg we answer db:verify only for our local
// domains, on the inside leg only for the remote domains we stand in for.
func (s *inSession) IssuesKeysFor(orig string) bool {
	if s.leg == LegInside {
		return orig != "" && !s.d.isLocal(orig)
	}
	return s.d.isLocal(orig)
}

func (s *inSession) DialbackSecret() string { return s.d.secret }

func (s *inSession) DialbackAnswered(orig, recv, typ string) {
	s.d.m.Dialback(metrics.DialbackAuthoritative, typ)
	// Debug, not Info: an unauthenticated peer may ask any number of
	// these; xmppedge_dialback_total counts them.
	s.log.Debug("answered dialback verify", "originating", orig, "receiving", recv, "result", typ)
}

// facts are the session facts of a pair on this stream, as the policy
// sees them. On the inside leg the pair is local → remote (outbound), and
// the outside connection is not made yet: tls and auth are left empty.
func (s *inSession) facts(remote, local, auth string) *policy.SessionInput {
	if s.leg == LegInside {
		return &policy.SessionInput{Direction: policy.Outbound, LocalDomain: remote, RemoteDomain: local}
	}
	in := &policy.SessionInput{Direction: policy.Inbound, LocalDomain: local, RemoteDomain: remote, RemoteIP: remoteIP(s.sc.NetConn()), Auth: auth}
	var v *certs.Verdict
	ts := s.sc.TLS()
	if ts != nil {
		vv := s.d.verifier.Verify(ts.PeerCertificates, remote, time.Now())
		v = &vv
	}
	in.TLS = tlsInfo(ts, v)
	return in
}

// authorize asks the policy about a pair and audits the answer (with note,
// when allowed, leading the record's reason). A deny is returned as the
// policy-violation stream error to close with.
func (s *inSession) authorize(facts *policy.SessionInput, note string) (policy.SessionDecision, error) {
	c := &sessionCheck{
		facts: facts, cert: certStateOf(facts.TLS.PeerCertValid),
		record: audit.EventSessionAuth, session: s.id, leg: s.leg, remoteAddr: s.sc.RemoteAddr().String(),
		note: note,
	}
	if facts.Auth == "" {
		c.cert = certUnknown // the outbound pair of the inside leg: the outside is not connected yet
	}
	if err := s.d.sessionPath.handle(s.d.ctx, c); err != nil {
		return c.decision, &stream.Error{Condition: stream.InternalServerError, Text: "the audit log cannot be written"}
	}
	d, ok := c.decision, c.decision.Allow
	if !ok {
		s.d.m.SessionFailure(s.leg.String(), metrics.RoleIncoming, metrics.FailPolicy)
		s.log.Warn("session refused by policy", "remote_domain", facts.RemoteDomain, "local_domain", facts.LocalDomain, "direction", facts.Direction, "reason", d.Reason, "policy_revision", d.Revision)
		return d, &stream.Error{Condition: stream.PolicyViolation, Text: d.Reason}
	}
	if d.WouldDeny {
		s.log.Info("dry-run: the policy would refuse this session", "remote_domain", facts.RemoteDomain, "reason", d.Reason)
	}
	return d, nil
}

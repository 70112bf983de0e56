package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// dialStage is how far an attempt to set up an outgoing stream got: the
// step that failed. Later stages rank higher (see dialError.beats).
type dialStage int

const (
	stageResolve     dialStage = iota + 1 // SRV, A/AAAA lookups
	stageConnect                          // TCP connect
	stageTLS                              // TLS handshake; STARTTLS refused, or TLS required and not offered
	stageStream                           // stream header and features, a stream error from the peer
	stageCertificate                      // the peer's certificate does not satisfy the policy
	stageAuth                             // SASL EXTERNAL / dialback refused or unanswered
)

// dialError is a failure to set up an outgoing stream: one attempt (one
// address of one SRV target), or the whole dial, which then carries the
// fields of the attempt that got furthest and every attempt's error.
type dialError struct {
	stage     dialStage
	connected bool   // the TCP connection was established: a server is there
	opened    bool   // the peer's stream header was received
	timeout   bool   // the attempt ran out of time (connect_timeout or a read deadline)
	peerError string // the condition of a stream error the peer sent, if any
	err       error
	// best is the error of the attempt that got furthest (the whole
	// dial's summary; the attempt's own err otherwise).
	best error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// reason is the best attempt's error, for a bounce text.
func (e *dialError) reason() error {
	if e.best != nil {
		return e.best
	}
	return e.err
}

// condition is the stanza error condition for the stanzas that were
// waiting (RFC 6120 §8.3.3): a server that answered on TCP and then did
// not complete the stream in time, or failed it, is remote-server-timeout
// (Prosody uses it once a stream had opened); one that could not be
// resolved or reached at all is remote-server-not-found; a certificate
// the policy refuses is policy-violation.
func (e *dialError) condition() string {
	switch {
	case e.stage == stageCertificate:
		return "policy-violation"
	case e.connected || e.opened:
		return "remote-server-timeout"
	}
	return "remote-server-not-found"
}

// beats reports whether attempt e got further than o.
func (e *dialError) beats(o *dialError) bool {
	if e.stage != o.stage {
		return e.stage > o.stage
	}
	return e.opened && !o.opened || e.connected && !o.connected
}

// dialFailureKind classifies a failure to set up an outgoing stream (or
// to have a dialback key verified) as one of the metrics.Fail* labels,
// from the typed errors of the dialer; metrics.Other for anything else.
// A timeout wins over the stage it happened in, except in DNS.
func dialFailureKind(err error) string {
	var de *dialError
	if errors.As(err, &de) {
		switch {
		case de.stage == stageCertificate:
			return metrics.FailPolicy
		case de.stage == stageResolve:
			return metrics.FailDNS
		case de.timeout:
			return metrics.FailTimeout
		case de.peerError != "":
			return metrics.FailStreamError
		}
		switch de.stage {
		case stageConnect:
			return metrics.FailConnect
		case stageTLS:
			return metrics.FailTLS
		case stageStream:
			return metrics.FailStreamError
		case stageAuth:
			return metrics.FailAuth
		}
		return metrics.Other
	}
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.kind
	}
	return metrics.Other
}

// sessionFailureKind is the metric label of a failed outgoing session:
// a policy refusal, else dialFailureKind.
func sessionFailureKind(cond string, err error) string {
	if cond == "policy-violation" {
		return metrics.FailPolicy
	}
	return dialFailureKind(err)
}

// verifyError is a failure to have a dialback key verified by the
// authoritative server (XEP-0220 step 3), with the dialback error
// condition the receiving side answers the initiating server with.
type verifyError struct {
	condition string // XEP-0220 §2.4: remote-connection-failed, remote-server-not-found, remote-server-timeout
	kind      string // metrics.Fail* label
	err       error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// dialbackCondition returns the XEP-0220 dialback error condition (§2.4)
// with which to answer an initiating server whose key could not be
// verified because of err (from verifyKey):
//
//   - remote-connection-failed: the authoritative server could not be
//     reached — no DNS answer, no TCP connection, a failed TLS handshake;
//   - remote-server-not-found: it answered with a host-unknown (or
//     host-gone) stream error, or with a db:verify of type 'error' (the
//     condition XEP-0220 prescribes for an error in step 3);
//   - remote-server-timeout: it was reached but did not verify the key —
//     it did not complete the stream or answer in time, or closed the
//     stream without an answer.
func dialbackCondition(err error) string {
	var ve *verifyError
	if errors.As(err, &ve) {
		return ve.condition
	}
	var de *dialError
	if errors.As(err, &de) {
		return dialbackDialCondition(de)
	}
	return "remote-connection-failed"
}

// dialbackErrorType is the error type to send with a dialbackCondition
// condition (RFC 6120 §8.3.3): "wait" for remote-server-timeout (trying
// again later may work), "cancel" otherwise.
func dialbackErrorType(condition string) string {
	if condition == "remote-server-timeout" {
		return "wait"
	}
	return "cancel"
}

// dialbackDialCondition is dialbackCondition for a failure to set up the
// stream to the authoritative server.
func dialbackDialCondition(de *dialError) string {
	switch {
	case de.peerError == "host-unknown" || de.peerError == "host-gone":
		return "remote-server-not-found"
	case de.connected && (de.timeout || de.stage > stageTLS):
		return "remote-server-timeout"
	}
	return "remote-connection-failed"
}

// outStream is a negotiated outgoing stream, ready for authentication.
type outStream struct {
	sc       *streamConn
	leg      Leg
	from, to string
	features *xmlstream.Node
	verdict  *certs.Verdict // the peer certificate checked against `to` (nil without TLS)
	auth     string         // sasl_external | dialback, once authenticated
}

// readyFunc finishes an outgoing stream that dial negotiated up to
// authentication: check the certificate against the policy, authenticate.
// An error makes dial close the stream and try the next server.
type readyFunc func(ctx context.Context, os *outStream) error

// candidate is one address to connect to.
type candidate struct {
	target resolve.Target // zero on the inside leg
	addr   string         // host:port
}

// dial connects to the server of `to` on the given leg, negotiates the
// stream up to authentication (header, features, TLS) and, when ready is
// not nil, runs it on the stream.
//
// On the outside leg it tries the servers the SRV records name, in their
// order, each of their addresses in turn (RFC 6120 §3.2.1): a failure of
// any step on one — connect, TLS, stream, certificate, authentication
// (ready) — moves on to the next. The whole is bounded by ctx; while
// other candidates remain, one attempt may use at most half of the time
// left to connect and negotiate (a server that accepts TCP and then says
// nothing must not starve the others); authentication runs on ctx's time.
// The error is a *dialError of the attempt that got furthest, wrapping
// every attempt's error.
func (g *Gateway) dial(ctx context.Context, leg Leg, from, to string, ready readyFunc) (*outStream, error) {
	if leg == LegInside {
		return g.attempt(ctx, leg, candidate{addr: g.opt.Inside.Server}, from, to, false, ready)
	}
	start := time.Now()
	targets, err := g.opt.Outside.Resolver.LookupS2S(ctx, to)
	g.m.DNSLookup(metrics.QTypeSRV, time.Since(start), err)
	if err != nil {
		return nil, &dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: %w", to, err)}
	}
	var (
		errs []error
		best *dialError
	)
	record := func(err error) {
		errs = append(errs, err)
		var de *dialError
		if !errors.As(err, &de) {
			de = &dialError{err: err}
		}
		if best == nil || de.beats(best) {
			best = de
		}
	}
dialing:
	for i, t := range targets {
		start := time.Now()
		addrs, err := g.opt.Outside.Resolver.LookupHost(ctx, t.Host)
		g.m.DNSLookup(metrics.QTypeA, time.Since(start), err)
		if err != nil {
			record(&dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: %w", t.Host, err)})
			continue
		}
		for j, a := range addrs {
			c := candidate{target: t, addr: net.JoinHostPort(a.String(), strconv.Itoa(int(t.Port)))}
			more := i < len(targets)-1 || j < len(addrs)-1
			os, err := g.attempt(ctx, LegOutside, c, from, to, more, ready)
			if err == nil {
				return os, nil
			}
			record(err)
			if more {
				g.log.Info("outgoing connection failed; trying the next server", "to_domain", to, "addr", c.addr, "err", err)
			}
			if ctx.Err() != nil {
				break dialing
			}
		}
	}
	if best == nil {
		return nil, &dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: no address for any of its servers", to)}
	}
	sum := *best
	sum.best = best.err
	sum.err = fmt.Errorf("connect to %s: %w", to, errors.Join(errs...))
	return nil, &sum
}

// attempt connects to one candidate, negotiates the stream and runs ready
// on it. With share, connecting and negotiating may use at most half of
// the time ctx has left.
func (g *Gateway) attempt(ctx context.Context, leg Leg, c candidate, from, to string, share bool, ready readyFunc) (*outStream, error) {
	actx := ctx
	if dl, ok := ctx.Deadline(); ok && share {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	conn, err := (&net.Dialer{}).DialContext(actx, "tcp", c.addr)
	if err != nil {
		what := "connect to " + c.addr
		if leg == LegInside {
			what = "connect to the internal server " + c.addr
		}
		return nil, attemptError(actx, stageConnect, false, false, fmt.Errorf("%s: %w", what, err))
	}
	if c.target.DirectTLS {
		tc := tls.Client(conn, g.certs().ClientConfig(from, to, true))
		if err := tc.HandshakeContext(actx); err != nil {
			g.m.TLSHandshake(LegOutside.String(), metrics.ResultFailure, "")
			conn.Close()
			return nil, attemptError(actx, stageTLS, true, false, fmt.Errorf("direct TLS with %s: %w", c.addr, err))
		}
		g.m.TLSHandshake(LegOutside.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
		conn = tc
	}
	os, err := g.negotiateOut(actx, conn, leg, from, to, c.target)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ready != nil {
		if err := ready(ctx, os); err != nil {
			os.sc.conn.Close()
			return nil, err
		}
	}
	return os, nil
}

// attemptError builds the dialError of a failed step. It is a timeout when
// the I/O timed out or ctx's deadline passed (a cancelled ctx, at
// shutdown, is not).
func attemptError(ctx context.Context, stage dialStage, connected, opened bool, err error) *dialError {
	de := &dialError{stage: stage, connected: connected, opened: opened, err: err}
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		de.timeout = true
	case errors.As(err, &ne) && ne.Timeout() && !errors.Is(ctx.Err(), context.Canceled):
		de.timeout = true
	}
	var pe *peerStreamError
	if errors.As(err, &pe) {
		de.peerError = pe.condition
	}
	return de
}

// peerStreamError is a stream error the peer sent us.
type peerStreamError struct {
	domain, condition string
}

func (e *peerStreamError) Error() string {
	return fmt.Sprintf("%s sent the stream error %s", e.domain, e.condition)
}

// interruptOnDone makes the end of ctx interrupt blocking I/O on c (its
// deadline is set to now). release undoes it and reports whether ctx
// ended meanwhile: c's deadline is then in the past.
func interruptOnDone(ctx context.Context, c net.Conn) (release func() bool) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.SetDeadline(time.Now())
		close(fired)
	})
	return func() bool {
		if stop() {
			return false
		}
		<-fired
		return true
	}
}

// negotiateOut runs the initiating side up to authentication: our header,
// the peer's header and features, STARTTLS when offered. target is the
// server connected to (outside leg; zero on the inside leg), for DANE.
// Every error is a *dialError.
func (g *Gateway) negotiateOut(ctx context.Context, c net.Conn, leg Leg, from, to string, target resolve.Target) (*outStream, error) {
	sc := newStreamConn(c, g.streamLimits(), outgoingWriteBuffer)
	os := &outStream{sc: sc, leg: leg, from: from, to: to}
	if tc, ok := c.(*tls.Conn); ok && target.DirectTLS {
		st := tc.ConnectionState()
		sc.tls = &st
		v := g.verifyPeer(ctx, st.PeerCertificates, to, target)
		os.verdict = &v
	}
	release := interruptOnDone(ctx, c)
	opened := false
	fail := func(stage dialStage, err error) error {
		release()
		if se, ok := err.(*StreamError); ok {
			sc.streamError(se, from, to)
		}
		return attemptError(ctx, stage, true, opened, err)
	}
	for {
		if err := sc.writeHeader(from, to, ""); err != nil {
			return nil, fail(stageStream, err)
		}
		h, err := sc.readHeader(headerTimeout)
		if err != nil {
			return nil, fail(stageStream, fmt.Errorf("read stream header: %w", err))
		}
		opened = true
		sc.setStreamID(h.ID)
		if h.Version == "" {
			// A pre-RFC 3920 server: no features, dialback only.
			if sc.tls == nil && ((leg == LegOutside && g.opt.Outside.RequireTLS) || (leg == LegInside && g.opt.Inside.TLS == TLSRequired)) {
				return nil, fail(stageTLS, errors.New("the remote server does not support TLS (no stream version)"))
			}
			os.features = &xmlstream.Node{}
			break
		}
		el, err := sc.next(headerTimeout)
		if err != nil {
			return nil, fail(stageStream, fmt.Errorf("read stream features: %w", err))
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			// Never answer a stream error with one.
			sc.closeStream()
			return nil, fail(stageStream, &peerStreamError{domain: to, condition: describeStreamError(el.Raw, h.Namespaces)})
		}
		if el.Space != xmlstream.NSStream || el.Local != "features" {
			return nil, fail(stageStream, &StreamError{Condition: "unsupported-stanza-type", Text: "expected stream features"})
		}
		f, err := xmlstream.ParseNode(el.Raw, h.Namespaces)
		if err != nil {
			return nil, fail(stageStream, &StreamError{Condition: "not-well-formed", Text: err.Error()})
		}
		if sc.tls == nil && f.Child(xmlstream.NSTLS, "starttls") != nil && (leg == LegOutside || g.opt.Inside.TLS != TLSOff) {
			if err := sc.writeRaw([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
				return nil, fail(stageTLS, err)
			}
			el, err := sc.next(headerTimeout)
			if err != nil {
				return nil, fail(stageTLS, fmt.Errorf("read STARTTLS answer: %w", err))
			}
			if el.Space != xmlstream.NSTLS || el.Local != "proceed" {
				return nil, fail(stageTLS, fmt.Errorf("STARTTLS refused by %s (<%s/>)", to, el.Local))
			}
			if sc.r.Buffered() != 0 {
				return nil, fail(stageTLS, &StreamError{Condition: "policy-violation", Text: "data after <proceed/> before the TLS handshake"})
			}
			tc := tls.Client(sc.conn, g.clientTLS(leg, from, to))
			if err := tc.HandshakeContext(ctx); err != nil {
				g.m.TLSHandshake(leg.String(), metrics.ResultFailure, "")
				return nil, fail(stageTLS, fmt.Errorf("TLS handshake with %s: %w", to, err))
			}
			g.m.TLSHandshake(leg.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
			sc.upgradeTLS(tc)
			v := g.verifyPeer(ctx, sc.tls.PeerCertificates, to, target)
			os.verdict = &v
			continue
		}
		if sc.tls == nil && ((leg == LegOutside && g.opt.Outside.RequireTLS) || (leg == LegInside && g.opt.Inside.TLS == TLSRequired)) {
			return nil, fail(stageTLS, &StreamError{Condition: "policy-violation", Text: "TLS is required and " + to + " does not offer STARTTLS"})
		}
		os.features = f
		break
	}
	if release() {
		// The time ran out just as the negotiation finished: the
		// connection's deadline is spent.
		return nil, attemptError(ctx, stageStream, true, true, fmt.Errorf("negotiate the stream with %s: %w", to, ctx.Err()))
	}
	return os, nil
}

// authenticate authenticates os.from to os.to: SASL EXTERNAL when offered
// (and we have a certificate), else dialback. Every error is a *dialError.
func (g *Gateway) authenticate(ctx context.Context, os *outStream) error {
	sc := os.sc
	stop := context.AfterFunc(ctx, func() { sc.conn.SetDeadline(time.Now()) })
	defer stop()
	fail := func(err error) error { return attemptError(ctx, stageAuth, true, true, err) }
	if mechs := os.features.Child(xmlstream.NSSASL, "mechanisms"); mechs != nil && sc.tls != nil && g.haveClientCert(os.leg, os.from) {
		offered := false
		for _, m := range mechs.Children {
			if m.Local == "mechanism" && strings.TrimSpace(m.Text) == "EXTERNAL" {
				offered = true
			}
		}
		if offered {
			auth := "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(os.from)) + "</auth>"
			if err := sc.writeRaw([]byte(auth)); err != nil {
				return fail(err)
			}
			el, err := sc.next(headerTimeout)
			if err != nil {
				return fail(fmt.Errorf("read SASL answer: %w", err))
			}
			if el.Space == xmlstream.NSSASL && el.Local == "success" {
				sc.restart()
				if err := sc.writeHeader(os.from, os.to, ""); err != nil {
					return fail(err)
				}
				h, err := sc.readHeader(headerTimeout)
				if err != nil {
					return fail(fmt.Errorf("read stream header after SASL: %w", err))
				}
				sc.setStreamID(h.ID)
				if h.Version != "" {
					el, err := sc.next(headerTimeout)
					if err != nil || el.Local != "features" {
						return fail(fmt.Errorf("read stream features after SASL: %v", err))
					}
				}
				os.auth = "sasl_external"
				return nil
			}
			// <failure/>: fall back to dialback when offered.
		}
	}
	// Dialback, whether or not the feature is announced: many servers
	// accept it without announcing it.
	key := dialback.Key(g.opt.DialbackSecret, os.to, os.from, sc.streamID)
	req := dialbackRequest("result", os.from, os.to, "", key)
	if err := sc.writeRaw(req); err != nil {
		return fail(err)
	}
	for {
		el, err := sc.next(3 * g.limits().ConnectTimeout)
		if err != nil {
			return fail(fmt.Errorf("wait for the dialback result from %s: %w", os.to, err))
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			return fail(&peerStreamError{domain: os.to, condition: describeStreamError(el.Raw, sc.peer.Namespaces)})
		}
		if el.Space != xmlstream.NSDialback || el.Local != "result" {
			return fail(&StreamError{Condition: "unsupported-stanza-type", Text: "unexpected <" + el.Local + "> while waiting for the dialback result"})
		}
		if !strings.EqualFold(el.From, os.to) || !strings.EqualFold(el.To, os.from) {
			// An answer for a pair we did not ask about is unsolicited.
			return fail(&StreamError{Condition: "invalid-from", Text: "dialback result for a domain pair that was not requested"})
		}
		switch el.Type {
		case "valid":
			g.m.Dialback(metrics.DialbackOriginating, metrics.DialbackValid)
			os.auth = "dialback"
			return nil
		case "invalid":
			g.m.Dialback(metrics.DialbackOriginating, metrics.DialbackInvalid)
			return fail(fmt.Errorf("%s refused our dialback key", os.to))
		case "error":
			g.m.Dialback(metrics.DialbackOriginating, metrics.DialbackError)
			return fail(fmt.Errorf("%s answered dialback with an error: %s", os.to, describeError(el.Raw, sc.peer.Namespaces)))
		default:
			return fail(&StreamError{Condition: "bad-format", Text: "dialback result without a valid type"})
		}
	}
}

// verifyPeer checks the certificate of a server xmppedge connected to, for
// domain (the outbound policy already allowed the domain: only then may the
// check itself reach out, for DANE or POSH). With DANE on, authenticated
// TLSA records of the server decide — but only when the way to that server
// was itself authenticated (RFC 7673: a DNSSEC-secure SRV answer, or no SRV
// indirection); a match is valid, a mismatch invalid whatever PKIX says.
// Else PKIX with RFC 6125 identity; when that fails and POSH is on, a POSH
// delegation of domain can vouch for the certificate.
func (g *Gateway) verifyPeer(ctx context.Context, chain []*x509.Certificate, domain string, target resolve.Target) certs.Verdict {
	if g.opt.Outside.DANEResolver != "" && target.Host != "" && len(chain) > 0 && g.srvSecure(ctx, domain, target) {
		r := g.opt.Verifier.VerifyDANEWith(ctx, chain, certs.DANEQuery{Host: target.Host, Port: target.Port, Domain: domain}, certs.DNSSECResolver{Addr: g.opt.Outside.DANEResolver})
		switch r.Status {
		case certs.DANEMatched:
			return r.Verdict
		case certs.DANEFailed:
			v := r.Verdict
			v.Valid = false
			v.Reason = "DANE: " + v.Reason
			return v
		}
	}
	v := g.opt.Verifier.Verify(chain, domain, time.Now())
	if !v.Valid && g.opt.Outside.POSH && len(chain) > 0 {
		pr := g.opt.Verifier.VerifyPOSH(ctx, chain, domain)
		switch pr.Status {
		case certs.POSHMatched:
			return pr.Verdict
		case certs.POSHFailed:
			v.Reason += "; POSH: " + pr.Verdict.Reason
		}
	}
	return v
}

// srvSecure reports whether target was reached through an authenticated
// path: it is the domain itself (no SRV), or the validating resolver
// confirms, with the AD bit, the SRV record that names it.
func (g *Gateway) srvSecure(ctx context.Context, domain string, target resolve.Target) bool {
	if strings.EqualFold(target.Host, domain) {
		return true
	}
	service := "_xmpp-server._tcp."
	if target.DirectTLS {
		service = "_xmpps-server._tcp."
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(service+domain), dns.TypeSRV)
	m.SetEdns0(1232, true)
	c := &dns.Client{Timeout: 3 * time.Second}
	resp, _, err := c.ExchangeContext(ctx, m, g.opt.Outside.DANEResolver)
	if err != nil || resp.Rcode != dns.RcodeSuccess || !resp.AuthenticatedData {
		return false
	}
	for _, rr := range resp.Answer {
		if srv, ok := rr.(*dns.SRV); ok && strings.EqualFold(strings.TrimSuffix(srv.Target, "."), target.Host) && srv.Port == target.Port {
			return true
		}
	}
	return false
}

// clientTLS is the TLS config for an outgoing stream on leg: on the inside
// leg xmppedge presents a certificate of its internal CA for the remote
// domain it stands in for (from).
func (g *Gateway) clientTLS(leg Leg, from, to string) *tls.Config {
	if leg == LegInside && g.opt.Inside.CA != nil {
		return g.opt.Inside.CA.ClientConfig(from, to)
	}
	return g.certs().ClientConfig(from, to, false)
}

// haveClientCert reports whether we present a certificate for domain on
// leg (and so may try SASL EXTERNAL).
func (g *Gateway) haveClientCert(leg Leg, domain string) bool {
	if leg == LegInside {
		return g.opt.Inside.CA != nil
	}
	return g.certs().Certificate(domain) != nil
}

// describeError returns the condition inside an error child, for logs.
func describeError(raw []byte, ns map[string]string) string {
	n, err := xmlstream.ParseNode(raw, ns)
	if err != nil {
		return "unparsable"
	}
	if e := n.Child(xmlstream.NSServer, "error"); e != nil {
		for _, c := range e.Children {
			return c.Local
		}
	}
	for _, c := range n.Children {
		for _, cc := range c.Children {
			return cc.Local
		}
	}
	return "unspecified"
}

// verifyKey asks the authoritative server of originating whether it issued
// key for (receiving, originating, streamID): the inside leg's authority is
// the internal server, the outside leg's the server DNS names. It uses a
// short-lived stream of its own, set up as dial does (trying the next
// server after a failure). An answer of type 'invalid' is (false, nil);
// every error is a *verifyError, whose condition dialbackCondition gives.
func (g *Gateway) verifyKey(ctx context.Context, leg Leg, originating, receiving, streamID, key string) (bool, error) {
	os, err := g.dial(ctx, leg, receiving, originating, nil)
	if err != nil {
		var de *dialError
		cond, kind := "remote-connection-failed", metrics.Other
		if errors.As(err, &de) {
			cond, kind = dialbackDialCondition(de), dialFailureKind(de)
		}
		return false, &verifyError{condition: cond, kind: kind, err: fmt.Errorf("reach the authoritative server of %s: %w", originating, err)}
	}
	sc := os.sc
	defer sc.conn.Close()
	stop := context.AfterFunc(ctx, func() { sc.conn.SetDeadline(time.Now()) })
	defer stop()
	// The authoritative server was reached: from here on, what goes wrong
	// is a problem with that connection (remote-server-timeout), unless it
	// says the domain is unknown to it.
	broken := func(err error) error {
		kind := metrics.FailAuth
		var ne net.Error
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			kind = metrics.FailTimeout
		}
		return &verifyError{condition: "remote-server-timeout", kind: kind, err: err}
	}
	req := dialbackRequest("verify", receiving, originating, streamID, key)
	if err := sc.writeRaw(req); err != nil {
		return false, broken(fmt.Errorf("send db:verify to %s: %w", originating, err))
	}
	for {
		el, err := sc.next(2 * g.limits().ConnectTimeout)
		if err != nil {
			return false, broken(fmt.Errorf("wait for the db:verify answer from %s: %w", originating, err))
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			pe := &peerStreamError{domain: originating, condition: describeStreamError(el.Raw, sc.peer.Namespaces)}
			if pe.condition == "host-unknown" || pe.condition == "host-gone" {
				return false, &verifyError{condition: "remote-server-not-found", kind: metrics.FailStreamError, err: pe}
			}
			return false, &verifyError{condition: "remote-server-timeout", kind: metrics.FailStreamError, err: pe}
		}
		if el.Space != xmlstream.NSDialback || el.Local != "verify" {
			continue // e.g. a stray element; only our answer matters
		}
		if el.ID != streamID || !strings.EqualFold(el.From, originating) || !strings.EqualFold(el.To, receiving) {
			return false, broken(fmt.Errorf("db:verify answer from %s does not match the request", originating))
		}
		sc.closeStream()
		switch el.Type {
		case "valid":
			return true, nil
		case "invalid":
			return false, nil
		default:
			// XEP-0220 §2.4: an error in step 3 is answered with
			// remote-server-not-found.
			return false, &verifyError{condition: "remote-server-not-found", kind: metrics.FailAuth,
				err: fmt.Errorf("%s answered db:verify with type %q (%s)", originating, el.Type, describeError(el.Raw, sc.peer.Namespaces))}
		}
	}
}

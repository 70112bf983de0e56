package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Dialer sets up outgoing streams: resolve → connect → TLS → verify →
// authenticate, with the initiating side of internal/s2s. It has the
// narrow dependencies it uses, not the gateway.
type Dialer struct {
	Resolver     Resolver                // outside leg: SRV, A/AAAA
	InsideServer string                  // inside leg: host:port of the internal server
	InsideTLS    TLSMode                 // inside leg's TLS
	InsideCA     *certs.InternalCA       // inside leg's client certificates
	RequireTLS   bool                    // outside leg: refuse streams without TLS
	DANE         bool                    // authenticated TLSA records decide (needs a validating resolver)
	DANEResolver string                  // the validating resolver TLSA records are asked from
	POSH         bool                    // a POSH delegation may vouch for a certificate
	Verifier     *certs.Verifier         // peer certificates
	Certs        func() *certs.Store     // our certificates (swapped at reload)
	Secret       string                  // the dialback secret
	Limits       func() *Limits          // connect timeout
	StreamLimits func() xmlstream.Limits // the scanner's bounds
	Metrics      *metrics.Metrics        // nil-safe
	Log          *slog.Logger
	// Bidi asks servers that offer XEP-0288 to use our outgoing streams
	// both ways, on the legs it is true for (outside: only to a server
	// whose certificate is valid for its domain).
	Bidi func(leg Leg) bool
}

// outStream is a negotiated outgoing stream, ready for authentication.
type outStream struct {
	sc       *stream.Conn
	st       *s2s.Stream
	leg      Leg
	from, to string
	verdict  *certs.Verdict // the peer certificate checked against `to` (nil without TLS)
	auth     string         // sasl_external | dialback, once authenticated
	bidi     bool           // ask the server to use the stream both ways (XEP-0288); after authenticate: asked

	// requireCert: the policy requires certificate authentication (set
	// by ready before authenticate): no fallback to dialback when the
	// server refuses our certificate.
	requireCert bool
	// refused is how the server refused our certificate, on this
	// connection (SASL EXTERNAL) or on the one before it (retry set:
	// this connection neither tries SASL EXTERNAL nor, after a TLS
	// refusal, presents a client certificate).
	refused *certRefusal
	retry   bool
	// sentCert: a TLS client certificate was sent.
	sentCert atomic.Bool
	// fallback says, once authenticated by dialback after a refusal, why
	// (the session's audit record); "" otherwise.
	fallback string
}

// certRefusal is a server refusing our certificate.
type certRefusal struct {
	cause  string // metrics.FallbackSASL | metrics.FallbackTLS
	detail string // what it said, e.g. "SASL EXTERNAL failure not-authorized"
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
func (d *Dialer) dial(ctx context.Context, leg Leg, from, to string, ready readyFunc) (*outStream, error) {
	if leg == LegInside {
		return d.attempt(ctx, leg, candidate{addr: d.InsideServer}, from, to, false, ready)
	}
	start := time.Now()
	targets, err := d.Resolver.LookupS2S(ctx, to)
	d.Metrics.DNSLookup(metrics.QTypeSRV, time.Since(start), err)
	if err != nil {
		return nil, &dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: %w", to, err)}
	}
	var attempts attempts
	for i, t := range targets {
		start := time.Now()
		addrs, err := d.Resolver.LookupHost(ctx, t.Host)
		d.Metrics.DNSLookup(metrics.QTypeA, time.Since(start), err)
		if err != nil {
			attempts.record(&dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: %w", t.Host, err)})
			continue
		}
		for j, a := range addrs {
			c := candidate{target: t, addr: net.JoinHostPort(a.String(), strconv.Itoa(int(t.Port)))}
			more := i < len(targets)-1 || j < len(addrs)-1
			os, err := d.attempt(ctx, LegOutside, c, from, to, more, ready)
			if err == nil {
				return os, nil
			}
			attempts.record(err)
			if more {
				d.Log.Info("outgoing connection failed; trying the next server", "to_domain", to, "addr", c.addr, "err", err)
			}
			if ctx.Err() != nil {
				return nil, attempts.summary(to)
			}
		}
	}
	return nil, attempts.summary(to)
}

// attempts are the failed attempts of one dial; the best got furthest.
type attempts struct {
	errs []error
	best *dialError
}

func (a *attempts) record(err error) {
	a.errs = append(a.errs, err)
	var de *dialError
	if !errors.As(err, &de) {
		de = &dialError{err: err}
	}
	if a.best == nil || de.beats(a.best) {
		a.best = de
	}
}

// summary is the dial's error: the best attempt's fields, every error.
func (a *attempts) summary(to string) error {
	if a.best == nil {
		return &dialError{stage: stageResolve, err: fmt.Errorf("resolve %s: no address for any of its servers", to)}
	}
	sum := *a.best
	sum.best = a.best.err
	sum.err = fmt.Errorf("connect to %s: %w", to, errors.Join(a.errs...))
	return &sum
}

// attempt connects to one candidate, negotiates the stream and runs ready
// on it. With share, connecting and negotiating may use at most half of
// the time ctx has left.
//
// A server that refuses our certificate — its TLS handshake refuses our
// client certificate, or it answers SASL EXTERNAL with <failure/> and
// ends the stream (XEP-0178 §3), or it ends the stream with no answer to
// SASL EXTERNAL at all — is connected to once more, without SASL EXTERNAL
// (and, after a TLS refusal, without a client certificate), for dialback.
func (d *Dialer) attempt(ctx context.Context, leg Leg, c candidate, from, to string, share bool, ready readyFunc) (*outStream, error) {
	actx := ctx
	if dl, ok := ctx.Deadline(); ok && share {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	os, err := d.try(ctx, actx, &outStream{leg: leg, from: from, to: to}, c, ready)
	var de *dialError
	if errors.As(err, &de) && de.refused != nil && actx.Err() == nil {
		d.Log.Info("the server refused our certificate; connecting again for dialback", "leg", leg.String(), "from_domain", from, "to_domain", to,
			"addr", c.addr, "refused", de.refused.detail)
		os, err = d.try(ctx, actx, &outStream{leg: leg, from: from, to: to, refused: de.refused, retry: true}, c, ready)
	}
	return os, err
}

// try is one connection of attempt: connect and negotiate within actx,
// then ready within ctx. A *dialError whose refused is set says the
// server refused our certificate in a way another connection can avoid.
func (d *Dialer) try(ctx, actx context.Context, os *outStream, c candidate, ready readyFunc) (*outStream, error) {
	conn, err := d.connect(actx, os, c)
	if err != nil {
		return nil, err
	}
	os.sc = stream.NewConn(conn, stream.Options{Limits: d.StreamLimits(), WriteBuffer: stream.OutgoingWriteBuffer})
	if tc, ok := conn.(*tls.Conn); ok {
		v := d.verifyPeer(actx, tc.ConnectionState().PeerCertificates, os.to, c.target)
		os.verdict = &v
	}
	os.st, err = s2s.Open(actx, os.sc, &dialHost{d: d, os: os, target: c.target}, os.from, os.to)
	if err != nil {
		os.sc.Abort()
		de := negotiationError(actx, err)
		// TLS 1.3: the server refuses our certificate after the client's
		// side of the handshake, so the refusal is read after it.
		de.refused = d.tlsRefusal(os, err)
		return nil, de
	}
	if ready != nil {
		if err := ready(ctx, os); err != nil {
			os.sc.Abort()
			var (
				de *dialError
				ue *s2s.SASLUnansweredError
			)
			switch {
			case !errors.As(err, &de) || os.retry || os.auth != "" || !streamEnded(err):
			case os.refused != nil:
				// SASL EXTERNAL refused, then the stream ended instead of
				// going on with dialback.
				de.refused = os.refused
			case errors.As(err, &ue):
				// The stream ended with no answer to SASL EXTERNAL (as
				// ejabberd's does when our certificate has an XmppAddr).
				if !d.fallBack(os, &certRefusal{cause: metrics.FallbackSASL, detail: "the stream ended with no answer to SASL EXTERNAL"}) {
					return nil, refusedByPolicy(os)
				}
				de.refused = os.refused
			}
			return nil, err
		}
	}
	return os, nil
}

// connect opens the TCP connection to c, with direct TLS when its SRV
// record says so.
func (d *Dialer) connect(ctx context.Context, os *outStream, c candidate) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		what := "connect to " + c.addr
		if os.leg == LegInside {
			what = "connect to the internal server " + c.addr
		}
		return nil, attemptError(ctx, stageConnect, false, false, fmt.Errorf("%s: %w", what, err))
	}
	if !c.target.DirectTLS {
		return conn, nil
	}
	tc := tls.Client(conn, d.clientConfig(os, true))
	if err := tc.HandshakeContext(ctx); err != nil {
		d.Metrics.TLSHandshake(LegOutside.String(), metrics.ResultFailure, "")
		conn.Close()
		de := attemptError(ctx, stageTLS, true, false, fmt.Errorf("direct TLS with %s: %w", c.addr, err))
		de.refused = d.tlsRefusal(os, err)
		return nil, de
	}
	d.Metrics.TLSHandshake(LegOutside.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
	return tc, nil
}

// tlsRefusal is the refusal err is when it is the server's TLS alert
// refusing the client certificate we sent; nil otherwise.
func (d *Dialer) tlsRefusal(os *outStream, err error) *certRefusal {
	if !os.sentCert.Load() || !certificateRefused(err) {
		return nil
	}
	var oe *net.OpError
	errors.As(err, &oe)
	return &certRefusal{cause: metrics.FallbackTLS, detail: "TLS handshake: " + oe.Error()}
}

// refusedCertificateAlerts are the TLS alerts (RFC 8446 §6.2) with which a
// server refuses the certificate a client sent: bad_certificate (what
// crypto/tls sends for a certificate without the clientAuth usage),
// unsupported_certificate (OpenSSL's for the same), certificate_revoked,
// certificate_expired, certificate_unknown, unknown_ca.
var refusedCertificateAlerts = []tls.AlertError{42, 43, 44, 45, 46, 48}

// certificateRefused reports whether err is a TLS alert from the peer
// refusing our certificate (crypto/tls reports a received alert as a
// *net.OpError "remote error" holding the alert).
func certificateRefused(err error) bool {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return false
	}
	for _, a := range refusedCertificateAlerts {
		if oe.Err.Error() == a.Error() {
			return true
		}
	}
	return false
}

// streamEnded reports whether err is the peer ending the stream or the
// connection: its </stream:stream> or a stream error, EOF, a reset.
func streamEnded(err error) bool {
	var pe *stream.PeerError
	return errors.As(err, &pe) || errors.Is(err, xmlstream.ErrStreamEnd) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// authenticate authenticates os.from to os.to: SASL EXTERNAL when offered
// (and we have a certificate), else dialback. Dialback after the server
// refused our certificate (fallBack) is not tried when the policy
// requires certificate authentication: that is a policy failure
// (stageCertificate, policy-violation). Every error is a *dialError.
func (d *Dialer) authenticate(ctx context.Context, os *outStream) error {
	if os.retry && os.refused.cause == metrics.FallbackTLS && !d.fallBack(os, os.refused) {
		return refusedByPolicy(os)
	}
	if os.bidi {
		asked, err := os.st.RequestBidi()
		if err != nil {
			return negotiationError(ctx, err)
		}
		os.bidi = asked
	}
	if err := os.st.Authenticate(ctx); err != nil {
		var se *s2s.SASLError
		if errors.As(err, &se) && !se.NoDialback && os.requireCert {
			return refusedByPolicy(os)
		}
		return negotiationError(ctx, err)
	}
	os.auth = os.st.Auth()
	if os.refused != nil && os.auth == s2s.MethodDialback {
		os.fallback = "authenticated by dialback: " + os.to + " refused our certificate (" + os.refused.detail + ")"
	}
	return nil
}

// bidiPossible reports whether XEP-0288 may be asked for on os: the
// server offers it, the leg's option is on, and on the outside leg the
// server's certificate is valid for its domain — the stanzas it then
// sends us on the stream are from the domain that certificate proves.
// (The internal server is the configured address.)
func (d *Dialer) bidiPossible(os *outStream) bool {
	if d.Bidi == nil || !d.Bidi(os.leg) || !os.st.PeerOffersBidi() {
		return false
	}
	return os.leg == LegInside || os.verdict != nil && os.verdict.Valid
}

// refusedByPolicy is the error of an outgoing stream whose server refused
// our certificate when the policy requires certificate authentication.
func refusedByPolicy(os *outStream) *dialError {
	return &dialError{stage: stageCertificate, connected: true, opened: true,
		err: fmt.Errorf("%s refused our certificate (%s) and the policy requires certificate authentication: no dialback", os.to, os.refused.detail)}
}

// fallBack decides whether os goes on with dialback after the server
// refused our certificate as r says: not when the policy requires
// certificate authentication. Either way it is logged; a fallback is
// counted.
func (d *Dialer) fallBack(os *outStream, r *certRefusal) bool {
	os.refused = r
	log := d.Log.With("leg", os.leg.String(), "from_domain", os.from, "to_domain", os.to, "refused", r.detail)
	if os.requireCert {
		log.Warn("the server refused our certificate and the policy requires certificate authentication: no dialback")
		return false
	}
	d.Metrics.SASLExternalFallback(os.leg.String(), r.cause)
	log.Info("the server refused our certificate: falling back to dialback")
	return true
}

// verifyPeer checks the certificate of a server xmppedge connected to, for
// domain (the outbound policy already allowed the domain: only then may the
// check itself reach out, for DANE or POSH). With DANE on, authenticated
// TLSA records of the server decide — but only when the way to that server
// was itself authenticated (RFC 7673: a DNSSEC-secure SRV answer, or no SRV
// indirection); a match is valid, a mismatch invalid whatever PKIX says.
// Else PKIX with RFC 6125 identity; when that fails and POSH is on, a POSH
// delegation of domain can vouch for the certificate.
func (d *Dialer) verifyPeer(ctx context.Context, chain []*x509.Certificate, domain string, target resolve.Target) certs.Verdict {
	secure := target.Secure || strings.EqualFold(target.Host, domain)
	if d.DANE && target.Host != "" && len(chain) > 0 && secure {
		r := d.Verifier.VerifyDANEWith(ctx, chain, certs.DANEQuery{Host: target.Host, Port: target.Port, Domain: domain}, certs.DNSSECResolver{Addr: d.DANEResolver})
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
	v := d.Verifier.Verify(chain, domain, time.Now())
	if !v.Valid && d.POSH && len(chain) > 0 {
		pr := d.Verifier.VerifyPOSH(ctx, chain, domain)
		switch pr.Status {
		case certs.POSHMatched:
			return pr.Verdict
		case certs.POSHFailed:
			v.Reason += "; POSH: " + pr.Verdict.Reason
		}
	}
	return v
}

// verifyKey asks the authoritative server of originating whether it issued
// key for (receiving, originating, streamID): the inside leg's authority is
// the internal server, the outside leg's the server DNS names. It uses a
// short-lived stream of its own, set up as dial does (trying the next
// server after a failure). An answer of type 'invalid' is (false, nil);
// every error is a *verifyError, whose condition dialbackCondition gives.
func (d *Dialer) verifyKey(ctx context.Context, leg Leg, originating, receiving, streamID, key string) (bool, error) {
	os, err := d.dial(ctx, leg, receiving, originating, nil)
	if err != nil {
		var de *dialError
		cond, kind := stanza.RemoteConnectionFailed, metrics.Other
		if errors.As(err, &de) {
			cond, kind = dialbackDialCondition(de), dialFailureKind(de)
		}
		return false, &verifyError{condition: cond, kind: kind, err: fmt.Errorf("reach the authoritative server of %s: %w", originating, err)}
	}
	defer os.sc.Abort()
	valid, err := os.st.VerifyKey(ctx, receiving, originating, streamID, key, 2*d.Limits().ConnectTimeout)
	if err == nil {
		return valid, nil
	}
	// The authoritative server was reached: from here on, what goes wrong
	// is a problem with that connection (remote-server-timeout), unless it
	// says the domain is unknown to it.
	var (
		pe *stream.PeerError
		ve *s2s.VerifyError
		ne net.Error
	)
	switch {
	case errors.As(err, &pe) && (pe.Condition == string(stream.HostUnknown) || pe.Condition == string(stream.HostGone)):
		return false, &verifyError{condition: stanza.RemoteServerNotFound, kind: metrics.FailStreamError, err: err}
	case errors.As(err, &pe):
		return false, &verifyError{condition: stanza.RemoteServerTimeout, kind: metrics.FailStreamError, err: err}
	case errors.As(err, &ve):
		// XEP-0220 §2.4: an error in step 3 is answered with
		// remote-server-not-found.
		return false, &verifyError{condition: stanza.RemoteServerNotFound, kind: metrics.FailAuth, err: err}
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return false, &verifyError{condition: stanza.RemoteServerTimeout, kind: metrics.FailTimeout, err: err}
	}
	return false, &verifyError{condition: stanza.RemoteServerTimeout, kind: metrics.FailAuth, err: err}
}

// clientTLS is the TLS config for an outgoing stream on leg: on the inside
// leg xmppedge presents a certificate of its internal CA for the remote
// domain it stands in for (from). Its server name (SNI) is to's A-label
// form.
func (d *Dialer) clientTLS(leg Leg, from, to string) *tls.Config {
	if leg == LegInside && d.InsideCA != nil {
		return d.InsideCA.ClientConfig(from, to)
	}
	return d.Certs().ClientConfig(from, to, false)
}

// clientConfig is the TLS config of os's connection (direct: direct TLS,
// with ALPN): clientTLS's, without a client certificate when a TLS
// handshake of this server refused ours, and noting in os when one is
// sent.
func (d *Dialer) clientConfig(os *outStream, direct bool) *tls.Config {
	var cfg *tls.Config
	if direct {
		cfg = d.Certs().ClientConfig(os.from, os.to, true)
	} else {
		cfg = d.clientTLS(os.leg, os.from, os.to)
	}
	get := cfg.GetClientCertificate
	switch {
	case os.retry && os.refused.cause == metrics.FallbackTLS:
		cfg.GetClientCertificate, cfg.Certificates = nil, nil
	case get != nil:
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := get(cri)
			if err == nil && c != nil && len(c.Certificate) > 0 {
				os.sentCert.Store(true)
			}
			return c, err
		}
	}
	return cfg
}

// dialHost is the relay's side of one outgoing stream's negotiation
// (s2s.Initiator).
type dialHost struct {
	d      *Dialer
	os     *outStream
	target resolve.Target // the server connected to (outside leg), for DANE
}

func (h *dialHost) UseTLS() (use, required bool) {
	if h.os.leg == LegInside {
		return h.d.InsideTLS != TLSOff, h.d.InsideTLS == TLSRequired
	}
	return true, h.d.RequireTLS
}

func (h *dialHost) ClientTLS(string, string) *tls.Config { return h.d.clientConfig(h.os, false) }

func (h *dialHost) TLSDone(ctx context.Context, s *s2s.Stream, err error) {
	if err != nil {
		h.d.Metrics.TLSHandshake(h.os.leg.String(), metrics.ResultFailure, "")
		return
	}
	st := s.Conn.TLS()
	h.d.Metrics.TLSHandshake(h.os.leg.String(), metrics.ResultSuccess, tls.VersionName(st.Version))
	v := h.d.verifyPeer(ctx, st.PeerCertificates, h.os.to, h.target)
	h.os.verdict = &v
}

// HaveClientCert reports whether we present a certificate for from (and
// so may try SASL EXTERNAL): not on a connection again to a server that
// refused it.
func (h *dialHost) HaveClientCert(from string) bool {
	if h.os.retry {
		return false
	}
	if h.os.leg == LegInside {
		return h.d.InsideCA != nil
	}
	return h.d.Certs().Certificate(from) != nil
}

// SASLRefused: the server answered SASL EXTERNAL with <failure/>; dialback
// follows on the stream unless the policy requires certificate
// authentication.
func (h *dialHost) SASLRefused(condition string) bool {
	return h.d.fallBack(h.os, &certRefusal{cause: metrics.FallbackSASL, detail: "SASL EXTERNAL failure " + condition})
}

func (h *dialHost) DialbackSecret() string         { return h.d.Secret }
func (h *dialHost) DialbackTimeout() time.Duration { return 3 * h.d.Limits().ConnectTimeout }

func (h *dialHost) DialbackResult(typ string) {
	h.d.Metrics.Dialback(metrics.DialbackOriginating, typ)
}

// newDialer is the gateway's dialer.
func (g *Gateway) newDialer() *Dialer {
	return &Dialer{
		Resolver:     g.opt.Outside.Resolver,
		InsideServer: g.opt.Inside.Server,
		InsideTLS:    g.opt.Inside.TLS,
		InsideCA:     g.opt.Inside.CA,
		RequireTLS:   g.opt.Outside.RequireTLS,
		DANE:         g.opt.Outside.DANEResolver != "",
		DANEResolver: g.opt.Outside.DANEResolver,
		POSH:         g.opt.Outside.POSH,
		Verifier:     g.opt.Verifier,
		Certs:        g.certs,
		Secret:       g.opt.DialbackSecret,
		Limits:       g.limits,
		StreamLimits: g.streamLimits,
		Metrics:      g.m,
		Log:          g.log,
		Bidi:         g.bidiOn,
	}
}

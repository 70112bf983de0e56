package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
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
}

// outStream is a negotiated outgoing stream, ready for authentication.
type outStream struct {
	sc       *stream.Conn
	st       *s2s.Stream
	leg      Leg
	from, to string
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
func (d *Dialer) attempt(ctx context.Context, leg Leg, c candidate, from, to string, share bool, ready readyFunc) (*outStream, error) {
	actx := ctx
	if dl, ok := ctx.Deadline(); ok && share {
		var cancel context.CancelFunc
		actx, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(dl)/2))
		defer cancel()
	}
	conn, err := d.connect(actx, leg, c, from, to)
	if err != nil {
		return nil, err
	}
	os := &outStream{leg: leg, from: from, to: to}
	os.sc = stream.NewConn(conn, stream.Options{Limits: d.StreamLimits(), WriteBuffer: stream.OutgoingWriteBuffer})
	if tc, ok := conn.(*tls.Conn); ok {
		v := d.verifyPeer(actx, tc.ConnectionState().PeerCertificates, to, c.target)
		os.verdict = &v
	}
	os.st, err = s2s.Open(actx, os.sc, &dialHost{d: d, os: os, target: c.target}, from, to)
	if err != nil {
		os.sc.Abort()
		return nil, negotiationError(actx, err)
	}
	if ready != nil {
		if err := ready(ctx, os); err != nil {
			os.sc.Abort()
			return nil, err
		}
	}
	return os, nil
}

// connect opens the TCP connection to c, with direct TLS when its SRV
// record says so.
func (d *Dialer) connect(ctx context.Context, leg Leg, c candidate, from, to string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addr)
	if err != nil {
		what := "connect to " + c.addr
		if leg == LegInside {
			what = "connect to the internal server " + c.addr
		}
		return nil, attemptError(ctx, stageConnect, false, false, fmt.Errorf("%s: %w", what, err))
	}
	if !c.target.DirectTLS {
		return conn, nil
	}
	tc := tls.Client(conn, d.Certs().ClientConfig(from, to, true))
	if err := tc.HandshakeContext(ctx); err != nil {
		d.Metrics.TLSHandshake(LegOutside.String(), metrics.ResultFailure, "")
		conn.Close()
		return nil, attemptError(ctx, stageTLS, true, false, fmt.Errorf("direct TLS with %s: %w", c.addr, err))
	}
	d.Metrics.TLSHandshake(LegOutside.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
	return tc, nil
}

// authenticate authenticates os.from to os.to: SASL EXTERNAL when offered
// (and we have a certificate), else dialback. Every error is a *dialError.
func (d *Dialer) authenticate(ctx context.Context, os *outStream) error {
	if err := os.st.Authenticate(ctx); err != nil {
		return negotiationError(ctx, err)
	}
	os.auth = os.st.Auth()
	return nil
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
// domain it stands in for (from).
func (d *Dialer) clientTLS(leg Leg, from, to string) *tls.Config {
	if leg == LegInside && d.InsideCA != nil {
		return d.InsideCA.ClientConfig(from, to)
	}
	return d.Certs().ClientConfig(from, to, false)
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

func (h *dialHost) ClientTLS(from, to string) *tls.Config { return h.d.clientTLS(h.os.leg, from, to) }

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
// so may try SASL EXTERNAL).
func (h *dialHost) HaveClientCert(from string) bool {
	if h.os.leg == LegInside {
		return h.d.InsideCA != nil
	}
	return h.d.Certs().Certificate(from) != nil
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
	}
}

package edge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/edge/metrics"
	"github.com/xmppedge/xmppedge/edge/resolve"
	"github.com/xmppedge/xmppedge/edge/xmlstream"
)

// dialError is a failure to set up an outgoing stream. opened tells whether
// the peer's stream header had been received: stanzas queued for a stream
// that never opened bounce with remote-server-not-found, for one that did,
// with remote-server-timeout (as Prosody does).
type dialError struct {
	opened bool
	err    error
}

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// condition is the stanza error condition for stanzas that were waiting.
func (e *dialError) condition() string {
	if e.opened {
		return "remote-server-timeout"
	}
	return "remote-server-not-found"
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

// dial connects to the server of `to` on the given leg and negotiates the
// stream up to authentication (header, features, TLS).
func (g *Gateway) dial(ctx context.Context, leg Leg, from, to string) (*outStream, error) {
	if leg == LegInside {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", g.opt.InsideServer)
		if err != nil {
			return nil, &dialError{err: fmt.Errorf("connect to the internal server %s: %w", g.opt.InsideServer, err)}
		}
		os, err := g.negotiateOut(ctx, c, leg, from, to, resolve.Target{})
		if err != nil {
			c.Close()
			return nil, err
		}
		return os, nil
	}
	start := time.Now()
	targets, err := g.opt.Resolver.LookupS2S(ctx, to)
	g.m.DNSLookup(metrics.QTypeSRV, time.Since(start), err)
	if err != nil {
		return nil, &dialError{err: fmt.Errorf("resolve %s: %w", to, err)}
	}
	var errs []error
	for _, t := range targets {
		start := time.Now()
		addrs, err := g.opt.Resolver.LookupHost(ctx, t.Host)
		g.m.DNSLookup(metrics.QTypeA, time.Since(start), err)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Host, err))
			continue
		}
		for _, a := range addrs {
			os, err := g.dialTarget(ctx, t, a, from, to)
			if err == nil {
				return os, nil
			}
			errs = append(errs, err)
			var de *dialError
			if errors.As(err, &de) && de.opened {
				// The server answered and then failed (TLS, auth): trying
				// another of its addresses would not change that.
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, &dialError{err: errors.Join(errs...)}
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no address for %s", to))
	}
	return nil, &dialError{err: fmt.Errorf("connect to %s: %w", to, errors.Join(errs...))}
}

func (g *Gateway) dialTarget(ctx context.Context, t resolve.Target, a netip.Addr, from, to string) (*outStream, error) {
	addr := net.JoinHostPort(a.String(), strconv.Itoa(int(t.Port)))
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &dialError{err: err}
	}
	if t.DirectTLS {
		tc := tls.Client(c, g.certs().ClientConfig(from, to, true))
		if err := tc.HandshakeContext(ctx); err != nil {
			g.m.TLSHandshake(LegOutside.String(), metrics.ResultFailure, "")
			c.Close()
			return nil, &dialError{err: fmt.Errorf("direct TLS with %s: %w", addr, err)}
		}
		g.m.TLSHandshake(LegOutside.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
		c = tc
	}
	os, err := g.negotiateOut(ctx, c, LegOutside, from, to, t)
	if err != nil {
		c.Close()
		return nil, err
	}
	return os, nil
}

// negotiateOut runs the initiating side up to authentication: our header,
// the peer's header and features, STARTTLS when offered. target is the
// server connected to (outside leg; zero on the inside leg), for DANE.
func (g *Gateway) negotiateOut(ctx context.Context, c net.Conn, leg Leg, from, to string, target resolve.Target) (*outStream, error) {
	sc := newStreamConn(c, g.streamLimits(), outgoingWriteBuffer)
	os := &outStream{sc: sc, leg: leg, from: from, to: to}
	if tc, ok := c.(*tls.Conn); ok && target.DirectTLS {
		st := tc.ConnectionState()
		sc.tls = &st
		v := g.verifyPeer(ctx, st.PeerCertificates, to, target)
		os.verdict = &v
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	opened := false
	fail := func(err error) error {
		if se, ok := err.(*StreamError); ok {
			sc.streamError(se, from, to)
		}
		return &dialError{opened: opened, err: err}
	}
	for {
		if err := sc.writeHeader(from, to, ""); err != nil {
			return nil, fail(err)
		}
		h, err := sc.readHeader(headerTimeout)
		if err != nil {
			return nil, fail(fmt.Errorf("read stream header: %w", err))
		}
		opened = true
		sc.setStreamID(h.ID)
		if h.Version == "" {
			// A pre-RFC 3920 server: no features, dialback only.
			if sc.tls == nil && ((leg == LegOutside && g.opt.RequireTLS) || (leg == LegInside && g.opt.InsideTLS == "required")) {
				return nil, fail(errors.New("the remote server does not support TLS (no stream version)"))
			}
			os.features = &xmlstream.Node{}
			return os, nil
		}
		el, err := sc.next(headerTimeout)
		if err != nil {
			return nil, fail(fmt.Errorf("read stream features: %w", err))
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			// Never answer a stream error with one.
			sc.closeStream()
			return nil, fail(fmt.Errorf("%s sent the stream error %s", to, describeStreamError(el.Raw, h.Namespaces)))
		}
		if el.Space != xmlstream.NSStream || el.Local != "features" {
			return nil, fail(&StreamError{Condition: "unsupported-stanza-type", Text: "expected stream features"})
		}
		f, err := xmlstream.ParseNode(el.Raw, h.Namespaces)
		if err != nil {
			return nil, fail(&StreamError{Condition: "not-well-formed", Text: err.Error()})
		}
		if sc.tls == nil && f.Child(xmlstream.NSTLS, "starttls") != nil && (leg == LegOutside || g.opt.InsideTLS != "off") {
			if err := sc.writeRaw([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
				return nil, fail(err)
			}
			el, err := sc.next(headerTimeout)
			if err != nil {
				return nil, fail(fmt.Errorf("read STARTTLS answer: %w", err))
			}
			if el.Space != xmlstream.NSTLS || el.Local != "proceed" {
				return nil, fail(fmt.Errorf("STARTTLS refused by %s (<%s/>)", to, el.Local))
			}
			if sc.r.Buffered() != 0 {
				return nil, fail(&StreamError{Condition: "policy-violation", Text: "data after <proceed/> before the TLS handshake"})
			}
			tc := tls.Client(sc.conn, g.clientTLS(leg, from, to))
			if err := tc.HandshakeContext(ctx); err != nil {
				g.m.TLSHandshake(leg.String(), metrics.ResultFailure, "")
				return nil, fail(fmt.Errorf("TLS handshake with %s: %w", to, err))
			}
			g.m.TLSHandshake(leg.String(), metrics.ResultSuccess, tls.VersionName(tc.ConnectionState().Version))
			sc.upgradeTLS(tc)
			v := g.verifyPeer(ctx, sc.tls.PeerCertificates, to, target)
			os.verdict = &v
			continue
		}
		if sc.tls == nil && ((leg == LegOutside && g.opt.RequireTLS) || (leg == LegInside && g.opt.InsideTLS == "required")) {
			return nil, fail(&StreamError{Condition: "policy-violation", Text: "TLS is required and " + to + " does not offer STARTTLS"})
		}
		os.features = f
		return os, nil
	}
}

// authenticate authenticates os.from to os.to: SASL EXTERNAL when offered
// (and we have a certificate), else dialback.
func (g *Gateway) authenticate(ctx context.Context, os *outStream) error {
	sc := os.sc
	stop := context.AfterFunc(ctx, func() { sc.conn.SetDeadline(time.Now()) })
	defer stop()
	fail := func(err error) error { return &dialError{opened: true, err: err} }
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
	if g.opt.DANEResolver != "" && target.Host != "" && len(chain) > 0 && g.srvSecure(ctx, domain, target) {
		r := g.opt.Verifier.VerifyDANEWith(ctx, chain, certs.DANEQuery{Host: target.Host, Port: target.Port, Domain: domain}, certs.DNSSECResolver{Addr: g.opt.DANEResolver})
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
	if !v.Valid && g.opt.POSH && len(chain) > 0 {
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
	resp, _, err := c.ExchangeContext(ctx, m, g.opt.DANEResolver)
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
	if leg == LegInside && g.opt.InsideCA != nil {
		return g.opt.InsideCA.ClientConfig(from, to)
	}
	return g.certs().ClientConfig(from, to, false)
}

// haveClientCert reports whether we present a certificate for domain on
// leg (and so may try SASL EXTERNAL).
func (g *Gateway) haveClientCert(leg Leg, domain string) bool {
	if leg == LegInside {
		return g.opt.InsideCA != nil
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
// short-lived stream of its own.
func (g *Gateway) verifyKey(ctx context.Context, leg Leg, originating, receiving, streamID, key string) (bool, error) {
	os, err := g.dial(ctx, leg, receiving, originating)
	if err != nil {
		return false, err
	}
	sc := os.sc
	defer sc.conn.Close()
	stop := context.AfterFunc(ctx, func() { sc.conn.SetDeadline(time.Now()) })
	defer stop()
	req := dialbackRequest("verify", receiving, originating, streamID, key)
	if err := sc.writeRaw(req); err != nil {
		return false, err
	}
	for {
		el, err := sc.next(2 * g.limits().ConnectTimeout)
		if err != nil {
			return false, fmt.Errorf("wait for db:verify answer from %s: %w", originating, err)
		}
		if el.Space != xmlstream.NSDialback || el.Local != "verify" {
			continue // e.g. a stray element; only our answer matters
		}
		if el.ID != streamID || !strings.EqualFold(el.From, originating) || !strings.EqualFold(el.To, receiving) {
			return false, fmt.Errorf("db:verify answer from %s does not match the request", originating)
		}
		sc.closeStream()
		switch el.Type {
		case "valid":
			return true, nil
		case "invalid":
			return false, nil
		default:
			return false, fmt.Errorf("%s answered db:verify with type %q", originating, el.Type)
		}
	}
}

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// rawPeer is a hand-driven s2s peer: it connects to one of the gateway's
// STARTTLS listeners claiming a domain, upgrades to TLS with a
// certificate of its own and authenticates by SASL EXTERNAL, then sends
// whatever bytes a test gives it: stanzas no real server would write
// (CDATA, unprepared JIDs, floods). It records every element the gateway
// sends back.
type rawPeer struct {
	t      testing.TB
	domain string // the domain it claims
	to     string // the domain its stream is for
	conn   net.Conn
	r      *xmlstream.Reader

	mu       sync.Mutex
	received []string // raw elements the gateway sent after authentication
	ended    error    // why the read loop stopped
	done     chan struct{}
	reading  bool // the read loop runs (after authentication)
}

// rawPeerTimeout bounds each step of the raw peer's negotiation.
const rawPeerTimeout = 15 * time.Second

// dialRawPeer authenticates domain to the gateway's outside STARTTLS
// listener with certPEM/keyPEM (issued by the CA the gateway trusts) and
// returns the peer, ready to send stanzas. It is closed by t.Cleanup.
func dialRawPeer(t testing.TB, domain string, certPEM, keyPEM []byte, roots *x509.CertPool) *rawPeer {
	t.Helper()
	return dialRawPeerAt(t, net.JoinHostPort(GatewayOutsideIP, fmt.Sprint(S2SPort)), domain, CompanyDomain, certPEM, keyPEM, roots)
}

// dialRawPeerAt is dialRawPeer on any listener: addr, claiming domain, for
// a stream to to (the inside listener takes company.test → a remote
// domain). A nil roots skips the verification of the gateway's
// certificate (an attacker does not care).
func dialRawPeerAt(t testing.TB, addr, domain, to string, certPEM, keyPEM []byte, roots *x509.CertPool) *rawPeer {
	t.Helper()
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", addr, rawPeerTimeout)
	if err != nil {
		t.Fatalf("raw peer: connect to the gateway: %v", err)
	}
	p := &rawPeer{t: t, domain: domain, to: to, conn: c, r: xmlstream.NewReader(c, xmlstream.Limits{}), done: make(chan struct{})}
	t.Cleanup(p.close)
	c.SetDeadline(time.Now().Add(rawPeerTimeout))
	p.features() // the first stream: STARTTLS is offered
	p.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if el := p.next(); el.Local != "proceed" {
		t.Fatalf("raw peer: STARTTLS answered with <%s>", el.Local)
	}
	tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, InsecureSkipVerify: roots == nil, ServerName: to, MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("raw peer: TLS handshake: %v", err)
	}
	p.conn = tc
	p.r.Reset(tc)
	if f := p.features(); !strings.Contains(f, "EXTERNAL") {
		t.Fatalf("raw peer: SASL EXTERNAL not offered after TLS (is the certificate valid for %s?): %s", domain, f)
	}
	p.write("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
	if el := p.next(); el.Local != "success" {
		t.Fatalf("raw peer: SASL EXTERNAL answered with <%s>", el.Local)
	}
	p.r.Restart()
	p.features()
	tc.SetDeadline(time.Time{})
	p.reading = true
	go p.readLoop()
	return p
}

// features opens a stream and returns the raw features element.
func (p *rawPeer) features() string {
	p.t.Helper()
	p.write("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='" +
		p.domain + "' to='" + p.to + "' version='1.0'>")
	if _, err := p.r.ReadHeader(); err != nil {
		p.t.Fatalf("raw peer: stream header: %v", err)
	}
	el := p.next()
	if el.Local != "features" {
		p.t.Fatalf("raw peer: expected features, got <%s>", el.Local)
	}
	return string(el.Raw)
}

func (p *rawPeer) next() xmlstream.Element {
	p.t.Helper()
	el, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("raw peer: reading from the gateway: %v", err)
	}
	return el
}

func (p *rawPeer) write(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatalf("raw peer: write: %v", err)
	}
}

// send writes one stanza (or any bytes) on the authenticated stream.
func (p *rawPeer) send(s string) { p.t.Helper(); p.write(s) }

func (p *rawPeer) readLoop() {
	defer close(p.done)
	for {
		el, err := p.r.Next()
		if err != nil {
			p.mu.Lock()
			p.ended = err
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		p.received = append(p.received, string(el.Raw))
		p.mu.Unlock()
	}
}

// alive reports whether the stream is still open (the gateway has not
// closed it).
func (p *rawPeer) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *rawPeer) close() {
	p.conn.Close()
	if !p.reading {
		return
	}
	select {
	case <-p.done:
	case <-time.After(rawPeerTimeout):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended != nil && !errors.Is(p.ended, net.ErrClosed) && !errors.Is(p.ended, io.EOF) && !errors.Is(p.ended, xmlstream.ErrStreamEnd) {
		p.t.Logf("raw peer %s: stream ended: %v", p.domain, p.ended)
	}
}

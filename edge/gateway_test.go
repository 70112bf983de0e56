package edge

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// These tests drive the gateway with scripted peers over loopback TCP. The
// peers are fakes (the end-to-end suite in edge/e2e uses real servers);
// what is tested is the gateway's side of each exchange.

const testSecret = "test-secret-for-dialback"

// fakeResolver maps domains to loopback addresses.
type fakeResolver struct {
	mu      sync.Mutex
	targets map[string][]resolve.Target
}

func (r *fakeResolver) set(domain, addr string, directTLS bool) {
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets[domain] = []resolve.Target{{Host: host, Port: uint16(p), DirectTLS: directTLS}}
}

func (r *fakeResolver) LookupS2S(ctx context.Context, domain string) ([]resolve.Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.targets[domain]
	if !ok {
		return nil, fmt.Errorf("%s: %w", domain, resolve.ErrNotFound)
	}
	return t, nil
}

func (r *fakeResolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", host, resolve.ErrNotFound)
	}
	return []netip.Addr{a}, nil
}

type testEnv struct {
	gw       *Gateway
	inside   string // inside listener address
	outside  string // outside STARTTLS listener
	res      *fakeResolver
	ca       *certstest.CA
	caPool   string // CA file
	internal *fakeServer
	pol      *fakePolicy
	aud      *fakeAuditor
}

// fakePolicy refuses the domains in deny and the stanzas whose body or
// subject contains denyBody.
type fakePolicy struct {
	mu          sync.Mutex
	deny        map[string]bool
	denyBody    string
	dryRun      bool            // deny as a dry-run policy does: allowed, marked would-deny
	requireCert map[string]bool // domains whose sessions require certificate authentication
	strip       []policy.Child  // children every allowed stanza loses
}

func (p *fakePolicy) setDeny(domain string, on bool) {
	p.mu.Lock()
	p.deny[domain] = on
	p.mu.Unlock()
}

func (p *fakePolicy) DecideSession(ctx context.Context, in *policy.SessionInput) policy.SessionDecision {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deny[in.RemoteDomain] {
		return policy.SessionDecision{Allow: false, Reason: in.RemoteDomain + " is not a partner", Revision: "r1"}
	}
	if p.requireCert[in.RemoteDomain] {
		return policy.SessionDecision{Allow: true, Require: []string{"certificate"}, Revision: "r1"}
	}
	return policy.SessionDecision{Allow: true, Revision: "r1"}
}

func (p *fakePolicy) DecideStanza(ctx context.Context, in *policy.StanzaInput) policy.StanzaDecision {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.denyBody != "" && (strings.Contains(in.Body, p.denyBody) || strings.Contains(in.Subject, p.denyBody)) {
		return policy.StanzaDecision{Allow: p.dryRun, WouldDeny: p.dryRun, Reason: "confidential content", Audit: policy.AuditFull, Revision: "r1"}
	}
	return policy.StanzaDecision{Allow: true, Audit: policy.AuditMeta, Revision: "r1", Strip: p.strip}
}

func (p *fakePolicy) NeedsContent() bool      { return true }
func (p *fakePolicy) NeedsPayloadFacts() bool { return true }

// shippedRules loads the shipped rules (rules/) with data as their
// partners.yaml: the real policy, where a test needs the Rego's own
// decisions rather than fakePolicy's.
func shippedRules(t testing.TB, data string) *policy.Engine {
	t.Helper()
	partners := filepath.Join(t.TempDir(), "partners.yaml")
	if err := os.WriteFile(partners, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	eng, err := policy.New(context.Background(), policy.Config{Rules: "../rules", Data: []string{partners}})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// fakeAuditor keeps records in memory; failing makes every call fail,
// notDurable only WaitDurable (records are accepted, never stored: a
// replicated log that lost its quorum).
type fakeAuditor struct {
	mu         sync.Mutex
	records    []audit.Record
	failing    bool
	notDurable bool
}

func (a *fakeAuditor) Append(r *audit.Record) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failing {
		return 0, errors.New("disk full")
	}
	a.records = append(a.records, *r)
	return uint64(len(a.records)), nil
}

func (a *fakeAuditor) WaitDurable(ctx context.Context, seq uint64) error {
	a.mu.Lock()
	notDurable := a.notDurable
	a.mu.Unlock()
	if notDurable {
		return errors.New("no quorum")
	}
	return a.Healthy()
}

func (a *fakeAuditor) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failing {
		return errors.New("disk full")
	}
	return nil
}

func (a *fakeAuditor) Close() error { return nil }

func (a *fakeAuditor) setFailing(on bool) {
	a.mu.Lock()
	a.failing = on
	a.mu.Unlock()
}

// find returns the records with event and decision.
func (a *fakeAuditor) find(event, decision string) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Record
	for _, r := range a.records {
		if r.Event == event && r.Decision == decision {
			out = append(out, r)
		}
	}
	return out
}

func newTestEnv(t testing.TB, mods ...func(*Options)) *testEnv {
	t.Helper()
	dir := t.TempDir()
	ca, err := certstest.NewCA("xmppedge test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{"company.test"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, kf, err := certstest.WriteFiles(dir, "company.test", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := certs.LoadStore([]certs.KeyPairFiles{{CertFile: cf, KeyFile: kf}})
	if err != nil {
		t.Fatal(err)
	}
	ver, err := certs.NewVerifier([]string{caFile}, false)
	if err != nil {
		t.Fatal(err)
	}
	internal := startFakeServer(t, "company.test")
	res := &fakeResolver{targets: map[string][]resolve.Target{}}
	pol := &fakePolicy{deny: map[string]bool{}}
	aud := &fakeAuditor{}
	opt := Options{
		Domains: []string{"company.test"},
		Inside: InsideOptions{
			Listen: []string{"127.0.0.1:0"},
			Server: internal.addr(),
			Allow:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		},
		Outside: OutsideOptions{
			Listen:     []string{"127.0.0.1:0"},
			RequireTLS: true,
			Resolver:   res,
		},
		Certificates:   store,
		Verifier:       ver,
		DialbackSecret: testSecret,
		Policy:         pol,
		Audit:          aud,
		Limits:         Limits{ConnectTimeout: 3 * time.Second},
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mods {
		m(&opt)
	}
	gw, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	addrs := gw.Addrs()
	return &testEnv{gw: gw, inside: addrs[0].String(), outside: addrs[1].String(), res: res, ca: ca, caPool: caFile, internal: internal, pol: pol, aud: aud}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// peer is a scripted remote end of a stream.
type peer struct {
	t    testing.TB
	conn net.Conn
	r    *xmlstream.Reader
	hdr  xmlstream.Header
}

func dialPeer(t testing.TB, addr string) *peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &peer{t: t, conn: c, r: xmlstream.NewReader(c, xmlstream.Limits{})}
}

func (p *peer) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.conn, s); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// open sends a stream header and reads the answer header and features.
func (p *peer) open(from, to string) *xmlstream.Node {
	p.t.Helper()
	p.send(fmt.Sprintf("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>", from, to))
	h, err := p.r.ReadHeader()
	if err != nil {
		p.t.Fatalf("read header: %v", err)
	}
	p.hdr = h
	el, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("read features: %v", err)
	}
	n, err := xmlstream.ParseNode(el.Raw, h.Namespaces)
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// next returns the next element's raw bytes.
func (p *peer) next() string {
	p.t.Helper()
	el, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return string(el.Raw)
}

// expectStreamError reads until a stream error and checks its condition
// and that the gateway closes the connection.
func (p *peer) expectStreamError(cond string) {
	p.t.Helper()
	if p.hdr.Namespaces == nil {
		h, err := p.r.ReadHeader()
		if err != nil {
			p.t.Fatalf("want stream error %s, got no stream header: %v", cond, err)
		}
		p.hdr = h
	}
	var seen []string
	for {
		el, err := p.r.Next()
		if err != nil {
			p.t.Fatalf("want stream error %s, got %q then %v", cond, seen, err)
		}
		seen = append(seen, string(el.Raw))
		if el.Space != xmlstream.NSStream || el.Local != "error" {
			continue
		}
		n, err := xmlstream.ParseNode(el.Raw, p.hdr.Namespaces)
		if err != nil {
			p.t.Fatal(err)
		}
		if n.Child(xmlstream.NSStreams, cond) == nil {
			p.t.Fatalf("want stream error %s, got %q", cond, el.Raw)
		}
		break
	}
	if _, err := p.r.Next(); err != xmlstream.ErrStreamEnd {
		p.t.Fatalf("stream error not followed by </stream:stream>: %v", err)
	}
	if _, err := p.conn.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		p.t.Fatalf("connection not closed after the stream error: %v", err)
	}
}

// startTLS upgrades the peer's stream and reopens it.
func (p *peer) startTLS(from, to string) *xmlstream.Node {
	p.t.Helper()
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if got := p.next(); !strings.Contains(got, "proceed") {
		p.t.Fatalf("want proceed, got %q", got)
	}
	tc := tls.Client(p.conn, &tls.Config{InsecureSkipVerify: true, ServerName: to})
	if err := tc.Handshake(); err != nil {
		p.t.Fatal(err)
	}
	p.conn = tc
	p.r.Reset(tc)
	return p.open(from, to)
}

// fakeServer is a minimal XMPP server that accepts every dialback key
// (receiving role), answers db:verify with verify(), and records stanzas.
type fakeServer struct {
	t       testing.TB
	ln      net.Listener
	tlsConf *tls.Config // direct TLS when set
	domain  string
	stanzas chan string
	mu      sync.Mutex
	verify  func(from, to, id, key string) bool
	accepts atomic.Int32 // connections accepted

	bidi     bool // offer XEP-0288 (set before use)
	bidiMu   sync.Mutex
	bidiConn net.Conn // the last stream the gateway asked to use both ways
	lastConn net.Conn // the last stream opened to it
}

// lockedConn serialises writes: the fake server's reader and a test
// sending back on a bidirectional stream share it.
type lockedConn struct {
	net.Conn
	mu sync.Mutex
}

func (c *lockedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(b)
}

// sendBack writes s on the stream the gateway asked to use both ways
// (any: on the last stream opened to it, asked or not).
func (f *fakeServer) sendBack(t testing.TB, s string, any bool) {
	t.Helper()
	f.bidiMu.Lock()
	c := f.bidiConn
	if any {
		c = f.lastConn
	}
	f.bidiMu.Unlock()
	if c == nil {
		t.Fatal("the gateway did not ask for a bidirectional stream")
	}
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

// askedBidi reports whether a stream was asked to be used both ways.
func (f *fakeServer) askedBidi() bool {
	f.bidiMu.Lock()
	defer f.bidiMu.Unlock()
	return f.bidiConn != nil
}

// connections is how many connections the server accepted.
func (f *fakeServer) connections() int { return int(f.accepts.Load()) }

func startFakeServer(t testing.TB, domain string) *fakeServer {
	return startFakeServerTLS(t, domain, nil)
}

func startFakeServerTLS(t testing.TB, domain string, tc *tls.Config) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, domain: domain, stanzas: make(chan string, 1000), tlsConf: tc}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepts.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) setVerify(fn func(from, to, id, key string) bool) {
	f.mu.Lock()
	f.verify = fn
	f.mu.Unlock()
}

func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if f.tlsConf != nil {
		c = tls.Server(c, f.tlsConf)
	}
	c = &lockedConn{Conn: c}
	f.bidiMu.Lock()
	f.lastConn = c
	f.bidiMu.Unlock()
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		return
	}
	bidi := ""
	if f.bidi {
		bidi = "<bidi xmlns='urn:xmpp:features:bidi'/>"
	}
	fmt.Fprintf(c, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>%s</stream:features>", h.To, h.From, dialback.NewStreamID(), bidi)
	for {
		el, err := r.Next()
		if err != nil {
			io.WriteString(c, "</stream:stream>")
			return
		}
		n, _ := xmlstream.ParseNode(el.Raw, h.Namespaces)
		switch {
		case el.Local == "result" && el.Type == "":
			fmt.Fprintf(c, "<db:result from='%s' to='%s' type='valid'/>", el.To, el.From)
		case el.Local == "verify" && el.Type == "":
			f.mu.Lock()
			ok := f.verify != nil && f.verify(el.From, el.To, el.ID, n.Text)
			f.mu.Unlock()
			typ := "invalid"
			if ok {
				typ = "valid"
			}
			fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='%s'/>", el.To, el.From, el.ID, typ)
		case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
			f.stanzas <- string(el.Raw)
		case el.Local == "bidi" && el.Space == "urn:xmpp:bidi":
			f.bidiMu.Lock()
			f.bidiConn = c
			f.bidiMu.Unlock()
		}
	}
}

func (f *fakeServer) expectStanza(t testing.TB, contains ...string) string {
	t.Helper()
	select {
	case s := <-f.stanzas:
		for _, c := range contains {
			if !strings.Contains(s, c) {
				t.Fatalf("stanza %q does not contain %q", s, c)
			}
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("no stanza arrived (want one containing %q)", contains)
	}
	return ""
}

func TestStreamErrors(t *testing.T) {
	env := newTestEnv(t)
	hdr := func(from, to string) string {
		return fmt.Sprintf("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' version='1.0'>", from, to)
	}
	tests := []struct {
		name   string
		listen func(*testEnv) string
		input  string
		cond   string
	}{
		{"not well-formed", (*testEnv).outsideAddr, hdr("partner.test", "company.test") + "<message><body></message>", "not-well-formed"},
		{"comment", (*testEnv).outsideAddr, hdr("partner.test", "company.test") + "<!-- hi -->", "restricted-xml"},
		{"doctype in element", (*testEnv).outsideAddr, hdr("partner.test", "company.test") + "<message><!DOCTYPE x></message>", "restricted-xml"},
		{"entity", (*testEnv).outsideAddr, hdr("partner.test", "company.test") + "<message to='&xxe;'/>", "restricted-xml"},
		{"client namespace", (*testEnv).outsideAddr, "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='company.test' version='1.0'>", "invalid-namespace"},
		{"wrong stream namespace", (*testEnv).outsideAddr, "<stream:stream xmlns='jabber:server' xmlns:stream='urn:bogus' to='company.test' version='1.0'>", "invalid-namespace"},
		{"outside to a foreign domain", (*testEnv).outsideAddr, hdr("partner.test", "elsewhere.test"), "host-unknown"},
		{"inside to a local domain", (*testEnv).insideAddr, hdr("company.test", "company.test"), "host-unknown"},
		{"dialback before TLS when TLS is required", (*testEnv).outsideAddr, hdr("partner.test", "company.test") + "<db:result from='partner.test' to='company.test'>abc</db:result>", "policy-violation"},
		{"stanza before authentication", (*testEnv).insideAddr, hdr("company.test", "partner.test") + "<message from='a@company.test' to='b@partner.test'/>", "not-authorized"},
		{"unsolicited dialback result", (*testEnv).insideAddr, hdr("company.test", "partner.test") + "<db:result from='company.test' to='partner.test' type='valid'/>", "not-authorized"},
		{"stanza without from", (*testEnv).insideAddr, hdr("company.test", "partner.test") + "<message to='b@partner.test'/>", "improper-addressing"},
		{"unknown top-level element", (*testEnv).insideAddr, hdr("company.test", "partner.test") + "<foo xmlns='urn:x'/>", "unsupported-stanza-type"},
		{"too big", (*testEnv).insideAddr, hdr("company.test", "partner.test") + "<message><body>" + strings.Repeat("a", 600<<10) + "</body></message>", "policy-violation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialPeer(t, tt.listen(env))
			p.send(tt.input)
			p.expectStreamError(tt.cond)
		})
	}
}

// tlsConfig is a server TLS config with a certificate for domain from the
// test CA.
func (e *testEnv) tlsConfig(t testing.TB, domain string) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := e.ca.Issue(certstest.LeafOptions{DNSNames: []string{domain}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"xmpp-server"}}
}

func (e *testEnv) outsideAddr() string { return e.outside }
func (e *testEnv) insideAddr() string  { return e.inside }

// Data sent in the same packet as <starttls/> must not be read as if it had
// come over TLS.
func TestStartTLSInjection(t *testing.T) {
	env := newTestEnv(t)
	p := dialPeer(t, env.outside)
	f := p.open("partner.test", "company.test")
	if f.Child(xmlstream.NSTLS, "starttls") == nil {
		t.Fatal("STARTTLS not offered")
	}
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><db:result from='partner.test' to='company.test'>k</db:result>")
	p.expectStreamError("policy-violation")
}

func TestOutsideFeatures(t *testing.T) {
	env := newTestEnv(t)
	p := dialPeer(t, env.outside)
	f := p.open("partner.test", "company.test")
	st := f.Child(xmlstream.NSTLS, "starttls")
	if st == nil || st.Child(xmlstream.NSTLS, "required") == nil {
		t.Fatalf("want <starttls><required/></starttls>, got %+v", f)
	}
	if f.Child(xmlstream.NSDialbackFeature, "dialback") != nil {
		t.Fatal("dialback offered before TLS although TLS is required")
	}
	f = p.startTLS("partner.test", "company.test")
	if f.Child(xmlstream.NSDialbackFeature, "dialback") == nil {
		t.Fatal("dialback not offered after TLS")
	}
	if f.Child(xmlstream.NSSASL, "mechanisms") != nil {
		t.Fatal("SASL EXTERNAL offered to a peer without a certificate")
	}
}

// The authoritative role: any listener answers db:verify for keys this
// deployment issued, and only for its own side's domains.
func TestDialbackVerifyAnswers(t *testing.T) {
	env := newTestEnv(t)
	t.Run("outside, key for a local domain", func(t *testing.T) {
		p := dialPeer(t, env.outside)
		p.open("partner.test", "company.test")
		p.startTLS("partner.test", "company.test")
		good := dialback.Key(testSecret, "partner.test", "company.test", "S1")
		p.send("<db:verify from='partner.test' to='company.test' id='S1'>" + good + "</db:verify>")
		if got := p.next(); !strings.Contains(got, "type='valid'") || !strings.Contains(got, "id='S1'") {
			t.Fatalf("good key: %q", got)
		}
		p.send("<db:verify from='partner.test' to='company.test' id='S2'>" + good + "</db:verify>")
		if got := p.next(); !strings.Contains(got, "type='invalid'") {
			t.Fatalf("key for another stream id: %q", got)
		}
	})
	t.Run("inside does not answer for local domains", func(t *testing.T) {
		p := dialPeer(t, env.inside)
		p.open("company.test", "partner.test")
		key := dialback.Key(testSecret, "partner.test", "company.test", "S1")
		p.send("<db:verify from='partner.test' to='company.test' id='S1'>" + key + "</db:verify>")
		if got := p.next(); !strings.Contains(got, "type='invalid'") {
			t.Fatalf("inside leg answered for a local domain: %q", got)
		}
		key = dialback.Key(testSecret, "company.test", "partner.test", "S3")
		p.send("<db:verify from='company.test' to='partner.test' id='S3'>" + key + "</db:verify>")
		if got := p.next(); !strings.Contains(got, "type='valid'") {
			t.Fatalf("inside leg refused a key it issued for partner.test: %q", got)
		}
	})
}

// Several domain pairs on one stream, each verified on its own; a wrong
// key for an additional pair is a dialback error and the stream stays.
func TestDialbackMultiplexing(t *testing.T) {
	env := newTestEnv(t)
	env.internal.setVerify(func(from, to, id, key string) bool {
		return key == "key-"+from // from = the receiving domain we stand in for
	})
	p := dialPeer(t, env.inside)
	p.open("company.test", "partner.test")
	p.send("<db:result from='company.test' to='partner.test'>key-partner.test</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") || !strings.Contains(got, "from='partner.test'") {
		t.Fatalf("first pair: %q", got)
	}
	p.send("<db:result from='company.test' to='other.test'>key-other.test</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") || !strings.Contains(got, "from='other.test'") {
		t.Fatalf("second pair: %q", got)
	}
	p.send("<db:result from='company.test' to='third.test'>wrong</db:result>")
	got := p.next()
	if !strings.Contains(got, "type='error'") || !strings.Contains(got, "<forbidden") {
		t.Fatalf("wrong key with other pairs verified: want a forbidden dialback error, got %q", got)
	}
	// The stream is still up: a stanza for a verified pair is accepted
	// (it will bounce later: other.test has no server; that is another test).
	p.send("<iq type='result' id='x' from='company.test' to='other.test'/>")
	p.send("<db:result from='company.test' to='third.test'>wrong</db:result>")
	if got := p.next(); !strings.Contains(got, "type='error'") {
		t.Fatalf("stream should have stayed open: %q", got)
	}
}

func TestDialbackInvalidKeyClosesStream(t *testing.T) {
	env := newTestEnv(t)
	env.internal.setVerify(func(from, to, id, key string) bool { return false })
	p := dialPeer(t, env.inside)
	p.open("company.test", "partner.test")
	p.send("<db:result from='company.test' to='partner.test'>bad</db:result>")
	if got := p.next(); !strings.Contains(got, "type='invalid'") {
		t.Fatalf("want type='invalid', got %q", got)
	}
	p.expectStreamError("not-authorized")
}

// A stanza to a domain whose server cannot be reached comes back to its
// sender as remote-server-not-found, through an inside stream that the
// gateway opens (and authenticates by dialback) to the internal server.
func TestBounceUnreachable(t *testing.T) {
	env := newTestEnv(t)
	env.internal.setVerify(func(from, to, id, key string) bool { return true })
	env.res.set("down.test", "127.0.0.1:1", false) // nothing listens on port 1
	p := dialPeer(t, env.inside)
	p.open("company.test", "down.test")
	p.send("<db:result from='company.test' to='down.test'>k</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	p.send("<message from='alice@company.test/r' to='bob@down.test' id='m1' type='chat'><body>hello</body></message>")
	p.send("<message from='alice@company.test/r' to='bob@down.test' id='m2' type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>")
	p.send("<message from='alice@company.test/r' to='bob@down.test' id='m3'><body>again</body></message>")
	env.internal.expectStanza(t, "id='m1'", "type='error'", "<remote-server-not-found", "from='bob@down.test'", "to='alice@company.test/r'")
	got := env.internal.expectStanza(t, "type='error'", "<remote-server-not-found")
	if !strings.Contains(got, "id='m3'") {
		t.Fatalf("the error stanza m2 must not be answered; got %q", got)
	}
	select {
	case s := <-env.internal.stanzas:
		t.Fatalf("unexpected stanza: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// Without TLS on the remote side and require_tls, nothing is relayed in
// clear: the stanza bounces.
func TestRelayRefusesCleartext(t *testing.T) {
	env := newTestEnv(t)
	env.internal.setVerify(func(from, to, id, key string) bool { return true })
	partner := startFakeServer(t, "partner.test")
	env.res.set("partner.test", partner.addr(), false)
	p := dialPeer(t, env.inside)
	p.open("company.test", "partner.test")
	p.send("<db:result from='company.test' to='partner.test'>k</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='m0'><body>secret</body></message>")
	got := env.internal.expectStanza(t, "id='m0'", "type='error'", "remote-server-timeout")
	if strings.Contains(got, "<body>") {
		t.Fatalf("a bounce must not echo the body: %q", got)
	}
	select {
	case s := <-partner.stanzas:
		t.Fatalf("stanza relayed in clear: %q", s)
	default:
	}
}

// A full relay inside → outside over direct TLS (XEP-0368) with dialback:
// every stanza arrives, byte for byte, in order.
func TestRelayOutboundDirectTLS(t *testing.T) {
	env := newTestEnv(t)
	env.internal.setVerify(func(from, to, id, key string) bool { return true })
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := dialPeer(t, env.inside)
	p.open("company.test", "partner.test")
	p.send("<db:result from='company.test' to='partner.test'>k</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	var want []string
	for i := range 200 {
		m := fmt.Sprintf("<message from='alice@company.test/r' to='bob@partner.test' id='m%d' xml:lang='en'><body>n&amp;%d &lt;3</body><x xmlns='urn:example'/></message>", i, i)
		want = append(want, m)
		p.send(m)
	}
	for i, w := range want {
		if got := partner.expectStanza(t); got != w {
			t.Fatalf("stanza %d: got %q, want %q", i, got, w)
		}
	}
	var out *SessionInfo
	for _, s := range env.gw.Sessions() {
		if s.Role == "outgoing" && s.Leg == "outside" {
			out = &s
		}
	}
	if out == nil || out.TLSVersion != "TLS 1.3" || out.Auth != "dialback" || out.PeerCert != "valid" || out.Stanzas != 200 {
		t.Fatalf("outgoing session: %+v", out)
	}
}

// Inbound: a partner connects to the outside listener over STARTTLS and
// authenticates by dialback; the gateway verifies the key with the
// partner's authoritative server (found by SRV) and relays to the
// internal server.
func TestRelayInbound(t *testing.T) {
	env := newTestEnv(t)
	// The authority must speak TLS too (require_tls covers the streams
	// that verify keys).
	authority := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	authority.setVerify(func(from, to, id, key string) bool {
		return from == "company.test" && to == "partner.test" && key == "partner-key"
	})
	env.res.set("partner.test", authority.addr(), true)
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	p.startTLS("partner.test", "company.test")
	p.send("<db:result from='partner.test' to='company.test'>partner-key</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	p.send("<message from='bob@partner.test/x' to='alice@company.test' id='in1'><body>hi alice</body></message>")
	env.internal.expectStanza(t, "id='in1'", "<body>hi alice</body>")
	// A from that was not authenticated on this stream is refused.
	p.send("<message from='mallory@evil.test' to='alice@company.test' id='in2'/>")
	p.expectStreamError("invalid-from")
}

// authedInside opens an inside stream authenticated for company.test →
// remote (the fake internal server vouches for every key).
func authedInside(t testing.TB, env *testEnv, remote string) *peer {
	t.Helper()
	env.internal.setVerify(func(from, to, id, key string) bool { return true })
	p := dialPeer(t, env.inside)
	p.open("company.test", remote)
	p.send("<db:result from='company.test' to='" + remote + "'>k</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("dialback: %q", got)
	}
	return p
}

// A domain the policy refuses gets a policy-violation stream error before
// any key is verified, and the refusal is audited.
func TestPolicyRefusesSession(t *testing.T) {
	env := newTestEnv(t)
	env.pol.setDeny("evil.test", true)
	verified := false
	env.internal.setVerify(func(from, to, id, key string) bool { verified = true; return true })
	p := dialPeer(t, env.inside)
	p.open("company.test", "evil.test")
	p.send("<db:result from='company.test' to='evil.test'>k</db:result>")
	p.expectStreamError("policy-violation")
	if recs := env.aud.find("session.auth", "deny"); len(recs) != 1 || recs[0].RemoteDomain != "evil.test" || recs[0].Direction != "outbound" {
		t.Fatalf("audit: %+v", recs)
	}
	if verified {
		t.Fatal("the key of a refused domain was verified anyway")
	}
}

// A stanza the policy refuses is bounced to its sender with
// policy-violation and the reason, never relayed, and audited in full.
func TestPolicyRefusesStanza(t *testing.T) {
	env := newTestEnv(t)
	env.pol.denyBody = "CONFIDENTIAL"
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := authedInside(t, env, "partner.test")
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='c1'><body>this is CONFIDENTIAL</body></message>")
	// A second body (another xml:lang) is content too.
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='c2'><body xml:lang='en'>fine</body><body xml:lang='de'>CONFIDENTIAL</body></message>")
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='ok1'><body>lunch?</body></message>")
	got := env.internal.expectStanza(t, "id='c1'", "type='error'", "<policy-violation", "confidential content", "to='alice@company.test/r'")
	if strings.Contains(got, "<body>") {
		t.Fatalf("the bounce echoes the body: %q", got)
	}
	env.internal.expectStanza(t, "id='c2'", "type='error'", "<policy-violation")
	partner.expectStanza(t, "id='ok1'")
	select {
	case s := <-partner.stanzas:
		t.Fatalf("partner got %q", s)
	case <-time.After(100 * time.Millisecond):
	}
	deny := env.aud.find("stanza", "deny")
	if len(deny) != 2 || deny[0].ID != "c1" || !strings.Contains(deny[0].Stanza, "CONFIDENTIAL") || deny[0].Direction != "outbound" {
		t.Fatalf("deny record: %+v", deny)
	}
	if b := env.aud.find("stanza", "bounced"); len(b) != 2 || b[0].ID != "c1" {
		t.Fatalf("bounce record: %+v", b)
	}
	if a := env.aud.find("stanza", "allow"); len(a) != 1 || a[0].ID != "ok1" || a[0].Stanza != "" {
		t.Fatalf("allow record: %+v", a)
	}
}

// If the audit log cannot be written nothing crosses: the stanza is
// bounced with internal-server-error.
func TestAuditFailureFailsClosed(t *testing.T) {
	env := newTestEnv(t)
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := authedInside(t, env, "partner.test")
	env.aud.setFailing(true)
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='a1'><body>x</body></message>")
	env.internal.expectStanza(t, "id='a1'", "type='error'", "<internal-server-error")
	select {
	case s := <-partner.stanzas:
		t.Fatalf("relayed without an audit record: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
	// Writing works again: traffic flows again.
	env.aud.setFailing(false)
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='a2'><body>x</body></message>")
	partner.expectStanza(t, "id='a2'")
}

// A record accepted but never stored (the replicated log lost its quorum)
// stops the stanza like a failed write: it is bounced to its sender with
// internal-server-error — and the bounce itself does not wait for the
// record that could not be stored.
func TestAuditNotDurableBounces(t *testing.T) {
	env := newTestEnv(t)
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := authedInside(t, env, "partner.test")
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='d0'><body>x</body></message>")
	partner.expectStanza(t, "id='d0'")
	env.aud.mu.Lock()
	env.aud.notDurable = true
	env.aud.mu.Unlock()
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='d1'><body>x</body></message>")
	env.internal.expectStanza(t, "id='d1'", "type='error'", "<internal-server-error")
	select {
	case s := <-partner.stanzas:
		t.Fatalf("relayed without a stored audit record: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
}

// After a policy reload, a session the new policy refuses is cut with a
// policy-violation stream error; others stay.
func TestRecheckAfterReload(t *testing.T) {
	env := newTestEnv(t)
	p1 := authedInside(t, env, "partner.test")
	p2 := authedInside(t, env, "other.test")
	env.pol.setDeny("other.test", true)
	if n := env.gw.Recheck(); n != 1 {
		t.Fatalf("Recheck closed %d streams, want 1", n)
	}
	p2.expectStreamError("policy-violation")
	p1.send("<db:result from='company.test' to='partner.test'>k</db:result>")
	if got := p1.next(); !strings.Contains(got, "type='valid'") {
		t.Fatalf("the allowed stream was disturbed: %q", got)
	}
}

// A partner whose policy requires certificate authentication, presenting a
// certificate from a CA we do not trust, is not authenticated by its
// certificate (no SASL EXTERNAL), and its dialback is refused by policy;
// the audit record says why.
func TestRequireCertificate(t *testing.T) {
	env := newTestEnv(t)
	env.pol.requireCert = map[string]bool{"partner.test": true}
	other, err := certstest.NewCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.Issue(certstest.LeafOptions{DNSNames: []string{"partner.test"}})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if got := p.next(); !strings.Contains(got, "proceed") {
		t.Fatalf("want proceed, got %q", got)
	}
	tc := tls.Client(p.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "company.test", Certificates: []tls.Certificate{clientCert}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	p.conn = tc
	p.r.Reset(tc)
	f := p.open("partner.test", "company.test")
	if f.Child(xmlstream.NSSASL, "mechanisms") != nil {
		t.Fatal("SASL EXTERNAL offered for a certificate from an untrusted CA")
	}
	p.send("<db:result from='partner.test' to='company.test'>k</db:result>")
	p.expectStreamError("policy-violation")
	recs := env.aud.find("session.auth", "deny")
	if len(recs) != 1 || !strings.Contains(recs[0].Reason, "certificate") || !strings.Contains(recs[0].PeerCert, "unknown authority") {
		t.Fatalf("audit: %+v", recs)
	}
}

// A partner whose certificate does not chain to a trusted root, but whose
// domain delegates to it with POSH (RFC 7711), is authenticated when POSH
// is on; with POSH off the same certificate fails the require-certificate
// policy and the stanza bounces.
func TestPOSHDelegation(t *testing.T) {
	other, err := certstest.NewCA("hosting provider CA (not trusted)")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.Issue(certstest.LeafOptions{DNSNames: []string{"partner.test"}})
	if err != nil {
		t.Fatal(err)
	}
	partnerCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(partnerCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	poshFile := fmt.Sprintf(`{"fingerprints":[{"sha-256":%q}],"expires":3600}`, base64.StdEncoding.EncodeToString(spki[:]))
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != certs.POSHPath || r.Host != "partner.test" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, poshFile)
	}))
	defer web.Close()
	// Every POSH fetch goes to the test web server.
	poshClient := web.Client()
	poshClient.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, web.Listener.Addr().String())
	}
	poshClient.Transport.(*http.Transport).TLSClientConfig.ServerName = "example.com" // httptest's certificate name

	for _, posh := range []bool{true, false} {
		t.Run(fmt.Sprintf("posh=%v", posh), func(t *testing.T) {
			env := newTestEnv(t, func(o *Options) {
				v, err := certs.NewVerifier(nil, false, certs.WithPOSHClient(poshClient))
				if err != nil {
					t.Fatal(err)
				}
				o.Verifier, o.Outside.POSH = v, posh
			})
			env.pol.requireCert = map[string]bool{"partner.test": true}
			partner := startFakeServerTLS(t, "partner.test", &tls.Config{Certificates: []tls.Certificate{partnerCert}})
			env.res.set("partner.test", partner.addr(), true)
			p := authedInside(t, env, "partner.test")
			p.send("<message from='alice@company.test/r' to='bob@partner.test' id='p1'><body>hi</body></message>")
			if posh {
				partner.expectStanza(t, "id='p1'")
				var out *SessionInfo
				for _, s := range env.gw.Sessions() {
					if s.Role == "outgoing" && s.Leg == "outside" {
						out = &s
					}
				}
				if out == nil || out.PeerCert != "valid" {
					t.Fatalf("outgoing session: %+v", out)
				}
				return
			}
			env.internal.expectStanza(t, "id='p1'", "type='error'", "<policy-violation", "unknown authority")
		})
	}
}

// In dry-run the policy's deny lets the stanza through, and the audit log
// records it as would-deny.
func TestDryRun(t *testing.T) {
	env := newTestEnv(t)
	env.pol.denyBody, env.pol.dryRun = "CONFIDENTIAL", true
	partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
	env.res.set("partner.test", partner.addr(), true)
	p := authedInside(t, env, "partner.test")
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='d1'><body>CONFIDENTIAL</body></message>")
	partner.expectStanza(t, "id='d1'")
	if recs := env.aud.find("stanza", "would-deny"); len(recs) != 1 || recs[0].ID != "d1" || recs[0].Reason != "confidential content" {
		t.Fatalf("audit: %+v", recs)
	}
}

// An administrator closes a session by id; the peer gets a stream error
// and the session.close record says who closed it. In a cluster the id
// starts with the node's name (unique in the cluster).
func TestCloseSession(t *testing.T) {
	env := newTestEnv(t, func(o *Options) { o.Node = "edge1" })
	p := authedInside(t, env, "partner.test")
	var id string
	for _, s := range env.gw.Sessions() {
		if s.Role == "incoming" && s.Leg == "inside" {
			id = s.ID
		}
	}
	if !strings.HasPrefix(id, "edge1-in-") {
		t.Fatalf("session id %q does not name the node", id)
	}
	if id == "" || !env.gw.CloseSession(id) {
		t.Fatalf("no incoming inside session to close (id %q)", id)
	}
	if env.gw.CloseSession("in-999999") {
		t.Fatal("closed a session that does not exist")
	}
	p.expectStreamError("policy-violation")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var rec *audit.Record
		for _, r := range env.aud.find("session.close", "") {
			if r.Session == id {
				rec = &r
			}
		}
		if rec != nil {
			if rec.Reason != "closed by an administrator" {
				t.Fatalf("session.close reason %q", rec.Reason)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session.close record")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A reload's new stanza size limit applies to new streams.
func TestSetLimits(t *testing.T) {
	env := newTestEnv(t)
	env.gw.SetLimits(Limits{MaxStanzaSize: 20000})
	if l := env.gw.limits(); l.MaxStanzaSize != 20000 || l.QueueSize != 10000 {
		t.Fatalf("limits after SetLimits: %+v", l)
	}
	p := authedInside(t, env, "partner.test")
	p.send("<message from='alice@company.test/r' to='bob@partner.test'><body>" + strings.Repeat("a", 30000) + "</body></message>")
	p.expectStreamError("policy-violation")
}

// A stream that authenticates nothing (here: it only asks db:verify, over
// and over) is closed once its time runs out.
func TestPreAuthLimit(t *testing.T) {
	env := newTestEnv(t)
	env.gw.setPreAuthLimit(300 * time.Millisecond)
	p := dialPeer(t, env.inside)
	p.open("company.test", "partner.test")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		key := dialback.Key(testSecret, "company.test", "partner.test", "S1")
		if _, err := io.WriteString(p.conn, "<db:verify from='company.test' to='partner.test' id='S1'>"+key+"</db:verify>"); err != nil {
			break
		}
		el, err := p.r.Next()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if el.Space == xmlstream.NSStream && el.Local == "error" {
			if !strings.Contains(string(el.Raw), "<connection-timeout") {
				t.Fatalf("want connection-timeout, got %q", el.Raw)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the stream was not closed")
}

package edge

// Certificates as issued in 2026 (issue 13 items 3 and 4): since February
// 2026 Let's Encrypt certificates carry only the serverAuth extended key
// usage. A partner presenting one as its TLS client certificate
// authenticates by SASL EXTERNAL; a partner that refuses ours — SASL
// EXTERNAL <failure/>, or its TLS handshake refusing our client
// certificate — gets dialback instead (on the same stream, or on a new
// connection when it ended the stream), logged, audited and counted,
// unless the policy requires certificate authentication. Every outgoing
// TLS handshake names the target domain (A-label form) in SNI.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// serverAuthOnlyCert is a certificate for domain from ca with only the
// serverAuth extended key usage, as issued in 2026.
func serverAuthOnlyCert(t testing.TB, ca *certstest.CA, domain string) (tls.Certificate, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{domain}, ServerAuthOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Fatalf("extended key usage %v, want serverAuth only", leaf.ExtKeyUsage)
	}
	return c, certPEM, keyPEM
}

// A peer whose certificate has only the serverAuth usage is offered SASL
// EXTERNAL, authenticates by it in the receiving role, on both legs and
// over TLS 1.2 and 1.3, and its stanzas are relayed; the session's audit
// record says sasl_external with a valid certificate.
func TestServerAuthOnlyPeerAuthenticatesBySASLExternal(t *testing.T) {
	tests := []struct {
		name       string
		leg        Leg
		maxVersion uint16
	}{
		{"outside, TLS 1.3", LegOutside, tls.VersionTLS13},
		{"outside, TLS 1.2", LegOutside, tls.VersionTLS12},
		{"inside, TLS 1.3", LegInside, tls.VersionTLS13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ica, _, err := certs.LoadOrCreateInternalCA(filepath.Join(t.TempDir(), "ica.crt"), filepath.Join(t.TempDir(), "ica.key"))
			if err != nil {
				t.Fatal(err)
			}
			env := newTestEnv(t, func(o *Options) { o.Inside.TLS, o.Inside.CA = TLSOptional, ica })
			from, to, addr := "partner.test", "company.test", env.outside
			// Where the stanza goes: the internal server, or partner.test's.
			dest := env.internal.stanzas
			if tt.leg == LegInside {
				from, to, addr = "company.test", "partner.test", env.inside
				partner := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{})
				env.res.setTargets("partner.test", partner.target())
				dest = partner.stanzas
			}
			cert, _, _ := serverAuthOnlyCert(t, env.ca, from)
			p := dialPeer(t, addr)
			p.open(from, to)
			p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
			if got := p.next(); !strings.Contains(got, "<proceed") {
				t.Fatalf("want <proceed/>, got %q", got)
			}
			tc := tls.Client(p.conn, &tls.Config{InsecureSkipVerify: true, ServerName: to, MaxVersion: tt.maxVersion, Certificates: []tls.Certificate{cert}})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			if v := tc.ConnectionState().Version; v != tt.maxVersion {
				t.Fatalf("negotiated %s, want %s", tls.VersionName(v), tls.VersionName(tt.maxVersion))
			}
			p.conn = tc
			p.r.Reset(tc)
			if f := p.open(from, to); !offersExternal(f) {
				t.Fatalf("SASL EXTERNAL not offered for a serverAuth-only certificate: %+v", f)
			}
			saslAuth(t, p)
			if f := p.open(from, to); f.Child(xmlstream.NSSASL, "mechanisms") != nil {
				t.Fatal("SASL offered again after it succeeded")
			}
			p.send("<message from='someone@" + from + "/x' to='someone@" + to + "' id='eku1'><body>hi</body></message>")
			waitStanza(t, dest, "id='eku1'")
			var in []string
			for _, s := range env.gw.Sessions() {
				if s.Leg == tt.leg.String() && s.Role == "incoming" {
					in = append(in, s.Auth+" "+s.PeerCert)
				}
			}
			if !slices.Equal(in, []string{"sasl_external valid"}) {
				t.Errorf("incoming sessions on the %s leg: %q, want one by sasl_external with a valid certificate", tt.leg, in)
			}
			// The audit record of the pair (on the inside leg it describes
			// the outbound session to come: no authentication yet).
			want, remote := "sasl_external valid", from
			if tt.leg == LegInside {
				want, remote = " ", to
			}
			var auth []string
			for _, r := range env.aud.find("session.auth", "allow") {
				if r.Leg == tt.leg.String() && r.RemoteDomain == remote {
					auth = append(auth, r.Auth+" "+r.PeerCert)
				}
			}
			if !slices.Equal(auth, []string{want}) {
				t.Errorf("session.auth records of %s on the %s leg: %q, want [%q]", remote, tt.leg, auth, want)
			}
		})
	}
}

// A peer with a serverAuth-only certificate whose SASL EXTERNAL fails
// twice (an authorization identity that is not its domain) stays
// unauthenticated: its stanza is refused with not-authorized and nothing
// reaches the internal server.
func TestServerAuthOnlyPeerFailsSASLTwice(t *testing.T) {
	env := newTestEnv(t)
	cert, _, _ := serverAuthOnlyCert(t, env.ca, "partner.test")
	p := dialPeer(t, env.outside)
	p.open("partner.test", "company.test")
	upgradeTLS(t, p, &cert)
	if f := p.open("partner.test", "company.test"); !offersExternal(f) {
		t.Fatalf("SASL EXTERNAL not offered: %+v", f)
	}
	for _, authzid := range []string{"evil.test", "company.test"} {
		p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(authzid)) + "</auth>")
		expectSASLFailure(t, p, "invalid-authzid")
	}
	p.send("<message from='bob@partner.test/x' to='alice@company.test' id='twice'><body>hi</body></message>")
	expectStreamErrorApp(t, p, "not-authorized", "")
	select {
	case s := <-env.internal.stanzas:
		t.Fatalf("the internal server received %q", s)
	case <-time.After(200 * time.Millisecond):
	}
	if r := env.aud.find("session.auth", "allow"); len(r) != 0 {
		t.Fatalf("sessions authorised: %+v", r)
	}
}

// ---------------------------------------------------------------------------
// a partner's server that refuses our certificate

// refusal is how a certServer treats our certificate.
type refusal struct {
	tlsRefuses bool   // its TLS handshake refuses a client certificate without the clientAuth usage
	maxVersion uint16 // of its TLS (0: TLS 1.3)
	noDialback bool   // its features offer no dialback
	// afterFailure is what follows its SASL EXTERNAL <failure/>: "" the
	// stream goes on, "close" </stream:stream> (as Prosody does), "silent"
	// nothing is answered any more, "failure" a second <failure/> answers
	// db:result, "smuggle" a stanza for the company before anything else.
	afterFailure string
	// closeOnDialback: db:result is answered by the end of the stream, on
	// every connection.
	closeOnDialback bool
	// noAnswer: SASL EXTERNAL gets no answer, the stream ends instead:
	// "close" </stream:stream>, "drop" the connection is closed (as
	// ejabberd 23.01 does when our certificate has an XmppAddr).
	noAnswer string
}

// certServer is a partner's server on its own loopback address: STARTTLS
// (direct TLS when direct) with a certificate the gateway trusts, then
// SASL EXTERNAL, which it refuses, and dialback, as refusal says. It
// records the TLS server name of each handshake and, per connection, the
// elements read after TLS.
type certServer struct {
	t       testing.TB
	ln      net.Listener
	tlsConf *tls.Config
	direct  bool
	r       refusal
	stanzas chan string

	wg    sync.WaitGroup
	mu    sync.Mutex
	sni   []string
	conns [][]string
	open  map[net.Conn]struct{}
}

func startCertServer(t testing.TB, env *testEnv, domain string, direct bool, r refusal) *certServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(cornerIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &certServer{t: t, ln: ln, direct: direct, r: r, stanzas: make(chan string, 100), open: map[net.Conn]struct{}{}}
	base := env.tlsConfig(t, domain)
	base.MaxVersion = r.maxVersion
	if r.tlsRefuses {
		// crypto/tls checks the clientAuth usage of a client certificate
		// it verifies: a serverAuth-only one is refused (bad_certificate).
		pool := x509.NewCertPool()
		pool.AddCert(env.ca.Cert)
		base.ClientAuth, base.ClientCAs = tls.VerifyClientCertIfGiven, pool
	}
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		s.mu.Lock()
		s.sni = append(s.sni, hello.ServerName)
		s.mu.Unlock()
		return nil, nil
	}
	s.tlsConf = base
	t.Cleanup(s.close)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			if s.open == nil {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.open[c] = struct{}{}
			s.conns = append(s.conns, nil)
			n := len(s.conns) - 1
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.serve(c, n)
			}()
		}
	}()
	return s
}

func (s *certServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.open {
		c.Close()
	}
	s.open = nil
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *certServer) target() resolve.Target {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return resolve.Target{Host: host, Port: uint16(p), DirectTLS: s.direct}
}

// read returns the elements each connection read after TLS, and the
// server names of the TLS handshakes.
func (s *certServer) read() (conns [][]string, sni []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		conns = append(conns, slices.Clone(c))
	}
	return conns, slices.Clone(s.sni)
}

const certServerHeader = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'>"

func (s *certServer) serve(c net.Conn, n int) {
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if s.direct {
		tc := tls.Server(c, s.tlsConf)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	} else {
		r := xmlstream.NewReader(c, xmlstream.Limits{})
		h, err := r.ReadHeader()
		if err != nil {
			return
		}
		fmt.Fprintf(c, certServerHeader+"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>", h.To, h.From, dialback.NewStreamID())
		if el, err := r.Next(); err != nil || el.Local != "starttls" {
			return
		}
		io.WriteString(c, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
		tc := tls.Server(c, s.tlsConf)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		return
	}
	features := "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
	if !s.r.noDialback {
		features += "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
	}
	fmt.Fprintf(c, certServerHeader+"<stream:features>%s</stream:features>", h.To, h.From, dialback.NewStreamID(), features)
	silent, refusedOnce := false, false
	for {
		el, err := r.Next()
		if err != nil {
			io.WriteString(c, "</stream:stream>")
			return
		}
		s.mu.Lock()
		s.conns[n] = append(s.conns[n], el.Local)
		s.mu.Unlock()
		switch {
		case silent:
		case el.Local == "auth" && !refusedOnce && s.r.noAnswer != "":
			if s.r.noAnswer == "close" {
				io.WriteString(c, "</stream:stream>")
			}
			c.Close()
			return
		case el.Local == "auth":
			io.WriteString(c, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>certificate not usable for client authentication</text></failure>")
			refusedOnce = true
			switch s.r.afterFailure {
			case "close":
				io.WriteString(c, "</stream:stream>")
				return
			case "silent":
				silent = true
			case "smuggle":
				io.WriteString(c, "<message from='mallory@partner.test/x' to='alice@company.test' id='smuggled'><body>smuggled</body></message>")
			}
		case el.Local == "result" && el.Type == "":
			switch {
			case refusedOnce && s.r.afterFailure == "failure":
				io.WriteString(c, "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
			case s.r.closeOnDialback:
				io.WriteString(c, "</stream:stream>")
				return
			default:
				fmt.Fprintf(c, "<db:result from='%s' to='%s' type='valid'/>", el.To, el.From)
			}
		case el.Local == "verify" && el.Type == "":
			fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='valid'/>", el.To, el.From, el.ID)
		case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
			s.stanzas <- string(el.Raw)
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fallbackEnv is a gateway whose certificate for company.test has only
// the serverAuth usage, with its metrics and its log at hand.
type fallbackEnv struct {
	*testEnv
	m   *metrics.Metrics
	log *syncBuffer
}

func newFallbackEnv(t *testing.T, mods ...func(*Options)) *fallbackEnv {
	t.Helper()
	fe := &fallbackEnv{m: metrics.New("test"), log: &syncBuffer{}}
	mods = append([]func(*Options){func(o *Options) {
		o.Metrics = fe.m
		o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, fe.log), &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.Limits.ConnectTimeout = 3 * time.Second
	}}, mods...)
	fe.testEnv = newTestEnv(t, mods...)
	dir := t.TempDir()
	_, certPEM, keyPEM := serverAuthOnlyCert(t, fe.ca, "company.test")
	cf, kf, err := certstest.WriteFiles(dir, "company.test", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	store, err := certs.LoadStore([]certs.KeyPairFiles{{CertFile: cf, KeyFile: kf}})
	if err != nil {
		t.Fatal(err)
	}
	fe.gw.SetCertificates(store)
	return fe
}

// fallbacks reads xmppedge_sasl_external_fallbacks_total, by leg and cause
// ("leg cause").
func fallbacks(t testing.TB, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "xmppedge_sasl_external_fallbacks_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["leg"]+" "+labels["cause"]] += mt.GetCounter().GetValue()
		}
	}
	return out
}

// sendOut sends a message from alice@company.test to bob@partner.test on
// a fresh inside stream.
func (fe *fallbackEnv) sendOut(t testing.TB, id string) {
	t.Helper()
	p := authedInside(t, fe.testEnv, "partner.test")
	p.send("<message from='alice@company.test/r' to='bob@partner.test' id='" + id + "'><body>hi</body></message>")
}

// A partner that refuses our certificate — SASL EXTERNAL <failure/>, on a
// stream that goes on or that it ends, the end of the stream with no
// answer to SASL EXTERNAL (ejabberd 23.01 when our certificate has an
// XmppAddr), or its TLS handshake refusing a
// client certificate without the clientAuth usage, on STARTTLS or direct
// TLS, TLS 1.2 or 1.3 — gets dialback, on the same stream when it goes on
// and else on a new connection without SASL EXTERNAL (and without a
// client certificate after a TLS refusal); the message is delivered. The
// fallback is logged, counted and written in the session's audit record.
// When the policy requires certificate authentication for the partner,
// there is no dialback and the message is bounced with policy-violation.
func TestOutgoingSASLExternalFallback(t *testing.T) {
	tests := []struct {
		name        string
		r           refusal
		direct      bool
		requireCert bool
		wantConns   [][]string // the elements each connection of the partner read after TLS
		wantCause   string     // metrics.Fallback*; "" = no fallback
	}{
		{
			name: "SASL failure, dialback on the same stream",
			r:    refusal{}, wantConns: [][]string{{"auth", "result", "message"}}, wantCause: metrics.FallbackSASL,
		},
		{
			name: "SASL failure and the end of the stream, dialback on a new connection",
			r:    refusal{afterFailure: "close"}, wantConns: [][]string{{"auth"}, {"result", "message"}}, wantCause: metrics.FallbackSASL,
		},
		{
			name: "no answer to SASL EXTERNAL, the end of the stream: dialback on a new connection",
			r:    refusal{noAnswer: "close"}, wantConns: [][]string{{"auth"}, {"result", "message"}}, wantCause: metrics.FallbackSASL,
		},
		{
			name: "no answer to SASL EXTERNAL, the connection closed: dialback on a new connection",
			r:    refusal{noAnswer: "drop"}, wantConns: [][]string{{"auth"}, {"result", "message"}}, wantCause: metrics.FallbackSASL,
		},
		{
			name: "TLS 1.3 handshake refuses our certificate (STARTTLS)",
			r:    refusal{tlsRefuses: true}, wantConns: [][]string{nil, {"result", "message"}}, wantCause: metrics.FallbackTLS,
		},
		{
			name: "TLS 1.2 handshake refuses our certificate (STARTTLS)",
			r:    refusal{tlsRefuses: true, maxVersion: tls.VersionTLS12}, wantConns: [][]string{nil, {"result", "message"}}, wantCause: metrics.FallbackTLS,
		},
		{
			name: "TLS 1.3 handshake refuses our certificate (direct TLS)", direct: true,
			r: refusal{tlsRefuses: true}, wantConns: [][]string{nil, {"result", "message"}}, wantCause: metrics.FallbackTLS,
		},
		{
			name: "TLS 1.2 handshake refuses our certificate (direct TLS)", direct: true,
			r: refusal{tlsRefuses: true, maxVersion: tls.VersionTLS12}, wantConns: [][]string{nil, {"result", "message"}}, wantCause: metrics.FallbackTLS,
		},
		{
			name: "SASL failure, certificate required: no dialback", requireCert: true,
			r: refusal{}, wantConns: [][]string{{"auth"}},
		},
		{
			name: "SASL failure and the end of the stream, certificate required: no dialback", requireCert: true,
			r: refusal{afterFailure: "close"}, wantConns: [][]string{{"auth"}},
		},
		{
			name: "no answer to SASL EXTERNAL, certificate required: no dialback", requireCert: true,
			r: refusal{noAnswer: "close"}, wantConns: [][]string{{"auth"}},
		},
		{
			name: "TLS handshake refuses our certificate, certificate required: no dialback", requireCert: true,
			r: refusal{tlsRefuses: true}, wantConns: [][]string{nil, nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := newFallbackEnv(t)
			if tt.requireCert {
				fe.pol.requireCert = map[string]bool{"partner.test": true}
			}
			srv := startCertServer(t, fe.testEnv, "partner.test", tt.direct, tt.r)
			fe.res.setTargets("partner.test", srv.target())
			fe.sendOut(t, "fb1")
			if tt.wantCause != "" {
				waitStanza(t, srv.stanzas, "id='fb1'")
			} else {
				got := waitStanza(t, fe.internal.stanzas, "id='fb1'", "type='error'")
				if !strings.Contains(got, "<policy-violation ") || !strings.Contains(got, "refused our certificate") {
					t.Fatalf("bounce %q, want policy-violation saying our certificate was refused", got)
				}
				if f := sessionFailures(t, fe.m); len(f) != 1 || f[metrics.FailPolicy] != 1 {
					t.Errorf("session failures %v, want {policy: 1}", f)
				}
			}
			conns, sni := srv.read()
			if !slices.EqualFunc(conns, tt.wantConns, slices.Equal) {
				t.Errorf("the partner's connections read %q after TLS, want %q", conns, tt.wantConns)
			}
			for _, name := range sni {
				if name != "partner.test" {
					t.Errorf("TLS server names %q, want partner.test on every connection", sni)
				}
			}
			got := fallbacks(t, fe.m)
			if tt.wantCause == "" {
				if len(got) != 0 {
					t.Errorf("fallbacks counted %v, want none", got)
				}
				if !strings.Contains(fe.log.String(), "the policy requires certificate authentication: no dialback") {
					t.Error("the refused fallback was not logged")
				}
				return
			}
			if len(got) != 1 || got["outside "+tt.wantCause] != 1 {
				t.Errorf("fallbacks counted %v, want {outside %s: 1}", got, tt.wantCause)
			}
			if !strings.Contains(fe.log.String(), "falling back to dialback") {
				t.Error("the fallback was not logged")
			}
			var opens []string
			for _, r := range fe.aud.find("session.open", "allow") {
				if r.Leg == "outside" && r.RemoteDomain == "partner.test" {
					opens = append(opens, r.Auth+": "+r.Reason)
				}
			}
			if len(opens) != 1 || !strings.HasPrefix(opens[0], "dialback: authenticated by dialback: partner.test refused our certificate (") {
				t.Errorf("session.open records %q, want one by dialback saying partner.test refused our certificate", opens)
			}
		})
	}
}

// A hostile partner after it refused our certificate: a second failure,
// silence, the end of every stream, no dialback offered, a stanza
// smuggled in. Each ends in a bounded failure (within connect_timeout and
// at most one new connection), the message is bounced to its sender, and
// nothing else reaches the internal server.
func TestOutgoingSASLExternalFallbackHostile(t *testing.T) {
	const connectTimeout = 2 * time.Second
	tests := []struct {
		name      string
		r         refusal
		wantConns int
		wantCond  string
	}{
		{"fails SASL, then answers dialback with another failure", refusal{afterFailure: "failure"}, 1, "remote-server-timeout"},
		{"fails SASL, then says nothing", refusal{afterFailure: "silent"}, 1, "remote-server-timeout"},
		{"fails SASL and offers no dialback", refusal{noDialback: true}, 1, "remote-server-timeout"},
		{"fails SASL and ends every stream", refusal{afterFailure: "close", closeOnDialback: true}, 2, "remote-server-timeout"},
		{"fails SASL, then smuggles a stanza", refusal{afterFailure: "smuggle"}, 1, "remote-server-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := newFallbackEnv(t, func(o *Options) { o.Limits.ConnectTimeout = connectTimeout })
			srv := startCertServer(t, fe.testEnv, "partner.test", false, tt.r)
			fe.res.setTargets("partner.test", srv.target())
			start := time.Now()
			fe.sendOut(t, "h1")
			got := waitStanza(t, fe.internal.stanzas, "id='h1'", "type='error'")
			if d := time.Since(start); d > connectTimeout+3*time.Second {
				t.Errorf("bounced after %v, connect_timeout is %v", d, connectTimeout)
			}
			if !strings.Contains(got, "<"+tt.wantCond+" ") {
				t.Fatalf("bounce %q, want %s", got, tt.wantCond)
			}
			conns, _ := srv.read()
			if len(conns) != tt.wantConns {
				t.Errorf("%d connections to the partner (%q), want %d", len(conns), conns, tt.wantConns)
			}
			for _, c := range conns {
				if slices.Contains(c, "message") {
					t.Errorf("the message reached the partner: %q", conns)
				}
			}
			if f := sessionFailures(t, fe.m); len(f) != 1 || f[metrics.FailAuth]+f[metrics.FailTimeout] != 1 {
				t.Errorf("session failures %v, want one auth or timeout", f)
			}
			// Nothing but the bounce reached the internal server, and no
			// stanza was let through.
			select {
			case s := <-fe.internal.stanzas:
				t.Errorf("the internal server received %q", s)
			case <-time.After(200 * time.Millisecond):
			}
			if r := fe.aud.find("stanza", "allow"); len(r) != 1 || r[0].ID != "h1" {
				t.Errorf("stanzas allowed: %+v, want only h1 (outbound)", r)
			}
		})
	}
}

// Every outgoing TLS handshake names the target domain in SNI, in A-label
// form: the outside leg over STARTTLS and direct TLS, the inside leg with
// the internal CA's certificates and with the Store's, and the streams
// that ask an authoritative server to verify a dialback key.
func TestOutgoingServerName(t *testing.T) {
	const idn, alabel = "bücher.test", "xn--bcher-kva.test"
	ica, _, err := certs.LoadOrCreateInternalCA(filepath.Join(t.TempDir(), "ica.crt"), filepath.Join(t.TempDir(), "ica.key"))
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t)
	tests := []struct {
		name   string
		direct bool
		run    func(ctx context.Context, d *Dialer) error
	}{
		{"outside, STARTTLS", false, func(ctx context.Context, d *Dialer) error {
			os, err := d.dial(ctx, LegOutside, "company.test", idn, nil)
			if err == nil {
				os.sc.Abort()
			}
			return err
		}},
		{"outside, direct TLS", true, func(ctx context.Context, d *Dialer) error {
			os, err := d.dial(ctx, LegOutside, "company.test", idn, nil)
			if err == nil {
				os.sc.Abort()
			}
			return err
		}},
		{"inside, internal CA", false, func(ctx context.Context, d *Dialer) error {
			d.InsideCA = ica
			os, err := d.dial(ctx, LegInside, "partner.test", idn, nil)
			if err == nil {
				os.sc.Abort()
			}
			return err
		}},
		{"inside, the Store's certificates", false, func(ctx context.Context, d *Dialer) error {
			d.InsideCA = nil
			os, err := d.dial(ctx, LegInside, "partner.test", idn, nil)
			if err == nil {
				os.sc.Abort()
			}
			return err
		}},
		{"dialback verification", false, func(ctx context.Context, d *Dialer) error {
			valid, err := d.verifyKey(ctx, LegOutside, idn, "company.test", "S1", "key")
			if err == nil && !valid {
				return fmt.Errorf("key not verified")
			}
			return err
		}},
		{"dialback verification, direct TLS", true, func(ctx context.Context, d *Dialer) error {
			valid, err := d.verifyKey(ctx, LegOutside, idn, "company.test", "S1", "key")
			if err == nil && !valid {
				return fmt.Errorf("key not verified")
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startCertServer(t, env, alabel, tt.direct, refusal{})
			env.res.setTargets(idn, srv.target())
			d := *env.gw.dialer
			d.InsideServer, d.InsideTLS = srv.ln.Addr().String(), TLSRequired
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tt.run(ctx, &d); err != nil {
				t.Fatal(err)
			}
			if _, sni := srv.read(); !slices.Equal(sni, []string{alabel}) {
				t.Fatalf("TLS server names %q, want [%s]", sni, alabel)
			}
		})
	}
}

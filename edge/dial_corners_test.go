package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// The corners of the outgoing side (RFC 6120 §3.2.1, XEP-0220): what the
// dialer does when a server of the remote domain fails in each way it
// can, shown with raw-socket fake servers, each on its own loopback
// address.

// cornerIPs hands out loopback addresses 127.0.0.100–199, one per fake
// server of these tests (ports are chosen by the kernel).
var cornerIPs atomic.Uint32

func cornerIP() string {
	return fmt.Sprintf("127.0.0.%d", 100+cornerIPs.Add(1)%100)
}

// cornerBehaviour is how a cornerServer misbehaves (the zero value is a
// well-behaved server that accepts every dialback key).
type cornerBehaviour struct {
	silent      bool   // accept TCP (and TLS), then never send a byte
	streamError string // answer the stream header with this stream error
	result      string // type of the db:result answer; "" = valid
	// verify is the answer to db:verify: "valid", "invalid", "error",
	// "close" (close the stream without answering); "" = valid.
	verify string
}

// cornerServer is a scripted XMPP server on its own loopback address,
// over direct TLS when tlsConf is set.
type cornerServer struct {
	t        testing.TB
	ln       net.Listener
	tlsConf  *tls.Config
	b        cornerBehaviour
	accepted atomic.Int32
	stanzas  chan string

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startCornerServer(t testing.TB, tlsConf *tls.Config, b cornerBehaviour) *cornerServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(cornerIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &cornerServer{t: t, ln: ln, tlsConf: tlsConf, b: b, stanzas: make(chan string, 100), conns: map[net.Conn]struct{}{}}
	t.Cleanup(s.close)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			if s.conns == nil {
				s.mu.Unlock()
				c.Close()
				return
			}
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

// close stops the listener and every connection, and waits for them.
func (s *cornerServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// target is the server as an SRV target.
func (s *cornerServer) target() resolve.Target {
	host, port, _ := net.SplitHostPort(s.ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return resolve.Target{Host: host, Port: uint16(p), DirectTLS: s.tlsConf != nil}
}

func (s *cornerServer) serve(c net.Conn) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if s.tlsConf != nil {
		tc := tls.Server(c, s.tlsConf)
		if tc.Handshake() != nil {
			return
		}
		c = tc
	}
	if s.b.silent {
		io.Copy(io.Discard, c)
		return
	}
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		return
	}
	fmt.Fprintf(c, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='%s' version='1.0'>", h.To, h.From, dialback.NewStreamID())
	if s.b.streamError != "" {
		fmt.Fprintf(c, "<stream:error><%s xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>", s.b.streamError)
		return
	}
	io.WriteString(c, "<stream:features><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>")
	for {
		el, err := r.Next()
		if err != nil {
			io.WriteString(c, "</stream:stream>")
			return
		}
		switch {
		case el.Local == "result" && el.Type == "":
			typ := s.b.result
			if typ == "" {
				typ = "valid"
			}
			fmt.Fprintf(c, "<db:result from='%s' to='%s' type='%s'/>", el.To, el.From, typ)
		case el.Local == "verify" && el.Type == "":
			switch s.b.verify {
			case "close":
				io.WriteString(c, "</stream:stream>")
				return
			case "error":
				fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:verify>", el.To, el.From, el.ID)
			case "invalid":
				fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='invalid'/>", el.To, el.From, el.ID)
			default:
				fmt.Fprintf(c, "<db:verify from='%s' to='%s' id='%s' type='valid'/>", el.To, el.From, el.ID)
			}
		case el.Local == "message" || el.Local == "presence" || el.Local == "iq":
			s.stanzas <- string(el.Raw)
		}
	}
}

// refusedTarget is an address where nothing listens (connection refused).
func refusedTarget(t testing.TB) resolve.Target {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(cornerIP(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	p, _ := strconv.Atoi(port)
	return resolve.Target{Host: host, Port: uint16(p), DirectTLS: true}
}

// setTargets publishes SRV targets for domain, in this order.
func (r *fakeResolver) setTargets(domain string, targets ...resolve.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.targets[domain] = targets
}

// untrustedTLS is a server TLS config whose certificate for domain comes
// from a CA the gateway does not trust.
func untrustedTLS(t testing.TB, domain string) *tls.Config {
	t.Helper()
	other, err := certstest.NewCA("a CA the gateway does not trust")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := other.Issue(certstest.LeafOptions{DNSNames: []string{domain}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// tls11Only is a trusted server config that speaks nothing newer than
// TLS 1.1: the gateway's handshake with it fails.
func tls11Only(t testing.TB, env *testEnv, domain string) *tls.Config {
	c := env.tlsConfig(t, domain)
	c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	return c
}

// waitStanza waits (generously) for a stanza containing every one of want.
func waitStanza(t testing.TB, ch <-chan string, want ...string) string {
	t.Helper()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	for {
		select {
		case s := <-ch:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(s, w)
			}
			if ok {
				return s
			}
			t.Logf("ignoring stanza %q", s)
		case <-timer.C:
			t.Fatalf("no stanza containing %q arrived", want)
			return ""
		}
	}
}

// sessionFailures reads xmppedge_session_failures_total for the outside
// leg's outgoing streams, by reason.
func sessionFailures(t testing.TB, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "xmppedge_session_failures_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["leg"] == "outside" && labels["direction"] == metrics.RoleOutgoing && mt.GetCounter().GetValue() > 0 {
				out[labels["reason"]] += mt.GetCounter().GetValue()
			}
		}
	}
	return out
}

// A server that fails one way — TLS, certificate, stream, authentication,
// or saying nothing at all — is skipped for the next one the SRV records
// name, and the stanza is delivered there.
func TestOutgoingTriesNextServer(t *testing.T) {
	tests := []struct {
		name        string
		requireCert bool
		first       func(t *testing.T, env *testEnv) *cornerServer
	}{
		{"certificate from an untrusted CA, policy requires a valid certificate", true, func(t *testing.T, env *testEnv) *cornerServer {
			return startCornerServer(t, untrustedTLS(t, "partner.test"), cornerBehaviour{})
		}},
		{"TLS handshake fails (TLS 1.1 only)", false, func(t *testing.T, env *testEnv) *cornerServer {
			return startCornerServer(t, tls11Only(t, env, "partner.test"), cornerBehaviour{})
		}},
		{"stream error instead of features", false, func(t *testing.T, env *testEnv) *cornerServer {
			return startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{streamError: "internal-server-error"})
		}},
		{"dialback key refused", false, func(t *testing.T, env *testEnv) *cornerServer {
			return startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{result: "invalid"})
		}},
		{"accepts TCP and TLS, then says nothing (gets half of connect_timeout)", false, func(t *testing.T, env *testEnv) *cornerServer {
			return startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{silent: true})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Generous: the silent server may take half of it, and the
			// good one must then finish TLS and dialback in the rest.
			env := newTestEnv(t, func(o *Options) { o.Limits.ConnectTimeout = 8 * time.Second })
			if tt.requireCert {
				env.pol.requireCert = map[string]bool{"partner.test": true}
			}
			first := tt.first(t, env)
			good := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{})
			env.res.setTargets("partner.test", first.target(), good.target())
			p := authedInside(t, env, "partner.test")
			p.send("<message from='alice@company.test/r' to='bob@partner.test' id='n1'><body>hi</body></message>")
			waitStanza(t, good.stanzas, "id='n1'")
			if first.accepted.Load() == 0 {
				t.Fatal("the first server was never tried")
			}
			select {
			case s := <-first.stanzas:
				t.Fatalf("the failing server got %q", s)
			default:
			}
			select {
			case s := <-env.internal.stanzas:
				t.Fatalf("unexpected stanza back to the sender: %q", s)
			default:
			}
		})
	}
}

// With a single server, each way of failing bounces the waiting stanza
// with its condition, and is counted under its metric reason: a server
// that cannot be resolved or reached is remote-server-not-found, one that
// accepted the connection and then failed or said nothing within
// connect_timeout is remote-server-timeout.
func TestOutgoingFailureConditions(t *testing.T) {
	tests := []struct {
		name        string
		requireCert bool
		target      func(t *testing.T, env *testEnv) *resolve.Target // nil: no DNS record
		wantCond    string
		wantReason  string
	}{
		{"no DNS record", false, func(t *testing.T, env *testEnv) *resolve.Target { return nil },
			"remote-server-not-found", metrics.FailDNS},
		{"connection refused", false, func(t *testing.T, env *testEnv) *resolve.Target { tg := refusedTarget(t); return &tg },
			"remote-server-not-found", metrics.FailConnect},
		{"accepts TCP, never completes the stream", false, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, nil, cornerBehaviour{silent: true}).target()
			return &tg
		}, "remote-server-timeout", metrics.FailTimeout},
		{"accepts TLS, never sends a stream header", false, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{silent: true}).target()
			return &tg
		}, "remote-server-timeout", metrics.FailTimeout},
		{"TLS handshake fails", false, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, tls11Only(t, env, "partner.test"), cornerBehaviour{}).target()
			return &tg
		}, "remote-server-timeout", metrics.FailTLS},
		{"stream error", false, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{streamError: "host-unknown"}).target()
			return &tg
		}, "remote-server-timeout", metrics.FailStreamError},
		{"dialback refused", false, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{result: "invalid"}).target()
			return &tg
		}, "remote-server-timeout", metrics.FailAuth},
		{"untrusted certificate, certificate required", true, func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, untrustedTLS(t, "partner.test"), cornerBehaviour{}).target()
			return &tg
		}, "policy-violation", metrics.FailPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New("test")
			env := newTestEnv(t, func(o *Options) { o.Limits.ConnectTimeout = 2 * time.Second; o.Metrics = m })
			if tt.requireCert {
				env.pol.requireCert = map[string]bool{"partner.test": true}
			}
			if tg := tt.target(t, env); tg != nil {
				env.res.setTargets("partner.test", *tg)
			}
			p := authedInside(t, env, "partner.test")
			p.send("<message from='alice@company.test/r' to='bob@partner.test' id='f1'><body>hi</body></message>")
			got := waitStanza(t, env.internal.stanzas, "id='f1'", "type='error'")
			if !strings.Contains(got, "<"+tt.wantCond+" ") {
				t.Fatalf("bounce %q, want condition %s", got, tt.wantCond)
			}
			if f := sessionFailures(t, m); len(f) != 1 || f[tt.wantReason] != 1 {
				t.Fatalf("session failures by reason %v, want {%s: 1}", f, tt.wantReason)
			}
		})
	}
}

// verifyKey's failures carry XEP-0220's dialback error conditions
// (dialbackCondition), for the receiving side to answer the initiating
// server with.
func TestVerifyKeyConditions(t *testing.T) {
	tests := []struct {
		name      string
		target    func(t *testing.T, env *testEnv) *resolve.Target // nil: no DNS record
		wantValid bool
		wantCond  string // "" = no error
		wantKind  string
	}{
		{"authoritative server valid", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{}).target()
			return &tg
		}, true, "", ""},
		{"authoritative server invalid", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{verify: "invalid"}).target()
			return &tg
		}, false, "", ""},
		{"authoritative server down", func(t *testing.T, env *testEnv) *resolve.Target { tg := refusedTarget(t); return &tg },
			false, "remote-connection-failed", metrics.FailConnect},
		{"no DNS record", func(t *testing.T, env *testEnv) *resolve.Target { return nil },
			false, "remote-connection-failed", metrics.FailDNS},
		{"TLS handshake fails", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, tls11Only(t, env, "partner.test"), cornerBehaviour{}).target()
			return &tg
		}, false, "remote-connection-failed", metrics.FailTLS},
		{"accepts TLS, says nothing", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{silent: true}).target()
			return &tg
		}, false, "remote-server-timeout", metrics.FailTimeout},
		{"host-unknown stream error", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{streamError: "host-unknown"}).target()
			return &tg
		}, false, "remote-server-not-found", metrics.FailStreamError},
		{"db:verify of type error", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{verify: "error"}).target()
			return &tg
		}, false, "remote-server-not-found", metrics.FailAuth},
		{"stream closed without an answer", func(t *testing.T, env *testEnv) *resolve.Target {
			tg := startCornerServer(t, env.tlsConfig(t, "partner.test"), cornerBehaviour{verify: "close"}).target()
			return &tg
		}, false, "remote-server-timeout", metrics.FailAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t, func(o *Options) { o.Limits.ConnectTimeout = 2 * time.Second })
			if tg := tt.target(t, env); tg != nil {
				env.res.setTargets("partner.test", *tg)
			}
			// As the receiving side does: twice connect_timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 2*env.gw.limits().ConnectTimeout)
			defer cancel()
			key := dialback.Key(testSecret, "company.test", "partner.test", "S1")
			valid, err := env.gw.dialer.verifyKey(ctx, LegOutside, "partner.test", "company.test", "S1", key)
			if valid != tt.wantValid {
				t.Errorf("valid = %v, want %v", valid, tt.wantValid)
			}
			if tt.wantCond == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var ve *verifyError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v (%T) is not a *verifyError", err, err)
			}
			if got := dialbackCondition(err); string(got) != tt.wantCond {
				t.Errorf("dialbackCondition = %s, want %s (err: %v)", got, tt.wantCond, err)
			}
			if got := dialFailureKind(err); got != tt.wantKind {
				t.Errorf("dialFailureKind = %s, want %s (err: %v)", got, tt.wantKind, err)
			}
		})
	}
}

// The classification reads typed errors, wrapped or not, never the text.
func TestDialFailureKind(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantKind string
		wantCond string // dialbackCondition
	}{
		{"nil", nil, metrics.Other, "remote-connection-failed"},
		{"untyped text that looks like a timeout", errors.New("TLS handshake: i/o timeout while connecting"), metrics.Other, "remote-connection-failed"},
		{"DNS", &dialError{stage: stageResolve, err: errors.New("x")}, metrics.FailDNS, "remote-connection-failed"},
		{"refused", &dialError{stage: stageConnect, err: errors.New("x")}, metrics.FailConnect, "remote-connection-failed"},
		{"connect timed out", &dialError{stage: stageConnect, timeout: true, err: errors.New("x")}, metrics.FailTimeout, "remote-connection-failed"},
		{"TLS", &dialError{stage: stageTLS, connected: true, err: errors.New("x")}, metrics.FailTLS, "remote-connection-failed"},
		{"silent after connect", &dialError{stage: stageStream, connected: true, timeout: true, err: errors.New("x")}, metrics.FailTimeout, "remote-server-timeout"},
		{"peer stream error", &dialError{stage: stageStream, connected: true, opened: true, peerError: "internal-server-error", err: errors.New("x")}, metrics.FailStreamError, "remote-server-timeout"},
		{"peer host-unknown", &dialError{stage: stageStream, connected: true, opened: true, peerError: "host-unknown", err: errors.New("x")}, metrics.FailStreamError, "remote-server-not-found"},
		{"certificate", &dialError{stage: stageCertificate, connected: true, opened: true, err: errors.New("x")}, metrics.FailPolicy, "remote-server-timeout"},
		{"auth", &dialError{stage: stageAuth, connected: true, opened: true, err: errors.New("x")}, metrics.FailAuth, "remote-server-timeout"},
		{"wrapped", fmt.Errorf("outer: %w", &dialError{stage: stageTLS, connected: true, err: errors.New("x")}), metrics.FailTLS, "remote-connection-failed"},
		{"verify error", fmt.Errorf("outer: %w", &verifyError{condition: "remote-server-not-found", kind: metrics.FailAuth, err: errors.New("x")}), metrics.FailAuth, "remote-server-not-found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dialFailureKind(tt.err); got != tt.wantKind {
				t.Errorf("dialFailureKind = %s, want %s", got, tt.wantKind)
			}
			if got := dialbackCondition(tt.err); string(got) != tt.wantCond {
				t.Errorf("dialbackCondition = %s, want %s", got, tt.wantCond)
			}
			wantType := "cancel"
			if tt.wantCond == "remote-server-timeout" {
				wantType = "wait"
			}
			if got := dialbackCondition(tt.err).Type(); string(got) != wantType {
				t.Errorf("dialback error type = %s, want %s", got, wantType)
			}
		})
	}
}

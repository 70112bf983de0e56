package certs

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/certs/natsstore"
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// acmeTestbed is Pebble plus a DNS server that sends the VA to us.
type acmeTestbed struct {
	pebble   *pebble
	httpPort int
	tlsPort  int
}

func newACMETestbed(t *testing.T, validity time.Duration) *acmeTestbed {
	t.Helper()
	dns, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Close() })
	dns.AddA("company.test", "127.0.0.1")
	dns.AddA("muc.company.test", "127.0.0.1")
	tb := &acmeTestbed{httpPort: freePort(t), tlsPort: freePort(t)}
	tb.pebble = startPebble(t, pebbleOptions{DNS: dns.Addr(), HTTPPort: tb.httpPort, TLSPort: tb.tlsPort, Validity: validity})
	return tb
}

func (tb *acmeTestbed) config(storage string) ACMEConfig {
	return ACMEConfig{
		CA:      tb.pebble.DirURL,
		Email:   "hostmaster@company.test",
		CARoot:  tb.pebble.CARootFile,
		Storage: storage,
	}
}

// dialVerified opens a TLS connection to addr that crypto/tls verifies
// against Pebble's issuing root for serverName.
func dialVerified(ctx context.Context, addr, serverName string, roots *x509.CertPool) (*tls.Conn, error) {
	d := tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: []string{"xmpp-server"}}}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// directTLSListener is a stand-in for the gateway's direct-TLS listener:
// it serves store.ServerConfig(…, true), closes ACME validation
// handshakes and echoes lines on every other connection.
type directTLSListener struct {
	ln         net.Listener
	validation atomic.Int64 // acme-tls/1 handshakes seen
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
}

func startDirectTLS(t *testing.T, addr string, store *Store) *directTLSListener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("direct-TLS listener: %v", err)
	}
	l := &directTLSListener{ln: ln, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.conns[raw] = struct{}{}
			l.mu.Unlock()
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() {
					l.mu.Lock()
					delete(l.conns, raw)
					l.mu.Unlock()
					raw.Close()
				}()
				c := tls.Server(raw, store.ServerConfig("company.test", true))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := c.HandshakeContext(ctx)
				cancel()
				if err != nil {
					return
				}
				if c.ConnectionState().NegotiatedProtocol == ALPNACMETLS {
					l.validation.Add(1)
					return
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l
}

func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		t.Fatalf("write on the connection: %v", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != msg+"\n" {
		t.Fatalf("echo on the connection: %q, %v", line, err)
	}
}

func serial(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.SerialNumber.String()
}

// TestACMEObtainServeRestart obtains company.test's certificate from Pebble
// over HTTP-01, serves it in a real handshake that crypto/tls verifies with
// Pebble's issuing root, and restarts on the same storage without a new
// order.
func TestACMEObtainServeRestart(t *testing.T) {
	tb := newACMETestbed(t, 0) // Pebble's default validity (90 days)
	storage := t.TempDir()
	cfg := tb.config(storage)
	cfg.HTTPListen = loopback(tb.httpPort)

	// muc.company.test has a certificate file: it is not managed by ACME.
	staticCA := newTestCA(t, "Static CA")
	static := []KeyPairFiles{writePair(t, staticCA, t.TempDir(), "muc", certstest.LeafOptions{DNSNames: []string{"muc.company.test"}, NotAfter: time.Now().AddDate(1, 0, 0)})}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	store, err := NewACMEStore(ctx, []string{"Company.Test", "muc.company.test"}, cfg, static, testLogger(t))
	if err != nil {
		t.Fatalf("NewACMEStore: %v", err)
	}
	t.Logf("certificate obtained in %v", time.Since(start).Round(time.Millisecond))
	defer store.Close()
	if n := tb.pebble.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders, want 1 (only company.test is managed)", n)
	}
	if got, want := store.Domains(), []string{"company.test", "muc.company.test"}; !slices.Equal(got, want) {
		t.Errorf("Domains = %v, want %v", got, want)
	}
	if c := store.Certificate("muc.company.test"); c == nil || issuerName(c.Leaf) != "Static CA" {
		t.Errorf("muc.company.test is not served from its file")
	}
	first := store.Certificate("company.test")
	if first == nil {
		t.Fatal("no certificate for company.test")
	}

	// A real handshake on a direct-TLS listener, verified by crypto/tls.
	ln := startDirectTLS(t, "127.0.0.1:0", store)
	conn, err := dialVerified(ctx, ln.ln.Addr().String(), "company.test", tb.pebble.IssuerRoot)
	if err != nil {
		t.Fatalf("TLS handshake verified with Pebble's root: %v", err)
	}
	state := conn.ConnectionState()
	if state.NegotiatedProtocol != "xmpp-server" {
		t.Errorf("ALPN %q, want xmpp-server", state.NegotiatedProtocol)
	}
	echo(t, conn, "hello")
	conn.Close()
	verifier, err := NewVerifier([]string{tb.pebble.RootFile}, false)
	if err != nil {
		t.Fatal(err)
	}
	if v := verifier.Verify(state.PeerCertificates, "company.test", time.Now()); !v.Valid {
		t.Errorf("Verifier with Pebble's root: %+v", v)
	}

	// The client side presents the ACME certificate too (Pebble issues
	// serverAuth only; the Verifier accepts it for s2s).
	cc := store.ClientConfig("company.test", "partner.test", true)
	if got, err := cc.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil || serial(got) != serial(first) {
		t.Errorf("client certificate %s (%v), want %s", serial(got), err, serial(first))
	}

	exp := store.Expiry()
	if !exp["company.test"].Equal(first.Leaf.NotAfter) || exp["muc.company.test"].IsZero() {
		t.Errorf("Expiry = %v", exp)
	}
	if got := store.ExpiringSoon(ExpiryWarning); len(got) != 0 {
		t.Errorf("ExpiringSoon(14d) = %v, want none", got)
	}
	if got := store.ExpiringSoon(100 * 24 * time.Hour); !slices.Equal(got, []string{"company.test"}) {
		t.Errorf("ExpiringSoon(100d) = %v, want [company.test] (the static one lasts a year: %v)", got, exp)
	}
	store.Close()
	store.Close() // twice is fine

	// Restart on the same storage: the stored certificate, no new order.
	again, err := NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
	if err != nil {
		t.Fatalf("NewACMEStore again: %v", err)
	}
	defer again.Close()
	if n := tb.pebble.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders after the restart, want still 1", n)
	}
	if got := again.Certificate("company.test"); serial(got) != serial(first) {
		t.Errorf("after restart serving %s, want the stored %s", serial(got), serial(first))
	}
}

// TestACMERenewalSwapsCertificate renews through TLS-ALPN-01 answered by
// the direct-TLS listener (ServerConfig), and shows that the renewed
// certificate is served to new handshakes while a connection made with
// the old one keeps working.
func TestACMERenewalSwapsCertificate(t *testing.T) {
	tb := newACMETestbed(t, time.Hour)
	cfg := tb.config(t.TempDir())
	cfg.TLSALPNListen = loopback(tb.tlsPort)
	// Pebble's certificates are valid 1 h less 1 s: due 4 s after issue.
	cfg.RenewBefore = time.Hour - 5*time.Second
	cfg.CheckInterval = 300 * time.Millisecond

	// Renewal takes ~1.5 s here; the bound leaves room for certmagic's
	// retry a minute after a failed attempt. (Two runs timed out, a fresh
	// clone's at 90 s and CI's at 180 s, when the order was refused twice: Pebble before
	// v2.10.3 could not find one certificate in 256 by the serial the
	// renewal's ARI "replaces" names; TestPebbleFindsTheCertificateARIReplaces.)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// At start no listener runs yet: certmagic answers TLS-ALPN-01 on
	// the address itself.
	store, err := NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
	if err != nil {
		t.Fatalf("NewACMEStore: %v", err)
	}
	defer store.Close()
	// From now on our listener holds the address and must answer.
	ln := startDirectTLS(t, cfg.TLSALPNListen, store)

	old, err := dialVerified(ctx, cfg.TLSALPNListen, "company.test", tb.pebble.IssuerRoot)
	if err != nil {
		t.Fatalf("first handshake: %v", err)
	}
	defer old.Close()
	oldSerial := old.ConnectionState().PeerCertificates[0].SerialNumber.String()
	echo(t, old, "before")

	waitUntil(ctx, t, "the certificate was not renewed", func() bool {
		return serial(store.Certificate("company.test")) != oldSerial
	})
	if ln.validation.Load() == 0 {
		t.Error("the renewal was not validated through the direct-TLS listener")
	}

	fresh, err := dialVerified(ctx, cfg.TLSALPNListen, "company.test", tb.pebble.IssuerRoot)
	if err != nil {
		t.Fatalf("handshake after renewal: %v", err)
	}
	defer fresh.Close()
	if s := fresh.ConnectionState().PeerCertificates[0].SerialNumber.String(); s == oldSerial {
		t.Errorf("a new handshake still gets the old certificate %s", s)
	}
	echo(t, fresh, "after")
	echo(t, old, "old connection still works")
	if n := tb.pebble.orders.Load(); n < 2 {
		t.Errorf("Pebble saw %d orders, want at least 2", n)
	}
}

// TestACMERenewBeforeLongerThanValidity: a renew_before the CA's
// certificates cannot outlast is warned about and not applied; otherwise
// every check would order a certificate.
func TestACMERenewBeforeLongerThanValidity(t *testing.T) {
	tb := newACMETestbed(t, time.Hour)
	cfg := tb.config(t.TempDir())
	cfg.TLSALPNListen = loopback(tb.tlsPort)
	cfg.RenewBefore = 2 * time.Hour
	cfg.CheckInterval = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
	if err != nil {
		t.Fatalf("NewACMEStore: %v", err)
	}
	defer store.Close()
	startDirectTLS(t, cfg.TLSALPNListen, store)

	waitUntil(ctx, t, "no warning that renew_before is longer than the certificates", store.acme.renewBeforeWarned.Load)
	store.acme.renewIfDue(ctx, "company.test") // a check, run here to the end
	if n := tb.pebble.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders, want only the first one", n)
	}
}

// waitUntil polls done until it holds, failing the test with failure
// when ctx ends first.
func waitUntil(ctx context.Context, t *testing.T, failure string, done func() bool) {
	t.Helper()
	for !done() {
		select {
		case <-ctx.Done():
			t.Fatal(failure)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestNewACMEStoreConfigErrors(t *testing.T) {
	ok := ACMEConfig{CA: "https://127.0.0.1:1/dir", Email: "a@company.test", Storage: t.TempDir(), HTTPListen: "127.0.0.1:80"}
	tests := []struct {
		name    string
		change  func(*ACMEConfig)
		domains []string
		wantErr string
	}{
		{"no CA", func(c *ACMEConfig) { c.CA = "" }, nil, "no CA directory URL"},
		{"no email", func(c *ACMEConfig) { c.Email = "" }, nil, "no account e-mail"},
		{"no storage", func(c *ACMEConfig) { c.Storage = "" }, nil, "no storage folder"},
		{"no challenge", func(c *ACMEConfig) { c.HTTPListen = "" }, nil, "no challenge can be answered"},
		{"bad listen", func(c *ACMEConfig) { c.HTTPListen = "127.0.0.1" }, nil, "is not host:port"},
		{"different hosts", func(c *ACMEConfig) { c.TLSALPNListen = "127.0.0.2:5270" }, nil, "must use the same host"},
		{"missing root", func(c *ACMEConfig) { c.CARoot = filepath.Join(t.TempDir(), "none.pem") }, nil, "cannot be read"},
		{"bad domain", func(c *ACMEConfig) {}, []string{"*.company.test"}, "wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.change(&cfg)
			domains := tt.domains
			if domains == nil {
				domains = []string{"company.test"}
			}
			s, err := NewACMEStore(context.Background(), domains, cfg, nil, nil)
			if err == nil {
				s.Close()
				t.Fatal("NewACMEStore succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

// An unreachable CA fails within the caller's deadline and leaves no
// listener behind.
func TestNewACMEStoreBoundedByContext(t *testing.T) {
	port := freePort(t)
	cfg := ACMEConfig{CA: "https://127.0.0.1:9/dir", Email: "a@company.test", Storage: t.TempDir(), HTTPListen: loopback(port)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
	if err == nil {
		t.Fatal("NewACMEStore succeeded without a CA")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	ln, lerr := net.Listen("tcp", loopback(port))
	if lerr != nil {
		t.Errorf("the HTTP-01 listener was left open: %v", lerr)
	} else {
		ln.Close()
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "company.test") {
		return
	}
	t.Errorf("error does not explain itself: %v", err)
}

// Two nodes of a cluster share certmagic's storage through a JetStream
// key-value bucket (certs/natsstore): the first obtains company.test's
// certificate from Pebble, the second starts on the same bucket and serves
// the same certificate without a second order.
func TestACMESharedStorage(t *testing.T) {
	tb := newACMETestbed(t, 0)
	js := startTestJetStream(t, "127.0.0.76")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	node := func(httpPort int) *Store {
		shared, err := natsstore.New(ctx, js, natsstore.Config{Bucket: "acme_shared"})
		if err != nil {
			t.Fatal(err)
		}
		cfg := tb.config("")
		cfg.SharedStorage = shared
		cfg.HTTPListen = loopback(httpPort)
		store, err := NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
		if err != nil {
			t.Fatalf("NewACMEStore: %v", err)
		}
		t.Cleanup(func() { store.Close() })
		return store
	}
	first := node(tb.httpPort) // the port Pebble's HTTP-01 validation uses
	second := node(freePort(t))
	if n := tb.pebble.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders for two nodes sharing storage, want 1", n)
	}
	a, b := first.Certificate("company.test"), second.Certificate("company.test")
	if a == nil || b == nil {
		t.Fatalf("a node serves no certificate for company.test: %v %v", a != nil, b != nil)
	}
	if serial(a) != serial(b) {
		t.Errorf("the nodes serve different certificates: %s and %s", serial(a), serial(b))
	}
}

// Two nodes share the storage and only TLS-ALPN-01 is enabled; the
// domain's address (where the CA validates) is the second node's, which
// waits for the lock while the first orders. The waiting node has not
// finished starting (no direct-TLS listener yet) and answers the
// validation on that address all the same: one order, one certificate.
func TestACMETLSALPNAnsweredByWaitingNode(t *testing.T) {
	tb := newACMETestbed(t, 0) // company.test → 127.0.0.1
	js := startTestJetStream(t, "127.0.0.76")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	shared := func() *natsstore.Storage {
		s, err := natsstore.New(ctx, js, natsstore.Config{Bucket: "acme_alpn"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	start := func(storage certmagic.Storage, tlsListen string) (*Store, error) {
		cfg := tb.config("")
		cfg.SharedStorage = storage
		cfg.TLSALPNListen = tlsListen
		return NewACMEStore(ctx, []string{"company.test"}, cfg, nil, testLogger(t))
	}

	waiter := &gatedLock{Storage: shared(), waiting: make(chan struct{}), open: make(chan struct{})}
	type result struct {
		store *Store
		err   error
	}
	waited := make(chan result, 1)
	go func() {
		s, err := start(waiter, loopback(tb.tlsPort))
		waited <- result{s, err}
	}()
	select {
	case <-waiter.waiting:
	case r := <-waited:
		t.Fatalf("the second node started without waiting for the lock: %v", r.err)
	}
	// The first node's own address is elsewhere: the CA cannot reach it.
	orderer, err := start(shared(), fmt.Sprintf("127.0.0.119:%d", tb.tlsPort))
	close(waiter.open)
	r := <-waited
	if err != nil {
		t.Fatalf("the ordering node: %v", err)
	}
	defer orderer.Close()
	if r.err != nil {
		t.Fatalf("the waiting node: %v", r.err)
	}
	defer r.store.Close()
	if n := tb.pebble.orders.Load(); n != 1 {
		t.Errorf("Pebble saw %d orders, want 1", n)
	}
	if a, b := serial(orderer.Certificate("company.test")), serial(r.store.Certificate("company.test")); a == "" || a != b {
		t.Errorf("the nodes serve %q and %q, want one certificate", a, b)
	}
}

// gatedLock is a node's shared storage whose first Lock closes waiting,
// then waits for open before it tries the lock.
type gatedLock struct {
	*natsstore.Storage
	waiting, open chan struct{}
	once          sync.Once
}

func (g *gatedLock) Lock(ctx context.Context, name string) error {
	g.once.Do(func() {
		close(g.waiting)
		select {
		case <-g.open:
		case <-ctx.Done():
		}
	})
	return g.Storage.Lock(ctx, name)
}

// startTestJetStream runs an in-process NATS server with JetStream on ip
// and returns a client's JetStream.
func startTestJetStream(t *testing.T, ip string) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: ip, Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

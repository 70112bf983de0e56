package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// readAll collects what the far end of a pipe receives until it is closed.
func readAll(c net.Conn) <-chan string {
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		out <- string(b)
	}()
	return out
}

func TestSendOrderAndClose(t *testing.T) {
	a, b := net.Pipe()
	got := readAll(b)
	c := NewConn(a, Options{})
	if err := c.WriteHeader("a.test", "b.test", "ID1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if err := c.Send([]byte{'0' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SendWait(time.Second, []byte("<x/>"), []byte("<y/>")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Send([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close = %v, want ErrClosed", err)
	}
	c.Abort()
	s := <-got
	want := string(AppendHeader(nil, "a.test", "b.test", "ID1")) + "0123456789<x/><y/></stream:stream>"
	if s != want {
		t.Errorf("wire = %q, want %q", s, want)
	}
}

func TestFailSendsHeaderFirst(t *testing.T) {
	a, b := net.Pipe()
	got := readAll(b)
	c := NewConn(a, Options{})
	c.SetStreamID("S")
	c.Fail(&Error{Condition: HostUnknown, Text: "a < b"}, "us.test", "them.test")
	s := <-got
	if !strings.HasPrefix(s, "<?xml version='1.0'?><stream:stream") || !strings.Contains(s, "id='S'") {
		t.Errorf("no header first: %q", s)
	}
	if !strings.HasSuffix(s, "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a &lt; b</text></stream:error></stream:stream>") {
		t.Errorf("wire = %q", s)
	}
	// Once: a second Fail writes nothing more.
	c.Fail(&Error{Condition: PolicyViolation}, "", "")
}

func TestBacklogBound(t *testing.T) {
	a, b := net.Pipe() // b never reads
	defer b.Close()
	c := NewConn(a, Options{MaxBacklog: 1024})
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		err = c.Send(make([]byte, 100))
	}
	if !errors.Is(err, ErrBacklog) {
		t.Fatalf("Send to a peer that never reads = %v, want ErrBacklog", err)
	}
	if err := c.Send([]byte("x")); err == nil {
		t.Error("Send after the backlog overflowed succeeded")
	}
}

func TestSendWaitReportsWriteError(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	c := NewConn(a, Options{})
	defer c.Abort()
	if err := c.SendWait(time.Second, []byte("<x/>")); err == nil {
		t.Fatal("SendWait to a closed peer succeeded")
	}
	if err := c.Send([]byte("y")); err == nil {
		t.Error("Send after a write error succeeded")
	}
}

func TestReadHeaderChecksNamespaces(t *testing.T) {
	for _, tt := range []struct{ header, text string }{
		{"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>", "jabber:server"},
		{"<stream:stream xmlns='jabber:server' xmlns:stream='urn:x'>", "etherx"},
		{"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='urn:x'>", "db prefix"},
	} {
		a, b := net.Pipe()
		go b.Write([]byte(tt.header))
		c := NewConn(a, Options{})
		_, err := c.ReadHeader(time.Second)
		var se *Error
		if !errors.As(err, &se) || se.Condition != InvalidNamespace || !strings.Contains(se.Text, tt.text) {
			t.Errorf("%s: err = %v", tt.header, err)
		}
		c.Abort()
		b.Close()
	}
}

func TestToError(t *testing.T) {
	if e := ToError(&xmlstream.StreamError{Condition: "restricted-xml", Text: "t"}); e == nil || e.Condition != RestrictedXML {
		t.Errorf("scanner error: %v", e)
	}
	if e := ToError(io.EOF); e != nil {
		t.Errorf("EOF: %v", e)
	}
	if e := ToError(&net.OpError{Op: "read", Err: timeoutErr{}}); e == nil || e.Condition != ConnectionTimeout {
		t.Errorf("timeout: %v", e)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestParsePeerError(t *testing.T) {
	raw := []byte("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no</text></stream:error>")
	pe := ParsePeerError(raw, map[string]string{"stream": xmlstream.NSStream, "": xmlstream.NSServer})
	if pe.Condition != "host-unknown" || pe.Text != "no" {
		t.Errorf("got %+v", pe)
	}
	if pe := ParsePeerError([]byte("<stream:error/>"), map[string]string{"stream": xmlstream.NSStream}); pe.Condition != "unspecified" {
		t.Errorf("empty: %+v", pe)
	}
}

func FuzzParsePeerError(f *testing.F) {
	f.Add([]byte("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"))
	f.Add([]byte("<stream:error><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>x</text></stream:error>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		pe := ParsePeerError(raw, map[string]string{"stream": xmlstream.NSStream, "": xmlstream.NSServer})
		if pe == nil || pe.Condition == "" {
			t.Fatalf("no condition for %q", raw)
		}
	})
}

// tlsPair returns a server and a client config for name.
func tlsPair(t *testing.T, name string) (*tls.Config, *tls.Config) {
	t.Helper()
	ca, err := certstest.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{CommonName: name, DNSNames: []string{name}})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool, ServerName: name}
}

func TestStartTLSBothRoles(t *testing.T) {
	srvCfg, cliCfg := tlsPair(t, "b.test")
	a, b := net.Pipe()
	srv, cli := NewConn(a, Options{}), NewConn(b, Options{})
	defer srv.Abort()
	defer cli.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		if _, err := srv.ReadHeader(time.Second); err != nil {
			errc <- err
			return
		}
		// The header goes first: from this goroutine, in order with the
		// <proceed/> that follows (two writers would race).
		if err := srv.WriteHeader("b.test", "a.test", "S1"); err != nil {
			errc <- err
			return
		}
		if _, err := srv.Next(time.Second); err != nil { // <starttls/>
			errc <- err
			return
		}
		srv.Send([]byte("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
		errc <- srv.StartTLS(ctx, srvCfg, false)
	}()
	if err := cli.WriteHeader("a.test", "b.test", ""); err != nil {
		t.Fatal(err)
	}
	cli.Send([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"))
	if _, err := cli.ReadHeader(time.Second); err != nil {
		t.Fatal(err)
	}
	if el, err := cli.Next(time.Second); err != nil || el.Local != "proceed" {
		t.Fatalf("proceed: %v %v", el.Local, err)
	}
	if err := cli.StartTLS(ctx, cliCfg, true); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if cli.TLS() == nil || srv.TLSVersion() == "" {
		t.Fatal("no TLS state after StartTLS")
	}
	// The restarted stream runs over TLS.
	go cli.WriteHeader("a.test", "b.test", "")
	if h, err := srv.ReadHeader(time.Second); err != nil || h.From != "a.test" {
		t.Fatalf("header over TLS: %+v %v", h, err)
	}
}

func TestStartTLSRefusesBufferedBytes(t *testing.T) {
	a, b := net.Pipe()
	srv := NewConn(a, Options{})
	defer srv.Abort()
	go b.Write([]byte("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>"))
	if _, err := srv.ReadHeader(time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Next(time.Second); err != nil {
		t.Fatal(err)
	}
	for srv.Buffered() == 0 {
		time.Sleep(time.Millisecond) // the pipe delivers the rest in the same write
	}
	err := srv.StartTLS(context.Background(), &tls.Config{}, false)
	var se *Error
	if !errors.As(err, &se) || se.Condition != PolicyViolation {
		t.Fatalf("StartTLS with buffered bytes = %v, want policy-violation", err)
	}
}

func BenchmarkSendWait(b *testing.B) {
	x, y := net.Pipe()
	go io.Copy(io.Discard, y)
	c := NewConn(x, Options{WriteBuffer: OutgoingWriteBuffer})
	defer c.Abort()
	msg := bytes.Repeat([]byte("x"), 500)
	bufs := [][]byte{msg, msg, msg, msg}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := c.SendWait(time.Second, bufs...); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAwaitAcrossIdle: over TLS, a stream that waits longer than its idle
// time (its scanner drops its buffers and the read deadline passes once,
// which crypto/tls survives) still reads the next element whole, and the
// caller's own timeout still ends the wait — not sooner.
// handshake runs both sides' TLS handshakes (10 s at most).
func handshake(t *testing.T, srv, cli *tls.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- cli.HandshakeContext(ctx) }()
	if err := srv.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestAwaitAcrossIdle(t *testing.T) {
	srvCfg, cliCfg := tlsPair(t, "b.test")
	a, b := net.Pipe()
	srvTLS, cliTLS := tls.Server(a, srvCfg), tls.Client(b, cliCfg)
	handshake(t, srvTLS, cliTLS)
	srv, cli := NewConn(srvTLS, Options{}), NewConn(cliTLS, Options{})
	defer srv.Abort()
	defer cli.Abort()
	defer a.Close() // first: a TLS close_notify on a pipe nobody reads would wait 5s
	defer b.Close()
	srv.idleAfter = 20 * time.Millisecond
	go cli.WriteHeader("a.test", "b.test", "")
	if _, err := srv.ReadHeader(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	const msg = "<message xmlns='jabber:server' to='u@b.test' from='v@a.test'><body>after a quiet while</body></message>"
	go func() {
		time.Sleep(150 * time.Millisecond) // several idle times
		cli.Send([]byte(msg[:40]))
		time.Sleep(30 * time.Millisecond) // the rest after another idle time
		cli.Send([]byte(msg[40:]))
	}()
	srv.Await(30 * time.Second)
	el, err := srv.NextAwaited()
	if err != nil || string(el.Raw) != msg {
		t.Fatalf("after idle: %q, %v", el.Raw, err)
	}

	// Nothing more: the caller's timeout ends the wait.
	const timeout = 300 * time.Millisecond
	start := time.Now()
	srv.Await(timeout)
	_, err = srv.NextAwaited()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("after the timeout: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("timed out after %v, before the caller's %v", waited, timeout)
	}
}

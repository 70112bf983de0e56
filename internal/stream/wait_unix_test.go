//go:build unix

package stream

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// splitConn writes each write in two parts, pause apart, once armed: a
// TLS record arrives in pieces, as a slow or hostile peer sends it.
type splitConn struct {
	net.Conn
	mu    sync.Mutex
	armed bool
	pause time.Duration
}

func (c *splitConn) arm() { c.mu.Lock(); c.armed = true; c.mu.Unlock() }

func (c *splitConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	armed := c.armed
	c.mu.Unlock()
	if !armed || len(p) < 4 {
		return c.Conn.Write(p)
	}
	n, err := c.Conn.Write(p[:3]) // part of a record header
	if err != nil {
		return n, err
	}
	time.Sleep(c.pause)
	m, err := c.Conn.Write(p[3:])
	return n + m, err
}

// tcpTLSPair is a TLS stream pair over loopback TCP (the idle wait on the
// socket needs a real one), the server's idle time shortened.
func tcpTLSPair(t *testing.T) (srv, cli *Conn, cliRaw *splitConn) {
	t.Helper()
	srvCfg, cliCfg := tlsPair(t, "b.test")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cliRaw = &splitConn{Conn: raw, pause: 100 * time.Millisecond}
	srvRaw := <-accepted
	if srvRaw == nil {
		t.Fatal("accept failed")
	}
	srvTLS, cliTLS := tls.Server(srvRaw, srvCfg), tls.Client(cliRaw, cliCfg)
	handshake(t, srvTLS, cliTLS)
	srv, cli = NewConn(srvTLS, Options{}), NewConn(cliTLS, Options{})
	t.Cleanup(func() { srv.Abort(); cli.Abort(); srvRaw.Close(); raw.Close() })
	srv.idleAfter = 20 * time.Millisecond
	go cli.WriteHeader("a.test", "b.test", "")
	if _, err := srv.ReadHeader(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return srv, cli, cliRaw
}

// waitParkedOnSocket waits (5 s at most) until a goroutine waits in
// awaitReadable, and returns its stack.
func waitParkedOnSocket(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 1<<20)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "stream.awaitReadable") {
				return g
			}
		}
	}
	t.Fatal("no goroutine waits on the socket (awaitReadable) after the idle time")
	return ""
}

// TestIdleWaitOnSocket: an idle stream's reader waits on the socket, not
// inside crypto/tls (whose frames keep the stack from shrinking), and
// loses nothing: a record that arrives in pieces after the idle time, the
// caller's deadline, and the peer's close all end the wait as a read
// would.
func TestIdleWaitOnSocket(t *testing.T) {
	srv, cli, cliRaw := tcpTLSPair(t)
	const msg = "<message xmlns='jabber:server' to='u@b.test' from='v@a.test'><body>after a quiet while</body></message>"

	got := make(chan string, 1)
	go func() {
		if !srv.Await(0) {
			got <- "Await did not report that the stream went idle"
			return
		}
		el, err := srv.NextAwaited()
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(el.Raw)
	}()
	stack := waitParkedOnSocket(t)
	if strings.Contains(stack, "crypto/tls") {
		t.Fatalf("the idle wait holds crypto/tls frames:\n%s", stack)
	}
	// The next record arrives in two pieces: the first wakes the wait,
	// the read then waits for the rest.
	cliRaw.arm()
	if err := cli.Send([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	select {
	case g := <-got:
		if g != msg {
			t.Fatalf("after idle: %q", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the element sent after the idle time was not read")
	}

	// Nothing more: the caller's deadline ends the wait on the socket.
	const timeout = 300 * time.Millisecond
	start := time.Now()
	if !srv.Await(timeout) { // longer than the test's idle time: idle again
		t.Error("Await did not report that the stream went idle before the caller's deadline")
	}
	_, err := srv.NextAwaited()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("after the timeout: %v, want a timeout", err)
	}
	if waited := time.Since(start); waited < timeout {
		t.Fatalf("timed out after %v, before the caller's %v", waited, timeout)
	}

	// The peer closes while the reader waits on the socket (a new pair:
	// the timeout above is kept, as every read error is).
	srv, cli, _ = tcpTLSPair(t)
	ended := make(chan error, 1)
	go func() {
		srv.Await(0)
		_, err := srv.NextAwaited()
		ended <- err
	}()
	waitParkedOnSocket(t)
	cli.Close()
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("read an element after the peer closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the wait on the socket did not end when the peer closed")
	}

	// A stream with something to read does not go idle: the element is
	// on the socket (written, on loopback) before the wait starts.
	srv, cli, _ = tcpTLSPair(t)
	if err := cli.SendWait(10*time.Second, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if srv.Await(0) {
		t.Error("Await reported idle with an element waiting")
	}
	if el, err := srv.NextAwaited(); err != nil || string(el.Raw) != msg {
		t.Fatalf("busy stream: %q %v", el.Raw, err)
	}
}

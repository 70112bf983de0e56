package s2s

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// initiate runs Open and Authenticate from a.test to b.test on c.
func initiate(t *testing.T, c net.Conn, ih *initHost) (*Stream, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, stream.NewConn(c, stream.Options{}), ih, "a.test", "b.test")
	if err != nil {
		return nil, err
	}
	return s, s.Authenticate(ctx)
}

func TestDialbackBothRoles(t *testing.T) {
	rh := newRecvHost()
	c, done := pair(t, rh)
	ih := &initHost{}
	s, err := initiate(t, c, ih)
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth() != MethodDialback || len(ih.results) != 1 || ih.results[0] != dialback.Valid {
		t.Fatalf("auth %q, results %v", s.Auth(), ih.results)
	}
	if got, _ := rh.Authenticated(Pair{"a.test", "b.test"}); !got {
		t.Fatal("the receiving side did not record the pair")
	}
	if s.PeerFeatures().Child(xmlstream.NSDialbackFeature, "dialback") == nil {
		t.Error("dialback not offered")
	}
	// A stanza goes to the relay's handler.
	s.Conn.SendWait(time.Second, []byte("<message from='a.test' to='b.test'/>"))
	s.Conn.Close()
	if err := <-done; !errors.Is(err, xmlstream.ErrStreamEnd) {
		t.Fatalf("Receive ended with %v", err)
	}
	if len(rh.stanzas) != 1 {
		t.Errorf("stanzas %v", rh.stanzas)
	}
}

func TestDialbackInvalidKey(t *testing.T) {
	rh := newRecvHost()
	rh.keyValid = false
	c, done := pair(t, rh)
	_, err := initiate(t, c, &initHost{})
	var de *DialbackError
	var ne *NegotiationError
	if !errors.As(err, &de) || de.Type != dialback.Invalid || !errors.As(err, &ne) || ne.Stage != StageAuth {
		t.Fatalf("err = %v, want an invalid dialback answer", err)
	}
	<-done
}

func TestStartTLSAndSASLBothRoles(t *testing.T) {
	tt := newTestTLS(t)
	rh := newRecvHost()
	rh.tls, rh.offerTLS, rh.requireTLS, rh.certValid = tt.server, true, true, true
	c, done := pair(t, rh)
	ih := &initHost{tls: tt.client, useTLS: true, requireTLS: true, clientCert: true}
	s, err := initiate(t, c, ih)
	if err != nil {
		t.Fatal(err)
	}
	if s.Auth() != MethodSASLExternal || ih.secured != 1 || s.Conn.TLS() == nil {
		t.Fatalf("auth %q, secured %d", s.Auth(), ih.secured)
	}
	if m := rh.pairs[Pair{"a.test", "b.test"}]; m != MethodSASLExternal {
		t.Fatalf("receiving side recorded %q", m)
	}
	s.Conn.Close()
	<-done
}

func TestInitiatingTLSRequiredNotOffered(t *testing.T) {
	rh := newRecvHost()
	c, done := pair(t, rh)
	_, err := initiate(t, c, &initHost{useTLS: true, requireTLS: true})
	var ne *NegotiationError
	if !errors.As(err, &ne) || ne.Stage != StageTLS || !ne.Opened {
		t.Fatalf("err = %v", err)
	}
	expectCondition(t, err, stream.PolicyViolation)
	// Our stream error reached the peer.
	if err := <-done; err == nil {
		t.Error("Receive did not end")
	}
}

// rawPeer is a hand-written initiating side.
type rawPeer struct {
	t *testing.T
	c net.Conn
	r *xmlstream.Reader
}

func openRaw(t *testing.T, rh *recvHost, header string) (*rawPeer, <-chan error) {
	t.Helper()
	c, done := pair(t, rh)
	p := &rawPeer{t: t, c: c, r: xmlstream.NewReader(c, xmlstream.Limits{})}
	p.send(header)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := p.r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if el := p.next(); el.Local != "features" {
		t.Fatalf("got <%s/>, want features", el.Local)
	}
	return p, done
}

const rawHeader = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='a.test' to='b.test' version='1.0'>"

func (p *rawPeer) send(s string) {
	go p.c.Write([]byte(s))
}

func (p *rawPeer) next() xmlstream.Element {
	p.t.Helper()
	el, err := p.r.Next()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return el
}

func TestReceivingHostile(t *testing.T) {
	for _, tt := range []struct {
		name, send string
		rh         func(*recvHost)
		cond       stream.Condition
	}{
		{"typed db:result", "<db:result from='a.test' to='b.test' type='valid'/>", nil, stream.NotAuthorized},
		{"typed db:verify", "<db:verify from='a.test' to='b.test' id='x' type='valid'/>", nil, stream.NotAuthorized},
		{"db:result without key", "<db:result from='a.test' to='b.test'/>", nil, stream.BadFormat},
		{"dialback before required TLS", "<db:result from='a.test' to='b.test'>k</db:result>", func(h *recvHost) { h.offerTLS, h.requireTLS = true, true }, stream.PolicyViolation},
		{"bytes after starttls", "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message/>", func(h *recvHost) { h.offerTLS = true }, stream.PolicyViolation},
		{"unknown element", "<foo xmlns='urn:x'/>", nil, stream.UnsupportedStanzaType},
		{"policy refuses the pair", "<db:result from='a.test' to='b.test'>k</db:result>", func(h *recvHost) { h.denied = true }, stream.PolicyViolation},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rh := newRecvHost()
			if tt.rh != nil {
				tt.rh(rh)
			}
			p, done := openRaw(t, rh, rawHeader)
			p.send(tt.send)
			go func() {
				for {
					if _, err := p.r.Next(); err != nil {
						return
					}
				}
			}()
			expectCondition(t, <-done, tt.cond)
		})
	}
}

func TestStartTLSNotOffered(t *testing.T) {
	p, done := openRaw(t, newRecvHost(), rawHeader)
	p.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	if el := p.next(); el.Local != "failure" || el.Space != xmlstream.NSTLS {
		t.Fatalf("got <%s xmlns='%s'/>, want the TLS failure", el.Local, el.Space)
	}
	if _, err := p.r.Next(); !errors.Is(err, xmlstream.ErrStreamEnd) {
		t.Fatalf("after failure: %v, want the end of the stream", err)
	}
	var ee *EndError
	if err := <-done; !errors.As(err, &ee) {
		t.Fatalf("Receive ended with %v", err)
	}
}

func TestSASLNotOffered(t *testing.T) {
	p, done := openRaw(t, newRecvHost(), rawHeader)
	p.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
	el := p.next()
	contains(t, string(el.Raw), "<invalid-mechanism/>")
	// The stream goes on.
	p.send("<db:result from='a.test' to='b.test'>k</db:result>")
	el = p.next()
	if el.Local != "result" || el.Type != dialback.Invalid {
		t.Fatalf("got %s", el.Raw)
	}
	<-done
}

func TestDialbackErrorsAnswered(t *testing.T) {
	rh := newRecvHost()
	p, done := openRaw(t, rh, rawHeader)
	p.send("<db:result from='a.test' to='x.test'>k</db:result>")
	contains(t, string(p.next().Raw), "<item-not-found ")
	p.send("<db:result from='evil.test' to='b.test'>k</db:result>")
	contains(t, string(p.next().Raw), "<forbidden ")
	rh.verifyErr = errors.New("unreachable")
	p.send("<db:result from='a.test' to='b.test'>k</db:result>")
	el := p.next()
	contains(t, string(el.Raw), "<error type='wait'><remote-server-timeout ")
	p.c.Close()
	<-done
}

func TestAuthoritativeVerify(t *testing.T) {
	rh := newRecvHost()
	p, done := openRaw(t, rh, rawHeader)
	key := dialback.Key(secret, "a.test", "b.test", "S1")
	p.send("<db:verify from='a.test' to='b.test' id='S1'>" + key + "</db:verify>")
	if el := p.next(); el.Type != dialback.Valid || el.ID != "S1" || el.From != "b.test" {
		t.Fatalf("got %s", el.Raw)
	}
	p.send("<db:verify from='a.test' to='b.test' id='S2'>" + key + "</db:verify>")
	if el := p.next(); el.Type != dialback.Invalid {
		t.Fatalf("got %s", el.Raw)
	}
	p.c.Close()
	<-done
}

func TestVerifyKey(t *testing.T) {
	rh := newRecvHost()
	c, done := pair(t, rh)
	ctx := context.Background()
	s, err := Open(ctx, stream.NewConn(c, stream.Options{}), &initHost{}, "a.test", "b.test")
	if err != nil {
		t.Fatal(err)
	}
	valid, err := s.VerifyKey(ctx, "a.test", "b.test", "S9", dialback.Key(secret, "a.test", "b.test", "S9"), time.Second)
	if err != nil || !valid {
		t.Fatalf("VerifyKey = %v, %v", valid, err)
	}
	s.Conn.Abort()
	<-done
}

func TestReceivingRejectsHost(t *testing.T) {
	c, done := pair(t, newRecvHost())
	p := &rawPeer{t: t, c: c, r: xmlstream.NewReader(c, xmlstream.Limits{})}
	p.send("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' to='nobody.test' version='1.0'>")
	go func() {
		p.r.ReadHeader()
		for {
			if _, err := p.r.Next(); err != nil {
				return
			}
		}
	}()
	expectCondition(t, <-done, stream.HostUnknown)
}

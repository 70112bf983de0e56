package s2s

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// rawServer answers an initiating stream with header, then each of
// replies after reading one element from the initiator.
func rawServer(t *testing.T, c net.Conn, header string, replies ...string) {
	t.Helper()
	go func() {
		r := xmlstream.NewReader(c, xmlstream.Limits{})
		if _, err := r.ReadHeader(); err != nil {
			return
		}
		c.Write([]byte(header))
		for _, rep := range replies {
			if _, err := r.Next(); err != nil {
				return
			}
			c.Write([]byte(rep))
		}
		for {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	}()
}

const serverHeader = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='b.test' to='a.test' id='S1' version='1.0'>"

func TestInitiatingHostile(t *testing.T) {
	const tlsFeatures = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
	for _, tt := range []struct {
		name    string
		header  string
		replies []string
		host    initHost
		stage   Stage
		check   func(t *testing.T, err error)
	}{
		{"STARTTLS refused", serverHeader + tlsFeatures, []string{tlsFailure}, initHost{useTLS: true}, StageTLS, func(t *testing.T, err error) {
			var re *RefusedError
			if !errors.As(err, &re) || re.Element != "failure" {
				t.Fatalf("err = %v, want a RefusedError", err)
			}
		}},
		{"data after proceed", serverHeader + tlsFeatures, []string{tlsProceed + "<stream:features/>"}, initHost{useTLS: true}, StageTLS, func(t *testing.T, err error) {
			expectCondition(t, err, stream.PolicyViolation)
		}},
		{"pre-1.0 stream, TLS required", "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' id='S1'>", nil, initHost{useTLS: true, requireTLS: true}, StageTLS, nil},
		{"peer stream error instead of features", serverHeader + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>", nil, initHost{}, StageStream, func(t *testing.T, err error) {
			var pe *stream.PeerError
			if !errors.As(err, &pe) || pe.Condition != "host-unknown" {
				t.Fatalf("err = %v, want the peer's host-unknown", err)
			}
		}},
		{"dialback answer for another pair", serverHeader + "<stream:features/>", []string{"<db:result from='c.test' to='a.test' type='valid'/>"}, initHost{}, StageAuth, func(t *testing.T, err error) {
			expectCondition(t, err, stream.InvalidFrom)
		}},
		{"dialback error answer", serverHeader + "<stream:features/>", []string{"<db:result from='b.test' to='a.test' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>"}, initHost{}, StageAuth, func(t *testing.T, err error) {
			var de *DialbackError
			if !errors.As(err, &de) || de.Condition != "item-not-found" {
				t.Fatalf("err = %v, want a dialback error item-not-found", err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			rawServer(t, b, tt.header, tt.replies...)
			a.SetDeadline(time.Now().Add(10 * time.Second))
			host := tt.host
			_, err := initiate(t, a, &host)
			var ne *NegotiationError
			if !errors.As(err, &ne) || ne.Stage != tt.stage {
				t.Fatalf("err = %v, want a failure at stage %d", err, tt.stage)
			}
			if tt.check != nil {
				tt.check(t, err)
			}
		})
	}
}

// The end of the context interrupts a peer that says nothing.
func TestOpenInterrupted(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { // reads our header, answers nothing
		buf := make([]byte, 1024)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Open(ctx, stream.NewConn(a, stream.Options{}), &initHost{}, "a.test", "b.test")
	var ne *NegotiationError
	if !errors.As(err, &ne) || ne.Stage != StageStream || ne.Opened {
		t.Fatalf("err = %v", err)
	}
}

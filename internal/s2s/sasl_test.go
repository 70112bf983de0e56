package s2s

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// refusingPeer is the receiving side of a stream whose server refuses our
// certificate: STARTTLS, then features offering SASL EXTERNAL (and
// dialback when dialback is set), then one reply per element it reads
// ("" keeps the stream open and silent). The local names of the elements
// it read after TLS arrive on got; it ends when the connection does.
func refusingPeer(t *testing.T, c net.Conn, cfg *tls.Config, dialback bool, replies ...string) <-chan []string {
	t.Helper()
	got := make(chan []string, 1)
	go func() {
		var read []string
		defer func() { got <- read }()
		r := xmlstream.NewReader(c, xmlstream.Limits{})
		if _, err := r.ReadHeader(); err != nil {
			return
		}
		c.Write([]byte(serverHeader + "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"))
		if el, err := r.Next(); err != nil || el.Local != "starttls" {
			return
		}
		c.Write([]byte(tlsProceed))
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		r = xmlstream.NewReader(tc, xmlstream.Limits{})
		if _, err := r.ReadHeader(); err != nil {
			return
		}
		features := "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>"
		if dialback {
			features += "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"
		}
		tc.Write([]byte(serverHeader + features + "</stream:features>"))
		for i := 0; ; i++ {
			el, err := r.Next()
			if err != nil {
				return
			}
			read = append(read, el.Local)
			if i < len(replies) && replies[i] != "" {
				tc.Write([]byte(replies[i]))
			}
		}
	}()
	return got
}

const (
	saslNotAuthorized = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
	dialbackValid     = "<db:result from='b.test' to='a.test' type='valid'/>"
)

// A peer that refuses our certificate for SASL EXTERNAL (XEP-0178 §3) gets
// dialback on the same stream when it offers dialback and the relay wants
// it; every other way it answers ends the negotiation in time, with an
// error saying what happened, and without dialback when that was not
// wanted or offered.
func TestSASLExternalRefused(t *testing.T) {
	tlsCfg := newTestTLS(t)
	expectSASLError := func(cond string, noDialback bool) func(t *testing.T, err error) {
		return func(t *testing.T, err error) {
			var se *SASLError
			if !errors.As(err, &se) || se.Condition != cond || se.NoDialback != noDialback || se.Domain != "b.test" {
				t.Fatalf("err = %v, want a SASLError %s (no dialback: %v)", err, cond, noDialback)
			}
		}
	}
	tests := []struct {
		name        string
		dialback    bool // the peer offers dialback
		noFallback  bool // the relay refuses dialback after the failure
		replies     []string
		timeout     time.Duration // of the negotiation; 5 s when 0
		wantAuth    string        // "" = an error, checked by check
		check       func(t *testing.T, err error)
		wantRead    []string // the elements the peer received after TLS
		wantRefused []string // the conditions the relay learned
	}{
		{
			name: "failure, dialback on the same stream", dialback: true,
			replies:  []string{saslNotAuthorized, dialbackValid},
			wantAuth: MethodDialback, wantRead: []string{"auth", "result"}, wantRefused: []string{"not-authorized"},
		},
		{
			name: "failure with a text before its condition", dialback: true,
			replies:  []string{"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><text>certificate without clientAuth</text><bad-protocol/></failure>", dialbackValid},
			wantAuth: MethodDialback, wantRead: []string{"auth", "result"}, wantRefused: []string{"bad-protocol"},
		},
		{
			name: "failure, the relay does not fall back", dialback: true, noFallback: true,
			replies: []string{saslNotAuthorized},
			check:   expectSASLError("not-authorized", false), wantRead: []string{"auth"}, wantRefused: []string{"not-authorized"},
		},
		{
			name:    "failure, no dialback offered",
			replies: []string{saslNotAuthorized},
			check:   expectSASLError("not-authorized", true), wantRead: []string{"auth"},
		},
		{
			name: "failure, then a second failure for the dialback request", dialback: true,
			replies: []string{saslNotAuthorized, saslNotAuthorized},
			check: func(t *testing.T, err error) {
				expectCondition(t, err, stream.UnsupportedStanzaType)
			},
			wantRead: []string{"auth", "result"}, wantRefused: []string{"not-authorized"},
		},
		{
			name: "failure, then silence", dialback: true,
			replies: []string{saslNotAuthorized, ""}, timeout: time.Second,
			check: func(t *testing.T, err error) {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("err = %v, want a timeout", err)
				}
			},
			wantRead: []string{"auth", "result"}, wantRefused: []string{"not-authorized"},
		},
		{
			name: "failure, then the end of the stream", dialback: true,
			replies: []string{saslNotAuthorized + "</stream:stream>"},
			check: func(t *testing.T, err error) {
				if !errors.Is(err, xmlstream.ErrStreamEnd) {
					t.Fatalf("err = %v, want the end of the stream", err)
				}
			},
			wantRead: []string{"auth", "result"}, wantRefused: []string{"not-authorized"},
		},
		{
			name: "stream error instead of an outcome", dialback: true,
			replies: []string{"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"},
			check: func(t *testing.T, err error) {
				var pe *stream.PeerError
				if !errors.As(err, &pe) || pe.Condition != "not-authorized" {
					t.Fatalf("err = %v, want the peer's not-authorized", err)
				}
			},
			wantRead: []string{"auth"},
		},
		{
			name: "challenge instead of an outcome", dialback: true,
			replies: []string{"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>=</challenge>"},
			check: func(t *testing.T, err error) {
				expectCondition(t, err, stream.UnsupportedStanzaType)
			},
			wantRead: []string{"auth"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			got := refusingPeer(t, b, tlsCfg.server, tt.dialback, tt.replies...)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			host := &initHost{tls: tlsCfg.client, useTLS: true, requireTLS: true, clientCert: true, noFallback: tt.noFallback}
			start := time.Now()
			s, err := Open(ctx, stream.NewConn(a, stream.Options{}), host, "a.test", "b.test")
			if err != nil {
				t.Fatal(err)
			}
			err = s.Authenticate(ctx)
			if d := time.Since(start); d > timeout+2*time.Second {
				t.Errorf("the negotiation took %v, bounded by %v", d, timeout)
			}
			if tt.wantAuth != "" {
				if err != nil || s.Auth() != tt.wantAuth {
					t.Fatalf("auth %q, err %v; want %s", s.Auth(), err, tt.wantAuth)
				}
			} else {
				var ne *NegotiationError
				if !errors.As(err, &ne) || ne.Stage != StageAuth || s.Auth() != "" {
					t.Fatalf("auth %q, err %v; want a failure to authenticate", s.Auth(), err)
				}
				tt.check(t, err)
			}
			a.Close()
			b.Close()
			if read := <-got; !slices.Equal(read, tt.wantRead) {
				t.Errorf("the peer read %v after TLS, want %v", read, tt.wantRead)
			}
			if !slices.Equal(host.refused, tt.wantRefused) {
				t.Errorf("the relay learned the refusals %v, want %v", host.refused, tt.wantRefused)
			}
		})
	}
}

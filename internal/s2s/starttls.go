package s2s

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// StartTLS is the STARTTLS feature (RFC 6120 §5).
type StartTLS struct{}

// TLSReceiver is the relay's side of STARTTLS in the receiving role.
type TLSReceiver interface {
	// OfferTLS reports whether STARTTLS is offered on a plain stream to
	// the local domain to.
	OfferTLS(to string) bool
	// ServerTLS is the TLS configuration for a stream to to.
	ServerTLS(to string) *tls.Config
	// TLSDone learns the outcome of the handshake (nil: the stream is
	// encrypted, and what was authenticated before is forgotten).
	TLSDone(err error)
}

// TLSInitiator is the relay's side of STARTTLS in the initiating role.
type TLSInitiator interface {
	// UseTLS reports whether to take STARTTLS when offered, and whether
	// a stream without TLS is refused.
	UseTLS() (use, required bool)
	// ClientTLS is the TLS configuration for a stream from from to to.
	ClientTLS(from, to string) *tls.Config
	// TLSDone learns the outcome of the handshake; when it succeeded,
	// the peer's certificate is in s.Conn.TLS().
	TLSDone(ctx context.Context, s *Stream, err error)
}

const (
	tlsFailure = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
	tlsProceed = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
	tlsStart   = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
)

func (StartTLS) Name() string        { return "starttls" }
func (StartTLS) Authenticates() bool { return false }

func (StartTLS) Offered(s *Stream) bool {
	return s.Conn.TLS() == nil && s.recv.OfferTLS(s.to)
}

// List emits <starttls/> unprefixed with xmlns first: probing tools
// (testssl.sh, openssl s_client) look for it literally.
func (StartTLS) List(b []byte, s *Stream) []byte {
	b = append(b, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"...)
	if s.tlsRequired {
		b = append(b, "<required/>"...)
	}
	return append(b, "</starttls>"...)
}

func (StartTLS) Handles(el *xmlstream.Element) bool {
	return el.Space == xmlstream.NSTLS && el.Local == "starttls"
}

func (f StartTLS) Handle(ctx context.Context, s *Stream, el *xmlstream.Element) (Step, error) {
	if !s.Offers(f.Name()) {
		// RFC 6120 §5.4.2.2: <failure/>, then close.
		return Skip, s.refuse(tlsFailure, "STARTTLS was not offered")
	}
	if s.Pending() > 0 {
		// A dialback answer for the old layer would land in the middle of
		// the handshake.
		return Skip, s.refuse(tlsFailure, "STARTTLS while dialback verifications were under way")
	}
	if s.Conn.Buffered() != 0 {
		// Bytes sent after <starttls/> before the handshake would be read
		// as if they came over TLS (CVE-2011-0411 class).
		return Skip, &stream.Error{Condition: stream.PolicyViolation, Text: "data after <starttls/> before the TLS handshake"}
	}
	if err := s.Conn.Send([]byte(tlsProceed)); err != nil {
		return Skip, err
	}
	hctx, cancel := context.WithTimeout(ctx, HeaderTimeout)
	err := s.Conn.StartTLS(hctx, s.recv.ServerTLS(s.to), false)
	cancel()
	s.recv.TLSDone(err)
	if err != nil {
		return Skip, err
	}
	return Restart, nil
}

func (StartTLS) Initiate(ctx context.Context, s *Stream) (Step, error) {
	use, required := s.init.UseTLS()
	if s.Conn.TLS() != nil {
		return Skip, nil
	}
	if s.Conn.Peer().Version == "" && required {
		return Skip, errors.New("the remote server does not support TLS (no stream version)")
	}
	if !use || s.peerFeatures.Child(xmlstream.NSTLS, "starttls") == nil {
		if required {
			return Skip, &stream.Error{Condition: stream.PolicyViolation, Text: "TLS is required and " + s.to + " does not offer STARTTLS"}
		}
		return Skip, nil
	}
	if err := s.Conn.SendWait(HeaderTimeout, []byte(tlsStart)); err != nil {
		return Skip, err
	}
	el, err := s.Conn.Next(HeaderTimeout)
	if err != nil {
		return Skip, fmt.Errorf("read STARTTLS answer: %w", err)
	}
	if el.Space != xmlstream.NSTLS || el.Local != "proceed" {
		return Skip, &RefusedError{Feature: "STARTTLS", Domain: s.to, Element: el.Local}
	}
	err = s.Conn.StartTLS(ctx, s.init.ClientTLS(s.from, s.to), true)
	var se *stream.Error
	if errors.As(err, &se) {
		return Skip, err // bytes after <proceed/>: no handshake was tried
	}
	s.init.TLSDone(ctx, s, err)
	if err != nil {
		return Skip, fmt.Errorf("TLS handshake with %s: %w", s.to, err)
	}
	return Restart, nil
}

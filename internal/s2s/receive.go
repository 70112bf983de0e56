package s2s

import (
	"context"
	"time"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Receiver is what the relay decides for a stream it receives: the
// stream's own decisions and those of each feature.
type Receiver interface {
	StreamReceiver
	TLSReceiver
	SASLReceiver
	DialbackReceiver
	SMReceiver
	BidiReceiver
}

// StreamReceiver decides on the stream itself.
type StreamReceiver interface {
	// Accept checks a new stream's header domains (s.From, s.To) after our
	// header was sent; an error (a *stream.Error) refuses the stream.
	Accept(s *Stream) error
	// RequireTLS reports whether the stream must be encrypted before
	// anything but STARTTLS.
	RequireTLS() bool
	// HeaderTimeout bounds the wait for the next stream header.
	HeaderTimeout() time.Duration
	// ReadTimeout bounds the wait for the next element (0: none), or is
	// the stream error that ends a stream that waited too long.
	ReadTimeout() (time.Duration, error)
	// Stanza handles a message, presence or iq (jabber:server). With
	// stream management enabled, t.Done must be called once the stanza
	// is handled (relayed, bounced or dropped); the zero Ticket otherwise.
	// el is the Stream's, and valid only during the call.
	Stanza(el *xmlstream.Element, t Ticket) error
}

// Receive runs the receiving side of c until the stream ends: header,
// features, the elements each feature answers, restarts, and the stanzas
// handed to host. The error says how it ended (ErrStreamEnd from the
// scanner when the peer closed; a *stream.Error to send; an *EndError).
func Receive(ctx context.Context, c *stream.Conn, host Receiver) error {
	s := &Stream{Conn: c, role: Receiving, recv: host, features: Registered()}
	for {
		err := s.receiveStream(ctx)
		if err != errRestart {
			return err
		}
	}
}

// receiveStream handles one stream, from its header to a restart or the
// end.
func (s *Stream) receiveStream(ctx context.Context) error {
	if err := s.answerHeader(); err != nil {
		return err
	}
	for {
		// Wait for the next element in a small frame (Conn.Await): an
		// idle stream's goroutine then holds a small stack.
		timeout, err := s.recv.ReadTimeout()
		if err != nil {
			return err
		}
		if s.Conn.Await(timeout) {
			s.el = nil // an idle stream holds no element
		}
		step, err := s.receiveElement(ctx)
		switch {
		case err != nil:
			return err
		case step == Restart:
			return errRestart
		}
	}
}

// answerHeader reads the peer's stream header and answers it with ours
// and the features offered.
func (s *Stream) answerHeader() error {
	h, err := s.Conn.ReadHeader(s.recv.HeaderTimeout())
	if err != nil {
		return err
	}
	// Our header answers with the domain the peer asked for.
	s.Conn.SetStreamID(dialback.NewStreamID())
	s.acks = nil // stream management is enabled per stream
	s.from, s.to = Domain(h.From), Domain(h.To)
	if err := s.Conn.WriteHeader(s.to, s.from, s.Conn.StreamID()); err != nil {
		return err
	}
	if err := s.recv.Accept(s); err != nil {
		return err
	}
	s.tlsRequired = s.Conn.TLS() == nil && s.recv.RequireTLS()
	s.offered = make(map[string]bool, len(s.features))
	for _, f := range s.features {
		s.offered[f.Name()] = f.Offered(s)
	}
	if h.Version != "" {
		b := []byte("<stream:features>")
		for _, f := range s.features {
			if s.offered[f.Name()] {
				b = f.List(b, s)
			}
		}
		b = append(b, "</stream:features>"...)
		if err := s.Conn.SendWait(HeaderTimeout, b); err != nil {
			return err
		}
	}
	return nil
}

// receiveElement reads (within the deadline Conn.Await set) and answers one
// element. The element is read into s.el, not a new one each time (a
// pointer to it is handed on, so a local would be allocated for every
// stanza), and emptied afterwards: it keeps nothing of the read buffer;
// once the stream goes idle it is let go too.
func (s *Stream) receiveElement(ctx context.Context) (Step, error) {
	if s.el == nil {
		s.el = new(xmlstream.Element)
	}
	el := s.el
	var err error
	if *el, err = s.Conn.NextAwaited(); err != nil {
		return Skip, err
	}
	step, err := s.answer(ctx, el)
	*el = xmlstream.Element{}
	return step, err
}

// answer hands one element to the Receiver (a stanza) or the Feature
// that handles it.
func (s *Stream) answer(ctx context.Context, el *xmlstream.Element) (Step, error) {
	switch {
	case el.Space == xmlstream.NSServer && (el.Local == "message" || el.Local == "presence" || el.Local == "iq"):
		return Skip, s.recv.Stanza(el, s.acks.ticket())
	case stream.IsError(el):
		// The peer gives up: never answer a stream error with one.
		return Skip, &EndError{Reason: stream.ParsePeerError(el.Raw, s.Conn.Peer().Namespaces).Condition}
	}
	for _, f := range s.features {
		if f.Handles(el) {
			return f.Handle(ctx, s, el)
		}
	}
	return Skip, &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "unexpected element <" + el.Local + "> in namespace " + el.Space}
}

// refuse answers a feature request that may not be made with failure and
// ends the stream.
func (s *Stream) refuse(failure, reason string) error {
	s.Conn.Send([]byte(failure))
	s.Conn.Close()
	return &EndError{Reason: reason}
}

// node parses el with the peer header's namespaces; a parse error is
// not-well-formed.
func (s *Stream) node(el *xmlstream.Element) (*xmlstream.Node, error) {
	n, err := xmlstream.ParseNode(el.Raw, s.Conn.Peer().Namespaces)
	if err != nil {
		return nil, &stream.Error{Condition: stream.NotWellFormed, Text: err.Error()}
	}
	return n, nil
}

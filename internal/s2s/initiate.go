package s2s

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Initiator is what the relay decides for a stream it initiates.
type Initiator interface {
	TLSInitiator
	SASLInitiator
	DialbackInitiator
}

// NewInitiating returns the initiating side of a stream from `from` to
// `to` on c; nothing is sent yet (see OpenStream, Negotiate, Open).
func NewInitiating(c *stream.Conn, host Initiator, from, to string) *Stream {
	return &Stream{Conn: c, role: Initiating, init: host, from: from, to: to, features: Registered()}
}

// Open runs the initiating side up to authentication: our header, the
// peer's header and features, and the features that come before
// authentication (STARTTLS), restarting as they ask. The end of ctx
// interrupts it. Every error is a *NegotiationError; a stream error of
// ours has been sent.
func Open(ctx context.Context, c *stream.Conn, host Initiator, from, to string) (*Stream, error) {
	s := NewInitiating(c, host, from, to)
	release := interruptOnDone(ctx, c.NetConn())
	for {
		if err := s.OpenStream(); err != nil {
			release()
			return nil, s.fail(StageStream, err)
		}
		step, stage, err := s.negotiate(ctx, false)
		if err != nil {
			release()
			return nil, s.fail(stage, err)
		}
		if step != Restart {
			break
		}
	}
	if release() {
		// The time ran out just as the negotiation finished: the
		// connection's deadline is spent.
		return nil, &NegotiationError{Stage: StageStream, Opened: true, Err: fmt.Errorf("negotiate the stream with %s: %w", to, ctx.Err())}
	}
	return s, nil
}

// fail sends our stream error, if err is one, and wraps err.
func (s *Stream) fail(stage Stage, err error) error {
	var se *stream.Error
	if errors.As(err, &se) {
		s.Conn.Fail(se, s.from, s.to)
	}
	return &NegotiationError{Stage: stage, Opened: s.opened, Err: err}
}

// OpenStream sends our header and reads the peer's header and features.
func (s *Stream) OpenStream() error {
	if err := s.Conn.WriteHeader(s.from, s.to, ""); err != nil {
		return err
	}
	h, err := s.Conn.ReadHeader(HeaderTimeout)
	if err != nil {
		return fmt.Errorf("read stream header: %w", err)
	}
	s.opened = true
	s.Conn.SetStreamID(h.ID)
	if h.Version == "" {
		// A pre-RFC 3920 server: no features, dialback only.
		s.peerFeatures = &xmlstream.Node{Space: xmlstream.NSStream, Local: "features"}
		return nil
	}
	el, err := s.Conn.Next(HeaderTimeout)
	if err != nil {
		return fmt.Errorf("read stream features: %w", err)
	}
	if stream.IsError(&el) {
		// Never answer a stream error with one.
		s.Conn.Close()
		pe := stream.ParsePeerError(el.Raw, h.Namespaces)
		pe.Domain = s.to
		return pe
	}
	if el.Space != xmlstream.NSStream || el.Local != "features" {
		return &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "expected stream features"}
	}
	f, err := s.node(&el)
	if err != nil {
		return err
	}
	s.peerFeatures = f
	return nil
}

// Negotiate runs the features that come before authentication once: it
// returns Restart when one restarted the stream (call OpenStream again).
func (s *Stream) Negotiate(ctx context.Context) (Step, error) {
	step, _, err := s.negotiate(ctx, false)
	return step, err
}

// negotiate runs the initiating side of the features of one phase in
// order, until one restarts the stream or authenticates.
func (s *Stream) negotiate(ctx context.Context, auth bool) (Step, Stage, error) {
	for _, f := range s.features {
		if f.Authenticates() != auth {
			continue
		}
		step, err := f.Initiate(ctx, s)
		if err != nil {
			return Skip, stageOf(f), err
		}
		if step != Skip {
			return step, stageOf(f), nil
		}
	}
	return Skip, StageAuth, nil
}

func stageOf(f Feature) Stage {
	if f.Authenticates() {
		return StageAuth
	}
	return StageTLS
}

// Authenticate runs the authenticating features (SASL EXTERNAL, then
// dialback) after Open. The end of ctx interrupts it. Every error is a
// *NegotiationError; no stream error is sent (the caller closes).
func (s *Stream) Authenticate(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Conn.NetConn().SetDeadline(time.Now()) })
	defer stop()
	step, _, err := s.negotiate(ctx, true)
	if err == nil && step != Authenticated {
		err = fmt.Errorf("no way to authenticate to %s", s.to)
	}
	if err != nil {
		return &NegotiationError{Stage: StageAuth, Opened: true, Err: err}
	}
	return nil
}

// interruptOnDone makes the end of ctx interrupt blocking I/O on c (its
// deadline is set to now). release undoes it and reports whether ctx
// ended meanwhile: c's deadline is then in the past.
func interruptOnDone(ctx context.Context, c net.Conn) (release func() bool) {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.SetDeadline(time.Now())
		close(fired)
	})
	return func() bool {
		if stop() {
			return false
		}
		<-fired
		return true
	}
}

// readAnswer reads the next element, a peer's stream error becoming a
// *stream.PeerError.
func (s *Stream) readAnswer(timeout time.Duration) (xmlstream.Element, error) {
	el, err := s.Conn.Next(timeout)
	if err == nil && stream.IsError(&el) {
		pe := stream.ParsePeerError(el.Raw, s.Conn.Peer().Namespaces)
		pe.Domain = s.to
		return el, pe
	}
	return el, err
}

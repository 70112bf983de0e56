package s2s

import (
	"context"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

const (
	// NSBidiFeature is XEP-0288's stream feature.
	NSBidiFeature = "urn:xmpp:features:bidi"
	// NSBidi is the namespace of the initiating side's request.
	NSBidi = "urn:xmpp:bidi"
)

// Bidi is XEP-0288 bidirectional server-to-server streams in the
// receiving role: the initiating server asks with <bidi/> (Prosody's
// mod_s2s_bidi does so as soon as the feature is listed), and once a
// domain pair (from → to) is authenticated on the stream, the receiving
// side may send stanzas for the reverse pair (to → from) over the same
// stream rather than opening one of its own.
//
// The authentication of the reverse direction is the stream's own: the
// initiating server's identity is the one SASL EXTERNAL or dialback
// established, and it connected to the receiving server it resolved.
type Bidi struct{}

// BidiReceiver is the relay's side of XEP-0288.
type BidiReceiver interface {
	// OfferBidi reports whether bidirectional use is offered on s.
	OfferBidi(s *Stream) bool
	// BidiRequested is told that the peer asked for it.
	BidiRequested(s *Stream)
}

func (Bidi) Name() string        { return "bidi" }
func (Bidi) Authenticates() bool { return false }

// Offered: before authentication, where no TLS is still required.
func (Bidi) Offered(s *Stream) bool { return !s.tlsRequired && s.recv.OfferBidi(s) }

func (Bidi) List(b []byte, _ *Stream) []byte {
	return append(b, "<bidi xmlns='"+NSBidiFeature+"'/>"...)
}

func (Bidi) Handles(el *xmlstream.Element) bool {
	return el.Space == NSBidi && el.Local == "bidi"
}

// Handle takes the request; it has no answer. A request on a stream it
// was not offered on is ignored (the stream stays one-way), as Prosody
// does.
func (f Bidi) Handle(_ context.Context, s *Stream, _ *xmlstream.Element) (Step, error) {
	if s.Offers(f.Name()) {
		s.recv.BidiRequested(s)
	}
	return Skip, nil
}

// Initiate does nothing: the relay asks with Stream.RequestBidi once it
// knows the peer (its certificate), before Authenticate.
func (Bidi) Initiate(context.Context, *Stream) (Step, error) { return Skip, nil }

// PeerOffersBidi reports whether the receiving server listed XEP-0288 on
// the current stream (initiating role).
func (s *Stream) PeerOffersBidi() bool {
	return s.peerFeatures != nil && s.peerFeatures.Child(NSBidiFeature, "bidi") != nil
}

// RequestBidi asks the receiving server to use the stream both ways
// (initiating role, before Authenticate): once authenticated, it may send
// stanzas for the reverse pair (to → from) on it, which the relay then
// reads from the stream. It reports whether it asked (the peer must have
// offered it).
func (s *Stream) RequestBidi() (bool, error) {
	if s.role != Initiating || !s.PeerOffersBidi() {
		return false, nil
	}
	if err := s.Conn.SendWait(HeaderTimeout, []byte("<bidi xmlns='"+NSBidi+"'/>")); err != nil {
		return false, err
	}
	return true, nil
}

package s2s

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// HeaderTimeout bounds how long a peer may take to send a stream header or
// a negotiation element.
const HeaderTimeout = 30 * time.Second

// Step is what a feature's negotiation step leads to.
type Step int

const (
	// Skip: nothing changed on the stream; go on with the next element
	// (receiving) or the next feature (initiating).
	Skip Step = iota
	// Restart: the stream restarts (after TLS or SASL).
	Restart
	// Authenticated: the initiating side is authenticated.
	Authenticated
)

// Feature is one stream feature, in both roles. Implementations are
// stateless values: per-stream state lives in the Stream, the relay's
// decisions come from its Receiver or Initiator.
type Feature interface {
	// Name names the feature (for the offered set and logs).
	Name() string
	// Authenticates reports whether the initiating side runs the feature
	// in Stream.Authenticate (after the security layer and the relay's
	// certificate check) rather than in Open.
	Authenticates() bool

	// Offered reports whether the receiving side offers the feature on
	// the stream that just opened.
	Offered(s *Stream) bool
	// List appends the feature's entry in <stream:features/>.
	List(b []byte, s *Stream) []byte
	// Handles reports whether el is one of the elements the feature
	// answers in the receiving role (offered or not).
	Handles(el *xmlstream.Element) bool
	// Handle answers el in the receiving role. el is the Stream's, and
	// valid only during the call.
	Handle(ctx context.Context, s *Stream, el *xmlstream.Element) (Step, error)

	// Initiate runs the initiating side, given the features the peer
	// offered (Stream.PeerFeatures).
	Initiate(ctx context.Context, s *Stream) (Step, error)
}

// Registered returns the features in the order they are listed (receiving)
// and tried (initiating).
func Registered() []Feature {
	return []Feature{StartTLS{}, SASLExternal{}, Dialback{}, StreamManagement{}, Bidi{}}
}

// Pair is a domain pair: From originates, To receives.
type Pair struct{ From, To string }

// Role is the side of a stream.
type Role int

const (
	Receiving  Role = iota + 1 // the peer connected to us
	Initiating                 // we connected to the peer
)

// Stream is one stream in one role, over a stream.Conn.
type Stream struct {
	Conn *stream.Conn
	role Role
	// from and to: receiving, the domains of the peer's header
	// (canonical, "" when absent or invalid); initiating, ours and the
	// peer's.
	from, to string
	features []Feature

	recv        Receiver
	offered     map[string]bool
	tlsRequired bool

	init         Initiator
	opened       bool
	peerFeatures *xmlstream.Node
	auth         string

	acks *Acks // stream management's counts (receiving, once enabled)

	el *xmlstream.Element // the element being answered (receiveElement); nil while idle

	mu       sync.Mutex
	saslDone bool
	pending  map[Pair]bool // dialback verifications under way (nil: none)
}

// Role is the stream's role.
func (s *Stream) Role() Role { return s.role }

// From is the originating domain of the stream header: the peer's
// (receiving) or ours (initiating).
func (s *Stream) From() string { return s.from }

// To is the receiving domain of the stream header.
func (s *Stream) To() string { return s.to }

// Offers reports whether the receiving side offered the feature named
// name on the current stream.
func (s *Stream) Offers(name string) bool { return s.offered[name] }

// TLSRequired reports whether the receiving side requires TLS and the
// stream is not encrypted yet.
func (s *Stream) TLSRequired() bool { return s.tlsRequired }

// PeerFeatures are the features the peer offered (initiating role); an
// empty node for a pre-1.0 stream.
func (s *Stream) PeerFeatures() *xmlstream.Node { return s.peerFeatures }

// Auth is how the initiating side authenticated: "sasl_external" or
// "dialback"; "" before.
func (s *Stream) Auth() string { return s.auth }

// Pending is the number of dialback verifications under way.
func (s *Stream) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Domain returns s as an RFC 7622 canonical domain, "" when it is not one.
// The result is a copy: the domains of a header or a dialback request are
// kept for the stream's life, and s may point into the stream reader's
// string arena, which one retained string would keep whole (2 KiB per idle
// stream).
func Domain(s string) string {
	if d, err := jid.PrepareDomain(s); err == nil && s != "" {
		return strings.Clone(d)
	}
	return ""
}

// EndError ends a stream without a stream error of ours: the peer sent
// one, or a feature refused after answering (<failure/> and close).
type EndError struct{ Reason string }

func (e *EndError) Error() string { return "stream ended: " + e.Reason }

// RefusedError is the peer answering a feature request with something
// other than what continues it (e.g. <failure/> for <starttls/>).
type RefusedError struct {
	Feature, Domain, Element string
}

func (e *RefusedError) Error() string {
	return e.Feature + " refused by " + e.Domain + " (<" + e.Element + "/>)"
}

// Stage is the part of an initiating negotiation that failed.
type Stage int

const (
	StageStream Stage = iota + 1 // stream header and features, a stream error from the peer
	StageTLS                     // STARTTLS refused or failed, TLS required and not offered
	StageAuth                    // SASL EXTERNAL / dialback refused or unanswered
)

// NegotiationError is a failure of the initiating side.
type NegotiationError struct {
	Stage  Stage
	Opened bool // the peer's stream header was received
	Err    error
}

func (e *NegotiationError) Error() string { return e.Err.Error() }
func (e *NegotiationError) Unwrap() error { return e.Err }

var errRestart = errors.New("stream restart")

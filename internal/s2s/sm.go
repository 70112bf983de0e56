package s2s

import (
	"context"
	"strconv"
	"sync"

	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// NSStreamManagement is XEP-0198 version 3's namespace.
const NSStreamManagement = "urn:xmpp:sm:3"

// StreamManagement is XEP-0198 acknowledgements in the receiving role,
// without resumption: a peer that enables it learns, with each <a h=/>,
// how many of the stanzas it sent are handled. A stanza is handled when
// its fate is final — written to the next hop, or bounced with an error
// written back, or dropped as undeliverable and audited — not when it was
// read. So when this node dies, the sending server holds everything not
// acknowledged and bounces it (Prosody's mod_smacks: recipient-unavailable)
// instead of losing it with the process.
//
// An <r/> is answered once every stanza received before it is handled,
// not at once with a count that would leave the tail unacknowledged. In
// a burst, an <a/> also goes unasked every ackEvery handled stanzas
// (XEP-0198 §4 allows it at any time): a sender asks again only once its
// <r/> is answered, and Prosody keeps only the last 500 unacknowledged
// stanzas (smacks_max_queue_size), dropping older ones unbounced.
// Resumption (<resume/>) is refused: a stream's state dies with the
// connection, and another node could not resume it anyway.
type StreamManagement struct{}

// SMReceiver is the relay's side of stream management.
type SMReceiver interface {
	// StreamManagement reports whether XEP-0198 is offered on the stream.
	StreamManagement(s *Stream) bool
}

func (StreamManagement) Name() string        { return "sm" }
func (StreamManagement) Authenticates() bool { return false }

// Offered: on a stream that may carry stanzas (encrypted first where TLS
// is required), when the relay allows it. Prosody enables it as soon as
// it is listed, before dialback completes: that is allowed, stanzas are
// only counted once the pair they travel on is authenticated anyway.
func (StreamManagement) Offered(s *Stream) bool {
	return !s.tlsRequired && s.recv.StreamManagement(s)
}

func (StreamManagement) List(b []byte, _ *Stream) []byte {
	return append(b, "<sm xmlns='"+NSStreamManagement+"'><optional/></sm>"...)
}

func (StreamManagement) Handles(el *xmlstream.Element) bool {
	if el.Space != NSStreamManagement {
		return false
	}
	switch el.Local {
	case "enable", "r", "a", "resume":
		return true
	}
	return false
}

func smFailed(cond string) []byte {
	return []byte("<failed xmlns='" + NSStreamManagement + "'><" + cond + " xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>")
}

// Handle answers <enable/>, <r/>, <a/> and <resume/>.
func (f StreamManagement) Handle(_ context.Context, s *Stream, el *xmlstream.Element) (Step, error) {
	switch el.Local {
	case "enable":
		if !s.Offers(f.Name()) || s.acks != nil {
			return Skip, s.Conn.Send(smFailed("unexpected-request"))
		}
		s.acks = newAcks(s.Conn)
		return Skip, s.Conn.Send([]byte("<enabled xmlns='" + NSStreamManagement + "'/>"))
	case "r":
		if s.acks == nil {
			return Skip, &stream.Error{Condition: stream.UnsupportedStanzaType, Text: "<r/> before stream management was enabled"}
		}
		s.acks.request()
		return Skip, nil
	case "a":
		// We never ask: nothing we sent on this stream is a stanza to
		// count, so only h='0' is a count we can accept.
		n, err := s.node(el)
		if err != nil {
			return Skip, err
		}
		if s.acks == nil || n.Attr("h") != "0" {
			return Skip, &stream.Error{Condition: stream.UndefinedCondition, Text: "handled-count-too-high: no stanza was sent on this stream"}
		}
		return Skip, nil
	default: // resume
		return Skip, s.Conn.Send(smFailed("item-not-found"))
	}
}

// Initiate does nothing: we do not ask the servers we connect to for
// acknowledgements (yet).
func (StreamManagement) Initiate(context.Context, *Stream) (Step, error) { return Skip, nil }

// Acks counts the stanzas of one stream with stream management enabled:
// received (in order, by the reader) and handled (in any order, by
// whoever finishes with a stanza, through its Ticket).
type Acks struct {
	send func([]byte) error

	mu       sync.Mutex
	received uint64              // stanzas read since <enable/>
	handled  uint64              // stanzas 1..handled are all handled
	early    map[uint64]struct{} // handled, beyond handled+1
	waiting  bool                // an <r/> is not answered yet
	asked    uint64              // ... and is answered once handled reaches this
	sent     uint64              // the h of the last <a/> sent
}

// ackEvery is how many handled stanzas make an <a/> go unasked.
const ackEvery = 32

func newAcks(c *stream.Conn) *Acks {
	return &Acks{send: c.Send, early: make(map[uint64]struct{})}
}

// Ticket is one received stanza's claim on its stream's count; Done marks
// it handled. The zero Ticket (stream management off) does nothing. A
// Ticket is a value: it travels with the stanza without an allocation.
type Ticket struct {
	a *Acks
	n uint64
}

// Done marks the stanza handled; a second call does nothing.
func (t Ticket) Done() {
	if t.a != nil {
		t.a.done(t.n)
	}
}

// ticket counts one more received stanza (nil a: no ticket).
func (a *Acks) ticket() Ticket {
	if a == nil {
		return Ticket{}
	}
	a.mu.Lock()
	a.received++
	n := a.received
	a.mu.Unlock()
	return Ticket{a: a, n: n}
}

func (a *Acks) done(n uint64) {
	a.mu.Lock()
	if _, dup := a.early[n]; n <= a.handled || dup || n > a.received {
		a.mu.Unlock()
		return
	}
	if n != a.handled+1 {
		a.early[n] = struct{}{}
		a.mu.Unlock()
		return
	}
	a.handled++
	for {
		if _, ok := a.early[a.handled+1]; !ok {
			break
		}
		delete(a.early, a.handled+1)
		a.handled++
	}
	h, answer := a.answerable()
	a.mu.Unlock()
	if answer {
		a.send(ackElement(h))
	}
}

// request answers an <r/>: now if everything received is handled, else
// when it is.
func (a *Acks) request() {
	a.mu.Lock()
	a.waiting, a.asked = true, a.received
	h, answer := a.answerable()
	a.mu.Unlock()
	if answer {
		a.send(ackElement(h))
	}
}

// answerable reports whether an <a/> is due — a waiting <r/> can be
// answered, or ackEvery stanzas were handled since the last one — and
// with which count (with a.mu held).
func (a *Acks) answerable() (uint64, bool) {
	switch {
	case a.waiting && a.handled >= a.asked:
		a.waiting = false
	case a.handled-a.sent >= ackEvery:
	default:
		return 0, false
	}
	a.sent = a.handled
	return a.handled, true
}

// Counts returns how many stanzas were received and handled.
func (a *Acks) Counts() (received, handled uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.received, a.handled
}

// ackElement is <a h=/>; h counts modulo 2^32 (XEP-0198 §4).
func ackElement(h uint64) []byte {
	b := append([]byte("<a xmlns='"+NSStreamManagement+"' h='"), strconv.FormatUint(h%(1<<32), 10)...)
	return append(b, "'/>"...)
}

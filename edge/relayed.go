package edge

import (
	"strings"

	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// relayed is one message, presence or iq in flight between the legs: what
// leaves the stanza path and waits in an outgoing queue. raw is owned by
// it (a copy of the scanner's bytes, self-contained: any namespace prefix
// declared only on the incoming stream header is declared on the
// element).
type relayed struct {
	raw                  []byte
	kind                 string // message | presence | iq
	from, to, typ, id    string
	fromDomain, toDomain string
	rerouted             bool   // already moved once from a stream that closed under it
	auditSeq             uint64 // its audit record; written to the peer only once durable
	// ticket is the stream-management claim of the stanza it is, or
	// answers: done once it is written to the next hop or dropped (the
	// sending server then stops holding it). Exactly one relayed holds a
	// given ticket: a bounce takes it over.
	ticket s2s.Ticket
}

// newRelayed makes the stanza that goes on from el: from and to are the
// canonical addresses, raw the bytes to forward (nil: el's bytes as they
// are, with the header prefixes declared).
func newRelayed(el *xmlstream.Element, headerNS map[string]string, from, to, fromDomain, toDomain string, raw []byte) *relayed {
	if raw == nil {
		raw = el.AppendForward(make([]byte, 0, len(el.Raw)), headerNS)
	}
	return &relayed{
		raw:        raw,
		kind:       el.Local,
		from:       from,
		to:         to,
		typ:        strings.Clone(el.Type),
		id:         strings.Clone(el.ID),
		fromDomain: fromDomain,
		toDomain:   toDomain,
	}
}

// bounce returns the error stanza that answers st with condition, or nil
// when st must not be answered (stanza.Answerable: errors are never
// answered with errors, nor results, nor presences nobody waits an answer
// to).
func (st *relayed) bounce(condition stanza.Condition, text string) *relayed {
	if !stanza.Answerable(st.kind, st.typ) {
		return nil
	}
	b := &relayed{
		raw:  stanza.AppendError(make([]byte, 0, 256), st.kind, st.to, st.from, st.id, condition, text),
		kind: st.kind, from: st.to, to: st.from, typ: "error", id: st.id,
		fromDomain: st.toDomain, toDomain: st.fromDomain,
		ticket: st.ticket,
	}
	st.ticket = s2s.Ticket{}
	return b
}

// handled marks st handled for stream management: written, or dropped.
func (st *relayed) handled() {
	st.ticket.Done()
	st.ticket = s2s.Ticket{}
}

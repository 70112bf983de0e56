package edge

import (
	"strings"
	"sync"

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
	// buf is the pooled buffer raw is in (forwardBuffers), nil when raw
	// is not pooled.
	buf *[]byte
}

// maxPooledForward is the largest forward buffer kept for reuse.
const maxPooledForward = 16 << 10

// forwardBuffers recycles the buffers stanzas are forwarded from. A
// buffer goes back only once the stream writer has flushed it
// (outSession.writeBatch); a stanza bounced, dropped or moved to another
// stream keeps its buffer, which the garbage collector takes.
type forwardBuffers struct{ pool sync.Pool }

// get returns an empty buffer of at least n bytes' capacity.
func (f *forwardBuffers) get(n int) *[]byte {
	if p, ok := f.pool.Get().(*[]byte); ok {
		if cap(*p) >= n {
			*p = (*p)[:0]
			return p
		}
	}
	b := make([]byte, 0, max(n, 512))
	return &b
}

// adopt makes raw, appended to the buffer p came with, st's pooled raw;
// when the append outgrew p (a new array), p is dropped instead.
func (f *forwardBuffers) adopt(st *relayed, p *[]byte) {
	if cap(st.raw) == 0 || cap(*p) == 0 || &st.raw[:1][0] != &(*p)[:1][0] {
		return
	}
	*p = st.raw
	st.buf = p
}

// release takes back st's buffer once it is written; st.raw is gone.
func (f *forwardBuffers) release(st *relayed) {
	p := st.buf
	if p == nil {
		return
	}
	st.buf, st.raw = nil, nil
	if cap(*p) <= maxPooledForward {
		*p = (*p)[:0]
		f.pool.Put(p)
	}
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

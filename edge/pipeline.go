package edge

import (
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// handleStanza walks one stanza read from an incoming stream through the
// stanza path (chain.go). An error is the stream error to close the stream
// with.
//
// t is the stanza's stream-management ticket: it travels with what leaves
// the path (st.out, then its bounce) and is done where that is written or
// dropped (router.go); a stanza the path ends without anything leaving it
// (a stream error) is done here.
//
// The inStanza (with its policy input) is recycled once the path returns:
// nothing keeps it (what leaves the path is st.out, an allocation of its
// own; a policy copies what it keeps of its input).
func (s *inSession) handleStanza(el *xmlstream.Element, t s2s.Ticket) error {
	st := s.d.stanzas.Get().(*inStanza) // reset, or new
	st.el, st.ns, st.stream, st.leg, st.session, st.log, st.ticket = el, s.peerNS, s, s.leg, s.id, s.log, t
	err := s.d.path.handle(s.d.ctx, st)
	if st.out == nil {
		t.Done()
	}
	st.reset()
	s.d.stanzas.Put(st)
	return err
}

// reset empties st for the next stanza, keeping the arrays its policy
// input's children and its content parse are appended to (nothing keeps
// them: a policy copies what it keeps of its input), unless a stanza with
// more than maxPooledChildren children grew them: those go with it.
func (st *inStanza) reset() {
	children, names := st.input.Children[:0], st.content.Children[:0]
	clear(children[:cap(children)])
	clear(names[:cap(names)])
	if cap(children) > maxPooledChildren || cap(names) > maxPooledChildren {
		children, names = nil, nil
	}
	*st = inStanza{}
	st.input.Children, st.content.Children = children, names
}

// maxPooledChildren bounds the children arrays a pooled inStanza keeps.
const maxPooledChildren = 64

// pairFor implements stanzaStream.
func (s *inSession) pairFor(remote, local string) (p pairSnapshot, ok, anyAuthed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.pairs[domainPair{remote: remote, local: local}]
	if ps != nil {
		p, ok = pairSnapshot{facts: ps.facts, rate: ps.rate}, true
	}
	return p, ok, len(s.pairs) > 0
}

// countStanza implements stanzaStream.
func (s *inSession) countStanza() { s.stanzas.Add(1) }

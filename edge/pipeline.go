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
	st := s.d.stanzas.Get().(*inStanza)
	*st = inStanza{el: el, ns: s.peerNS, stream: s, leg: s.leg, session: s.id, log: s.log, ticket: t}
	err := s.d.path.handle(s.d.ctx, st)
	if st.out == nil {
		t.Done()
	}
	*st = inStanza{}
	s.d.stanzas.Put(st)
	return err
}

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

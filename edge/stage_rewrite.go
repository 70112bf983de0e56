package edge

import (
	"context"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// rewriteStage decides the bytes an allowed stanza is forwarded as (see
// forwardBytes) and builds the stanza that leaves the path. A stanza that
// cannot be rewritten within the size limit is refused (policy-violation):
// it is never forwarded in a form the policy did not judge.
//
// The bytes go into a buffer of bufs when they are the stanza's own (with
// canonical addresses at most); the router gives it back once written.
func rewriteStage(limits func() *Limits, bufs *forwardBuffers) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			var p *[]byte
			if d := &st.decision; d.Allow {
				p = bufs.get(len(st.el.Raw) + 64)
				raw, err := forwardBytes(st, d.Strip, limits().MaxStanzaSize, *p)
				if err != nil {
					st.log.Warn("stanza cannot be rewritten: refused", "kind", st.el.Local, "from", st.el.From, "to", st.el.To, "err", err)
					d.Allow, st.verdict = false, audit.DecisionDeny
					d.Error, d.Reason = "policy-violation", "the stanza cannot be forwarded in the form the policy requires (it would be too large rewritten)"
				}
				st.raw = raw
			}
			st.out = newRelayed(st.el, st.ns, st.fromStr, st.toStr, st.fromDomain, st.toDomain, st.raw)
			st.out.ticket = st.ticket
			if p != nil && st.raw != nil {
				bufs.adopt(st.out, p)
			}
			return next.handle(ctx, st)
		})
	}
}

// forwardBytes returns what is written to the receiver: the raw bytes
// (with header prefixes declared) when nothing changes; with the canonical
// addresses when they differ from what was sent; a canonical
// re-serialisation when the stanza has CDATA or the policy strips
// children.
//
// The stanza's own bytes are appended to dst (a buffer to reuse, or nil);
// a re-serialisation is a buffer of its own.
func forwardBytes(st *inStanza, strip []policy.Child, maxSize int, dst []byte) ([]byte, error) {
	el := st.el
	from, to := st.fromStr, st.toStr
	if !el.HasCDATA && len(strip) == 0 {
		if from == el.From && to == el.To {
			return el.AppendForward(dst, st.ns), nil
		}
		return el.AppendForwardAddressed(dst, st.ns, from, to), nil
	}
	n, err := st.node()
	if err != nil {
		return nil, err
	}
	if !el.HasCDATA && !stripsAny(n, strip) {
		// Nothing to remove: forwarded as it came, byte for byte.
		return forwardBytes(st, nil, maxSize, dst)
	}
	n.SetAttr("from", from)
	n.SetAttr("to", to)
	var drop func(path []*xmlstream.Node, child *xmlstream.Node) bool
	if len(strip) > 0 {
		drop = func(path []*xmlstream.Node, child *xmlstream.Node) bool {
			if len(path) != 1 {
				return false // the policy strips direct children of the stanza
			}
			if isStripped(child, strip) {
				st.stripped = append(st.stripped, "{"+child.Space+"}"+child.Local)
				return true
			}
			return false
		}
	}
	return xmlstream.AppendCanonical(nil, n, xmlstream.NSServer, drop, maxSize)
}

// stripsAny reports whether a child of n is in strip.
func stripsAny(n *xmlstream.Node, strip []policy.Child) bool {
	for _, child := range n.Children {
		if isStripped(child, strip) {
			return true
		}
	}
	return false
}

// isStripped reports whether child is named in strip.
func isStripped(child *xmlstream.Node, strip []policy.Child) bool {
	for _, c := range strip {
		if c.Name == child.Local && c.Namespace == child.Space {
			return true
		}
	}
	return false
}

package edge

import (
	"context"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/payload"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// policyStage asks the policy about the stanza: its input carries the
// canonical JIDs always, and the content and the payload facts only when
// the loaded policy reads them. The engine bounds its own evaluation
// (policy.timeout) and fails closed.
func policyStage(pol Policy, m *metrics.Metrics) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			st.in = policyInput(st, pol)
			start := time.Now()
			st.decision = pol.DecideStanza(ctx, st.in)
			m.PolicyDecision(metrics.PolicyKindStanza, time.Since(start), st.decision.Cached, false)
			switch d := &st.decision; {
			case !d.Allow:
				st.verdict = audit.DecisionDeny
			case d.WouldDeny:
				st.verdict = audit.DecisionWouldDeny
			default:
				st.verdict = audit.DecisionAllow
			}
			return next.handle(ctx, st)
		})
	}
}

// policyInput builds the stanza decision's input: the header always, the
// content and the payload facts only when the loaded policy reads them.
func policyInput(st *inStanza, pol Policy) *policy.StanzaInput {
	el := st.el
	in := &st.input
	*in = policy.StanzaInput{
		Direction: direction(st.leg), Kind: el.Local, Type: el.Type, ID: el.ID,
		From: policy.JIDOf(st.from, st.fromStr), To: policy.JIDOf(st.to, st.toStr), Session: st.pair.facts,
		Children: in.Children[:0], // its array is kept from stanza to stanza (pipeline.go)
	}
	needContent, needFacts := pol.NeedsContent(), pol.NeedsPayloadFacts()
	if !needContent && !needFacts {
		return in
	}
	children := fillContent(in, st)
	if needFacts {
		st.classify(children, in.Body)
		in.SetPayloadFacts(st.facts)
	}
	return in
}

// classify finds what the stanza carries that rules cannot read; the tree
// is parsed only when the top-level children say there may be something.
func (st *inStanza) classify(children []xmlstream.Name, body string) {
	if st.factsChecked {
		return
	}
	st.factsChecked = true
	if !payload.Interesting(children, body) {
		return
	}
	n, err := st.node()
	if err != nil {
		return
	}
	st.facts = payload.Classify(n, body)
}

// fillContent copies what a content policy reads from the stanza into in
// and returns the names of its children (for the payload pre-check): what
// the scanner collected while reading the stanza (Element.ContentInto),
// or else (a security label) policy.FillContent, with the stanza's tree
// parsed once.
func fillContent(in *policy.StanzaInput, st *inStanza) []xmlstream.Name {
	st.contentDone = true
	if st.el.ContentInto(&st.content) {
		return policy.SetContent(in, &st.content)
	}
	return policy.FillContent(in, st.el.Raw, st.ns, st.node, &st.content)
}

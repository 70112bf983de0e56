package edge

import (
	"context"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jid"
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

// policyJID is a prepared JID in the form the policy compares: domains as
// A-labels, as the policy data keeps them. s is j.String().
func policyJID(j jid.JID, s string) policy.JID {
	d := j.DomainASCII()
	if d == j.Domain { // ASCII: the forms are slices of s
		bare := s
		if j.Resource != "" {
			bare = s[:len(s)-len(j.Resource)-1]
		}
		return policy.JID{Full: s, Bare: bare, Domain: d}
	}
	bare := d
	if j.Local != "" {
		bare = j.Local + "@" + d
	}
	full := bare
	if j.Resource != "" {
		full = bare + "/" + j.Resource
	}
	return policy.JID{Full: full, Bare: bare, Domain: d}
}

// policyInput builds the stanza decision's input: the header always, the
// content and the payload facts only when the loaded policy reads them.
func policyInput(st *inStanza, pol Policy) *policy.StanzaInput {
	el := st.el
	in := &policy.StanzaInput{
		Direction: direction(st.leg), Kind: el.Local, Type: el.Type, ID: el.ID,
		From: policyJID(st.from, st.fromStr), To: policyJID(st.to, st.toStr), Session: st.pair.facts,
	}
	needContent, needFacts := pol.NeedsContent(), pol.NeedsPayloadFacts()
	if !needContent && !needFacts {
		return in
	}
	children := fillContent(in, st)
	if needFacts {
		st.classify(children, in.Body)
		in.Encryption = st.facts.Encryption
		in.BodyIsFallback = st.facts.BodyIsFallback
		for _, t := range st.facts.FileTransfer {
			in.FileTransfer = append(in.FileTransfer, policy.FileTransfer{Method: t.Method, Host: t.Host})
		}
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

// fillContent copies what a content policy reads from the stanza: the fast
// scanner when it can, the stanza's tree otherwise (prefixes, security
// labels, CDATA). Every body and subject is read (joined), not only the
// first. It returns the names of the stanza's children (for the payload
// pre-check).
func fillContent(in *policy.StanzaInput, st *inStanza) []xmlstream.Name {
	st.contentDone = true
	in.Children = in.Children[:0]
	if c, ok := xmlstream.ParseContent(st.el.Raw, st.ns); ok {
		if cap(in.Children) < len(c.Children) {
			in.Children = make([]policy.Child, 0, len(c.Children))
		}
		for _, ch := range c.Children {
			in.Children = append(in.Children, policy.Child{Name: ch.Local, Namespace: ch.Space})
		}
		in.Body, in.Subject, in.Thread = c.Body, c.Subject, c.Thread
		return c.Children
	}
	n, err := st.node()
	if err != nil {
		return nil
	}
	in.Body, in.Subject, in.Thread = "", "", ""
	names := make([]xmlstream.Name, 0, len(n.Children))
	thread := false
	for _, c := range n.Children {
		names = append(names, xmlstream.Name{Space: c.Space, Local: c.Local})
		in.Children = append(in.Children, policy.Child{Name: c.Local, Namespace: c.Space})
		switch {
		case c.Space == xmlstream.NSServer && c.Local == "body":
			in.Body = xmlstream.JoinText(in.Body, c.Text, false)
		case c.Space == xmlstream.NSServer && c.Local == "subject":
			in.Subject = xmlstream.JoinText(in.Subject, c.Text, false)
		case c.Space == xmlstream.NSServer && c.Local == "thread" && !thread:
			in.Thread, thread = c.Text, true
		case c.Space == xmlstream.SecurityLabelNS && c.Local == "securitylabel":
			in.SecurityLabel = securityLabel(c)
		}
	}
	return names
}

// securityLabel reads a XEP-0258 <securitylabel/> for the policy.
func securityLabel(c *xmlstream.Node) *policy.SecurityLabel {
	l := &policy.SecurityLabel{}
	if dm := c.Child(xmlstream.SecurityLabelNS, "displaymarking"); dm != nil {
		l.Marking, l.FgColor, l.BgColor = dm.Text, dm.Attr("fgcolor"), dm.Attr("bgcolor")
	}
	if lb := c.Child(xmlstream.SecurityLabelNS, "label"); lb != nil {
		l.Label = labelText(lb)
	}
	return l
}

// labelText flattens a <label/>'s content (the label formats vary, e.g.
// ESS security labels as base64): its text and its children's names.
func labelText(n *xmlstream.Node) string {
	var b strings.Builder
	b.WriteString(n.Text)
	for _, c := range n.Children {
		b.WriteString(" ")
		b.WriteString(c.Local)
		b.WriteString(":")
		b.WriteString(labelText(c))
	}
	return strings.TrimSpace(b.String())
}

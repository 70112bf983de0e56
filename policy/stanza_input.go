package policy

import (
	"slices"
	"strings"

	jidprep "github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/payload"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// The parts of a decision's input that are built from a stanza, shared by
// the relay (edge) and by the replay of recorded traffic (internal/replay),
// so that a replayed decision reads exactly what the relay's did.

// JIDOf is a prepared JID in the form the policy compares: domains as
// A-labels, as the policy data keeps them. s is j.String().
func JIDOf(j jidprep.JID, s string) JID {
	d := j.DomainASCII()
	if d == j.Domain { // ASCII: the forms are slices of s
		bare := s
		if j.Resource != "" {
			bare = s[:len(s)-len(j.Resource)-1]
		}
		return JID{Full: s, Bare: bare, Domain: d}
	}
	bare := d
	if j.Local != "" {
		bare = j.Local + "@" + d
	}
	full := bare
	if j.Resource != "" {
		full = bare + "/" + j.Resource
	}
	return JID{Full: full, Bare: bare, Domain: d}
}

// FillContent copies what a content policy reads from a stanza into in:
// the fast scanner on raw when it can, the stanza's tree otherwise
// (prefixes, security labels, CDATA). ns are the namespaces of the stream
// header the stanza arrived under; tree parses the stanza (the caller may
// cache it). Every body and subject is read (joined), not only the first.
// It returns the names of the stanza's children (for the payload
// pre-check, payload.Interesting). scratch, when not nil, is parsed into
// (its Children's array reused; the names returned are in it); in's
// Children array is reused too.
func FillContent(in *StanzaInput, raw []byte, ns map[string]string, tree func() (*xmlstream.Node, error), scratch *xmlstream.Content) []xmlstream.Name {
	if scratch == nil {
		scratch = new(xmlstream.Content)
	}
	if xmlstream.ParseContentInto(scratch, raw, ns) {
		return SetContent(in, scratch)
	}
	in.Children = in.Children[:0]
	n, err := tree()
	if err != nil {
		return nil
	}
	in.Body, in.Subject, in.Thread = "", "", ""
	names := make([]xmlstream.Name, 0, len(n.Children))
	thread := false
	for _, c := range n.Children {
		names = append(names, xmlstream.Name{Space: c.Space, Local: c.Local})
		in.Children = append(in.Children, Child{Name: c.Local, Namespace: c.Space})
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

// SetContent copies c, a stanza's content as the scanner collected it
// (xmlstream.Element.ContentInto) or ParseContent gave it, into in, whose
// Children array it reuses, and returns c's child names.
func SetContent(in *StanzaInput, c *xmlstream.Content) []xmlstream.Name {
	in.Children = in.Children[:0]
	if cap(in.Children) < len(c.Children) {
		in.Children = make([]Child, 0, len(c.Children))
	}
	for _, ch := range c.Children {
		in.Children = append(in.Children, Child{Name: ch.Local, Namespace: ch.Space})
	}
	in.Body, in.Subject, in.Thread = c.Body, c.Subject, c.Thread
	return c.Children
}

// SetPayloadFacts copies the content scanner's findings into the input.
func (in *StanzaInput) SetPayloadFacts(f payload.Facts) {
	in.Encryption = f.Encryption
	in.BodyIsFallback = f.BodyIsFallback
	for _, t := range f.FileTransfer {
		in.FileTransfer = append(in.FileTransfer, FileTransfer{Method: t.Method, Host: t.Host})
	}
}

// securityLabel reads a XEP-0258 <securitylabel/> for the policy.
func securityLabel(c *xmlstream.Node) *SecurityLabel {
	l := &SecurityLabel{}
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

// RequiresCertificate reports whether the decision demands certificate
// authentication (require: ["certificate"]).
func (d *SessionDecision) RequiresCertificate() bool {
	return slices.Contains(d.Require, "certificate")
}

// RequiresPosture reports whether a session decision made before
// authentication must be made again once authenticated (a partner's
// require_posture, judged on the authenticated stream).
func (d *SessionDecision) RequiresPosture() bool {
	return slices.Contains(d.Require, "posture")
}

// RefuseInvalidCertificate enforces require: ["certificate"] for a
// session whose remote certificate is known not to be valid: an allowed
// decision that requires one becomes a refusal, with the reason.
func (d *SessionDecision) RefuseInvalidCertificate(remoteDomain string) {
	if d.Allow && d.RequiresCertificate() {
		d.Allow = false
		d.Reason = "the policy requires certificate authentication for " + remoteDomain + " and its certificate is not valid"
	}
}

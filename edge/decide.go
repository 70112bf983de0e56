package edge

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// Policy decides who may federate and what may cross. *policy.Engine
// implements it. The gateway asks it:
//   - for a session when a remote domain authenticates on the outside leg
//     (direction inbound), and when the internal server authenticates for a
//     remote domain on the inside leg and again before connecting out
//     (direction outbound; the outside connection's facts are not known
//     yet, so tls and auth are empty);
//   - for every stanza, in both directions.
//
// A decision's require: ["certificate"] is enforced by the gateway: the
// remote's certificate must be valid for its domain (inbound: SASL EXTERNAL
// or a valid certificate under dialback; outbound: the certificate of the
// server we connect to).
type Policy interface {
	DecideSession(ctx context.Context, in *policy.SessionInput) policy.SessionDecision
	DecideStanza(ctx context.Context, in *policy.StanzaInput) policy.StanzaDecision
	// NeedsContent reports whether the policy reads the stanza's content
	// (body, subject, thread, children, security label); NeedsPayloadFacts
	// whether it reads what the content scanner finds that rules cannot
	// read (encryption, file transfers, fallback bodies). The gateway
	// parses only what is read.
	NeedsContent() bool
	NeedsPayloadFacts() bool
}

// direction of stanzas arriving on leg: from the outside they go inbound.
func direction(arrivalLeg Leg) string {
	if arrivalLeg == LegOutside {
		return "inbound"
	}
	return "outbound"
}

// requiresCert reports whether a session decision demands certificate
// authentication.
func requiresCert(d policy.SessionDecision) bool {
	return slices.Contains(d.Require, "certificate")
}

func tlsInfo(st *tls.ConnectionState, v *certs.Verdict) policy.TLSInfo {
	var ti policy.TLSInfo
	if st != nil {
		ti.Version = tls.VersionName(st.Version)
		ti.Cipher = tls.CipherSuiteName(st.CipherSuite)
	}
	if v != nil {
		ti.PeerCertValid = v.Valid
		ti.PeerCertIssuer = v.Issuer
		ti.PeerCertError = v.Reason
	}
	return ti
}

// decideSession asks the policy and applies the require list. cert says
// whether the remote's certificate is valid for its domain. It returns the
// decision and whether the session may go on.
func (g *Gateway) decideSession(in *policy.SessionInput, certValid bool) (policy.SessionDecision, bool) {
	ctx, cancel := context.WithTimeout(g.ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	d := g.opt.Policy.DecideSession(ctx, in)
	g.m.PolicyDecision(metrics.PolicyKindSession, time.Since(start), d.Cached, false)
	ok := d.Allow
	if ok && requiresCert(d) && in.Auth != "" && !certValid {
		ok = false
		d.Allow = false
		d.Reason = "the policy requires certificate authentication for " + in.RemoteDomain + " and its certificate is not valid"
	}
	return d, ok
}

// auditSession writes a session event. A failure to write is logged; the
// caller decides whether it stops the session.
func (g *Gateway) auditSession(event, sessionID string, leg Leg, in *policy.SessionInput, remoteAddr, decision, reason, revision string) error {
	r := &audit.Record{
		Event: event, Session: sessionID, Leg: leg.String(),
		RemoteAddr: remoteAddr, Decision: decision, Reason: reason, PolicyRevision: revision,
	}
	if in != nil {
		r.Direction = in.Direction
		r.LocalDomain, r.RemoteDomain = in.LocalDomain, in.RemoteDomain
		r.TLSVersion, r.TLSCipher = in.TLS.Version, in.TLS.Cipher
		r.Auth = in.Auth
		if in.TLS.Version != "" {
			r.PeerCert = "valid"
			if !in.TLS.PeerCertValid {
				r.PeerCert = in.TLS.PeerCertError
			}
		}
	}
	_, err := g.audit(r)
	if err != nil {
		g.log.Error("AUDIT LOG NOT WRITABLE: session event not recorded", "event", event, "session", sessionID, "err", err)
	}
	return err
}

// audit appends a record, timing it for the metrics.
func (g *Gateway) audit(r *audit.Record) (uint64, error) {
	start := time.Now()
	seq, err := g.opt.Audit.Append(r)
	g.m.AuditRecord(time.Since(start), err)
	return seq, err
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
			l := &policy.SecurityLabel{}
			if dm := c.Child(xmlstream.SecurityLabelNS, "displaymarking"); dm != nil {
				l.Marking, l.FgColor, l.BgColor = dm.Text, dm.Attr("fgcolor"), dm.Attr("bgcolor")
			}
			if lb := c.Child(xmlstream.SecurityLabelNS, "label"); lb != nil {
				l.Label = labelText(lb)
			}
			in.SecurityLabel = l
		}
	}
	return names
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

// stanzaRecord is the audit record of a stanza, with what the policy
// asked to keep.
func stanzaRecord(st *stanza, sessionID string, arrival Leg, decision, reason, revision, keep, body string) *audit.Record {
	r := &audit.Record{
		Event: "stanza", Session: sessionID, Leg: arrival.String(), Direction: direction(arrival),
		From: st.from, To: st.to, Kind: st.kind, Type: st.typ, ID: st.id, Size: len(st.raw),
		Decision: decision, Reason: reason, PolicyRevision: revision,
	}
	if arrival == LegOutside {
		r.LocalDomain, r.RemoteDomain = st.toDomain, st.fromDomain
	} else {
		r.LocalDomain, r.RemoteDomain = st.fromDomain, st.toDomain
	}
	switch keep {
	case policy.AuditFull:
		r.Stanza = string(st.raw)
	case policy.AuditHash:
		sum := sha256.Sum256([]byte(body))
		r.BodySHA256 = hex.EncodeToString(sum[:])
	}
	return r
}

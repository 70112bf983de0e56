package edge

import (
	"errors"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/payload"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// The stanza path of an incoming stream, in the order a stanza walks it:
//
//	addressing  from and to prepared (RFC 7622); the from domain must be
//	            authenticated on the stream for the to domain
//	limits      the remote domain's stanza rate (token bucket)
//	policy      the stanza decision, on the canonical JIDs and, when the
//	            policy reads them, the content and the payload facts
//	rewrite     what is forwarded: the raw bytes, the raw bytes with
//	            canonical addresses, or a canonical re-serialisation
//	            (CDATA, children stripped by the policy)
//	audit       the record, fail closed
//	route       to the outgoing stream, or a bounce
//
// What the internal server (or the partner) receives is exactly what the
// policy judged: the canonical addresses, and the tree the policy saw minus
// what it stripped.

// inStanza is one stanza on its way through the path.
type inStanza struct {
	el           *xmlstream.Element
	ns           map[string]string // the incoming stream header's namespaces
	from, to     jid.JID           // prepared
	fromStr      string            // from.String(), computed once (el.From itself when it was canonical)
	toStr        string            // to.String(), likewise
	fromDomain   string            // canonical domain of from (also when from is malformed)
	toDomain     string            // canonical domain of to
	badFrom      error             // from could not be prepared
	badTo        error             // to could not be prepared
	tree         *xmlstream.Node   // parsed on demand (content, payload facts, rewriting)
	treeErr      error
	treeParsed   bool
	facts        payload.Facts
	factsChecked bool
	contentDone  bool     // the policy input's content fields were filled
	stripped     []string // children removed, as "{namespace}name"
}

// prepareAddresses reads and prepares from and to. A JID that cannot be
// prepared leaves its domain from a loose split (so that the stream checks
// can still name it), and badFrom / badTo set.
func (st *inStanza) prepareAddresses() {
	var err error
	if st.from, err = jid.Prepare(st.el.From); err != nil {
		st.badFrom = err
		st.fromDomain = looseDomain(st.el.From)
	} else {
		st.fromDomain = st.from.Domain
		st.fromStr = jidString(st.from, st.el.From)
	}
	if st.to, err = jid.Prepare(st.el.To); err != nil {
		st.badTo = err
		st.toDomain = looseDomain(st.el.To)
	} else {
		st.toDomain = st.to.Domain
		st.toStr = jidString(st.to, st.el.To)
	}
}

// jidString is j.String(), without building it when sent (the address as
// it came) is already that string: the common case on the stanza path.
func jidString(j jid.JID, sent string) string {
	n := len(j.Domain)
	if j.Local != "" {
		n += len(j.Local) + 1
	}
	if j.Resource != "" {
		n += len(j.Resource) + 1
	}
	if len(sent) == n {
		rest, ok := sent, true
		if j.Local != "" {
			ok = len(rest) > len(j.Local) && rest[:len(j.Local)] == j.Local && rest[len(j.Local)] == '@'
			if ok {
				rest = rest[len(j.Local)+1:]
			}
		}
		if ok && len(rest) >= len(j.Domain) && rest[:len(j.Domain)] == j.Domain {
			rest = rest[len(j.Domain):]
			if j.Resource == "" && rest == "" || len(rest) > 0 && rest[0] == '/' && rest[1:] == j.Resource {
				return sent
			}
		}
	}
	return j.String()
}

// looseDomain is the canonical domainpart of a JID that could not be
// prepared as a whole, or "" when the domain itself is not valid.
func looseDomain(s string) string {
	d, err := jid.PrepareDomain(jidDomain(s))
	if err != nil {
		return ""
	}
	return d
}

// canonicalDomain prepares a domain from a stream header, a dialback
// element or a configuration; "" when it is not a valid domain.
func canonicalDomain(s string) string {
	if s == "" {
		return ""
	}
	d, err := jid.PrepareDomain(s)
	if err != nil {
		return ""
	}
	return d
}

// node returns the stanza's tree, parsing it once.
func (st *inStanza) node() (*xmlstream.Node, error) {
	if !st.treeParsed {
		st.tree, st.treeErr = xmlstream.ParseNode(st.el.Raw, st.ns)
		st.treeParsed = true
	}
	return st.tree, st.treeErr
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
func (s *inSession) policyInput(st *inStanza, facts *policy.SessionInput) *policy.StanzaInput {
	el := st.el
	in := &policy.StanzaInput{
		Direction: direction(s.leg), Kind: el.Local, Type: el.Type, ID: el.ID,
		From: policyJID(st.from, st.fromStr), To: policyJID(st.to, st.toStr), Session: facts,
	}
	pol := s.g.opt.Policy
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

// forwardBytes returns what is written to the receiver: the raw bytes
// (with header prefixes declared) when nothing changes; with the canonical
// addresses when they differ from what was sent; a canonical
// re-serialisation when the stanza has CDATA or the policy strips
// children.
func (s *inSession) forwardBytes(st *inStanza, strip []policy.Child) ([]byte, error) {
	el := st.el
	from, to := st.fromStr, st.toStr
	if !el.HasCDATA && len(strip) == 0 {
		if from == el.From && to == el.To {
			return el.AppendForward(make([]byte, 0, len(el.Raw)), st.ns), nil
		}
		return el.AppendForwardAddressed(make([]byte, 0, len(el.Raw)+16), st.ns, from, to), nil
	}
	n, err := st.node()
	if err != nil {
		return nil, err
	}
	if !el.HasCDATA && !stripsAny(n, strip) {
		// Nothing to remove: forwarded as it came, byte for byte.
		return s.forwardBytes(st, nil)
	}
	n.SetAttr("from", from)
	n.SetAttr("to", to)
	var drop func(path []*xmlstream.Node, child *xmlstream.Node) bool
	if len(strip) > 0 {
		drop = func(path []*xmlstream.Node, child *xmlstream.Node) bool {
			if len(path) != 1 {
				return false // the policy strips direct children of the stanza
			}
			for _, c := range strip {
				if c.Name == child.Local && c.Namespace == child.Space {
					st.stripped = append(st.stripped, "{"+child.Space+"}"+child.Local)
					return true
				}
			}
			return false
		}
	}
	return xmlstream.AppendCanonical(nil, n, xmlstream.NSServer, drop, s.g.limits().MaxStanzaSize)
}

// stripsAny reports whether a child of n is in strip.
func stripsAny(n *xmlstream.Node, strip []policy.Child) bool {
	for _, child := range n.Children {
		for _, c := range strip {
			if c.Name == child.Local && c.Namespace == child.Space {
				return true
			}
		}
	}
	return false
}

// overRate applies the remote domain's stanza rate to stanzas from the
// Internet: the partner's own (rate in its session decision) or the
// default of limits. What the internal server sends is not limited (it is
// trusted by configuration, and bursts to a partner are queued, with
// back-pressure, by the router).
func (s *inSession) overRate(st *inStanza, ps *pairState) bool {
	if s.leg != LegOutside {
		return false
	}
	lim := s.g.limits()
	perSecond, burst := lim.StanzaRate, lim.StanzaBurst
	s.mu.Lock()
	r := ps.rate
	s.mu.Unlock()
	if r != nil {
		perSecond, burst = r.PerSecond, r.Burst
	}
	return !s.g.rates.Allow(st.fromDomain, perSecond, burst, time.Now())
}

// stanzaRecordOf is the audit record of a stanza that went through the
// policy: the canonical addresses (and the ones sent, where they differ),
// the payload facts and what was stripped.
func stanzaRecordOf(st *inStanza, out *stanza, sessionID string, arrival Leg, d *policy.StanzaDecision, decision, body string) *audit.Record {
	r := stanzaRecord(out, sessionID, arrival, decision, d.Reason, d.Revision, d.Audit, body)
	if st.el.From != out.from {
		r.FromSent = st.el.From
	}
	if st.el.To != out.to {
		r.ToSent = st.el.To
	}
	r.Encryption = st.facts.Encryption
	if len(st.facts.FileTransfer) > 0 {
		ft := make([]string, 0, len(st.facts.FileTransfer))
		for _, t := range st.facts.FileTransfer {
			if t.Host != "" {
				ft = append(ft, t.Method+":"+t.Host)
			} else {
				ft = append(ft, t.Method)
			}
		}
		r.FileTransfer = audit.StringsOf(ft...)
	}
	if len(st.stripped) > 0 {
		r.Modified = true
		r.Stripped = audit.StringsOf(st.stripped...)
	}
	return r
}

// malformedText says which address of a stanza could not be prepared.
func malformedText(st *inStanza) string {
	var je *jid.Error
	err, which := st.badTo, "to"
	if err == nil {
		err, which = st.badFrom, "from"
	}
	if errors.As(err, &je) {
		return "the '" + which + "' address is not a valid JID: " + je.Part + ": " + je.Reason
	}
	return "the '" + which + "' address is not a valid JID"
}

// bounceMalformed bounces a stanza whose from or to cannot be prepared
// with jid-malformed, addressed so that the receiving server can read it:
// from the recipient's domain when the to is malformed, to the sender's
// domain when the from is; the address that could be prepared is used in
// its canonical form. It is never forwarded.
func (s *inSession) bounceMalformed(st *inStanza) {
	from, to := st.fromStr, st.toStr
	if st.badFrom != nil {
		from = st.fromDomain
	}
	if st.badTo != nil {
		to = st.toDomain
	}
	text := malformedText(st)
	s.log.Info("stanza with a malformed address refused", "kind", st.el.Local, "from", st.el.From, "to", st.el.To, "reason", text)
	s.refuse(st, from, to, "jid-malformed", text)
}

// refuse bounces a stanza the path stops before the policy (a malformed
// address, a rate over its limit) with condition: the refusal is recorded
// first (with the addresses as sent where they differ), and the error
// stanza goes out once the record is durable. The stanza itself is never
// forwarded.
func (s *inSession) refuse(st *inStanza, from, to, condition, text string) {
	out := &stanza{
		raw: st.el.Raw, kind: st.el.Local, typ: strings.Clone(st.el.Type), id: strings.Clone(st.el.ID),
		from: from, to: to, fromDomain: st.fromDomain, toDomain: st.toDomain,
	}
	rec := stanzaRecord(out, s.id, s.leg, "bounced", condition+": "+text, "", policy.AuditMeta, "")
	out.raw = nil // the record has its size; the bounce is built from the fields
	if from != st.el.From {
		rec.FromSent = st.el.From
	}
	if to != st.el.To {
		rec.ToSent = st.el.To
	}
	seq, err := s.g.audit(rec)
	if err != nil {
		s.g.log.Error("AUDIT LOG NOT WRITABLE: stanza refused", "session", s.id, "from", st.el.From, "to", st.el.To, "err", err)
		s.g.router.bounceUnaudited(out, s.leg.other(), "internal-server-error", "the gateway cannot record this stanza; try again later")
		return
	}
	s.g.router.bounceAfter(out, s.leg.other(), condition, text, seq)
}

// handleStanza walks one stanza through the stanza path (see
// pipeline.go): addressing → limits → policy → rewrite → audit → route.
func (s *inSession) handleStanza(el *xmlstream.Element) error {
	if el.From == "" || el.To == "" {
		return &StreamError{Condition: "improper-addressing", Text: "a stanza between servers needs both 'from' and 'to'"}
	}
	st := &inStanza{el: el, ns: s.sc.peer.Namespaces}
	st.prepareAddresses()
	ps, err := s.pairOf(st)
	if err != nil {
		return err
	}
	s.stanzas.Add(1)
	g := s.g
	g.m.Bytes(s.leg.String(), metrics.BytesReceived, len(el.Raw))
	if st.badFrom != nil || st.badTo != nil {
		s.bounceMalformed(st)
		return nil
	}
	if s.overRate(st, ps) {
		s.refuseOverRate(st)
		return nil
	}
	in := s.policyInput(st, ps.facts)
	// The engine bounds its own evaluation (policy.timeout).
	start := time.Now()
	d := g.opt.Policy.DecideStanza(g.ctx, in)
	g.m.PolicyDecision(metrics.PolicyKindStanza, time.Since(start), d.Cached, false)
	s.decided(st, in, &d)
	return nil
}

// pairOf checks that the stanza's from domain is authenticated on this
// stream for its to domain, and returns the pair; otherwise the stream
// error RFC 6120 names.
func (s *inSession) pairOf(st *inStanza) (*pairState, error) {
	fromDom, toDom := st.fromDomain, st.toDomain
	s.mu.Lock()
	ps := s.pairs[domainPair{remote: fromDom, local: toDom}]
	none := len(s.pairs) == 0
	s.mu.Unlock()
	if ps != nil && fromDom != "" && toDom != "" {
		return ps, nil
	}
	if _, okRecv := s.sides(fromDom, toDom); !okRecv {
		return nil, &StreamError{Condition: "host-unknown", Text: toDom + " is not reachable through this stream"}
	}
	if none {
		return nil, &StreamError{Condition: "not-authorized", Text: "no domain has been authenticated on this stream"}
	}
	return nil, &StreamError{Condition: "invalid-from", Text: fromDom + " has not been authenticated on this stream for " + toDom}
}

// refuseOverRate bounces a stanza over its remote domain's rate with
// resource-constraint (type wait).
func (s *inSession) refuseOverRate(st *inStanza) {
	s.g.m.LimitRefused(metrics.LimitStanzaRate)
	s.refuse(st, st.fromStr, st.toStr, "resource-constraint", "too many stanzas from "+st.fromDomain+": slow down and try again later")
}

// decided applies a stanza decision: the bytes to forward, the audit
// record (fail closed), then the route or the bounce.
func (s *inSession) decided(st *inStanza, in *policy.StanzaInput, d *policy.StanzaDecision) {
	g := s.g
	dest := s.leg.other()
	decision := "allow"
	switch {
	case !d.Allow:
		decision = "deny"
	case d.WouldDeny:
		decision = "would-deny"
	}
	var raw []byte
	if d.Allow {
		var err error
		if raw, err = s.forwardBytes(st, d.Strip); err != nil {
			s.log.Warn("stanza cannot be rewritten: refused", "kind", st.el.Local, "from", st.el.From, "to", st.el.To, "err", err)
			d.Allow, decision = false, "deny"
			d.Error, d.Reason = "policy-violation", "the stanza cannot be forwarded in the form the policy requires (it would be too large rewritten)"
		}
	}
	out := newStanza(st.el, st.ns, st.fromStr, st.toStr, st.fromDomain, st.toDomain, raw)
	if d.Audit == policy.AuditHash && !st.contentDone {
		fillContent(in, st) // the hash is of the bodies
	}
	if decision != "allow" || d.Audit != policy.AuditNone || len(st.stripped) > 0 {
		seq, err := g.audit(stanzaRecordOf(st, out, s.id, s.leg, d, decision, in.Body))
		if err != nil {
			// Fail closed: nothing crosses unrecorded.
			g.log.Error("AUDIT LOG NOT WRITABLE: stanza refused", "session", s.id, "from", out.from, "to", out.to, "err", err)
			g.router.bounceUnaudited(out, dest, "internal-server-error", "the gateway cannot record this stanza; try again later")
			return
		}
		out.auditSeq = seq
	}
	if !d.Allow {
		cond := d.Error
		if _, known := stanzaErrorType[cond]; !known && !definedStanzaCondition(cond) {
			cond = policy.DefaultStanzaError
		}
		g.m.Stanza(direction(s.leg), out.kind, metrics.OutcomeDenied, cond)
		s.log.Info("stanza refused by policy", "kind", out.kind, "from", out.from, "to", out.to, "reason", d.Reason, "policy_revision", d.Revision)
		g.router.bounce(out, dest, cond, d.Reason)
		return
	}
	g.router.route(out, dest)
}

// jidDomain returns the lowercased domainpart of a JID string (RFC 7622:
// what follows the first '@' before the first '/', or everything before
// '/'). A JID with a second '@' there yields a domain with an '@', which
// matches no domain.
func jidDomain(j string) string {
	if i := strings.IndexByte(j, '/'); i >= 0 {
		j = j[:i]
	}
	if i := strings.IndexByte(j, '@'); i >= 0 {
		j = j[i+1:]
	}
	j = strings.TrimSuffix(j, ".")
	for i := 0; i < len(j); i++ {
		if c := j[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(j)
		}
	}
	return j
}

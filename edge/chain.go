package edge

import (
	"context"
	"log/slog"

	"github.com/xmppedge/xmppedge/internal/jid"
	"github.com/xmppedge/xmppedge/internal/payload"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// The stanza path is a chain of small handlers, in the manner of CoreDNS's
// plugin chain: each stage does one thing, then hands the stanza to the
// next stage it was built around, or stops it (a stream error, or a
// refusal it records and bounces itself). The order is written once, in
// newStanzaPath:
//
//	addressing  from and to prepared (RFC 7622); the from domain must be
//	            authenticated on the stream for the to domain; a
//	            malformed address is bounced (stage_addressing.go)
//	limits      the remote domain's stanza rate (stage_limits.go)
//	policy      the stanza decision, on the canonical JIDs and, when the
//	            policy reads them, the content and the payload facts
//	            (stage_policy.go)
//	rewrite     what is forwarded: the raw bytes, the raw bytes with
//	            canonical addresses, or a canonical re-serialisation
//	            (CDATA, children stripped by the policy) (stage_rewrite.go)
//	audit       the record, fail closed (stage_audit.go)
//	route       to the outgoing stream, or a bounce (stage_route.go)
//
// What the internal server (or the partner) receives is exactly what the
// policy judged: the canonical addresses, and the tree the policy saw minus
// what it stripped. A new stage (a content scanner, a second limit) is one
// file with a type implementing stanzaHandler and one line in
// newStanzaPath.

// handler is one stage of a path: the stanza path (T is *inStanza) or the
// session path (T is *sessionCheck, session_path.go). For the stanza path
// an error is a stream error: the stream the stanza arrived on is closed
// with it; for the session path it means the check could not be completed
// and the session must not go on.
type handler[T any] interface {
	handle(ctx context.Context, v T) error
}

// handlerFunc adapts a function to handler.
type handlerFunc[T any] func(ctx context.Context, v T) error

func (f handlerFunc[T]) handle(ctx context.Context, v T) error { return f(ctx, v) }

// stage builds one stage of a path around the next.
type stage[T any] func(next handler[T]) handler[T]

// The two paths.
type (
	stanzaHandler  = handler[*inStanza]
	sessionHandler = handler[*sessionCheck]
)

// chainOf builds the handler that runs stages in order; the last stage's
// next is a handler that does nothing.
func chainOf[T any](stages ...stage[T]) handler[T] {
	var h handler[T] = handlerFunc[T](func(context.Context, T) error { return nil })
	for i := len(stages) - 1; i >= 0; i-- {
		h = stages[i](h)
	}
	return h
}

// newStanzaPath is the stanza path of this gateway: the one place that
// says which stages a stanza walks, in which order.
func (g *Gateway) newStanzaPath() stanzaHandler {
	r := &refuser{rec: g.rec, router: g.router}
	return chainOf[*inStanza](
		addressingStage(g.m, r),
		limitsStage(g.rates, g.limits, g.m, r),
		policyStage(g.opt.Policy, g.m),
		rewriteStage(g.limits, g.router.buffers),
		auditStage(g.rec, g.router),
		routeStage(g.router, g.m),
	)
}

// stanzaStream is what the path needs of the stream a stanza arrived on.
type stanzaStream interface {
	// pairFor returns what was established for the pair (remote → local)
	// on this stream, and whether it is authenticated; anyAuthed reports
	// whether any pair is.
	pairFor(remote, local string) (p pairSnapshot, ok, anyAuthed bool)
	// sides reports whether originating may send and receiving receive
	// on this stream's leg.
	sides(originating, receiving string) (okOrig, okRecv bool)
	// countStanza counts a stanza accepted from the stream.
	countStanza()
}

// pairSnapshot is what the path needs of an authenticated pair, read
// under the stream's lock.
type pairSnapshot struct {
	facts *policy.SessionInput // the session facts the policy decided on
	rate  *policy.Rate         // the partner's stanza rate; nil: the default of limits
}

// inStanza is one stanza on its way through the path, with what each
// stage found out about it.
type inStanza struct {
	el *xmlstream.Element
	ns map[string]string // the incoming stream header's namespaces

	// Where it came from.
	stream  stanzaStream
	leg     Leg    // the leg it arrived on
	session string // the id of the stream it arrived on
	log     *slog.Logger
	ticket  s2s.Ticket // stream management's claim: given to out, done once out is written or dropped

	// addressing
	from, to   jid.JID      // prepared
	fromStr    string       // from.String(), computed once (el.From itself when it was canonical)
	toStr      string       // to.String(), likewise
	fromDomain string       // canonical domain of from (also when from is malformed)
	toDomain   string       // canonical domain of to
	badFrom    error        // from could not be prepared
	badTo      error        // to could not be prepared
	pair       pairSnapshot // the authenticated pair it travels on

	// policy
	in       *policy.StanzaInput // input, or nil before the policy stage
	input    policy.StanzaInput  // in's storage
	content  xmlstream.Content   // what the content parse found (FillContent's scratch)
	decision policy.StanzaDecision
	verdict  string // allow | deny | would-deny: what the audit records

	// content, parsed on demand
	tree         *xmlstream.Node
	treeErr      error
	treeParsed   bool
	facts        payload.Facts
	factsChecked bool
	contentDone  bool // the policy input's content fields were filled

	// rewrite
	raw      []byte   // the bytes to forward (nil: the element's own)
	stripped []string // children removed, as "{namespace}name"

	// audit and route
	out *relayed // what leaves the path (built by the rewrite stage, or by a refuser); it carries ticket
}

// node returns the stanza's tree, parsing it once.
func (st *inStanza) node() (*xmlstream.Node, error) {
	if !st.treeParsed {
		st.tree, st.treeErr = xmlstream.ParseNode(st.el.Raw, st.ns)
		st.treeParsed = true
	}
	return st.tree, st.treeErr
}

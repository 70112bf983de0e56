package edge

import (
	"context"

	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/stanza"
	"github.com/xmppedge/xmppedge/policy"
)

// routeStage hands an allowed stanza to the router, towards the other leg;
// a refused one is bounced to its sender with the condition the policy
// named (a condition RFC 6120 does not define becomes policy-violation:
// nothing a policy says is written into XML as it is).
func routeStage(router *Router, m *metrics.Metrics) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			d, out, dest := &st.decision, st.out, st.leg.other()
			if d.Allow {
				router.route(out, dest)
				return next.handle(ctx, st)
			}
			cond := stanza.Condition(policy.DefaultStanzaError)
			if stanza.Defined(d.Error) {
				cond = stanza.Condition(d.Error)
			}
			m.Stanza(string(direction(st.leg)), out.kind, metrics.OutcomeDenied, string(cond))
			st.log.Info("stanza refused by policy", "kind", out.kind, "from", out.from, "to", out.to, "reason", d.Reason, "policy_revision", d.Revision)
			router.bounce(out, dest, cond, d.Reason)
			return next.handle(ctx, st)
		})
	}
}

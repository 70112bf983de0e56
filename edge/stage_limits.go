package edge

import (
	"context"
	"time"

	"github.com/xmppedge/xmppedge/internal/limit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/stanza"
)

// limitsStage applies the remote domain's stanza rate to stanzas from the
// Internet: the partner's own (rate in its session decision) or the
// default of limits. What the internal server sends is not limited (it is
// trusted by configuration, and bursts to a partner are queued, with
// back-pressure, by the router). A stanza over the rate is bounced with
// resource-constraint (type wait).
func limitsStage(rates *limit.Rates, limits func() *Limits, m *metrics.Metrics, r *refuser) stage[*inStanza] {
	return func(next stanzaHandler) stanzaHandler {
		return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
			if st.leg != LegOutside {
				return next.handle(ctx, st)
			}
			lim := limits()
			perSecond, burst := lim.StanzaRate, lim.StanzaBurst
			if rate := st.pair.rate; rate != nil {
				perSecond, burst = rate.PerSecond, rate.Burst
			}
			if !rates.Allow(st.fromDomain, perSecond, burst, time.Now()) {
				m.LimitRefused(metrics.LimitStanzaRate)
				r.refuse(st, st.fromStr, st.toStr, stanza.ResourceConstraint, "too many stanzas from "+st.fromDomain+": slow down and try again later")
				return nil
			}
			return next.handle(ctx, st)
		})
	}
}

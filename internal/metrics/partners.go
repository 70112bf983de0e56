package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Partner metrics. Their partner label is a partner entry's domain from
// the policy data (its pattern, e.g. "*.partner.test"), or Other: callers
// pass only names from the data, so the label is bounded by the data.
//
//	xmppedge_partner_agreement_expiry_timestamp_seconds{partner}  gauge: when the partner's agreement expires (alert on it minus time())
//	xmppedge_posture_downgrades_total{partner}           sessions weaker than the best posture seen from the partner
//	xmppedge_partner_posture_best{partner, dimension}    gauge: the best posture seen: tls 0-2 (none, 1.2, 1.3), auth 1-3 (dialback, certificate, sasl_external), dane 0-1
type partnerMetrics struct {
	expiry     *prometheus.GaugeVec
	downgrades *prometheus.CounterVec
	best       *prometheus.GaugeVec

	mu     sync.Mutex
	agreed map[string]bool // partners with an expiry series
}

func (m *Metrics) registerPartnerMetrics(r registrar) {
	m.partners = &partnerMetrics{
		expiry: r.gaugeVec("partner_agreement_expiry_timestamp_seconds",
			"When the partner's agreement (agreement.expires in the policy data) expires, in seconds since the epoch; alert on (this - time()) / 86400, the days left.", "partner"),
		downgrades: r.counterVec("posture_downgrades_total",
			"Sessions whose TLS or authentication posture was weaker than the best seen from the same partner (audit event posture.downgrade).", "partner"),
		best: r.gaugeVec("partner_posture_best",
			"The best posture seen from a partner, per dimension: tls 0 none, 1 TLS 1.2, 2 TLS 1.3; auth 1 dialback, 2 dialback with a valid certificate, 3 SASL EXTERNAL; dane 0 or 1.", "partner", "dimension"),
		agreed: map[string]bool{},
	}
}

func partnerLabel(p string) string {
	if p == "" {
		return Other
	}
	return p
}

// AgreementExpiry replaces the agreement expiry series with expires (by
// partner): a partner no longer in the map loses its series.
func (m *Metrics) AgreementExpiry(expires map[string]time.Time) {
	if m == nil {
		return
	}
	pm := m.partners
	pm.mu.Lock()
	defer pm.mu.Unlock()
	for p := range pm.agreed {
		if _, ok := expires[p]; !ok {
			pm.expiry.DeleteLabelValues(p)
			delete(pm.agreed, p)
		}
	}
	for p, t := range expires {
		pm.expiry.WithLabelValues(p).Set(float64(t.Unix()))
		pm.agreed[p] = true
	}
}

// PostureDowngrade counts a downgraded session of partner ("" : Other).
func (m *Metrics) PostureDowngrade(partner string) {
	if m == nil {
		return
	}
	m.partners.downgrades.WithLabelValues(partnerLabel(partner)).Inc()
}

// PartnerPosture sets the best posture seen from partner (ranks as in
// package posture); a partner not in the data ("") is not shown.
func (m *Metrics) PartnerPosture(partner string, tls, auth int, dane bool) {
	if m == nil || partner == "" {
		return
	}
	d := 0.0
	if dane {
		d = 1
	}
	m.partners.best.WithLabelValues(partner, "tls").Set(float64(tls))
	m.partners.best.WithLabelValues(partner, "auth").Set(float64(auth))
	m.partners.best.WithLabelValues(partner, "dane").Set(d)
}

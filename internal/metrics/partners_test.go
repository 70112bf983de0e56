package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPartnerMetrics(t *testing.T) {
	m := New("test")
	m.AgreementExpiry(map[string]time.Time{"partner.test": time.Unix(1800000000, 0), "old.test": time.Unix(1700000000, 0)})
	m.AgreementExpiry(map[string]time.Time{"partner.test": time.Unix(1900000000, 0)}) // old.test left the data
	m.PostureDowngrade("partner.test")
	m.PostureDowngrade("partner.test")
	m.PostureDowngrade("") // not in the data
	m.PartnerPosture("partner.test", 2, 3, true)
	m.PartnerPosture("", 1, 1, false) // not shown
	want := `
# HELP xmppedge_partner_agreement_expiry_timestamp_seconds When the partner's agreement (agreement.expires in the policy data) expires, in seconds since the epoch; alert on (this - time()) / 86400, the days left.
# TYPE xmppedge_partner_agreement_expiry_timestamp_seconds gauge
xmppedge_partner_agreement_expiry_timestamp_seconds{partner="partner.test"} 1.9e+09
# HELP xmppedge_posture_downgrades_total Sessions whose TLS or authentication posture was weaker than the best seen from the same partner (audit event posture.downgrade).
# TYPE xmppedge_posture_downgrades_total counter
xmppedge_posture_downgrades_total{partner="other"} 1
xmppedge_posture_downgrades_total{partner="partner.test"} 2
# HELP xmppedge_partner_posture_best The best posture seen from a partner, per dimension: tls 0 none, 1 TLS 1.2, 2 TLS 1.3; auth 1 dialback, 2 dialback with a valid certificate, 3 SASL EXTERNAL; dane 0 or 1.
# TYPE xmppedge_partner_posture_best gauge
xmppedge_partner_posture_best{dimension="auth",partner="partner.test"} 3
xmppedge_partner_posture_best{dimension="dane",partner="partner.test"} 1
xmppedge_partner_posture_best{dimension="tls",partner="partner.test"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"xmppedge_partner_agreement_expiry_timestamp_seconds", "xmppedge_posture_downgrades_total", "xmppedge_partner_posture_best"); err != nil {
		t.Error(err)
	}
	var nilM *Metrics
	nilM.AgreementExpiry(nil)
	nilM.PostureDowngrade("x")
	nilM.PartnerPosture("x", 1, 1, false)
}

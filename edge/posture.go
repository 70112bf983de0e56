package edge

import (
	"log/slog"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/policy"
)

// Posture events of the audit log (audit.Record's Event): a partner's
// session weaker than the best posture seen from it, and the best raised
// (the first one seen included). Their TLSVersion, Auth and PeerCert are
// the session's; Reason compares it with the best.
const (
	EventPostureDowngrade = "posture.downgrade"
	EventPostureRaised    = "posture.raised"
)

// postureWatch compares every authenticated outside session's posture
// with the best seen from its partner (package posture), and records
// what it finds: audit events, metrics, the state file.
type postureWatch struct {
	store *posture.Store // nil: postures are not watched
	rec   recorder
	log   *slog.Logger
	m     *metrics.Metrics
	// partner names the partner entry a domain falls under, "" for none
	// (the bounded metric label).
	partner func(domain string) string
}

// newPostureWatch is the gateway's watch: its policy names the partners
// when it can (*policy.Engine does).
func (g *Gateway) newPostureWatch() *postureWatch {
	w := &postureWatch{store: g.opt.Posture, rec: g.rec, log: g.log, m: g.m, partner: func(string) string { return "" }}
	if p, ok := g.opt.Policy.(interface{ PartnerOf(string) string }); ok {
		w.partner = p.PartnerOf
	}
	return w
}

// isDANE reports whether a verdict was reached by DANE.
func isDANE(v *certs.Verdict) bool {
	return v != nil && v.Valid && strings.HasPrefix(v.Method, "dane")
}

// observe records the posture of an authenticated session of the outside
// leg (facts as the policy saw them; dane: the certificate matched TLSA
// records).
func (w *postureWatch) observe(sessionID string, facts *policy.SessionInput, remoteAddr string, dane bool) {
	if w == nil || w.store == nil || facts == nil || facts.Auth == "" {
		return
	}
	p := posture.Posture{TLS: facts.TLS.Version, Auth: facts.Auth, CertValid: facts.TLS.PeerCertValid, DANE: dane}
	o, err := w.store.Observe(facts.RemoteDomain, p, sessionID, time.Now())
	if err != nil {
		w.log.Error("posture state not written: the best posture stays in memory until it can be (the audit log has it)", "remote_domain", facts.RemoteDomain, "err", err)
	}
	partner := w.partner(facts.RemoteDomain)
	switch {
	case len(o.Downgrade) > 0:
		w.m.PostureDowngrade(partner)
		w.log.Warn("posture downgrade: a partner's session is weaker than its best seen", "remote_domain", facts.RemoteDomain, "session", sessionID, "posture", p.String(), "best", o.Previous.String())
		auditSession(w.rec, w.log, sessionRecord(EventPostureDowngrade, sessionID, LegOutside, facts, remoteAddr, "", o.Reason(p), ""))
	case o.Raised:
		w.log.Info("posture recorded", "remote_domain", facts.RemoteDomain, "session", sessionID, "best", o.Best.String())
		auditSession(w.rec, w.log, sessionRecord(EventPostureRaised, sessionID, LegOutside, facts, remoteAddr, "", o.Reason(p), ""))
	}
	if o.Raised {
		w.m.PartnerPosture(partner, posture.TLSRank(o.Best.TLS), o.Best.AuthRank(), o.Best.DANE)
	}
}

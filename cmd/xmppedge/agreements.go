package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/policy"
)

// postureStateFile is the file of the best postures seen per partner,
// beside the audit log (file backend).
const postureStateFile = "posture-state.json"

// postureStatePath is where the best postures are kept: beside the audit
// file; "" (in memory only) with the jetstream backend, which has no
// local folder of its own.
func postureStatePath(cfg *config.Config) string {
	if cfg.Audit.Backend == config.AuditBackendJetStream {
		return ""
	}
	return filepath.Join(filepath.Dir(cfg.ResolvePath(cfg.Audit.Path)), postureStateFile)
}

// agreementRecheckCause names the re-check of an agreement's expiry in
// the records of the sessions it cuts.
const agreementRecheckCause = "partner agreement expiry"

// maxAgreementWait bounds a wait of watchAgreements: a clock that jumps
// (suspend, NTP step) is caught within it.
const maxAgreementWait = time.Hour

// watchAgreements keeps the agreement metrics in step with the policy data
// and asks the gateway to re-check its sessions when an agreement expires
// (the decision of an established session is not asked again by itself).
// changed wakes it after a policy reload. It ends with ctx.
func (n *node) watchAgreements(ctx context.Context, changed <-chan struct{}) {
	for {
		partners := n.eng.Partners()
		n.m.AgreementExpiry(agreementExpiries(partners))
		wait := maxAgreementWait
		if next, ok := nextExpiry(partners, time.Now()); ok {
			wait = min(wait, time.Until(next))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-t.C:
			if closed := n.gw.RecheckBecause(agreementRecheckCause); closed > 0 {
				n.log.Warn("partner agreement expired: sessions closed", "closed", closed)
			}
		}
	}
}

// agreementExpiries are the partners' agreement expiries by partner entry.
func agreementExpiries(ps []policy.Partner) map[string]time.Time {
	out := map[string]time.Time{}
	for _, p := range ps {
		if p.Agreement != nil {
			if t, ok := out[p.Domain]; !ok || p.Agreement.Expires.Before(t) {
				out[p.Domain] = p.Agreement.Expires
			}
		}
	}
	return out
}

// nextExpiry is the first instant after now at which a decision sees an
// agreement expired (policy.DecidedFrom, decisions being made to the
// minute) — a second after it, so that the re-check falls in that minute.
func nextExpiry(ps []policy.Partner, now time.Time) (time.Time, bool) {
	var next time.Time
	for _, p := range ps {
		if p.Agreement == nil {
			continue
		}
		at := policy.DecidedFrom(p.Agreement.Expires).Add(time.Second)
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, !next.IsZero()
}

// partnerStates is GET /admin/partners: per remote domain of the outside
// leg, its sessions on this node and the postures seen.
func (n *node) partnerStates() any {
	byDomain := map[string]*admin.PartnerState{}
	get := func(d string) *admin.PartnerState {
		if s, ok := byDomain[d]; ok {
			return s
		}
		s := &admin.PartnerState{Domain: d}
		byDomain[d] = s
		return s
	}
	for _, s := range n.gw.Sessions() {
		if s.Leg != "outside" {
			continue
		}
		for _, d := range s.Remote {
			get(d).Sessions++
		}
	}
	if n.posture != nil {
		for d, e := range n.posture.Snapshot() {
			st := get(d)
			best := e.Best
			st.Best, st.Last = &best, e.Last
		}
	}
	out := make([]admin.PartnerState, 0, len(byDomain))
	for _, s := range byDomain {
		s.Partner = n.eng.PartnerOf(s.Domain)
		out = append(out, *s)
	}
	return out
}

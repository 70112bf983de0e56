package edge

import (
	"context"
	"crypto/tls"
	"log/slog"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
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
	policy.Decider
}

// direction of stanzas arriving on leg: from the outside they go inbound.
func direction(arrivalLeg Leg) policy.Direction {
	if arrivalLeg == LegOutside {
		return policy.Inbound
	}
	return policy.Outbound
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

// decideSession walks a session decision without an audit record through
// the session path (session_path.go): the outbound decision before
// connecting, and the re-checks after a reload. certValid says whether the
// remote's certificate is valid for its domain; it counts only once the
// remote has authenticated (in.Auth set). It returns the decision and
// whether the session may go on.
func decideSession(ctx context.Context, path sessionHandler, in *policy.SessionInput, certValid bool) (policy.SessionDecision, bool) {
	c := &sessionCheck{facts: in}
	if in.Auth != "" {
		c.cert = certStateOf(certValid)
	}
	path.handle(ctx, c) // without a record it cannot fail
	return c.decision, c.decision.Allow
}

// auditSession writes a session event. A failure to write is logged; the
// caller decides whether it stops the session.
func auditSession(rec recorder, log *slog.Logger, r *audit.Record) error {
	_, err := rec.record(r)
	if err != nil {
		log.Error("AUDIT LOG NOT WRITABLE: session event not recorded", "event", r.Event, "session", r.Session, "err", err)
	}
	return err
}

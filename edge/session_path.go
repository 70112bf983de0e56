package edge

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/policy"
)

// Sessions are decided by a chain of the same kind as stanzas (chain.go),
// written once in newSessionPath:
//
//	policy        the session decision (policy.SessionInput: domains,
//	              direction, TLS, authentication)
//	certificate   the decision's require: ["certificate"], enforced when
//	              the remote's certificate is known
//	audit         the session.auth record, when the check asks for one
//	              (fail closed: an unrecorded session does not start)
//
// Every session decision walks it: an incoming pair when it authenticates
// (inbound authorisation), an outgoing stream before it connects and once
// it knows the peer's certificate (outbound decision), and every
// established stream again after a policy reload (re-check).

// certState is what is known of the remote's certificate when a session
// is decided.
type certState uint8

const (
	certUnknown certState = iota // not connected yet (outbound, before connecting)
	certValid                    // valid for the remote domain
	certInvalid                  // absent or not valid for the remote domain
)

// certStateOf is the certState of a verdict that is known.
func certStateOf(valid bool) certState {
	if valid {
		return certValid
	}
	return certInvalid
}

// sessionCheck is one session decision on its way through the path.
type sessionCheck struct {
	facts *policy.SessionInput
	cert  certState

	// record, when set, is the audit event written with the verdict
	// (session.auth); the other fields describe the stream for it.
	record     string
	session    string
	leg        Leg
	remoteAddr string
	// note, when set, leads the record's reason when the session is
	// allowed (how it was authenticated, e.g. XEP-0344's shortcut).
	note string

	decision policy.SessionDecision // the verdict: decision.Allow
}

// errSessionUnrecorded is the error of a session check whose audit record
// could not be written.
var errSessionUnrecorded = errors.New("the audit log cannot be written")

// newSessionPath is the session path of this gateway: the one place that
// says which stages a session decision walks, in which order.
func (g *Gateway) newSessionPath() sessionHandler {
	return chainOf[*sessionCheck](
		sessionPolicyStage(g.opt.Policy, g.m),
		certificateStage(),
		sessionAuditStage(g.rec, g.log),
	)
}

// sessionPolicyTimeout bounds one session decision (the engine bounds its
// own evaluation too, and fails closed).
const sessionPolicyTimeout = 5 * time.Second

// sessionPolicyStage asks the policy, at the time of asking (input.now,
// to the minute: partner agreements expire against it). The facts are
// copied for it: they are shared with the stanzas of the session.
func sessionPolicyStage(pol Policy, m *metrics.Metrics) stage[*sessionCheck] {
	return func(next sessionHandler) sessionHandler {
		return handlerFunc[*sessionCheck](func(ctx context.Context, c *sessionCheck) error {
			ctx, cancel := context.WithTimeout(ctx, sessionPolicyTimeout)
			start := time.Now()
			in := *c.facts
			in.Now = policy.NowInput(start)
			c.decision = pol.DecideSession(ctx, &in)
			cancel()
			m.PolicyDecision(metrics.PolicyKindSession, time.Since(start), c.decision.Cached, false)
			return next.handle(ctx, c)
		})
	}
}

// certificateStage enforces require: ["certificate"]: a session the policy
// allows only with a valid certificate is refused when the remote's
// certificate is known not to be valid.
func certificateStage() stage[*sessionCheck] {
	return func(next sessionHandler) sessionHandler {
		return handlerFunc[*sessionCheck](func(ctx context.Context, c *sessionCheck) error {
			if c.cert == certInvalid {
				c.decision.RefuseInvalidCertificate(c.facts.RemoteDomain)
			}
			return next.handle(ctx, c)
		})
	}
}

// sessionAuditStage writes the check's record, when it asks for one.
func sessionAuditStage(rec recorder, log *slog.Logger) stage[*sessionCheck] {
	return func(next sessionHandler) sessionHandler {
		return handlerFunc[*sessionCheck](func(ctx context.Context, c *sessionCheck) error {
			if c.record == "" {
				return next.handle(ctx, c)
			}
			d := &c.decision
			verdict := audit.DecisionAllow
			switch {
			case !d.Allow:
				verdict = audit.DecisionDeny
			case d.WouldDeny:
				verdict = audit.DecisionWouldDeny
			}
			reason := d.Reason
			if c.note != "" && d.Allow {
				reason = c.note
				if d.Reason != "" {
					reason += "; " + d.Reason
				}
			}
			if _, err := rec.record(sessionRecord(c.record, c.session, c.leg, c.facts, c.remoteAddr, verdict, reason, d.Revision)); err != nil {
				log.Error("AUDIT LOG NOT WRITABLE: session refused", "event", c.record, "session", c.session, "err", err)
				return errSessionUnrecorded
			}
			return next.handle(ctx, c)
		})
	}
}

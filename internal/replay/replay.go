package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/policy"
)

// Policy is the candidate policy: *policy.Engine implements it.
type Policy = policy.Decider

// Outcome is how a replayed decision compares with the recorded one.
type Outcome string

// The outcomes.
const (
	NewlyDenied  Outcome = "newly_denied"  // recorded allowed, the candidate refuses
	NewlyAllowed Outcome = "newly_allowed" // recorded refused, the candidate allows
	// Unjudged: recorded refused, and the candidate allows it on metadata
	// alone while it reads content the record does not hold.
	Unjudged  Outcome = "unjudged"
	Unchanged Outcome = "unchanged"
)

// Replayer re-decides records one at a time (in the log's order: a
// stanza's session facts come from its stream's session.auth record
// before it) and collects the report.
type Replayer struct {
	pol      Policy
	examples int
	report   Report
	groups   map[groupKey]*Group
	sessions map[pairKey]*policy.SessionInput
	// refused: the streams whose session the candidate refuses, with its
	// reason. Their stanzas would not have crossed.
	refused map[pairKey]string
}

type groupKey struct{ partner, direction string }

// pairKey names a domain pair on one recorded stream.
type pairKey struct{ session, local, remote string }

// New returns a Replayer deciding with pol, keeping up to examples
// example records per partner, direction and outcome.
func New(pol Policy, examples int) *Replayer {
	return &Replayer{
		pol: pol, examples: examples,
		report:   Report{Skipped: map[string]int{}, ReadsContent: pol.NeedsContent() || pol.NeedsPayloadFacts()},
		groups:   map[groupKey]*Group{},
		sessions: map[pairKey]*policy.SessionInput{},
		refused:  map[pairKey]string{},
	}
}

// Run replays the records of files (in chain order) with pol.
func Run(ctx context.Context, pol Policy, files []string, examples int) (*Report, error) {
	r := New(pol, examples)
	err := audit.ReadRecords(files, func(rec *audit.Record, _ []byte) error {
		return r.Replay(ctx, rec)
	})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	return r.Report(), nil
}

// Replay re-decides one record; records that are not decisions are
// counted (skipped) or passed over. An error is the context's.
func (r *Replayer) Replay(ctx context.Context, rec *audit.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replay stopped at seq %d: %w", rec.Seq, err)
	}
	r.report.Records++
	switch rec.Event {
	case audit.EventSessionAuth:
		r.sessions[pairKey{rec.Session, rec.LocalDomain, rec.RemoteDomain}] = sessionInput(rec)
		if r.isDecision(rec) {
			r.replaySession(ctx, rec)
		}
	case audit.EventStanza:
		if r.isDecision(rec) {
			r.replayStanza(ctx, rec)
		}
	}
	return nil
}

// isDecision reports whether rec records a policy decision; it counts
// the session and stanza records that do not as skipped.
func (r *Replayer) isDecision(rec *audit.Record) bool {
	switch rec.Decision {
	case audit.DecisionAllow, audit.DecisionDeny, audit.DecisionWouldDeny:
		if rec.PolicyRevision != "" {
			return true
		}
	}
	decision := rec.Decision
	if decision == "" {
		decision = "(none)"
	}
	r.report.Skipped[rec.Event+" "+decision]++
	return false
}

func (r *Replayer) replaySession(ctx context.Context, rec *audit.Record) {
	in := r.sessions[pairKey{rec.Session, rec.LocalDomain, rec.RemoteDomain}]
	d := r.pol.DecideSession(ctx, in)
	if certificateKnown(in) && !in.TLS.PeerCertValid {
		d.RefuseInvalidCertificate(in.RemoteDomain)
	}
	r.report.Sessions++
	if k := (pairKey{rec.Session, rec.LocalDomain, rec.RemoteDomain}); d.Allow {
		delete(r.refused, k)
	} else {
		r.refused[k] = d.Reason
	}
	from, to := rec.RemoteDomain, rec.LocalDomain
	if in.Direction == policy.Outbound {
		from, to = to, from
	}
	r.add(rec, from, to, d.Allow, d.Reason, true)
}

func (r *Replayer) replayStanza(ctx context.Context, rec *audit.Record) {
	session := r.sessions[pairKey{rec.Session, rec.LocalDomain, rec.RemoteDomain}]
	in, content, err := stanzaInput(rec, session)
	if err != nil { // an edited log (-verify=false): the gateway records canonical JIDs
		r.report.Skipped["stanza with an address that is not a JID"]++
		return
	}
	r.report.Stanzas++
	if !content {
		r.report.WithoutContent++
	}
	if session == nil {
		r.report.WithoutSession++
	}
	if reason, ok := r.refused[pairKey{rec.Session, rec.LocalDomain, rec.RemoteDomain}]; ok {
		// The candidate refuses the stream's session (a partner whose
		// agreement ended, a certificate now required): the stanza would
		// not have crossed, whatever the stanza decision says.
		r.add(rec, rec.From, rec.To, false, "its session would be refused: "+reason, true)
		return
	}
	d := r.pol.DecideStanza(ctx, in)
	r.add(rec, rec.From, rec.To, d.Allow, d.Reason, content || !r.report.ReadsContent)
}

// add counts a replayed decision in its partner's group. judged says
// whether a newly allowed refusal can be trusted (the candidate saw all
// it reads).
func (r *Replayer) add(rec *audit.Record, from, to string, allow bool, reason string, judged bool) {
	k := groupKey{rec.RemoteDomain, rec.Direction}
	g := r.groups[k]
	if g == nil {
		g = &Group{Partner: k.partner, Direction: k.direction}
		r.groups[k] = g
	}
	wasAllowed := rec.Decision == audit.DecisionAllow
	outcome := Unchanged
	switch {
	case wasAllowed && !allow:
		outcome = NewlyDenied
	case !wasAllowed && allow && judged:
		outcome = NewlyAllowed
	case !wasAllowed && allow:
		outcome = Unjudged
	}
	newDecision := audit.DecisionAllow
	if !allow {
		newDecision = audit.DecisionDeny
	}
	g.count(outcome, r.examples, Example{
		Seq: rec.Seq, Time: rec.Time, Event: rec.Event, From: from, To: to,
		Old: rec.Decision, New: newDecision, Reason: reason, RecordedReason: rec.Reason,
	})
}

// Report returns what was replayed so far, groups sorted by partner and
// direction.
func (r *Replayer) Report() *Report {
	rep := r.report
	rep.Groups = sortedGroups(r.groups)
	return &rep
}

// Example is one record whose decision would change.
type Example struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Event  string    `json:"event"` // session.auth | stanza
	From   string    `json:"from"`  // a session's domains in the direction of its traffic
	To     string    `json:"to"`
	Old    string    `json:"old"`    // the recorded decision: allow | deny | would-deny
	New    string    `json:"new"`    // the candidate's: allow | deny
	Reason string    `json:"reason"` // the candidate's reason
	// RecordedReason is the recorded decision's reason.
	RecordedReason string `json:"recorded_reason,omitempty"`
}

package edge

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/policy"
)

// The stages run in the order given, each around the next; a stage that
// does not call next stops the stanza there, and its error is the
// handler's.
func TestChainOf(t *testing.T) {
	stop := errors.New("stream error")
	tests := []struct {
		name    string
		stopAt  int // index of the stage that stops (-1: none)
		stopErr error
		want    []int
	}{
		{"all stages in order", -1, nil, []int{0, 1, 2}},
		{"a stage that refuses stops the path", 1, nil, []int{0, 1}},
		{"a stream error stops the path and is returned", 0, stop, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ran []int
			mk := func(i int) stage[*inStanza] {
				return func(next stanzaHandler) stanzaHandler {
					return handlerFunc[*inStanza](func(ctx context.Context, st *inStanza) error {
						ran = append(ran, i)
						if i == tt.stopAt {
							return tt.stopErr
						}
						return next.handle(ctx, st)
					})
				}
			}
			err := chainOf(mk(0), mk(1), mk(2)).handle(context.Background(), &inStanza{})
			if !errors.Is(err, tt.stopErr) {
				t.Fatalf("err = %v, want %v", err, tt.stopErr)
			}
			if !slices.Equal(ran, tt.want) {
				t.Fatalf("stages ran %v, want %v", ran, tt.want)
			}
		})
	}
}

// sessionPolicy answers every session decision with d.
type sessionPolicy struct {
	fakePolicy
	d policy.SessionDecision
}

func (p *sessionPolicy) DecideSession(context.Context, *policy.SessionInput) policy.SessionDecision {
	return p.d
}

// The session path: the policy's verdict, require: ["certificate"]
// enforced when the certificate is known, and the session.auth record
// written when asked for — an unrecorded session does not go on.
func TestSessionPath(t *testing.T) {
	allow := policy.SessionDecision{Allow: true, Reason: "partner", Revision: "r1"}
	needCert := policy.SessionDecision{Allow: true, Require: []string{"certificate"}, Revision: "r1"}
	deny := policy.SessionDecision{Allow: false, Reason: "not a partner", Revision: "r1"}
	tests := []struct {
		name       string
		d          policy.SessionDecision
		cert       certState
		record     string
		auditFails bool
		wantAllow  bool
		wantErr    error
		wantRecord string // the decision recorded; "" none
	}{
		{"allowed, no record asked", allow, certUnknown, "", false, true, nil, ""},
		{"denied by the policy, recorded", deny, certValid, "session.auth", false, false, nil, "deny"},
		{"certificate required and valid", needCert, certValid, "session.auth", false, true, nil, "allow"},
		{"certificate required and invalid", needCert, certInvalid, "session.auth", false, false, nil, "deny"},
		{"certificate required, not known yet (before connecting)", needCert, certUnknown, "", false, true, nil, ""},
		{"audit log down: fail closed", allow, certValid, "session.auth", true, true, errSessionUnrecorded, ""},
		{"audit log down, no record asked", allow, certValid, "", true, true, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aud := &fakeAuditor{failing: tt.auditFails}
			g := &Gateway{opt: Options{Policy: &sessionPolicy{d: tt.d}}, rec: recorder{sink: aud}, log: slog.New(slog.DiscardHandler)}
			c := &sessionCheck{facts: &policy.SessionInput{RemoteDomain: "partner.test", LocalDomain: "company.test"}, cert: tt.cert, record: tt.record, session: "in-1"}
			err := g.newSessionPath().handle(context.Background(), c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if c.decision.Allow != tt.wantAllow {
				t.Fatalf("allow = %v (%s), want %v", c.decision.Allow, c.decision.Reason, tt.wantAllow)
			}
			var recs []audit.Record
			aud.mu.Lock()
			recs = append(recs, aud.records...)
			aud.mu.Unlock()
			switch {
			case tt.wantRecord == "" && len(recs) > 0:
				t.Fatalf("recorded %+v, want nothing", recs)
			case tt.wantRecord != "" && (len(recs) != 1 || recs[0].Decision != tt.wantRecord || recs[0].Event != tt.record || recs[0].Session != "in-1"):
				t.Fatalf("records %+v, want one %s with decision %s", recs, tt.record, tt.wantRecord)
			}
		})
	}
}

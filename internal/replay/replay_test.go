package replay

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/policy"
)

// Candidate data for the shipped rules (rules/): partner.test a partner
// or not, with or without confidential keywords, with or without a
// certificate requirement.
const (
	dataWithPartner = `partners: [{domain: partner.test, direction: both}]
confidential: {keywords: [CONFIDENTIAL]}
`
	dataWithoutPartner = `partners: [{domain: other.test, direction: both}]
confidential: {keywords: [CONFIDENTIAL]}
`
	dataNoKeywords = `partners: [{domain: partner.test, direction: both}]
`
	dataHelloKeyword = `partners: [{domain: partner.test, direction: both}]
confidential: {keywords: [CONFIDENTIAL, hello]}
`
	dataAgreementEnded = `partners: [{domain: partner.test, direction: both, agreement: {owner: legal, reference: NDA-1, expires: 2020-01-01}}]
confidential: {keywords: [CONFIDENTIAL]}
`
	dataAgreementRunning = `partners: [{domain: partner.test, direction: both, agreement: {owner: legal, reference: NDA-1, expires: 2999-01-01}}]
confidential: {keywords: [CONFIDENTIAL]}
`
	dataRequireCert = `partners: [{domain: partner.test, direction: both, require_cert: true}]
confidential: {keywords: [CONFIDENTIAL]}
`
)

// recorded is a log as a gateway with dataWithPartner writes it: the
// sessions of both legs, stanzas both ways (one audited in full), the
// refusals of a confidential message (in full and as metadata), and what
// is not a policy decision.
func recorded() []*audit.Record {
	const rev = "r1"
	return []*audit.Record{
		{Event: audit.EventSessionAuth, Session: "in1", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			RemoteAddr: "192.0.2.7:5269", TLSVersion: "TLS 1.3", TLSCipher: "TLS_AES_128_GCM_SHA256", Auth: "sasl_external", PeerCert: "valid",
			Decision: audit.DecisionAllow, PolicyRevision: rev},
		{Event: audit.EventSessionAuth, Session: "in2", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			RemoteAddr: "10.0.0.2:40000", Decision: audit.DecisionAllow, PolicyRevision: rev},
		{Event: audit.EventSessionOpen, Session: "out1", Leg: "outside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test", Decision: audit.DecisionAllow},
		{Event: audit.EventStanza, Session: "in1", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "alice@partner.test/phone", To: "bob@company.test", Kind: "message", Type: "chat", Decision: audit.DecisionAllow, PolicyRevision: rev},
		{Event: audit.EventStanza, Session: "in2", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "bob@company.test/laptop", To: "alice@partner.test", Kind: "message", Type: "chat", Decision: audit.DecisionAllow, PolicyRevision: rev,
			Stanza: `<message from='bob@company.test/laptop' to='alice@partner.test' type='chat'><body>hello there</body></message>`},
		{Event: audit.EventStanza, Session: "in2", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "bob@company.test/laptop", To: "alice@partner.test", Kind: "message", Type: "chat", Decision: audit.DecisionDeny, PolicyRevision: rev,
			Reason: "message contains a confidential keyword",
			Stanza: `<message from='bob@company.test/laptop' to='alice@partner.test' type='chat'><body>the CONFIDENTIAL plan</body></message>`},
		{Event: audit.EventStanza, Session: "in2", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "bob@company.test/laptop", To: "alice@partner.test", Kind: "message", Type: "chat", Decision: audit.DecisionDeny, PolicyRevision: rev,
			Reason: "message contains a confidential keyword"},
		{Event: audit.EventStanza, Session: "in1", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "alice@partner.test/phone", To: "bob@company.test", Kind: "message", Decision: audit.DecisionBounced, Reason: "resource-constraint: rate"},
		{Event: audit.EventSessionAuth, Session: "in3", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			RemoteAddr: "192.0.2.8:5269", TLSVersion: "TLS 1.3", Auth: "dialback", PeerCert: "valid", Decision: audit.DecisionDeny, Reason: "dialback key invalid"},
		{Event: audit.EventSessionAuth, Session: "in4", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			RemoteAddr: "[2001:db8::1]:5269", TLSVersion: "TLS 1.3", Auth: "sasl_external", PeerCert: "certificate has expired",
			Decision: audit.DecisionAllow, PolicyRevision: rev},
	}
}

// writeLog appends recs to a new audit log and returns its files.
func writeLog(t *testing.T, recs []*audit.Record) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Config{Path: path, Node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return []string{path}
}

// shippedEngine loads the shipped rules with data.
func shippedEngine(t testing.TB, data string) *policy.Engine {
	t.Helper()
	file := filepath.Join(t.TempDir(), "data.yaml")
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(testContext(t), policy.Config{Rules: "../../rules", Data: []string{file}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// counts are a group's outcomes: newly denied, newly allowed, unjudged,
// unchanged.
type counts [4]int

func countsOf(g *Group) counts {
	return counts{g.NewlyDenied, g.NewlyAllowed, g.Unjudged, g.Unchanged}
}

func TestReplayShippedRules(t *testing.T) {
	files := writeLog(t, recorded())
	tests := []struct {
		name              string
		data              string
		inbound, outbound counts
		changed           int
		firstReason       string // of the first example of the first change
	}{
		// The same policy: nothing changes; the confidential refusal
		// without content is allowed on metadata, which cannot be judged.
		{"same policy", dataWithPartner, counts{0, 0, 0, 3}, counts{0, 0, 1, 3}, 0, ""},
		// partner.test removed: every allowed session and stanza of it is
		// newly denied; the refusals stay refused.
		{"partner removed", dataWithoutPartner, counts{3, 0, 0, 0}, counts{2, 0, 0, 2}, 5,
			"partner.test is not a federation partner for inbound sessions"},
		// No keywords: the refusal audited in full is newly allowed (its
		// content was read); the one without content stays unjudged.
		{"keywords dropped", dataNoKeywords, counts{0, 0, 0, 3}, counts{0, 1, 1, 2}, 1, ""},
		// A keyword that the message audited in full carries: judged on
		// its content.
		{"keyword added", dataHelloKeyword, counts{0, 0, 0, 3}, counts{1, 0, 1, 2}, 1, "message contains a confidential keyword"},
		// Partner agreements are judged at each record's time: one that
		// ended before the traffic newly denies all of it, one that runs
		// past it changes nothing.
		{"agreement ended before the records", dataAgreementEnded, counts{3, 0, 0, 0}, counts{2, 0, 0, 2}, 5, ""},
		{"agreement running at the records' time", dataAgreementRunning, counts{0, 0, 0, 3}, counts{0, 0, 1, 3}, 0, ""},
		// require_cert: the session recorded with an expired certificate
		// is refused by the certificate requirement, as the relay would.
		{"certificate required", dataRequireCert, counts{1, 0, 0, 2}, counts{0, 0, 1, 3}, 1,
			"the policy requires certificate authentication for partner.test and its certificate is not valid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Run(testContext(t), shippedEngine(t, tc.data), files, 2)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records != 10 || rep.Sessions != 3 || rep.Stanzas != 4 || rep.WithoutContent != 2 || rep.WithoutSession != 0 {
				t.Errorf("records %d sessions %d stanzas %d without content %d without session %d, want 10 3 4 2 0",
					rep.Records, rep.Sessions, rep.Stanzas, rep.WithoutContent, rep.WithoutSession)
			}
			if rep.Skipped["stanza bounced"] != 1 || rep.Skipped["session.auth deny"] != 1 || len(rep.Skipped) != 2 {
				t.Errorf("skipped %v, want 1 stanza bounced and 1 session.auth deny", rep.Skipped)
			}
			if len(rep.Groups) != 2 {
				t.Fatalf("groups %+v, want partner.test inbound and outbound", rep.Groups)
			}
			if got := countsOf(rep.Groups[0]); rep.Groups[0].Direction != "inbound" || got != tc.inbound {
				t.Errorf("%s %s: %v, want %v", rep.Groups[0].Partner, rep.Groups[0].Direction, got, tc.inbound)
			}
			if got := countsOf(rep.Groups[1]); got != tc.outbound {
				t.Errorf("outbound: %v, want %v", got, tc.outbound)
			}
			if rep.Changed() != tc.changed {
				t.Errorf("Changed() = %d, want %d", rep.Changed(), tc.changed)
			}
			checkFirstExample(t, rep, tc.firstReason)
		})
	}
}

// checkFirstExample checks the reason of the first change shown, and
// that no outcome shows more examples than asked (2).
func checkFirstExample(t *testing.T, rep *Report, reason string) {
	t.Helper()
	first := ""
	for _, g := range rep.Groups {
		for o, exs := range g.Examples {
			if len(exs) > 2 {
				t.Errorf("%s %s %s: %d examples, asked for 2", g.Partner, g.Direction, o, len(exs))
			}
		}
		for _, o := range []Outcome{NewlyDenied, NewlyAllowed} {
			if exs := g.Examples[o]; first == "" && len(exs) > 0 {
				first = exs[0].Reason
				if exs[0].Seq == 0 || exs[0].Time.IsZero() || exs[0].From == "" {
					t.Errorf("example without its record's seq, time or from: %+v", exs[0])
				}
			}
		}
	}
	if reason != "" && first != reason {
		t.Errorf("first change's reason %q, want %q", first, reason)
	}
}

// A recorded would-deny (dry run) is a refusal: the candidate allowing it
// newly allows it. A stanza whose stream's session.auth record is not in
// the files is decided without session facts, and says so.
func TestReplayWouldDenyAndMissingSession(t *testing.T) {
	recs := []*audit.Record{
		{Event: audit.EventSessionAuth, Session: "s1", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			Decision: audit.DecisionWouldDeny, PolicyRevision: "r0", Reason: "partner.test is not a federation partner for outbound sessions"},
		{Event: audit.EventStanza, Session: "gone", Leg: "inside", Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "bob@company.test", To: "alice@partner.test", Kind: "presence", Decision: audit.DecisionAllow, PolicyRevision: "r0"},
	}
	rep, err := Run(testContext(t), shippedEngine(t, dataWithPartner), writeLog(t, recs), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Groups) != 1 || countsOf(rep.Groups[0]) != (counts{0, 1, 0, 1}) {
		t.Fatalf("groups %+v, want partner.test outbound: 1 newly allowed, 1 unchanged", rep.Groups)
	}
	ex := rep.Groups[0].Examples[NewlyAllowed][0]
	if ex.Old != audit.DecisionWouldDeny || ex.New != audit.DecisionAllow || ex.From != "company.test" || ex.To != "partner.test" {
		t.Errorf("example %+v, want would-deny → allow, company.test → partner.test", ex)
	}
	if rep.WithoutSession != 1 {
		t.Errorf("without session %d, want 1", rep.WithoutSession)
	}
}

// TestSessionInputTime: the replayed decision's time is the record's,
// to the minute (as the relay gives it), not the replay's.
func TestSessionInputTime(t *testing.T) {
	r := &audit.Record{Event: audit.EventSessionAuth, Time: time.Date(2026, 3, 15, 10, 4, 59, 0, time.UTC), Direction: "inbound", RemoteDomain: "partner.test"}
	if got := sessionInput(r).Now; got != "2026-03-15T10:04:00Z" {
		t.Errorf("now = %q, want the record's minute 2026-03-15T10:04:00Z", got)
	}
}

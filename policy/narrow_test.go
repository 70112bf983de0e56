package policy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// leafNames names leaves by their input paths (test messages).
func leafNames(schema []leafPath, leaves []leaf) []string {
	var out []string
	for _, lf := range leaves {
		for _, lp := range schema {
			if lp.leaf == lf {
				name := "input"
				for _, p := range lp.path {
					name += "." + p
				}
				out = append(out, name)
			}
		}
	}
	return out
}

// stanzaClass narrows the class of in at once and returns its kept leaves.
func stanzaClass(t *testing.T, e *Engine, in *StanzaInput) []string {
	t.Helper()
	q := &e.current.Load().stanza
	f := q.facets.stanzaFacets(in, q.need)
	var key []byte
	if q.narrow != nil {
		key = appendStanzaClass(q, in, nil, &f)
	}
	return narrowNow(t, e, q.narrow, key, stanzaValue(in, q.need&^textFieldBits, &f), stanzaSchema)
}

func sessionClass(t *testing.T, e *Engine, in *SessionInput) []string {
	t.Helper()
	q := &e.current.Load().session
	pf := q.facets.sessionFacet(in, q.need)
	var key []byte
	if q.narrow != nil {
		key = appendSessionClass(q.narrow, in, nil, pf)
	}
	return narrowNow(t, e, q.narrow, key, sessionValue(in, q.need, pf), sessionSchema)
}

// narrowNow narrows the class of key from the input known, at once, and
// names its kept leaves.
func narrowNow(t *testing.T, e *Engine, n *narrowing, key []byte, known ast.Value, schema []leafPath) []string {
	t.Helper()
	if n == nil {
		t.Fatal("the decision has no key narrowing")
	}
	e.syncPrograms = true
	e.startNarrowing(n, key, known, true)
	cls, ok := n.classes.get(key)
	if !ok || cls.pending {
		t.Fatal("class not narrowed")
	}
	if cls.why != "" {
		t.Logf("why: %s", cls.why)
	}
	return leafNames(schema, cls.keep)
}

// narrowData is shipped-rules data that reads the JIDs and the time in
// every way the shipped rules can: blocked and external users with a
// group, rooms, agreements (expired, running, and every entry of a
// pattern), require_cert, audit_full.
const narrowData = `
partners:
  - {domain: partner.test, direction: both}
  - {domain: nda.test, direction: both, agreement: {owner: legal@company.test, reference: NDA-1, expires: "2026-12-01T12:30:00Z"}}
  - {domain: old.test, agreement: {owner: legal@company.test, reference: NDA-0, expires: "2020-01-01"}}
  - {domain: "*.wild.test", direction: inbound}
  - {domain: secure.test, require_cert: true}
  - {domain: conference.partner.test}
confidential:
  keywords: [SECRET]
muc:
  services: [conference.partner.test]
  allowed_rooms: [lobby@conference.partner.test]
blocked_users: [mallory@company.test]
external_users: [alice@company.test, "group:eng"]
groups:
  eng: [bob@company.test, Carol@company.test]
audit_full: [secure.test]
`

// TestNarrowShippedRules: what the shipped rules' classes keep of the
// narrowable leaves. A stanza's key holds its local user (the sender
// outbound, the recipient inbound) only when the user's rules refuse it
// (the reason names the user: input.local says what the data says of an
// allowed one), and the recipient outbound only when it goes to a room;
// none holds the remote domain (input.remote says what the data says of
// it, even with MUC services and audit_full in the data). A session holds the time only for a partner under agreement,
// the remote domain only where a refusal names it (not a partner; an
// agreement that expires), and never the remote IP.
func TestNarrowShippedRules(t *testing.T) {
	e := shippedEngine(t, narrowData, Config{})
	now := "2026-12-01T12:00:00Z"
	stanzas := []struct {
		name string
		in   StanzaInput
		keep []string
	}{
		{"outbound chat", StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("bob@partner.test/b"), Body: "hi", Children: []Child{{"body", "jabber:client"}}},
			nil},
		{"outbound presence", StanzaInput{Direction: "outbound", Kind: "presence", From: jid("alice@company.test/a"), To: jid("bob@partner.test")},
			nil},
		{"outbound presence, blocked user", StanzaInput{Direction: "outbound", Kind: "presence", From: jid("mallory@company.test/a"), To: jid("bob@partner.test")},
			[]string{"input.from.bare"}},
		{"inbound chat", StanzaInput{Direction: "inbound", Kind: "message", Type: "chat", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a"), Body: "hi"},
			nil},
		{"inbound iq", StanzaInput{Direction: "inbound", Kind: "iq", Type: "get", From: jid("x@a.wild.test/b"), To: jid("alice@company.test/a")},
			nil},
		{"inbound iq, user not listed external", StanzaInput{Direction: "inbound", Kind: "iq", Type: "get", From: jid("x@a.wild.test/b"), To: jid("dave@company.test/a")},
			[]string{"input.to.bare"}},
		{"outbound to a room service", StanzaInput{Direction: "outbound", Kind: "presence", From: jid("alice@company.test/a"), To: jid("room@conference.partner.test/nick")},
			[]string{"input.to.bare"}},
		{"outbound groupchat", StanzaInput{Direction: "outbound", Kind: "message", Type: "groupchat", From: jid("alice@company.test/a"), To: jid("room@partner.test"), Body: "hi"},
			[]string{"input.to.bare"}},
	}
	for _, tt := range stanzas {
		t.Run(tt.name, func(t *testing.T) {
			if got := stanzaClass(t, e, &tt.in); !slices.Equal(got, tt.keep) {
				t.Errorf("kept %v, want %v", got, tt.keep)
			}
		})
	}
	sessions := []struct {
		name string
		in   SessionInput
		keep []string
	}{
		{"partner", SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test", RemoteIP: "192.0.2.1", TLS: tls13, Auth: "dialback", Now: now}, nil},
		{"wildcard", SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "a.wild.test", TLS: tls13, Auth: "dialback", Now: now}, nil},
		{"not a partner", SessionInput{Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "evil.test", Now: now}, []string{"input.remote_domain"}},
		{"under agreement", SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "nda.test", TLS: tls13, Auth: "dialback", Now: now}, []string{"input.remote_domain", "input.now"}},
		{"agreement expired", SessionInput{Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "old.test", Now: now}, []string{"input.remote_domain", "input.now"}},
		{"requires a certificate, has one", SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "secure.test", TLS: tls13, Auth: "sasl_external", Now: now}, nil},
	}
	for _, tt := range sessions {
		t.Run("session/"+tt.name, func(t *testing.T) {
			if got := sessionClass(t, e, &tt.in); !slices.Equal(got, tt.keep) {
				t.Errorf("kept %v, want %v", got, tt.keep)
			}
		})
	}
	// Without per-user rules in the data, nor rooms for this stanza, an
	// outbound key holds no JID at all.
	plain := shippedEngine(t, noUserRulesData, Config{})
	out := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("bob@partner.test/b"), Body: "hi"}
	if got := stanzaClass(t, plain, &out); len(got) != 0 {
		t.Errorf("outbound without user rules kept %v, want nothing", got)
	}
}

// noUserRulesData is shipped-rules data without blocked or external users.
const noUserRulesData = `
partners:
  - {domain: partner.test, direction: both}
  - {domain: "*.wild.test", direction: inbound}
  - {domain: conference.partner.test}
confidential:
  keywords: [SECRET]
muc:
  services: [conference.partner.test]
  allowed_rooms: [lobby@conference.partner.test]
blocked_users: []
`

// TestNarrowedKeyAnswersNewPair: a class is narrowed (in the background)
// at its second decision, not its first (a class seen once, a made-up
// type, costs no partial evaluation); then a new pair of JIDs that agrees
// on the kept leaves is answered from the cache, and a session decision
// survives the minute changing.
func TestNarrowedKeyAnswersNewPair(t *testing.T) {
	e := shippedEngine(t, narrowData, Config{})
	ctx := testContext(t)
	odd := StanzaInput{Direction: "inbound", Kind: "message", Type: "made-up-1", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a")}
	e.DecideStanza(ctx, &odd)
	odd.Type = "made-up-2"
	e.DecideStanza(ctx, &odd)
	if n := e.Stats().KeyNarrowings; n != 0 {
		t.Fatalf("%d classes narrowed after one decision each", n)
	}
	in := StanzaInput{Direction: "inbound", Kind: "presence", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a")}
	e.DecideStanza(ctx, &in)
	e.DecideStanza(ctx, &in) // narrows the class in the background
	e.current.Load().stanza.narrow.buildWG.Wait()
	if n := e.Stats().KeyNarrowings; n != 1 {
		t.Fatalf("%d classes narrowed, want 1", n)
	}
	e.DecideStanza(ctx, &in) // fills the narrowed key
	in.From = jid("someone-else@partner.test/x")
	in.To = jid("alice@company.test/other-resource")
	if d := e.DecideStanza(ctx, &in); !d.Allow || !d.Cached {
		t.Fatalf("a new sender to the same user: %+v", d)
	}
	in.To = jid("mallory@company.test")
	if d := e.DecideStanza(ctx, &in); d.Allow || d.Cached {
		t.Fatalf("a blocked recipient is decided on its own: %+v", d)
	}

	s := SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test", TLS: tls13, Auth: "dialback", Now: "2026-12-01T12:00:00Z"}
	e.DecideSession(ctx, &s)
	e.DecideSession(ctx, &s)
	e.current.Load().session.narrow.buildWG.Wait()
	e.DecideSession(ctx, &s)
	s.Now = "2026-12-01T12:01:00Z"
	if d := e.DecideSession(ctx, &s); !d.Allow || !d.Cached {
		t.Fatalf("the next minute: %+v", d)
	}
	a := SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "nda.test", TLS: tls13, Auth: "dialback", Now: "2026-12-01T12:29:00Z"}
	e.DecideSession(ctx, &a)
	e.DecideSession(ctx, &a)
	e.current.Load().session.narrow.buildWG.Wait()
	if d := e.DecideSession(ctx, &a); !d.Allow || !d.Cached {
		t.Fatalf("under agreement, the same minute: %+v", d)
	}
	a.Now = "2026-12-01T12:30:00Z"
	if d := e.DecideSession(ctx, &a); d.Allow || d.Cached {
		t.Fatalf("the agreement's expiry is decided anew: %+v", d)
	}
}

// narrowPolicies read the narrowable leaves in the ways that partial
// evaluation sees through and in those it does not (else chains, the JID
// as an object, a function of it, a reason built from the resource), so
// that the differential test below covers both kinds of class.
var narrowPolicies = map[string]string{
	"stanza.rego": `package xmppedge.stanza

default decision := {"allow": true}

decision := {"allow": false, "reason": concat("; ", sort(deny))} if count(deny) > 0

deny contains sprintf("resource %s may not send iq", [input.from.full]) if {
	input.kind == "iq"
	endswith(input.from.full, "/bot")
}

deny contains "vip only" if {
	input.to.domain == "vip.test"
	not startswith(object.get(input.from, "bare", ""), "boss@")
}

deny contains "no self-talk" if {
	input.type == "chat"
	input.from.bare == input.to.bare
}

deny contains msg if {
	input.kind == "presence"
	msg := sender_rule(input.from)
}

sender_rule(j) := "evil sender" if startswith(j.bare, "evil")

who := input.to.bare if input.direction == "inbound"

else := input.from.bare

deny contains sprintf("%s is muted", [who]) if {
	input.type == "headline"
	endswith(who, "muted@company.test")
}

deny contains "odd id" if {
	input.kind == "message"
	input.id == "42"
}
`,
	"session.rego": `package xmppedge.session

default decision := {"allow": false, "reason": "no"}

decision := {"allow": true, "reason": "ok"} if {
	input.remote_domain != "blocked.test"
	not late
	not bad_ip
}

late if {
	input.remote_domain == "early.test"
	input.now >= "2026-12-01T12:30:00Z"
}

bad_ip if {
	input.remote_domain == "ip.test"
	net.cidr_contains("192.0.2.0/24", input.remote_ip)
}
`,
}

// TestNarrowingMatchesFullEvaluation decides many inputs — few classes,
// many JIDs, times and addresses — with the cache and key narrowing, and
// compares each with a full evaluation: with the shipped rules and two data
// sets, and with narrowPolicies; classes narrowed at once and in the
// background.
func TestNarrowingMatchesFullEvaluation(t *testing.T) {
	stanzas, sessions := narrowInputs(1200)
	polDir := t.TempDir()
	writeFiles(t, polDir, narrowPolicies)
	for _, tc := range []struct{ name, rules, data string }{
		{"shipped/narrowData", "../rules", narrowData},
		{"shipped/diffDataBig", "../rules", diffDataBig},
		{"shipped/noUserRulesData", "../rules", noUserRulesData},
		{"shipped/facetData", "../rules", facetData},
		{"narrowPolicies", polDir, ""},
	} {
		for _, sync := range []bool{true, false} {
			if !sync && (tc.name == "shipped/diffDataBig" || tc.name == "shipped/noUserRulesData" || tc.name == "shipped/facetData") {
				continue // the background path once per kind of policy is enough (-race makes this test long)
			}
			t.Run(fmt.Sprintf("%s/sync=%v", tc.name, sync), func(t *testing.T) {
				fast, ref := diffEngines(t, tc.rules, tc.data, ModeEnforce)
				fast.syncPrograms = sync
				// Not testContext's 30s: under -race on a loaded machine
				// this test takes longer, and a decision after the
				// deadline is a fail-closed deny.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				wantStanza := make([]StanzaDecision, len(stanzas))
				for i := range stanzas {
					wantStanza[i] = ref.DecideStanza(ctx, &stanzas[i])
				}
				wantSession := make([]SessionDecision, len(sessions))
				for i := range sessions {
					wantSession[i] = ref.DecideSession(ctx, &sessions[i])
				}
				for round := range 2 {
					for i := range stanzas {
						if got := fast.DecideStanza(ctx, &stanzas[i]); !sameDecision(got, wantStanza[i]) {
							t.Fatalf("stanza %d round %d %+v:\nfast %+v\nfull %+v", i, round, stanzas[i], got, wantStanza[i])
						}
					}
					for i := range sessions {
						got := fast.DecideSession(ctx, &sessions[i])
						got.Cached = false
						if !reflect.DeepEqual(got, wantSession[i]) {
							t.Fatalf("session %d round %d %+v:\nfast %+v\nfull %+v", i, round, sessions[i], got, wantSession[i])
						}
					}
					fast.current.Load().stanza.narrow.buildWG.Wait()
					fast.current.Load().session.narrow.buildWG.Wait()
					fast.current.Load().stanza.buildWG.Wait()
				}
				s := fast.Stats()
				if s.KeyNarrowings == 0 {
					t.Errorf("no class narrowed: %+v", s)
				}
				// Narrowed at once, the decisions are deterministic (in the
				// background, how many classes are narrowed before their
				// next decision depends on the machine).
				if sync && (s.CacheHits < s.Decisions/3 || narrowedClasses(fast) == 0) {
					t.Errorf("narrowing not exercised: %d classes narrowed, %+v", narrowedClasses(fast), s)
				}
				if s.Failures != 0 {
					t.Errorf("%d failures", s.Failures)
				}
				t.Logf("%d decisions, %d hits, %d classes narrowed, %d programs", s.Decisions, s.CacheHits, s.KeyNarrowings, s.ContentPrograms)
			})
		}
	}
}

// narrowedClasses counts the classes (stanza and session) that keep fewer
// leaves than their key has.
func narrowedClasses(e *Engine) int {
	l := e.current.Load()
	count := 0
	for _, n := range []*narrowing{l.stanza.narrow, l.session.narrow} {
		for i := range n.classes.shards {
			s := &n.classes.shards[i]
			s.mu.RLock()
			for _, m := range []map[string]*keyClass{s.cur, s.old} {
				for _, c := range m {
					if !c.pending && len(c.keep) < len(n.narrow) {
						count++
					}
				}
			}
			s.mu.RUnlock()
		}
	}
	return count
}

// narrowInputs returns stanzas and sessions over a few classes and many
// JIDs, resources, ids, times and addresses.
func narrowInputs(n int) ([]StanzaInput, []SessionInput) {
	r := rand.New(rand.NewPCG(3, 4))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	localUsers := []string{"alice", "bob", "carol", "Carol", "mallory", "boss", "evil1", "dave-muted", "erin", "frank"}
	remoteDomains := []string{"partner.test", "nda.test", "old.test", "a.wild.test", "secure.test", "conference.partner.test", "vip.test", "evil.test",
		// alike partners (one class once the domain is narrowed), MUC
		// services, audit_full domains (facetData)
		"b.wild.test", "c.d.wild.test", "other.test", "in.test", "room.rooms.wild.test", "muc.stranger.test", "audited.stranger.test", "twice.test"}
	resources := []string{"", "/phone", "/bot", "/pc"}
	kinds := []string{"message", "message", "presence", "iq"}
	types := []string{"chat", "groupchat", "headline", "", "get"}
	texts := []string{"", "hello", "a SECRET plan"}
	stanzas := make([]StanzaInput, n)
	for i := range stanzas {
		local := jid(pick(localUsers) + "@company.test" + pick(resources))
		remote := jid(fmt.Sprintf("%s%d@%s%s", pick([]string{"u", "evil", "room", "lobby"}), r.IntN(50), pick(remoteDomains), pick(resources)))
		if r.IntN(10) == 0 {
			remote = local // self-talk
		}
		in := StanzaInput{Kind: pick(kinds), Type: pick(types), ID: fmt.Sprint(r.IntN(60))}
		if r.IntN(2) == 0 {
			in.Direction, in.From, in.To = "outbound", local, remote
		} else {
			in.Direction, in.From, in.To = "inbound", remote, local
		}
		if in.Kind == "message" {
			in.Body = pick(texts)
		}
		stanzas[i] = in
	}
	sessions := make([]SessionInput, n/4)
	for i := range sessions {
		sessions[i] = SessionInput{Direction: Direction(pick([]string{"inbound", "outbound"})), LocalDomain: "company.test",
			RemoteDomain: pick(append(remoteDomains, "early.test", "ip.test", "blocked.test")),
			RemoteIP:     fmt.Sprintf("192.0.%d.%d", 1+r.IntN(3), r.IntN(256)), TLS: tls13, Auth: pick([]string{"dialback", "sasl_external"}),
			Now: fmt.Sprintf("2026-12-01T12:%02d:00Z", 25+r.IntN(10))}
		if r.IntN(20) == 0 {
			sessions[i].Now = ""
		}
	}
	return stanzas, sessions
}

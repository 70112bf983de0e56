package policy

import (
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// facetData has partners of every kind of pattern, alike and not, MUC
// services and audit_full domains, some of them partners too.
const facetData = `
partners:
  - {domain: partner.test, direction: both}
  - {domain: other.test, direction: both}
  - {domain: in.test, direction: inbound}
  - {domain: out.test, direction: outbound, rate: {per_second: 5, burst: 10}}
  - {domain: secure.test, require_cert: true}
  - {domain: "*.wild.test", direction: both}
  - {domain: "*.deep.wild.test", direction: inbound}
  - {domain: twice.test, direction: inbound}
  - {domain: twice.test, direction: outbound, allow_e2ee: true}
  - {domain: files.test, allow_files: [oob, ibb], upload_hosts: [up.files.test]}
  - {domain: quiet.test, strip_presence_status: true, strip_presence: [{name: x, namespace: "vcard-temp:x:update"}]}
  - {domain: nda.test, agreement: {owner: legal@company.test, reference: NDA-1, expires: "2026-12-01T12:30:00Z"}}
  - {domain: posture.test, require_posture: {tls: "1.3", auth: certificate}}
  - {domain: conference.partner.test}
  - {domain: bücher.example}
confidential:
  keywords: [SECRET]
muc:
  services: [conference.partner.test, "*.rooms.wild.test", muc.stranger.test]
  allowed_rooms: [lobby@conference.partner.test]
audit_full: [secure.test, "*.wild.test", audited.stranger.test]
blocked_users: [mallory@company.test, Eve@Company.test]
external_users: [alice@company.test, "group:eng", "group:missing"]
groups:
  eng: [Bob@company.test, eve@company.test]
`

// facetUsers are local users of every case facetData distinguishes:
// listed external, in a group (other case), blocked (also in a group),
// not listed, the server's own JID.
var facetUsers = []string{"alice@company.test/a", "ALICE@company.test/a", "bob@company.test/b", "eve@company.test/e",
	"mallory@company.test/m", "carol@company.test/c", "company.test"}

// facetDomains are remote domains of every case facetData distinguishes.
var facetDomains = []string{
	"partner.test", "PARTNER.test", "partner.test.", "other.test", "in.test", "out.test", "secure.test",
	"a.wild.test", "b.a.wild.test", "wild.test", "x.deep.wild.test", "room.rooms.wild.test",
	"twice.test", "files.test", "quiet.test", "nda.test", "posture.test", "conference.partner.test",
	"xn--bcher-kva.example", "bücher.example", "BÜCHER.example", "stranger.test", "muc.stranger.test", "audited.stranger.test", "",
}

// TestRemoteFacetMatchesLookup: what the engine puts in input.remote is
// what the rules' own lookups find, through the same built-ins: the
// partner entries xmppedge.partners_for returns (without their
// patterns), and xmppedge.domain_in over muc.services and audit_full.
func TestRemoteFacetMatchesLookup(t *testing.T) {
	e := shippedEngine(t, facetData, Config{})
	l := e.current.Load()
	src, err := e.read(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	root := src.data[dataRoot].(map[string]any)
	term := func(v any) *ast.Term {
		t.Helper()
		x, err := ast.InterfaceToValue(v)
		if err != nil {
			t.Fatal(err)
		}
		return ast.NewTerm(x)
	}
	partners := term(root["partners"])
	muc := term(root["muc"].(map[string]any)["services"])
	audit := term(root["audit_full"])
	b := l.builtins
	for _, d := range facetDomains {
		t.Run(d, func(t *testing.T) {
			dt := ast.StringTerm(d)
			entries, err := b.partnersFor(rego.BuiltinContext{}, dt, partners)
			if err != nil {
				t.Fatal(err)
			}
			var want []*ast.Term
			for i := 0; i < entries.Value.(*ast.Array).Len(); i++ {
				obj := entries.Value.(*ast.Array).Elem(i).Value.(ast.Object)
				want = append(want, ast.NewTerm(objectWithout(obj, "domain")))
			}
			inMUC, err := b.domainIn(rego.BuiltinContext{}, dt, muc)
			if err != nil {
				t.Fatal(err)
			}
			inAudit, err := b.domainIn(rego.BuiltinContext{}, dt, audit)
			if err != nil {
				t.Fatal(err)
			}
			wantObj := ast.NewObject(
				[2]*ast.Term{ast.StringTerm("partner"), ast.ArrayTerm(want...)},
				[2]*ast.Term{ast.StringTerm("muc_service"), inMUC},
				[2]*ast.Term{ast.StringTerm("audit_full"), inAudit},
			)
			if got := l.facets.of(d).term; got.Value.Compare(wantObj) != 0 {
				t.Fatalf("input.remote = %v, the rules' lookups find %v", got, wantObj)
			}
		})
	}
	// Alike partners share a facet; unlike ones do not.
	if a, b := l.facets.of("partner.test").id, l.facets.of("other.test").id; a != b {
		t.Errorf("partner.test and other.test (alike) have facets %d and %d", a, b)
	}
	if a, b := l.facets.of("partner.test").id, l.facets.of("in.test").id; a == b {
		t.Errorf("partner.test and in.test (unlike) share facet %d", a)
	}
	if a, b := l.facets.of("a.wild.test").id, l.facets.of("room.rooms.wild.test").id; a == b {
		t.Errorf("a.wild.test and a MUC service under it share facet %d", a)
	}
}

func objectWithout(obj ast.Object, key string) ast.Object {
	var pairs [][2]*ast.Term
	obj.Foreach(func(k, v *ast.Term) {
		if k.Value.Compare(ast.String(key)) != 0 {
			pairs = append(pairs, [2]*ast.Term{k, v})
		}
	})
	return ast.NewObject(pairs...)
}

// TestRemoteFactsMatchRulesLookups: the shipped rules decide alike with
// input.remote and input.local (the engine's lookups) and without them
// (their own lookups), for every remote domain and local user of
// facetData, both directions, sessions of every authentication and
// stanzas of every kind, with content that the partner settings judge
// (encryption, files, presence to strip, rooms). Neither engine caches:
// each decision is evaluated.
func TestRemoteFactsMatchRulesLookups(t *testing.T) {
	with := shippedEngine(t, facetData, Config{CacheSize: -1})
	without := shippedEngine(t, facetData, Config{CacheSize: -1})
	without.noRemoteFacts = true
	ctx := testContext(t)
	if err := without.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if l := without.current.Load(); l.session.need&sessionRemoteBit != 0 || l.stanza.need&(stanzaRemoteBit|stanzaLocalBit) != 0 {
		t.Fatal("the reference engine still gives input.remote or input.local")
	}
	if l := with.current.Load(); l.facets.local == nil || l.stanza.need&stanzaLocalBit == 0 {
		t.Fatal("input.local is not given")
	}
	decisions := 0
	for _, d := range facetDomains {
		for _, dir := range []Direction{Inbound, Outbound} {
			for _, auth := range []string{"", "dialback", "sasl_external"} {
				for _, now := range []string{"2026-12-01T12:00:00Z", "2026-12-01T13:00:00Z", ""} {
					in := SessionInput{Direction: dir, LocalDomain: "company.test", RemoteDomain: d, TLS: tls13, Auth: auth, Now: now}
					a, b := with.DecideSession(ctx, &in), without.DecideSession(ctx, &in)
					a.Revision, b.Revision = "", ""
					if !reflect.DeepEqual(a, b) {
						t.Errorf("session %+v:\n with input.remote %+v %v\n without          %+v %v", in, a, a.Rate, b, b.Rate)
					}
					decisions++
				}
			}
			remote, room := jid("bob@"+d+"/b"), jid("lobby@"+d+"/nick")
			for _, user := range facetUsers {
				local := jid(user)
				for _, st := range facetStanzas() {
					in := st
					in.Direction = dir
					in.From, in.To = remote, local
					if dir == Outbound {
						in.From, in.To = local, remote
						if in.Type == "groupchat" || in.Kind == "presence" {
							in.To = room
						}
					}
					a, b := with.DecideStanza(ctx, &in), without.DecideStanza(ctx, &in)
					a.Revision, b.Revision = "", ""
					if !reflect.DeepEqual(a, b) {
						t.Errorf("stanza %+v:\n with input.remote %+v\n without          %+v", in, a, b)
					}
					decisions++
				}
			}
		}
	}
	if s := with.Stats(); s.Failures != 0 || s.CacheHits != 0 {
		t.Fatalf("with input.remote: %d failures, %d cache hits", s.Failures, s.CacheHits)
	}
	t.Logf("%d decisions compared", decisions)
}

// facetStanzas are stanzas whose decisions read the partner settings.
func facetStanzas() []StanzaInput {
	body := []Child{{"body", "jabber:client"}}
	return []StanzaInput{
		{Kind: "message", Type: "chat", Body: "hello", Children: body},
		{Kind: "message", Type: "groupchat", Body: "hello room", Children: body},
		{Kind: "message", Type: "chat", Body: "a SECRET", Children: body},
		{Kind: "message", Type: "chat", Body: "fallback", Children: body, Encryption: "omemo2"},
		{Kind: "message", Type: "chat", FileTransfer: []FileTransfer{{Method: "oob", Host: "up.files.test"}}},
		{Kind: "message", Type: "chat", FileTransfer: []FileTransfer{{Method: "ibb"}}},
		{Kind: "presence", Children: []Child{{"status", "jabber:client"}, {"x", "vcard-temp:x:update"}}},
		{Kind: "presence", Type: "unavailable"},
		{Kind: "iq", Type: "get", Children: []Child{{"query", "jabber:iq:version"}}},
	}
}

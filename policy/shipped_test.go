package policy

import (
	"strings"
	"testing"
)

const testData = `
partners:
  - {domain: partner.test, direction: both}
  - {domain: "*.example.org", direction: both}
  - {domain: news.test, direction: inbound}
  - {domain: out.test, direction: outbound}
  - {domain: secure.test, direction: both, require_cert: true}
  - {domain: bücher.example}
  - {domain: conference.partner.test}
confidential:
  keywords: [CONFIDENTIAL, "INTERNAL ONLY"]
  patterns: ['\b(?:\d[ -]?){13,16}\b']
muc:
  services: [conference.partner.test]
  allowed_rooms: [lobby@conference.partner.test]
external_users: [alice@company.test, "group:eng"]
groups:
  eng: [bob@company.test]
blocked_users: [mallory@company.test]
audit_full: [news.test]
`

var tls13 = TLSInfo{Version: "TLS 1.3", Cipher: "TLS_AES_128_GCM_SHA256", PeerCertValid: true}

func TestShippedSessionDecisions(t *testing.T) {
	e := shippedEngine(t, testData, Config{})
	tests := []struct {
		name        string
		in          SessionInput
		allow       bool
		reason      string // substring
		requireCert bool
	}{
		{"listed partner", SessionInput{Direction: "inbound", RemoteDomain: "partner.test", TLS: tls13, Auth: "dialback"}, true, "is a federation partner", false},
		{"unlisted domain", SessionInput{Direction: "inbound", RemoteDomain: "evil.test", TLS: tls13, Auth: "dialback"}, false, "evil.test is not a federation partner", false},
		{"unlisted outbound", SessionInput{Direction: "outbound", RemoteDomain: "evil.test", TLS: tls13}, false, "not a federation partner", false},
		{"wildcard one label", SessionInput{Direction: "inbound", RemoteDomain: "chat.example.org", TLS: tls13, Auth: "dialback"}, true, "", false},
		{"wildcard two labels", SessionInput{Direction: "inbound", RemoteDomain: "a.chat.example.org", TLS: tls13, Auth: "dialback"}, true, "", false},
		{"wildcard not apex", SessionInput{Direction: "inbound", RemoteDomain: "example.org", TLS: tls13, Auth: "dialback"}, false, "not a federation partner", false},
		{"wildcard whole labels", SessionInput{Direction: "inbound", RemoteDomain: "badexample.org", TLS: tls13, Auth: "dialback"}, false, "not a federation partner", false},
		{"inbound-only partner inbound", SessionInput{Direction: "inbound", RemoteDomain: "news.test", TLS: tls13, Auth: "dialback"}, true, "", false},
		{"inbound-only partner outbound", SessionInput{Direction: "outbound", RemoteDomain: "news.test", TLS: tls13}, false, "for outbound sessions", false},
		{"outbound-only partner inbound", SessionInput{Direction: "inbound", RemoteDomain: "out.test", TLS: tls13, Auth: "dialback"}, false, "for inbound sessions", false},
		{"require_cert with dialback", SessionInput{Direction: "inbound", RemoteDomain: "secure.test", TLS: tls13, Auth: "dialback"}, false, "must authenticate with a certificate", true},
		{"require_cert with certificate", SessionInput{Direction: "inbound", RemoteDomain: "secure.test", TLS: tls13, Auth: "sasl_external"}, true, "", true},
		{"require_cert outbound before auth", SessionInput{Direction: "outbound", RemoteDomain: "secure.test", TLS: tls13}, true, "", true},
		{"no TLS", SessionInput{Direction: "inbound", RemoteDomain: "partner.test", Auth: "dialback"}, false, "TLS 1.2 or newer is required (this session: no TLS)", false},
		{"TLS 1.1", SessionInput{Direction: "inbound", RemoteDomain: "partner.test", TLS: TLSInfo{Version: "TLS 1.1"}, Auth: "dialback"}, false, "TLS 1.2 or newer", false},
		{"TLS 1.2", SessionInput{Direction: "inbound", RemoteDomain: "partner.test", TLS: TLSInfo{Version: "TLS 1.2"}, Auth: "dialback"}, true, "", false},
		{"IDN partner as A-label", SessionInput{Direction: "inbound", RemoteDomain: "xn--bcher-kva.example", TLS: tls13, Auth: "dialback"}, true, "", false},
		{"upper-case remote domain", SessionInput{Direction: "inbound", RemoteDomain: "PARTNER.test", TLS: tls13, Auth: "dialback"}, true, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.LocalDomain = "company.test"
			d := e.DecideSession(testContext(t), &in)
			if d.Allow != tt.allow {
				t.Fatalf("allow = %v, want %v (reason %q)", d.Allow, tt.allow, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tt.reason)
			}
			gotCert := len(d.Require) == 1 && d.Require[0] == "certificate"
			if gotCert != tt.requireCert {
				t.Errorf("require = %v, want certificate: %v", d.Require, tt.requireCert)
			}
			if d.Revision != e.Revision() || d.Revision == "" {
				t.Errorf("revision %q, engine %q", d.Revision, e.Revision())
			}
		})
	}
	if f := e.Stats().Failures; f != 0 {
		t.Errorf("failures = %d", f)
	}
}

func TestShippedStanzaDecisions(t *testing.T) {
	e := shippedEngine(t, testData, Config{})
	alice, bob, carol, mallory := jid("alice@company.test/phone"), jid("bob@company.test/pc"), jid("carol@company.test/pc"), jid("mallory@company.test/x")
	peer := jid("pete@partner.test/home")
	msg := func(from, to JID, body string) StanzaInput {
		dir := "outbound"
		if from.Domain != "company.test" {
			dir = "inbound"
		}
		return StanzaInput{Direction: dir, Kind: "message", Type: "chat", ID: "1", From: from, To: to, Body: body,
			Children: []Child{{Name: "body", Namespace: "jabber:server"}}}
	}
	labelled := msg(alice, peer, "hi")
	labelled.SecurityLabel = &SecurityLabel{Marking: "Secret", FgColor: "red"}
	unclassified := msg(alice, peer, "hi")
	unclassified.SecurityLabel = &SecurityLabel{Marking: "UNCLASSIFIED"}
	subject := msg(alice, peer, "")
	subject.Subject = "Internal Only: plans"
	roomPresence := StanzaInput{Direction: "outbound", Kind: "presence", From: alice, To: jid("secret@conference.partner.test/alice")}
	lobbyPresence := StanzaInput{Direction: "outbound", Kind: "presence", From: alice, To: jid("lobby@conference.partner.test/alice")}
	groupchat := msg(alice, jid("room@muc.partner.test"), "hi")
	groupchat.Type = "groupchat"
	serverPing := StanzaInput{Direction: "outbound", Kind: "iq", Type: "get", From: jid("company.test"), To: jid("partner.test")}

	tests := []struct {
		name   string
		in     StanzaInput
		allow  bool
		reason string
		audit  string
	}{
		{"plain message", msg(alice, peer, "hello there"), true, "", "meta"},
		{"keyword", msg(alice, peer, "this is CONFIDENTIAL"), false, "message contains a confidential keyword", "meta"},
		{"keyword any case", msg(alice, peer, "this is confidential"), false, "confidential keyword", "meta"},
		{"keyword in subject", subject, false, "confidential keyword", "meta"},
		{"pattern", msg(alice, peer, "card 4111-1111-1111-1111"), false, "message matches a confidential pattern", "meta"},
		{"short number", msg(alice, peer, "room 1234"), true, "", "meta"},
		{"inbound keyword passes", msg(peer, alice, "CONFIDENTIAL from them"), true, "", "meta"},
		{"security label", labelled, false, "security label Secret", "meta"},
		{"unclassified label", unclassified, true, "", "meta"},
		{"unlisted domain", msg(alice, jid("x@evil.test"), "hi"), false, "evil.test is not a federation partner", "meta"},
		{"external user by jid", msg(alice, peer, "hi"), true, "", "meta"},
		{"external user by group", msg(bob, peer, "hi"), true, "", "meta"},
		{"not an external user", msg(carol, peer, "hi"), false, "carol@company.test may not communicate outside", "meta"},
		{"not an external user inbound", msg(peer, carol, "hi"), false, "carol@company.test may not communicate outside", "meta"},
		{"blocked user", msg(mallory, peer, "hi"), false, "mallory@company.test may not", "meta"},
		{"muc room not listed", roomPresence, false, "room secret@conference.partner.test is not open", "meta"},
		{"muc room listed", lobbyPresence, true, "", "meta"},
		{"groupchat elsewhere", groupchat, false, "is not open to outside group chat", "meta"},
		{"server jid is not a user", serverPing, true, "", "meta"},
		{"audit full partner", msg(jid("ed@news.test"), alice, "news"), true, "", "full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.DecideStanza(testContext(t), &tt.in)
			if d.Allow != tt.allow {
				t.Fatalf("allow = %v, want %v (reason %q)", d.Allow, tt.allow, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q does not contain %q", d.Reason, tt.reason)
			}
			if !d.Allow && d.Error != "policy-violation" {
				t.Errorf("error = %q, want policy-violation", d.Error)
			}
			if d.Audit != tt.audit {
				t.Errorf("audit = %q, want %q", d.Audit, tt.audit)
			}
		})
	}
	if !e.NeedsContent() {
		t.Error("the shipped rules read the body: NeedsContent must be true")
	}
	if f := e.Stats().Failures; f != 0 {
		t.Errorf("failures = %d", f)
	}
}

// TestShippedRegoTests runs the *_test.rego tests of rules/ with the same
// runner as `opa test` (and `xmppedge policy test`).
func TestShippedRegoTests(t *testing.T) {
	results, err := RunRegoTests(testContext(t), "../rules", []string{"../rules/partners.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 20 {
		t.Fatalf("only %d Rego tests found", len(results))
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("%s %s failed: %s %s", r.Location, r.Name, r.Failure, r.Output)
		}
	}
}

func TestRegoTestFailureReported(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"p.rego":      "package xmppedge.stanza\ndecision := {\"allow\": true}\n",
		"p_test.rego": "package xmppedge.stanza_test\nimport data.xmppedge.stanza\ntest_ok if stanza.decision.allow\ntest_bad if not stanza.decision.allow\ntest_builtin if xmppedge.contains_any(\"A secret\", [\"SECRET\"])\n",
	})
	results, err := RunRegoTests(testContext(t), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range results {
		got[r.Name] = r.Pass
	}
	want := map[string]bool{"data.xmppedge.stanza_test.test_ok": true, "data.xmppedge.stanza_test.test_bad": false, "data.xmppedge.stanza_test.test_builtin": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s pass = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

func TestDataNormalisationErrors(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"bad direction", "partners: [{domain: a.test, direction: sideways}]", "direction \"sideways\""},
		{"bad pattern", "confidential: {patterns: ['(']}", "confidential.patterns[0]"},
		{"not an object", "- a\n- b\n", "top level must be an object"},
		{"reserved key", "session: 1\n", "clashes with package"},
		{"bad domain", "partners: [{domain: \"a..b\"}]", "partners[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"d.yaml": tt.data})
			_, err := New(testContext(t), Config{Rules: "../rules", Data: []string{dir + "/d.yaml"}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "d.yaml") && tt.name != "reserved key" {
				t.Errorf("err %v does not name the file", err)
			}
		})
	}
}

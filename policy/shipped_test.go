package policy

import (
	"reflect"
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
  - {domain: friend.test, allow_e2ee: true, allow_files: [oob, jingle, ibb], upload_hosts: [files.friend.test], strip_presence_status: true, rate: {per_second: 5, burst: 10}}
upload_hosts: [upload.company.test]
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
		{"listed partner", SessionInput{Direction: "inbound", RemoteDomain: "partner.test", TLS: tls13, Auth: "dialback"}, true, "a federation partner (inbound)", false},
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
		{"partner with a rate", SessionInput{Direction: "inbound", RemoteDomain: "friend.test", TLS: tls13, Auth: "dialback"}, true, "", false},
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
			var wantRate *Rate
			if tt.in.RemoteDomain == "friend.test" {
				wantRate = &Rate{PerSecond: 5, Burst: 10}
			}
			if !reflect.DeepEqual(d.Rate, wantRate) {
				t.Errorf("rate %+v, want %+v", d.Rate, wantRate)
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
		dir := Outbound
		if from.Domain != "company.test" {
			dir = Inbound
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
	friend := jid("fred@friend.test/x")
	withFacts := func(in StanzaInput, encryption string, ft ...FileTransfer) StanzaInput {
		in.Encryption, in.FileTransfer, in.BodyIsFallback = encryption, ft, encryption != "" || len(ft) > 0
		return in
	}
	omemoFallback := "I sent you an OMEMO encrypted message but your client doesn't seem to support that."
	oob := func(host string) FileTransfer { return FileTransfer{Method: TransferOOB, Host: host} }
	presence := func(to JID) StanzaInput {
		return StanzaInput{Direction: "outbound", Kind: "presence", From: alice, To: to,
			Children: []Child{{"show", "jabber:server"}, {"status", "jabber:server"}}}
	}
	stripStatus := []Child{{"status", "jabber:server"}}

	tests := []struct {
		name   string
		in     StanzaInput
		allow  bool
		reason string
		audit  string
		strip  []Child
	}{
		{"plain message", msg(alice, peer, "hello there"), true, "", "meta", nil},
		{"keyword", msg(alice, peer, "this is CONFIDENTIAL"), false, "message contains a confidential keyword", "meta", nil},
		{"keyword any case", msg(alice, peer, "this is confidential"), false, "confidential keyword", "meta", nil},
		{"keyword in subject", subject, false, "confidential keyword", "meta", nil},
		{"pattern", msg(alice, peer, "card 4111-1111-1111-1111"), false, "message matches a confidential pattern", "meta", nil},
		{"short number", msg(alice, peer, "room 1234"), true, "", "meta", nil},
		{"inbound keyword passes", msg(peer, alice, "CONFIDENTIAL from them"), true, "", "meta", nil},
		{"security label", labelled, false, "security label Secret", "meta", nil},
		{"unclassified label", unclassified, true, "", "meta", nil},
		{"unlisted domain", msg(alice, jid("x@evil.test"), "hi"), false, "evil.test is not a federation partner", "meta", nil},
		{"external user by jid", msg(alice, peer, "hi"), true, "", "meta", nil},
		{"external user by group", msg(bob, peer, "hi"), true, "", "meta", nil},
		{"not an external user", msg(carol, peer, "hi"), false, "carol@company.test may not communicate outside", "meta", nil},
		{"not an external user inbound", msg(peer, carol, "hi"), false, "carol@company.test may not communicate outside", "meta", nil},
		{"blocked user", msg(mallory, peer, "hi"), false, "mallory@company.test may not", "meta", nil},
		{"muc room not listed", roomPresence, false, "room secret@conference.partner.test is not open", "meta", nil},
		{"muc room listed", lobbyPresence, true, "", "meta", nil},
		{"groupchat elsewhere", groupchat, false, "is not open to outside group chat", "meta", nil},
		{"server jid is not a user", serverPing, true, "", "meta", nil},
		{"audit full partner", msg(jid("ed@news.test"), alice, "news"), true, "", "full", nil},
		// End-to-end encryption: refused to partners without allow_e2ee
		// (the data lists keywords: the default is to refuse).
		{"omemo to partner", withFacts(msg(alice, peer, omemoFallback), EncryptionOMEMO), false,
			"end-to-end encrypted messages (OMEMO) to partner.test are not permitted: switch encryption off for this contact", "meta", nil},
		{"openpgp to partner", withFacts(msg(alice, peer, "[openpgp]"), EncryptionOpenPGP), false, "(OpenPGP) to partner.test", "meta", nil},
		{"omemo to friend", withFacts(msg(alice, friend, omemoFallback), EncryptionOMEMO2), true, "", "meta", nil},
		{"omemo from partner", withFacts(msg(peer, alice, omemoFallback), EncryptionOMEMO), true, "", "meta", nil},
		{"omemo to audit-full partner", withFacts(msg(jid("ed@news.test"), alice, omemoFallback), EncryptionOMEMO), true, "", "full", nil},
		{"fallback body still scanned", withFacts(msg(alice, friend, "CONFIDENTIAL"), EncryptionOMEMO), false, "confidential keyword", "meta", nil},
		// Files: links to the company's upload service (and the partner's),
		// Jingle; IBB and SOCKS5 only where allowed.
		{"upload link", withFacts(msg(alice, peer, "https://upload.company.test/a.pdf"), "", oob("upload.company.test")), true, "", "meta", nil},
		{"link elsewhere", withFacts(msg(alice, peer, "https://files.example.net/a.pdf"), "", oob("files.example.net")), false,
			"file links to files.example.net are not permitted", "meta", nil},
		{"partner upload host", withFacts(msg(alice, friend, "https://files.friend.test/a.pdf"), "", oob("files.friend.test")), true, "", "meta", nil},
		{"partner upload host elsewhere", withFacts(msg(alice, peer, "https://files.friend.test/a.pdf"), "", oob("files.friend.test")), false, "files.friend.test", "meta", nil},
		{"ibb", withFacts(StanzaInput{Direction: "outbound", Kind: "iq", Type: "set", From: alice, To: peer}, "", FileTransfer{Method: TransferIBB}), false,
			"file transfer by in-band bytestream (IBB) to partner.test is not permitted", "meta", nil},
		{"ibb to friend", withFacts(StanzaInput{Direction: "outbound", Kind: "iq", Type: "set", From: alice, To: friend}, "", FileTransfer{Method: TransferIBB}), true, "", "meta", nil},
		{"jingle over socks5", withFacts(StanzaInput{Direction: "outbound", Kind: "iq", Type: "set", From: alice, To: peer}, "",
			FileTransfer{Method: TransferJingle}, FileTransfer{Method: TransferSOCKS5}), false, "SOCKS5 bytestream to partner.test", "meta", nil},
		{"jingle alone", withFacts(StanzaInput{Direction: "outbound", Kind: "iq", Type: "set", From: alice, To: peer}, "", FileTransfer{Method: TransferJingle}), true, "", "meta", nil},
		{"ibb from partner", withFacts(StanzaInput{Direction: "inbound", Kind: "iq", Type: "set", From: peer, To: alice}, "", FileTransfer{Method: TransferIBB}), true, "", "meta", nil},
		// Stripping <status/> from presence to partners that ask for it.
		{"presence to partner", presence(peer), true, "", "meta", nil},
		{"presence to friend", presence(friend), true, "", "meta", stripStatus},
		{"presence from friend", StanzaInput{Direction: "inbound", Kind: "presence", From: friend, To: alice}, true, "", "meta", nil},
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
			if !reflect.DeepEqual(d.Strip, tt.strip) {
				t.Errorf("strip = %v, want %v", d.Strip, tt.strip)
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
		{"allow_e2ee not a boolean", "partners: [{domain: a.test, allow_e2ee: yes please}]", "partners[0] (a.test): allow_e2ee must be true or false"},
		{"top-level allow_e2ee null", "allow_e2ee:\n", "allow_e2ee must be true or false"},
		{"unknown file method", "partners: [{domain: a.test, allow_files: [oob, ftp]}]", "allow_files[1] is ftp"},
		{"allow_files not a list", "allow_files: oob\n", "allow_files must be a list"},
		{"bad upload host", "upload_hosts: [\"a..b\"]", "upload_hosts[0]"},
		{"partner upload host", "partners: [{domain: a.test, upload_hosts: [\"x..y\"]}]", "partners[0] (a.test): upload_hosts[0]"},
		{"rate without burst", "partners: [{domain: a.test, rate: {per_second: 5}}]", "rate: burst must be an integer"},
		{"rate zero", "rate: {per_second: 0, burst: 5}", "rate: per_second must be a positive number"},
		{"rate fractional burst", "rate: {per_second: 1, burst: 1.5}", "burst must be an integer"},
		{"rate unknown key", "rate: {per_second: 1, burst: 1, per_minute: 3}", "unknown key \"per_minute\""},
		{"strip_presence_status not a boolean", "strip_presence_status: 1", "strip_presence_status must be true or false"},
		{"strip_presence without namespace", "strip_presence: [{name: x}]", "strip_presence[0]: namespace is missing"},
		{"strip_presence typo", "strip_presence: [{name: x, namspace: \"vcard-temp:x:update\"}]", "unknown key \"namspace\""},
		{"agreement without owner", "partners: [{domain: a.test, agreement: {reference: R1, expires: 2027-01-01}}]", "partners[0] (a.test): agreement.owner is missing"},
		{"agreement bad expiry", "partners: [{domain: a.test, agreement: {owner: o, reference: R1, expires: next year}}]", "agreement.expires: \"next year\" is neither a date"},
		{"agreement without expiry", "partners: [{domain: a.test, agreement: {owner: o, reference: R1}}]", "agreement.expires: missing"},
		{"agreement past 9999", "partners: [{domain: a.test, agreement: {owner: o, reference: R1, expires: \"9999-12-31T23:00:00-05:00\"}}]", "past the year 9999"},
		{"agreement typo", "partners: [{domain: a.test, agreement: {owner: o, reference: R1, expires: 2027-01-01, expire: 2028-01-01}}]", "agreement.expire is not a field"},
		{"require_posture bad tls", "partners: [{domain: a.test, require_posture: {tls: \"1.1\"}}]", "require_posture.tls is 1.1"},
		{"require_posture bad auth", "partners: [{domain: a.test, require_posture: {auth: password}}]", "require_posture.auth is password"},
		{"require_posture typo", "partners: [{domain: a.test, require_posture: {tsl: \"1.3\"}}]", "require_posture.tsl is not a posture field"},
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

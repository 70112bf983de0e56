package e2e

import (
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// A partner whose users may exchange end-to-end encrypted messages with
// the company's.
const (
	FriendDomain = "friend.test"
	FriendIP     = "127.0.0.7"
)

// contentPartnersYAML is the policy data of TestIdentityAndContent:
// partner.test may not receive what the gateway cannot read (the data
// lists confidential keywords, so allow_e2ee defaults to false), files
// only as links to the company's upload host; friend.test may receive
// end-to-end encrypted messages; presence to partners loses its status
// text; mallory may not talk outside.
func contentPartnersYAML() []byte {
	return []byte(`partners:
  - domain: partner.test
    direction: both
  - domain: friend.test
    direction: both
    allow_e2ee: true
upload_hosts: [upload.company.test]
strip_presence_status: true
blocked_users: [mallory@company.test]
confidential:
  keywords: [CONFIDENTIAL, "INTERNAL ONLY"]
`)
}

// TestIdentityAndContent federates real Prosody servers through xmppedge
// with the shipped rules and checks, with real clients on both sides and
// a raw s2s peer that authenticates as partner.test with a certificate the
// gateway trusts:
//   - identity: a message to a blocked user written in fullwidth letters
//     is refused; one to an allowed user written so reaches that user; a
//     malformed JID is bounced with jid-malformed and never delivered;
//   - CDATA from a conforming peer is delivered (decoded), and a
//     confidential keyword inside CDATA (from a raw peer on the inside
//     leg) is refused;
//   - content the rules cannot read: an OMEMO message to partner.test is
//     bounced to its sender with the reason, to friend.test delivered and
//     audited as encryption omemo; an upload link to the company's upload
//     host passes, to another host is refused; an IBB <open/> is refused;
//   - stripping: a presence with a status reaches the partner without it,
//     with its availability, and the audit record says what was removed.
func TestIdentityAndContent(t *testing.T) {
	testbed.Require(t)
	public := publicDNS(t, false)
	addServer(public, FriendDomain, FriendIP, S2SPort)

	ca := newCA(t)
	files := gatewayFiles(t, ca, PartnerDomain)
	files["partners.yaml"] = contentPartnersYAML()
	// Inside TLS: the company server authenticates by certificate, and so
	// can a raw peer standing in for it on the inside leg.
	gw := startGateway(t, withInsideTLS(gatewayConfig(ca.file)), files)
	users := map[string]string{"alice": Password, "bob": Password, "mallory": Password}
	companyProsodyWith(t, ca, gw, true, users)
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true})
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: FriendDomain, IP: FriendIP, DNS: public.Addr(), Users: map[string]string{"carol": Password}, RequireEncryption: true})
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, CompanyIP+":5222")
	mallory := testbed.StartClient(t, "mallory@"+CompanyDomain, Password, CompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, PartnerIP+":5222")
	carol := testbed.StartClient(t, "carol@"+FriendDomain, Password, FriendIP+":5222")
	const wait = 15 * time.Second

	messageBothWays(t, alice, bob)

	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.file)
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(caPEM)
	certPEM, keyPEM := ca.issue(t, PartnerDomain)
	raw := dialRawPeer(t, PartnerDomain, certPEM, keyPEM, roots)
	from := xmlAttr(bob.FullJID)

	t.Run("identity", func(t *testing.T) {
		// mallory in fullwidth letters: the internal server would fold it to
		// mallory, so the policy must judge mallory.
		raw.send(`<message from='` + from + `' to='ｍａｌｌｏｒｙ@company.test' id='fw-mallory' type='chat'><body>hello mallory</body></message>`)
		ev, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "fw-mallory" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("no bounce for a message to the blocked user in fullwidth letters: %v", err)
		}
		if ev.Error != "policy-violation" {
			t.Fatalf("fullwidth mallory: got %+v, want policy-violation", ev)
		}
		// alice in fullwidth letters and upper case: delivered to alice.
		raw.send(`<message from='` + from + `' to='ａｌｉｃｅ@COMPANY.test' id='fw-alice' type='chat'><body>hello alice</body></message>`)
		got, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "fw-alice" && e.Kind == "message" })
		if err != nil {
			t.Fatalf("a message to alice in fullwidth letters did not reach alice: %v", err)
		}
		if got.Body != "hello alice" || !strings.HasPrefix(got.To, "alice@company.test") {
			t.Fatalf("fullwidth alice: got %+v", got)
		}
		rec, err := gw.waitAudit(func(r map[string]any) bool { return r["id"] == "fw-alice" && r["event"] == "stanza" }, wait)
		if err != nil {
			t.Fatal(err)
		}
		if rec["to"] != "alice@company.test" || rec["to_sent"] != "ａｌｉｃｅ@COMPANY.test" {
			t.Fatalf("audit of the fullwidth message: to=%v to_sent=%v, want the canonical form and the form as sent", rec["to"], rec["to_sent"])
		}
		// Malformed JIDs: bounced with jid-malformed, never delivered.
		for i, to := range []string{"@company.test", strings.Repeat("x", 1100) + "@company.test", "a b@company.test", "alice@company.test/" + strings.Repeat("r", 1100)} {
			id := fmt.Sprintf("malformed-%d", i)
			raw.send(`<message from='` + from + `' to='` + xmlAttr(to) + `' id='` + id + `' type='chat'><body>malformed</body></message>`)
			ev, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == id && e.Kind == "message_error" })
			if err != nil {
				t.Fatalf("no bounce for a message to %.40q: %v", to, err)
			}
			if ev.Error != "jid-malformed" {
				t.Fatalf("message to %.40q: got %+v, want jid-malformed", to, ev)
			}
		}
		for _, c := range []*testbed.Client{alice, mallory} {
			for _, m := range c.Messages() {
				if m.ID == "fw-mallory" || strings.HasPrefix(m.ID, "malformed-") {
					t.Fatalf("%s received %+v", c.JID, m)
				}
			}
		}
	})

	t.Run("cdata", func(t *testing.T) {
		raw.send(`<message from='` + from + `' to='alice@company.test' id='cdata-1' type='chat'><body><![CDATA[a <tag> & an ]] end]]></body></message>`)
		got, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "cdata-1" && e.Kind == "message" })
		if err != nil {
			t.Fatalf("a message with CDATA did not reach alice: %v", err)
		}
		if got.Body != "a <tag> & an ]] end" {
			t.Fatalf("CDATA body: got %q", got.Body)
		}
		if !raw.alive() {
			t.Fatal("the gateway closed the stream of a peer that sent CDATA")
		}
	})

	t.Run("cdata-outbound", func(t *testing.T) {
		// What Prosody never sends, a peer on the inside leg can: a
		// confidential keyword hidden in CDATA is still refused, and the
		// bounce reaches alice; a harmless CDATA message reaches bob.
		certPEM, keyPEM := ca.issue(t, CompanyDomain)
		inside := dialRawPeerAt(t, net.JoinHostPort(GatewayIP, fmt.Sprint(S2SPort)), CompanyDomain, PartnerDomain, certPEM, keyPEM, nil)
		aliceFull := xmlAttr(alice.FullJID)
		inside.send(`<message from='` + aliceFull + `' to='bob@partner.test' id='cdata-secret' type='chat'><body><![CDATA[the <b>CONFIDENTIAL</b> plan]]></body></message>`)
		ev, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "cdata-secret" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("no bounce for a confidential keyword inside CDATA: %v", err)
		}
		if ev.Error != "policy-violation" {
			t.Fatalf("confidential keyword in CDATA: got %+v", ev)
		}
		inside.send(`<message from='` + aliceFull + `' to='bob@partner.test' id='cdata-ok' type='chat'><body><![CDATA[lunch <at> noon & more]]></body></message>`)
		got, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "cdata-ok" && e.Kind == "message" })
		if err != nil {
			t.Fatalf("a harmless CDATA message did not reach the partner: %v", err)
		}
		if got.Body != "lunch <at> noon & more" {
			t.Fatalf("CDATA body at the partner: %q", got.Body)
		}
		for _, m := range bob.Messages() {
			if m.ID == "cdata-secret" {
				t.Fatalf("the partner received the confidential CDATA message: %+v", m)
			}
		}
	})

	t.Run("e2ee", func(t *testing.T) {
		omemo := func(to, id string) string {
			return `<message to='` + to + `' id='` + id + `' type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1234'><key rid='5678'>a2V5</key><iv>aXZpdml2aXZpdg==</iv></header><payload>cGF5bG9hZA==</payload></encrypted><body>I sent you an OMEMO encrypted message but your client doesn't seem to support that.</body><store xmlns='urn:xmpp:hints'/></message>`
		}
		if err := alice.SendRaw(omemo(bob.JID, "omemo-partner")); err != nil {
			t.Fatal(err)
		}
		ev, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "omemo-partner" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("no bounce for an OMEMO message to %s: %v", PartnerDomain, err)
		}
		if ev.Error != "policy-violation" || !strings.Contains(ev.ErrorText, "encrypted") {
			t.Fatalf("OMEMO to %s: got %+v, want policy-violation with a reason about encryption", PartnerDomain, ev)
		}
		t.Logf("OMEMO to %s bounced: %q", PartnerDomain, ev.ErrorText)
		if err := alice.SendRaw(omemo(carol.JID, "omemo-friend")); err != nil {
			t.Fatal(err)
		}
		got, err := carol.WaitEvent(wait, func(e Event) bool { return e.ID == "omemo-friend" && e.Kind == "message" })
		if err != nil {
			t.Fatalf("an OMEMO message to %s (allow_e2ee) was not delivered: %v", FriendDomain, err)
		}
		if !slices.Contains(got.Children, "{eu.siacs.conversations.axolotl}encrypted") {
			t.Fatalf("OMEMO to %s arrived without its payload: %+v", FriendDomain, got)
		}
		rec, err := gw.waitAudit(func(r map[string]any) bool { return r["id"] == "omemo-friend" && r["event"] == "stanza" }, wait)
		if err != nil {
			t.Fatal(err)
		}
		if rec["encryption"] != "omemo" || rec["decision"] != "allow" {
			t.Fatalf("audit of the delivered OMEMO message: %v", rec)
		}
		for _, m := range bob.Messages() {
			if m.ID == "omemo-partner" {
				t.Fatalf("%s received the OMEMO message: %+v", PartnerDomain, m)
			}
		}
	})

	t.Run("files", func(t *testing.T) {
		link := func(id, url string) string {
			return `<message to='` + bob.JID + `' id='` + id + `' type='chat'><body>` + url + `</body><x xmlns='jabber:x:oob'><url>` + url + `</url></x></message>`
		}
		if err := alice.SendRaw(link("oob-ok", "https://upload.company.test/u/abc/report.pdf")); err != nil {
			t.Fatal(err)
		}
		if _, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "oob-ok" && e.Kind == "message" }); err != nil {
			t.Fatalf("an upload link to the company's upload host was not delivered: %v", err)
		}
		if err := alice.SendRaw(link("oob-bad", "https://files.example.net/abc/report.pdf")); err != nil {
			t.Fatal(err)
		}
		ev, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "oob-bad" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("no bounce for an upload link to another host: %v", err)
		}
		if ev.Error != "policy-violation" {
			t.Fatalf("link to another host: got %+v", ev)
		}
		rec, err := gw.waitAudit(func(r map[string]any) bool { return r["id"] == "oob-bad" && r["event"] == "stanza" }, wait)
		if err != nil {
			t.Fatal(err)
		}
		if ft := fmt.Sprint(rec["file_transfer"]); !strings.Contains(ft, "oob") || !strings.Contains(ft, "files.example.net") {
			t.Fatalf("audit of the refused link: file_transfer=%v", rec["file_transfer"])
		}
		// An in-band bytestream opened to bob's client: refused.
		ibb := `<iq type='set' to='` + bob.FullJID + `' id='raw-ibb'><open xmlns='http://jabber.org/protocol/ibb' block-size='4096' sid='ibb-1' stanza='iq'/></iq>`
		if err := alice.SendRaw(ibb); err != nil {
			t.Fatal(err)
		}
		ev, err = alice.WaitEvent(wait, func(e Event) bool { return e.ID == "raw-ibb" && strings.HasPrefix(e.Kind, "iq_") })
		if err != nil {
			t.Fatalf("no answer to an IBB open: %v", err)
		}
		if ev.Kind != "iq_error" || ev.Error != "policy-violation" {
			t.Fatalf("IBB open: got %+v, want an iq error policy-violation", ev)
		}
	})

	t.Run("strip", func(t *testing.T) {
		if err := alice.SendRaw(`<presence to='` + bob.FullJID + `' id='strip-1'><show>away</show><status>secret project</status></presence>`); err != nil {
			t.Fatal(err)
		}
		got, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "strip-1" && e.Kind == "presence" })
		if err != nil {
			t.Fatalf("the presence did not reach the partner: %v", err)
		}
		if got.Status != "" || got.Show != "away" {
			t.Fatalf("presence at the partner: show=%q status=%q, want show away and no status", got.Show, got.Status)
		}
		rec, err := gw.waitAudit(func(r map[string]any) bool { return r["id"] == "strip-1" && r["event"] == "stanza" }, wait)
		if err != nil {
			t.Fatal(err)
		}
		if rec["modified"] != true || !strings.Contains(fmt.Sprint(rec["stripped"]), "status") {
			t.Fatalf("audit of the stripped presence: %v", rec)
		}
	})

	auditVerify(t, gw)
}

// xmlAttr escapes s for a single-quoted attribute value.
func xmlAttr(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", "'", "&apos;", `"`, "&quot;").Replace(s)
}

// waitAudit waits for an audit record that match accepts.
func (g *gatewayProc) waitAudit(match func(map[string]any) bool, timeout time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range g.auditRecords(g.t) {
			if match(r) {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no matching audit record within %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

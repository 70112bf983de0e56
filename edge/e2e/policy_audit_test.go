package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// A third server whose domain the policy does not list.
const (
	StrangerDomain = "stranger.test"
	StrangerIP     = "127.0.0.6"
)

// TestGatewayPolicyAndAudit runs the shipped rules (rules/) with a
// partners.yaml that lists partner.test only, between three real Prosody
// servers, and checks what the audit log holds afterwards:
//   - partner.test federates; stranger.test is refused at session level
//     both ways, and the users on both sides get errors, not silence;
//   - an outbound message with a confidential keyword is bounced to its
//     sender with policy-violation and the partner receives nothing; one
//     without passes;
//   - adding stranger.test to partners.yaml and sending SIGHUP lets it
//     federate without dropping the partner's established streams;
//     removing it again cuts its streams at once;
//   - every stanza has its audit record with the right direction, JIDs and
//     decision; `xmppedge audit verify` accepts the log, and rejects it,
//     naming the position, after any record is edited, deleted or swapped.
func TestGatewayPolicyAndAudit(t *testing.T) {
	testbed.Require(t)
	public := publicDNS(t, false)
	addServer(public, StrangerDomain, StrangerIP, S2SPort)

	ca := newCA(t)
	gw := startGateway(t, gatewayConfig(ca.file), gatewayFiles(t, ca, PartnerDomain))
	companyProsody(t, ca, gw, false)
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true})
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: StrangerDomain, IP: StrangerIP, DNS: public.Addr(), Users: map[string]string{"carol": Password}, RequireEncryption: true})
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, CompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, PartnerIP+":5222")
	carol := testbed.StartClient(t, "carol@"+StrangerDomain, Password, StrangerIP+":5222")
	const wait = 15 * time.Second

	messageBothWays(t, alice, bob)

	// A confidential keyword: bounced to alice, bob gets nothing.
	if err := alice.SendMessageID(bob.JID, "the CONFIDENTIAL merger plan", "c1"); err != nil {
		t.Fatal(err)
	}
	ev, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "c1" && e.Kind == "message_error" })
	if err != nil {
		t.Fatalf("no bounce for the confidential message: %v", err)
	}
	if ev.Error != "policy-violation" || ev.ErrorText == "" {
		t.Fatalf("confidential message: got %+v, want policy-violation with a reason", ev)
	}
	t.Logf("confidential message bounced: %s %q", ev.Error, ev.ErrorText)
	if err := alice.SendMessageID(bob.JID, "lunch at noon?", "ok1"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "ok1" && e.Kind == "message" }); err != nil {
		t.Fatalf("a plain message after the refused one: %v", err)
	}
	for _, m := range bob.Messages() {
		if m.ID == "c1" || strings.Contains(m.Body, "CONFIDENTIAL") {
			t.Fatalf("the partner received the confidential message: %+v", m)
		}
	}

	// stranger.test is refused both ways; each sender hears about it.
	strangerRefused := func(tag string) {
		t.Helper()
		if err := alice.SendMessageID(carol.JID, "hello stranger", tag+"-out"); err != nil {
			t.Fatal(err)
		}
		ev, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == tag+"-out" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("alice got no error for a message to %s: %v", StrangerDomain, err)
		}
		t.Logf("company -> stranger: %s %q", ev.Error, ev.ErrorText)
		if err := carol.SendMessageID(alice.JID, "hello company", tag+"-in"); err != nil {
			t.Fatal(err)
		}
		ev, err = carol.WaitEvent(wait, func(e Event) bool { return e.ID == tag+"-in" && e.Kind == "message_error" })
		if err != nil {
			t.Fatalf("carol got no error for a message to %s: %v", CompanyDomain, err)
		}
		t.Logf("stranger -> company: %s %q", ev.Error, ev.ErrorText)
		for _, c := range []*testbed.Client{alice, carol} {
			for _, m := range c.Messages() {
				if strings.HasPrefix(m.ID, tag) {
					t.Fatalf("%s received a message across a refused session: %+v", c.JID, m)
				}
			}
		}
	}
	strangerRefused("s1")
	if _, err := gw.waitRecord("session refused by policy", map[string]string{"remote_domain": StrangerDomain, "direction": "inbound"}, wait); err != nil {
		t.Error(err)
	}
	if _, err := gw.waitRecord("session refused by policy", map[string]string{"remote_domain": StrangerDomain, "direction": "outbound"}, wait); err != nil {
		t.Error(err)
	}

	// Reload with stranger.test added: it federates, and the partner's
	// streams stay as they were.
	partnerStreams := func() []string {
		var ids []string
		for _, r := range gw.records("outgoing stream established") {
			if r["to_domain"] == PartnerDomain || r["from_domain"] == PartnerDomain {
				ids = append(ids, fmt.Sprint(r["session"]))
			}
		}
		for _, r := range gw.records("peer authenticated") {
			if r["remote_domain"] == PartnerDomain {
				ids = append(ids, fmt.Sprint(r["session"]))
			}
		}
		return ids
	}
	before := partnerStreams()
	reloads := len(gw.records("policy reloaded"))
	// The same reload picks up a renewed certificate file.
	oldSerial := servedSerial(t)
	cert, key := ca.issue(t, CompanyDomain)
	os.WriteFile(filepath.Join(gw.dir, "company.crt"), cert, 0o600)
	os.WriteFile(filepath.Join(gw.dir, "company.key"), key, 0o600)
	gw.setPartners(t, PartnerDomain, StrangerDomain)
	if newSerial := servedSerial(t); newSerial == oldSerial {
		t.Errorf("after SIGHUP the outside listener still presents the old certificate (serial %s)", oldSerial)
	}
	if err := alice.SendMessageID(carol.JID, "welcome aboard", "s2-out"); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.WaitEvent(wait, func(e Event) bool { return e.ID == "s2-out" && e.Kind == "message" }); err != nil {
		t.Fatalf("after the reload, company -> stranger: %v", err)
	}
	if err := carol.SendMessageID(alice.JID, "thanks", "s2-in"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "s2-in" && e.Kind == "message" }); err != nil {
		t.Fatalf("after the reload, stranger -> company: %v", err)
	}
	messageBothWaysID(t, alice, bob, "after-reload")
	if after := partnerStreams(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("partner streams changed across the reload: before %v, after %v", before, after)
	}
	if len(gw.records("policy reloaded")) <= reloads {
		t.Error("no 'policy reloaded' in the log")
	}
	// The reload saved the policy's warm-up samples: classes of real
	// traffic, without a word of the messages.
	samples, err := os.ReadFile(filepath.Join(gw.dir, "policy-samples.json"))
	if err != nil {
		t.Fatalf("no warm-up samples after the reload: %v", err)
	}
	if !bytes.Contains(samples, []byte(`"kind":"message"`)) || !bytes.Contains(samples, []byte(PartnerDomain)) {
		t.Errorf("the warm-up samples hold no message with %s: %.300s", PartnerDomain, samples)
	}
	for _, text := range []string{"CONFIDENTIAL", "lunch at noon", "hello bob", "hi after"} {
		if bytes.Contains(samples, []byte(text)) {
			t.Errorf("the warm-up samples hold message text %q", text)
		}
	}

	// Remove it again: its streams are cut at once, the partner's stay.
	gw.setPartners(t, PartnerDomain)
	if _, err := gw.waitRecord("session no longer allowed by the policy: closing", map[string]string{"remote_domain": StrangerDomain}, wait); err != nil {
		t.Error(err)
	}
	strangerRefused("s3")
	messageBothWaysID(t, alice, bob, "after-removal")
	if after := partnerStreams(); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("partner streams changed when stranger.test was removed: before %v, after %v", before, after)
	}

	// The audit log: one record per stanza with the right facts.
	recs := gw.auditRecords(t)
	find := func(id, decision string) map[string]any {
		for _, r := range recs {
			if r["event"] == "stanza" && r["id"] == id && r["decision"] == decision {
				return r
			}
		}
		t.Fatalf("no audit record for stanza %s with decision %s", id, decision)
		return nil
	}
	r := find("m1", "allow")
	if r["direction"] != "outbound" || !strings.HasPrefix(fmt.Sprint(r["from"]), alice.JID+"/") || r["to"] != bob.JID || r["kind"] != "message" {
		t.Errorf("record of m1: %v", r)
	}
	r = find("m2", "allow")
	if r["direction"] != "inbound" || !strings.HasPrefix(fmt.Sprint(r["from"]), bob.JID+"/") || r["to"] != alice.JID {
		t.Errorf("record of m2: %v", r)
	}
	r = find("c1", "deny")
	if r["direction"] != "outbound" || r["reason"] == "" || r["policy_revision"] == "" {
		t.Errorf("record of c1: %v", r)
	}
	find("c1", "bounced")
	// Outbound messages relayed: m1, ok1, s2-out, after-reload-alice,
	// after-removal-alice; inbound: m2, s2-in, after-reload-bob,
	// after-removal-bob (and the bounces xmppedge made).
	checkMetrics(t, 5, 4)
	checkAdmin(t)
	checkReadiness(t, gw)
	// stranger.test was refused at session level: no stanza crossed, and
	// each refusal is a session record.
	for _, dir := range []string{"inbound", "outbound"} {
		found := false
		for _, r := range recs {
			if r["event"] == "session.auth" && r["decision"] == "deny" && r["remote_domain"] == StrangerDomain && r["direction"] == dir {
				found = true
			}
			if r["event"] == "stanza" && (r["from"] == carol.JID || strings.HasPrefix(fmt.Sprint(r["id"]), "s1-")) {
				t.Errorf("a stanza of a refused session has a record: %v", r)
			}
		}
		if !found {
			t.Errorf("no session.auth deny record for %s (%s)", StrangerDomain, dir)
		}
	}
	auditVerify(t, gw)
}

// messageBothWaysID is messageBothWays with its own ids.
func messageBothWaysID(t *testing.T, alice, bob *testbed.Client, tag string) {
	t.Helper()
	for _, c := range []struct{ from, to *testbed.Client }{{alice, bob}, {bob, alice}} {
		id := tag + "-" + strings.Split(c.from.JID, "@")[0]
		if err := c.from.SendMessageID(c.to.JID, "hi "+tag, id); err != nil {
			t.Fatal(err)
		}
		if _, err := c.to.WaitEvent(15*time.Second, func(e Event) bool { return e.ID == id && e.Kind == "message" }); err != nil {
			t.Fatalf("%s -> %s (%s): %v", c.from.JID, c.to.JID, tag, err)
		}
	}
}

// setPartners rewrites partners.yaml and sends SIGHUP, then waits for the
// reload.
func (g *gatewayProc) setPartners(t *testing.T, domains ...string) {
	t.Helper()
	// "reloaded" is logged once the whole reload (policy, certificates,
	// limits) is done; "policy reloaded" comes earlier, from the engine.
	n := len(g.records("reloaded"))
	if err := os.WriteFile(filepath.Join(g.dir, "partners.yaml"), partnersYAML(domains...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := g.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(g.records("reloaded")) <= n {
		if time.Now().After(deadline) {
			t.Fatalf("the configuration was not reloaded after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// auditFiles lists the audit files in order (rotated ones, then the
// current one).
func (g *gatewayProc) auditFiles(t testing.TB) []string {
	t.Helper()
	cur := filepath.Join(g.dir, "audit", "audit.jsonl")
	rotated, _ := filepath.Glob(cur + ".*")
	return append(rotated, cur)
}

func (g *gatewayProc) auditRecords(t testing.TB) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range g.auditFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r map[string]any
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				continue // a torn last line is the verifier's business
			}
			out = append(out, r)
		}
	}
	return out
}

// auditVerify runs `xmppedge audit verify` on the log and on tampered
// copies of it.
func auditVerify(t *testing.T, g *gatewayProc) {
	t.Helper()
	files := g.auditFiles(t)
	verify := func(files ...string) (string, int) {
		out, err := exec.Command(gatewayBinary(t), append([]string{"audit", "verify"}, files...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out)), code
	}
	out, code := verify(files...)
	if code != 0 {
		t.Fatalf("audit verify on the untouched log: exit %d: %s", code, out)
	}
	t.Logf("audit verify: %s", out)

	cur := files[len(files)-1]
	data, err := os.ReadFile(cur)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 6 {
		t.Fatalf("only %d audit records", len(lines))
	}
	mid := len(lines) / 2
	tampers := []struct {
		name string
		edit func([]string) []string
	}{
		{"one character changed", func(l []string) []string {
			l[mid] = strings.Replace(l[mid], `"event":"`, `"event":"X`, 1)
			return l
		}},
		{"a line deleted", func(l []string) []string { return append(l[:mid], l[mid+1:]...) }},
		{"two lines swapped", func(l []string) []string { l[mid], l[mid+1] = l[mid+1], l[mid]; return l }},
	}
	for _, tc := range tampers {
		l := tc.edit(append([]string(nil), lines...))
		tampered := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(tampered, []byte(strings.Join(l, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append(append([]string(nil), files[:len(files)-1]...), tampered)
		out, code := verify(args...)
		if code == 0 {
			t.Errorf("%s: audit verify exited 0: %s", tc.name, out)
			continue
		}
		if !strings.Contains(out, fmt.Sprintf("line %d", mid+1)) && !strings.Contains(out, fmt.Sprintf("line %d", mid+2)) {
			t.Errorf("%s: audit verify does not name line %d: %s", tc.name, mid+1, out)
		}
		t.Logf("%s: %s", tc.name, out)
	}
}

// TestAuditSurvivesKill kills xmppedge with SIGKILL in the middle of a
// 10,000-message burst (durability: sync) and checks that every message
// the partner received has its audit record; the next start reports the
// torn tail (a crash mid-write is simulated by a half-written line, since
// SIGKILL alone rarely tears one) and continues the chain.
func TestAuditSurvivesKill(t *testing.T) {
	testbed.Require(t)
	public := publicDNS(t, false)
	ca := newCA(t)
	files := gatewayFiles(t, ca, PartnerDomain)
	gw := startGateway(t, gatewayConfig(ca.file), files)
	companyProsody(t, ca, gw, false)
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true})
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, CompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, PartnerIP+":5222")
	messageBothWays(t, alice, bob)
	gw.setPartners(t, PartnerDomain) // a reload saves the policy's warm-up samples, which the restart below reads

	const n = 10000
	go func() {
		for i := 0; i < n; i++ {
			if alice.SendMessageID(bob.JID, fmt.Sprintf("burst %05d", i), fmt.Sprintf("k%d", i)) != nil {
				return
			}
		}
	}()
	// Kill once a good part has arrived.
	deadline := time.Now().Add(60 * time.Second)
	for len(bob.Messages()) < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d messages arrived", len(bob.Messages()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	gw.kill()
	// Let what was on the wire settle.
	last := -1
	for cur := len(bob.Messages()); cur != last; cur = len(bob.Messages()) {
		last = cur
		time.Sleep(time.Second)
	}
	received := map[string]bool{}
	for _, m := range bob.Messages() {
		if strings.HasPrefix(m.ID, "k") {
			received[m.ID] = true
		}
	}
	recorded := map[string]bool{}
	for _, r := range gw.auditRecords(t) {
		if r["event"] == "stanza" && r["decision"] == "allow" {
			recorded[fmt.Sprint(r["id"])] = true
		}
	}
	missing := 0
	for id := range received {
		if !recorded[id] {
			missing++
		}
	}
	t.Logf("killed mid-burst: partner received %d of %d, audit records %d burst stanzas", len(received), n, len(recorded))
	if missing > 0 {
		t.Fatalf("%d messages reached the partner without an audit record", missing)
	}
	if len(received) == n {
		t.Fatalf("the kill came after the whole burst: the test proves nothing")
	}

	// A crash mid-write leaves half a line: simulate it, restart, and
	// check the chain goes on.
	cur := filepath.Join(gw.dir, "audit", "audit.jsonl")
	f, err := os.OpenFile(cur, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":999999999,"event":"stanza","id":"torn`)
	f.Close()
	gw2 := runGateway(t, gw.dir, gatewayConfig(ca.file), nil)
	if !strings.Contains(gw2.log(), "torn") {
		t.Errorf("the restart did not report the torn tail:\n%s", tail(gw2.log(), 30))
	}
	if warmed := gw2.records("policy warmed up from the last run's samples"); len(warmed) != 1 || fmt.Sprint(warmed[0]["warmed_classes"]) == "0" {
		t.Errorf("the restart did not warm the policy up from the saved samples: %v\n%s", warmed, tail(gw2.log(), 30))
	}
	messageBothWaysID(t, alice, bob, "after-restart")
	gw2.stop()
	out, err := exec.Command(gatewayBinary(t), append([]string{"audit", "verify"}, gw2.auditFiles(t)...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("audit verify after the crash and restart: %v: %s", err, out)
	}
	t.Logf("audit verify after restart: %s", strings.TrimSpace(string(out)))
}

// kill sends SIGKILL and waits for the process.
func (g *gatewayProc) kill() {
	g.cmd.Process.Kill()
	<-g.done
	g.stopped = true
}

// servedSerial is the serial of the certificate xmppedge's direct-TLS
// listener presents for company.test.
func servedSerial(t *testing.T) string {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", net.JoinHostPort(GatewayOutsideIP, fmt.Sprint(DirectTLSPort)),
		&tls.Config{ServerName: CompanyDomain, InsecureSkipVerify: true, NextProtos: []string{"xmpp-server"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
	"github.com/xmppedge/xmppedge/internal/audit/archive"
	"github.com/xmppedge/xmppedge/internal/audit/archive/archivetest"
)

// The export test's own addresses (127.0.1.1–6), apart from the rest of
// the suite:
//
//	company Prosody 127.0.1.1 ──internal DNS (127.0.1.6): partner.test → 127.0.1.3:5269──▶ xmppedge inside
//	xmppedge outside 127.0.1.4:5269 ◀──public DNS (127.0.1.5)── partner Prosody 127.0.1.2
const (
	exportCompanyIP   = "127.0.1.1"
	exportPartnerIP   = "127.0.1.2"
	exportInsideIP    = "127.0.1.3"
	exportOutsideIP   = "127.0.1.4"
	exportPublicDNS   = "127.0.1.5:5300"
	exportInternalDNS = "127.0.1.6:5300"
)

// TestAuditExportArchive: the real gateway audits partner.test in full
// (audit_full in the shipped rules' data); real Prosody users exchange
// messages both ways and one is denied; `xmppedge audit export -format
// eml` turns the log into .eml files that Python's email package reads
// back with the sender, recipient, time and body of each message, as
// the audit records hold them, the denied attempt with its decision.
func TestAuditExportArchive(t *testing.T) {
	testbed.Require(t)
	b := startFederationBed(t, bedAddrs{company: exportCompanyIP, partner: exportPartnerIP, inside: exportInsideIP, outside: exportOutsideIP,
		publicDNS: exportPublicDNS, internalDNS: exportInternalDNS}, append(partnersYAML(PartnerDomain), "audit_full: [partner.test]\n"...))
	_, bob := b.startPartner(t, false)
	gw, alice := b.gw, b.alice
	const wait = 15 * time.Second

	sent := map[string]string{ // stanza id → body
		"x1": "Grüße aus der Firma,\nzweite Zeile",
		"x2": "Hi Alice — got it",
		"x3": "the CONFIDENTIAL plan",
	}
	if err := alice.SendRaw(`<message to='bob@partner.test' type='chat' id='x1'><subject>Q3</subject><thread>th-1</thread><body>` + sent["x1"] + `</body></message>`); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitEvent(wait, func(e Event) bool { return e.ID == "x1" && e.Kind == "message" }); err != nil {
		t.Fatalf("bob did not get x1: %v", err)
	}
	if err := bob.SendMessageID(alice.JID, sent["x2"], "x2"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "x2" && e.Kind == "message" }); err != nil {
		t.Fatalf("alice did not get x2: %v", err)
	}
	if err := alice.SendMessageID(bob.JID, sent["x3"], "x3"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(wait, func(e Event) bool { return e.ID == "x3" && e.Kind == "message_error" }); err != nil {
		t.Fatalf("x3 was not refused: %v", err)
	}
	gw.stop() // every record written; the export reads a log at rest

	out := filepath.Join(t.TempDir(), "export")
	cmd := exec.Command(gatewayBinary(t), "audit", "export", "-format", "eml", "-domain", PartnerDomain, "-o", out, filepath.Join(gw.dir, "audit", "audit.jsonl"))
	output, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("audit export: %v\n%s", err, output)
	}
	t.Logf("audit export:\n%s", output)
	checkExportArchive(t, gw, out, sent)
}

// checkExportArchive compares each .eml of the export, read by Python,
// with the stanza record it names.
func checkExportArchive(t *testing.T, gw *gatewayProc, out string, sent map[string]string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, archive.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m archive.Manifest
	if err := json.Unmarshal(data, &m); err != nil || !m.Verified || len(m.Chains) != 1 || !m.Chains[0].Intact {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	bySeq := map[string]map[string]any{}
	for _, r := range gw.auditRecords(t) {
		if r["event"] == "stanza" {
			bySeq[fmt.Sprint(r["seq"])] = r
		}
	}
	var emls []string
	for _, f := range m.Files {
		if f.Record != nil {
			emls = append(emls, filepath.Join(out, f.Name))
		}
	}
	seen := map[string]string{} // stanza id → decision
	for _, p := range archivetest.ReadEML(t, emls...) {
		fields := strings.Fields(p.Chain)
		if len(fields) != 3 || p.ID == nil || len(p.Defects) > 0 {
			t.Fatalf("%s: chain %q id %v defects %v", p.File, p.Chain, p.ID, p.Defects)
		}
		r := bySeq[fields[1]]
		if r == nil || r["hash"] != fields[2] || r["id"] != *p.ID {
			t.Fatalf("%s names seq %s hash %s id %s; the log's record: %v", p.File, fields[1], fields[2], *p.ID, r)
		}
		recTime, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(r["time"]))
		date, err := time.Parse(time.RFC3339, p.Date)
		if p.XMPPFrom != r["from"] || p.XMPPTo != r["to"] || err != nil || !date.Equal(recTime.Truncate(time.Second)) ||
			p.Body != sent[*p.ID]+"\n" || p.Decision != r["decision"] {
			t.Errorf("%s: from %s to %s date %s body %q decision %s\nrecord: %v", p.File, p.XMPPFrom, p.XMPPTo, p.Date, p.Body, p.Decision, r)
		}
		seen[*p.ID] = p.Decision
		if *p.ID == "x1" && (p.Subject == nil || *p.Subject != "Q3" || p.Thread == nil || *p.Thread != "th-1") {
			t.Errorf("x1: subject %v thread %v", p.Subject, p.Thread)
		}
	}
	if seen["x1"] != "allow" || seen["x2"] != "allow" || seen["x3"] != "deny" {
		t.Fatalf("messages exported: %v, want x1 and x2 allowed, x3 denied", seen)
	}
}

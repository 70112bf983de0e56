package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
	"github.com/xmppedge/xmppedge/internal/audit"
)

// The retention test's own addresses (127.0.0.241–249).
const (
	retCompanyIP  = "127.0.0.241"
	retInsideIP   = "127.0.0.242"
	retOutsideIP  = "127.0.0.243"
	retPartnerIP  = "127.0.0.244"
	retHeldIP     = "127.0.0.245"
	retPublicDNS  = "127.0.0.246:5300"
	retResponder  = "127.0.0.242:5300"
	retHeldDomain = "held.test"
	retRetention  = 2 * time.Second
)

// TestRetention runs the real gateway with audit.retention 2s, rotation at
// 64KB and a legal hold on held.test, between a real company Prosody and
// two real partner Prosody servers (partner.test, held.test), both audited
// in full so that files fill quickly:
//   - partner.test's traffic fills a first file; once it is older than the
//     retention, the next rotation's retention run deletes it, after an
//     audit.anchor record;
//   - the file with held.test's records, expired too, survives the next
//     run (the log names the hold);
//   - `xmppedge audit verify -config` passes on what remains and says where
//     the chain starts; `audit retain -dry-run` names the hold; a file
//     removed by hand after that is caught by verify.
func TestRetention(t *testing.T) {
	testbed.Require(t)
	public := startDNSAt(t, retPublicDNS)
	addServer(public, CompanyDomain, retOutsideIP, S2SPort)
	addServer(public, PartnerDomain, retPartnerIP, S2SPort)
	addServer(public, retHeldDomain, retHeldIP, S2SPort)

	ca := newCA(t)
	cfg := gatewayConfigAt(gatewayAddrs{inside: retInsideIP, company: retCompanyIP, outside: retOutsideIP, publicDNS: retPublicDNS, responder: retResponder}, ca.file)
	cfg = strings.Replace(cfg, "  durability: sync\n", fmt.Sprintf(`  durability: sync
  rotate: {size: 64KB}
  retention: %s
  legal_holds:
    - reference: CASE-HELD-1
      domains: [%s]
`, retRetention, retHeldDomain), 1)
	files := gatewayFiles(t, ca, PartnerDomain, retHeldDomain)
	files["partners.yaml"] = append(files["partners.yaml"], fmt.Sprintf("audit_full: [%s, %s]\n", PartnerDomain, retHeldDomain)...)
	gw := startGatewayAt(t, cfg, files, fmt.Sprintf("%s:%d", retInsideIP, S2SPort), 20*time.Second)

	opts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: retCompanyIP, DNS: retResponder, Users: Users}
	opts.CertPEM, opts.KeyPEM = ca.issue(t, CompanyDomain)
	testbed.StartProsody(t, opts)
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: PartnerDomain, IP: retPartnerIP, DNS: retPublicDNS, Users: Users, RequireEncryption: true})
	testbed.StartProsody(t, testbed.ProsodyOptions{Domain: retHeldDomain, IP: retHeldIP, DNS: retPublicDNS, Users: Users, RequireEncryption: true})
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, retCompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, retPartnerIP+":5222")
	held := testbed.StartClient(t, "bob@"+retHeldDomain, Password, retHeldIP+":5222")
	current := filepath.Join(gw.dir, "audit", "audit.jsonl")

	// partner.test only, until a file is rotated: that file holds no
	// held.test record.
	fillUntilRotated(t, gw, alice, bob, "a", 1)
	first := rotatedFiles(t, current)[0]
	time.Sleep(retRetention + 500*time.Millisecond) // its records are now expired

	// held.test's traffic rotates the next file; the run after that
	// rotation deletes the first file.
	fillUntilRotated(t, gw, alice, held, "h", 2)
	if _, err := gw.waitRecord("audit retention: deleted the oldest audit files", map[string]string{"files": "1"}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Fatalf("%s was not deleted: %v", first, err)
	}
	heldFile := rotatedFiles(t, current)[0]
	time.Sleep(retRetention + 500*time.Millisecond) // the held file is expired too

	// The next rotation's run keeps the held file.
	fillUntilRotated(t, gw, alice, bob, "b", 3)
	rec, err := gw.waitRecord("audit retention: a legal hold keeps an expired file (and the newer ones)", map[string]string{"hold": "CASE-HELD-1"}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if f := fmt.Sprint(rec["file"]); filepath.Base(f) != filepath.Base(heldFile) {
		t.Fatalf("the hold keeps %s, want %s", f, heldFile)
	}
	gw.stop()
	if _, err := os.Stat(heldFile); err != nil {
		t.Fatalf("the held file is gone: %v", err)
	}
	if !fileMentions(t, heldFile, retHeldDomain) {
		t.Fatalf("the held file %s has no %s record", heldFile, retHeldDomain)
	}

	cfgFile := filepath.Join(gw.dir, "xmppedge.yaml")
	out, err := runXmppedge(t, "audit", "verify", "-config", cfgFile)
	if err != nil || !strings.Contains(out, "chain intact") || !strings.Contains(out, "anchored by record") {
		t.Fatalf("audit verify after retention: %v\n%s", err, out)
	}
	t.Logf("audit verify:\n%s", out)
	out, err = runXmppedge(t, "audit", "retain", "-config", cfgFile, "-dry-run")
	if err != nil || !strings.Contains(out, `held by legal hold "CASE-HELD-1"`) || strings.Contains(out, "would delete audit.jsonl.") {
		t.Fatalf("audit retain -dry-run: %v\n%s", err, out)
	}
	t.Logf("audit retain -dry-run:\n%s", out)

	// An attacker removes the held file: verify fails at the start.
	if err := os.Remove(heldFile); err != nil {
		t.Fatal(err)
	}
	out, err = runXmppedge(t, "audit", "verify", "-config", cfgFile)
	if err == nil || !strings.Contains(out, "starts mid-chain") {
		t.Fatalf("audit verify with the held file removed: %v\n%s", err, out)
	}
}

// fillUntilRotated sends messages with large bodies from one client to
// another, each received, until the gateway has rotated its audit file
// rotations times in all.
func fillUntilRotated(t *testing.T, gw *gatewayProc, from, to *testbed.Client, tag string, rotations int) {
	t.Helper()
	body := strings.Repeat("retention test ", 256) // ~4KB: the record holds the whole stanza (audit_full)
	for i := 0; len(gw.records("audit: rotated the audit file")) < rotations; i++ {
		if i == 200 {
			t.Fatalf("no rotation after %d messages", i)
		}
		id := fmt.Sprintf("%s%d", tag, i)
		if err := from.SendMessageID(to.JID, body, id); err != nil {
			t.Fatal(err)
		}
		if _, err := to.WaitEvent(15*time.Second, func(e Event) bool { return e.ID == id && e.Kind == "message" }); err != nil {
			t.Fatalf("%s -> %s (%s): %v", from.JID, to.JID, id, err)
		}
	}
}

func rotatedFiles(t *testing.T, current string) []string {
	t.Helper()
	files, err := audit.RotatedFiles(current)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func fileMentions(t *testing.T, path, s string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(data), s)
}

// runXmppedge runs the gateway binary with args and returns its output.
func runXmppedge(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), args...)
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// TestPolicyReplay's own addresses (127.0.1.21–24), apart from the rest
// of the suite:
//
//	company Prosody .21 ──internal DNS (.22:5300)──▶ xmppedge inside .23
//	xmppedge outside .24:5269 ◀──public DNS (.24:5300)── partner Prosody .22
const (
	replayCompanyIP = "127.0.1.21"
	replayPartnerIP = "127.0.1.22"
	replayInsideIP  = "127.0.1.23"
	replayOutsideIP = "127.0.1.24"
	replayDNSPort   = 5300
)

// replayRecord is what the test reads of `policy replay -format json`.
type replayRecord struct {
	Sessions, Stanzas int
	WithoutContent    int `json:"without_content"`
	Groups            []struct {
		Partner, Direction string
		NewlyDenied        int `json:"newly_denied"`
		NewlyAllowed       int `json:"newly_allowed"`
		Unjudged           int
		Unchanged          int
	}
}

// TestPolicyReplay records real traffic through a real xmppedge (the
// shipped rules, partner.test a partner audited in full, real Prosody on
// both sides: a message each way and a confidential one refused), then
// runs the built `xmppedge policy replay` over its audit files:
//   - with data that drops partner.test, every partner.test session and
//     stanza the gateway allowed is newly denied (and the refused one stays
//     refused), per direction, and it exits 1;
//   - with the data the gateway ran with, nothing changes: exit 0.
func TestPolicyReplay(t *testing.T) {
	testbed.Require(t)
	withPartner := append(partnersYAML(PartnerDomain), "audit_full: [partner.test]\n"...)
	b := startFederationBed(t, bedAddrs{company: replayCompanyIP, partner: replayPartnerIP, inside: replayInsideIP, outside: replayOutsideIP,
		publicDNS: net.JoinHostPort(replayOutsideIP, fmt.Sprint(replayDNSPort)), internalDNS: net.JoinHostPort(replayPartnerIP, fmt.Sprint(replayDNSPort))}, withPartner)
	_, bob := b.startPartner(t, false)
	gw, alice := b.gw, b.alice

	messageBothWays(t, alice, bob)
	if err := alice.SendMessageID(bob.JID, "the CONFIDENTIAL merger plan", "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(15*time.Second, func(e Event) bool { return e.ID == "c1" && e.Kind == "message_error" }); err != nil {
		t.Fatalf("no bounce for the confidential message: %v", err)
	}
	gw.stop() // a quiet log: every record written

	allowed, refused := partnerDecisions(t, gw)
	if allowed["inbound"] < 2 || allowed["outbound"] < 2 || refused["outbound"] < 1 {
		t.Fatalf("recorded partner.test decisions: allowed %v, refused %v; want a session and a stanza each way, and the refusal", allowed, refused)
	}
	dir := t.TempDir()
	without := filepath.Join(dir, "without.yaml")
	noPartners := strings.Replace(string(partnersYAML()), "partners:\n", "partners: []\n", 1) + "audit_full: [partner.test]\n"
	if err := os.WriteFile(without, []byte(noPartners), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, code := runReplay(t, gw, without)
	if code != 1 {
		t.Fatalf("replay without partner.test: exit %d, want 1", code)
	}
	for _, g := range rep.Groups {
		want := [4]int{allowed[g.Direction], 0, 0, refused[g.Direction]}
		if got := [4]int{g.NewlyDenied, g.NewlyAllowed, g.Unjudged, g.Unchanged}; g.Partner != PartnerDomain || got != want {
			t.Errorf("%s %s: newly denied, allowed, unjudged, unchanged %v; want %v", g.Partner, g.Direction, got, want)
		}
	}
	if len(rep.Groups) != 2 || rep.WithoutContent != 0 {
		t.Errorf("groups %+v, %d stanzas without content; want partner.test inbound and outbound, all stanzas with content", rep.Groups, rep.WithoutContent)
	}
	same := filepath.Join(dir, "same.yaml")
	if err := os.WriteFile(same, withPartner, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, code := runReplay(t, gw, same); code != 0 {
		t.Fatalf("replay with the gateway's own data: exit %d, want 0: %+v", code, rep)
	}
}

// partnerDecisions counts partner.test's recorded policy decisions
// (session.auth and stanza records with a policy revision) by direction:
// allowed and refused.
func partnerDecisions(t *testing.T, gw *gatewayProc) (allowed, refused map[string]int) {
	t.Helper()
	allowed, refused = map[string]int{}, map[string]int{}
	for _, r := range gw.auditRecords(t) {
		if (r["event"] != "session.auth" && r["event"] != "stanza") || r["policy_revision"] == nil || r["remote_domain"] != PartnerDomain {
			continue
		}
		dir, _ := r["direction"].(string)
		switch r["decision"] {
		case "allow":
			allowed[dir]++
		case "deny":
			refused[dir]++
		}
	}
	return allowed, refused
}

// runReplay runs the built `xmppedge policy replay` with the shipped rules
// and data over the gateway's audit log.
func runReplay(t *testing.T, gw *gatewayProc, data string) (replayRecord, int) {
	t.Helper()
	rules, err := filepath.Abs("../../rules")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gatewayBinary(t), "policy", "replay", "-rules", rules, "-data", data, "-format", "json",
		filepath.Join(gw.dir, "audit", "audit.jsonl"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep replayRecord
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("policy replay (exit %d): not JSON: %v\n%s\n%s", code, err, out, stderr.String())
	}
	t.Logf("policy replay -data %s: exit %d\n%s", filepath.Base(data), code, out)
	return rep, code
}

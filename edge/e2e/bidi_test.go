package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// TestBidi federates a company Prosody and a partner Prosody, both with
// mod_s2s_bidi (XEP-0288), through xmppedge. A conversation both ways
// uses one s2s stream per leg:
//   - inside, the company server's stream to xmppedge, which it asked to
//     use both ways: xmppedge delivers the partner's messages over it
//     rather than connecting to the company server;
//   - outside, xmppedge's stream to the partner's server (whose
//     certificate is valid for partner.test), which xmppedge asked to use
//     both ways: the partner's server sends its replies over it rather than
//     connecting to xmppedge.
//
// The admin API's session list shows it, both Prosody logs say so, and the
// audit records the stanzas of both directions as without bidi.
func TestBidi(t *testing.T) {
	testbed.Require(t)
	public := publicDNS(t, false)
	ca := newCA(t)
	gw := startGateway(t, gatewayConfig(ca.file), gatewayFiles(t, ca, PartnerDomain))
	company := testbed.ProsodyOptions{Domain: CompanyDomain, IP: CompanyIP, DNS: InsideDNSAddr, Users: Users, Modules: []string{"s2s_bidi"}}
	company.CertPEM, company.KeyPEM = ca.issue(t, CompanyDomain)
	cp := testbed.StartProsody(t, company)
	partner := testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true,
		CAFile: ca.file, Modules: []string{"s2s_bidi"}}
	partner.CertPEM, partner.KeyPEM = ca.issue(t, PartnerDomain)
	pp := testbed.StartProsody(t, partner)
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, CompanyIP+":5222")
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, PartnerIP+":5222")

	messageBothWays(t, alice, bob)
	for i := 0; i < 3; i++ {
		messageBothWaysID(t, alice, bob, fmt.Sprintf("bidi%d", i))
	}

	sessions := bidiSessions(t)
	for _, leg := range []string{"inside", "outside"} {
		var own []string
		for _, s := range sessions {
			if s.Leg == leg && len(s.Remote) > 0 && s.Over == "" {
				own = append(own, fmt.Sprintf("%s %s bidi=%v", s.ID, s.Direction, s.Bidi))
			}
		}
		if len(own) != 1 {
			t.Errorf("%s leg: %d streams with a connection of their own, want 1: %v", leg, len(own), own)
		}
	}
	for _, s := range sessions {
		t.Logf("session %s %s %s bidi=%v over=%q remote=%v auth=%s", s.ID, s.Leg, s.Direction, s.Bidi, s.Over, s.Remote, s.Auth)
	}
	if !strings.Contains(cp.Log(), "Requesting bidirectional stream") {
		t.Error("the company server did not ask for a bidirectional stream")
	}
	if !strings.Contains(pp.Log(), "Requested bidirectional stream") {
		t.Error("the partner server was not asked for a bidirectional stream")
	}

	// Both directions' stanzas are recorded as without bidi: allowed,
	// with their direction and addresses.
	want := map[string]string{"m1": "outbound", "m2": "inbound"}
	for i := 0; i < 3; i++ {
		want[fmt.Sprintf("bidi%d-alice", i)] = "outbound"
		want[fmt.Sprintf("bidi%d-bob", i)] = "inbound"
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]string{}
		for _, r := range gw.auditRecords(t) {
			if r["event"] == "stanza" && r["decision"] == "allow" {
				if id, _ := r["id"].(string); want[id] != "" {
					got[id], _ = r["direction"].(string)
				}
			}
		}
		missing := []string{}
		for id, dir := range want {
			if got[id] != dir {
				missing = append(missing, id+" "+dir+" (got "+got[id]+")")
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stanza records missing or wrong: %v", missing)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type bidiSession struct {
	ID        string   `json:"id"`
	Leg       string   `json:"leg"`
	Direction string   `json:"direction"`
	Remote    []string `json:"remote"`
	Auth      string   `json:"auth"`
	Bidi      bool     `json:"bidi"`
	Over      string   `json:"over"`
}

func bidiSessions(t *testing.T) []bidiSession {
	t.Helper()
	code, body := adminGet(t, "/admin/sessions", AdminToken)
	if code != http.StatusOK {
		t.Fatalf("GET /admin/sessions: %d %s", code, body)
	}
	var out []bidiSession
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("sessions: %v\n%s", err, body)
	}
	return out
}

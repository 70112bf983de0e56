package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The partner tests' own addresses (127.0.0.231–240):
//
//	company Prosody 127.0.0.231 ──internal DNS (127.0.0.236): partner.test → 127.0.0.233:5269──▶ xmppedge inside
//	xmppedge outside 127.0.0.234:5269 ◀──public DNS (127.0.0.235)── partner Prosody 127.0.0.232
//	xmppedge metrics and admin API 127.0.0.237:9269
const (
	ptCompanyIP   = "127.0.0.231"
	ptPartnerIP   = "127.0.0.232"
	ptInsideIP    = "127.0.0.233"
	ptOutsideIP   = "127.0.0.234"
	ptPublicDNS   = "127.0.0.235:5300"
	ptInternalDNS = "127.0.0.236:5300"
	ptMetrics     = "127.0.0.237:9269"
)

// ptAddrs are the partner tests' federationBed.
var ptAddrs = bedAddrs{company: ptCompanyIP, partner: ptPartnerIP, inside: ptInsideIP, outside: ptOutsideIP,
	publicDNS: ptPublicDNS, internalDNS: ptInternalDNS, metrics: ptMetrics}

// auditEvents are the gateway's audit records of event for partner.test.
func (g *gatewayProc) auditEvents(t *testing.T, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range g.auditRecords(t) {
		if r["event"] == event && r["remote_domain"] == PartnerDomain {
			out = append(out, r)
		}
	}
	return out
}

// waitAuditEvent waits for a record of event for partner.test that ok
// accepts.
func (g *gatewayProc) waitAuditEvent(t *testing.T, event string, timeout time.Duration, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, r := range g.auditEvents(t, event) {
			if ok(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s audit record for %s as wanted within %v; those there: %v", event, PartnerDomain, timeout, g.auditEvents(t, event))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricsText is the gateway's /metrics.
func metricsText(t *testing.T) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + ptMetrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// partnersCLI runs `xmppedge partners` on the running gateway's config.
func partnersCLI(t *testing.T, gw *gatewayProc) string {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), "partners", "-config", filepath.Join(gw.dir, "xmppedge.yaml"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("xmppedge partners: %v\n%s", err, out)
	}
	return string(out)
}

// TestPartnerPostureDowngrade: partner.test first federates by SASL
// EXTERNAL (its certificate from a CA xmppedge trusts), then — the same
// domain, another server — by dialback with a self-signed certificate.
// The second session is a posture downgrade: the audit log has a
// posture.downgrade record naming both postures, the counter counts it,
// and `xmppedge partners` shows the best and the last posture; the best
// is kept in the state file beside the audit log.
func TestPartnerPostureDowngrade(t *testing.T) {
	testbed.Require(t)
	t0 := time.Now()
	b := startFederationBed(t, ptAddrs, partnersYAML(PartnerDomain))
	strong, bob := b.startPartner(t, true)
	messageBothWays(t, b.alice, bob)
	raised := b.gw.waitAuditEvent(t, "posture.raised", 10*time.Second, func(r map[string]any) bool { return r["auth"] == "sasl_external" })
	t.Logf("posture recorded: %v", raised["reason"])
	if n := len(b.gw.auditEvents(t, "posture.downgrade")); n != 0 {
		t.Fatalf("%d posture.downgrade records before any weaker session", n)
	}
	step(t, "federate by SASL EXTERNAL", t0)

	// The same domain from a server without a trusted certificate.
	bob.Close()
	strong.Stop()
	_, bob = b.startPartner(t, false)
	messageBothWaysID(t, b.alice, bob, "weak")
	down := b.gw.waitAuditEvent(t, "posture.downgrade", 10*time.Second, func(r map[string]any) bool { return r["auth"] == "dialback" })
	reason := fmt.Sprint(down["reason"])
	if !strings.Contains(reason, "dialback < sasl_external") || !strings.Contains(reason, "best seen TLS 1.3, sasl_external") {
		t.Errorf("posture.downgrade reason %q does not name the weaker and the best posture", reason)
	}
	if down["peer_cert"] == "valid" || down["tls_version"] != "TLS 1.3" {
		t.Errorf("posture.downgrade record: peer_cert=%v tls_version=%v, want the session's (self-signed, TLS 1.3)", down["peer_cert"], down["tls_version"])
	}
	t.Logf("posture downgrade recorded: %s", reason)

	m := metricsText(t)
	if !strings.Contains(m, `xmppedge_posture_downgrades_total{partner="partner.test"}`) {
		t.Errorf("/metrics has no downgrade counter for partner.test")
	}
	if !strings.Contains(m, `xmppedge_partner_posture_best{dimension="auth",partner="partner.test"} 3`) {
		t.Errorf("/metrics does not show SASL EXTERNAL (3) as partner.test's best authentication")
	}
	out := partnersCLI(t, b.gw)
	t.Logf("xmppedge partners:\n%s", out)
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, PartnerDomain+" ") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if !strings.Contains(line, "TLS 1.3, sasl_external") || !strings.Contains(line, "TLS 1.3, dialback") || strings.Contains(out, "not asked") {
		t.Errorf("xmppedge partners does not show partner.test's best (sasl_external) and last (dialback) posture from the gateway: %q", line)
	}
	state, err := os.ReadFile(filepath.Join(b.gw.dir, "audit", "posture-state.json"))
	if err != nil || !strings.Contains(string(state), `"sasl_external"`) {
		t.Errorf("posture state file: %v %s", err, state)
	}
	b.gw.stop()
	step(t, "total", t0)
}

// agreementExpiry is an expiry at a minute boundary at least 40 s away:
// time to start everything and exchange messages before it.
func agreementExpiry(now time.Time) time.Time {
	t := now.UTC().Truncate(time.Minute).Add(time.Minute)
	for t.Sub(now) < 40*time.Second {
		t = t.Add(time.Minute)
	}
	return t
}

// TestPartnerAgreementExpiry: partner.test federates under an agreement
// that expires while the gateway runs. Before expires, messages cross
// both ways; when it passes, xmppedge cuts the established sessions by
// itself (the session.close record names the expiry), and from then on
// the partner's sessions are refused at session level with the reason
// naming the agreement (the session.auth records carry it), and both
// senders get an error, not silence.
func TestPartnerAgreementExpiry(t *testing.T) {
	testbed.Require(t)
	t0 := time.Now()
	expires := agreementExpiry(t0)
	data := fmt.Sprintf(`partners:
  - domain: %s
    agreement: {owner: legal@company.test, reference: NDA-E2E-7, expires: "%s"}
`, PartnerDomain, expires.Format(time.RFC3339))
	b := startFederationBed(t, ptAddrs, []byte(data))
	_, bob := b.startPartner(t, false)
	messageBothWays(t, b.alice, bob)
	if time.Now().After(expires) {
		t.Fatalf("the machine is too slow: the agreement expired (%v) before the first messages crossed", expires)
	}
	if m := metricsText(t); !strings.Contains(m, fmt.Sprintf(`xmppedge_partner_agreement_expiry_timestamp_seconds{partner="partner.test"} %g`, float64(expires.Unix()))) {
		t.Errorf("/metrics has no agreement expiry for partner.test at %d", expires.Unix())
	}
	if out := partnersCLI(t, b.gw); !strings.Contains(out, "NDA-E2E-7") || !strings.Contains(out, "legal@company.test") {
		t.Errorf("xmppedge partners does not list the agreement:\n%s", out)
	}
	step(t, "federate under the agreement", t0)

	// At expires (to the minute, and the re-check a second later) the
	// established streams are cut.
	wait := time.Until(expires) + 30*time.Second
	cut := b.gw.waitAuditEvent(t, "session.close", wait, func(r map[string]any) bool {
		return strings.Contains(fmt.Sprint(r["reason"]), "partner agreement expiry")
	})
	if !strings.Contains(fmt.Sprint(cut["reason"]), "NDA-E2E-7") {
		t.Errorf("session.close reason %q does not name the agreement", cut["reason"])
	}
	step(t, "established sessions cut at expiry", t0)

	// Inbound: the partner's new session is refused at session.auth.
	if err := bob.SendMessageID(b.alice.JID, "after the end", "late-in"); err != nil {
		t.Fatal(err)
	}
	ev, err := bob.WaitEvent(30*time.Second, func(e Event) bool { return e.ID == "late-in" && e.Kind == "message_error" })
	if err != nil {
		t.Fatalf("bob got no error for a message after the agreement expired: %v", err)
	}
	t.Logf("partner -> company after expiry: %s %q", ev.Error, ev.ErrorText)
	if !strings.Contains(ev.ErrorText, "NDA-E2E-7") {
		t.Errorf("bob's error does not say which agreement expired: %s %q", ev.Error, ev.ErrorText)
	}
	deny := b.gw.waitAuditEvent(t, "session.auth", 10*time.Second, func(r map[string]any) bool {
		return r["decision"] == "deny" && r["direction"] == "inbound"
	})
	for _, want := range []string{"agreement NDA-E2E-7", "legal@company.test", expires.Format(time.RFC3339)} {
		if !strings.Contains(fmt.Sprint(deny["reason"]), want) {
			t.Errorf("session.auth deny reason %q does not name %q", deny["reason"], want)
		}
	}
	// Outbound: the company server's stream for partner.test is refused
	// (inside leg, direction outbound); alice is told why.
	if err := b.alice.SendMessageID(bob.JID, "after the end", "late-out"); err != nil {
		t.Fatal(err)
	}
	ev, err = b.alice.WaitEvent(30*time.Second, func(e Event) bool { return e.ID == "late-out" && e.Kind == "message_error" })
	if err != nil {
		t.Fatalf("alice got no error for a message after the agreement expired: %v", err)
	}
	if !strings.Contains(ev.ErrorText, "NDA-E2E-7") {
		t.Errorf("alice's error does not say which agreement expired: %s %q", ev.Error, ev.ErrorText)
	}
	t.Logf("company -> partner after expiry: %s %q", ev.Error, ev.ErrorText)
	for _, c := range []*testbed.Client{b.alice, bob} {
		for _, m := range c.Messages() {
			if strings.HasPrefix(m.ID, "late-") {
				t.Errorf("%s received a message after the agreement expired: %+v", c.JID, m)
			}
		}
	}
	b.gw.stop()
	step(t, "total", t0)
}

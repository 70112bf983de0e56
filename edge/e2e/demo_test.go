package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The demo's own addresses (127.0.0.171–189), apart from the rest of the
// suite so that it can run while other tests run:
//
//	company Prosody 127.0.0.171 ──xmppedge's internal DNS responder 127.0.0.173:5300: partner.test → 127.0.0.173:5269──▶ xmppedge inside
//	xmppedge outside 127.0.0.174:5269 / :5270 ◀──public DNS (127.0.0.175:5300)── partner Prosody 127.0.0.172
//	xmppedge /metrics, /healthz, /readyz: 127.0.0.173:9269
const (
	demoCompanyIP = "127.0.0.171"
	demoPartnerIP = "127.0.0.172"
	demoInsideIP  = "127.0.0.173"
	demoOutsideIP = "127.0.0.174"
	demoPublicDNS = "127.0.0.175:5300"
)

// demoMetricsAddr is where the demo's xmppedge serves /metrics.
var demoMetricsAddr = net.JoinHostPort(demoInsideIP, "9269")

// demoConfig is the gateway tests' configuration (gatewayConfig) moved to
// the demo's addresses.
func demoConfig(caFile string) string {
	hp := func(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }
	cfg := strings.NewReplacer(
		`"`+hp(GatewayIP, S2SPort)+`"`, `"`+hp(demoInsideIP, S2SPort)+`"`,
		`"`+hp(CompanyIP, S2SPort)+`"`, `"`+hp(demoCompanyIP, S2SPort)+`"`,
		`"`+hp(GatewayOutsideIP, S2SPort)+`"`, `"`+hp(demoOutsideIP, S2SPort)+`"`,
		`"`+hp(GatewayOutsideIP, DirectTLSPort)+`"`, `"`+hp(demoOutsideIP, DirectTLSPort)+`"`,
		`"`+InsideDNSAddr+`"`, `"`+hp(demoInsideIP, 5300)+`"`,
		`"`+MetricsAddr+`"`, `"`+demoMetricsAddr+`"`,
		`"`+PublicDNSAddr+`"`, `"`+demoPublicDNS+`"`,
	).Replace(gatewayConfig(caFile))
	for _, old := range []string{CompanyIP, GatewayIP, GatewayOutsideIP, PublicDNSAddr} {
		if strings.Contains(cfg, `"`+old+":") || strings.Contains(cfg, `"`+old+`"`) {
			panic("demoConfig: " + old + " is still in the configuration:\n" + cfg)
		}
	}
	return cfg
}

// TestDemo is `make demo`: a company Prosody and a partner Prosody on
// loopback with xmppedge between them, under the shipped rules and the
// shipped example data (rules/partners.yaml). alice@company.test and
// bob@partner.test exchange messages; one carries a confidential keyword
// and is refused, and alice gets the bounce with the policy's reason. The
// demo then prints `xmppedge audit tail` and the main metrics, and keeps
// everything running until Ctrl-C or XMPPEDGE_DEMO_WAIT (default 1m) has
// passed; then it stops every process it started.
//
// It runs only with XMPPEDGE_DEMO=1. `make test` runs it with
// XMPPEDGE_DEMO_WAIT=0, as a test: each message must have the fate the
// narrative claims, and its audit record.
func TestDemo(t *testing.T) {
	if os.Getenv("XMPPEDGE_DEMO") != "1" {
		t.Skip("the demo: run `make demo` (or set XMPPEDGE_DEMO=1)")
	}
	wait := time.Minute
	if s := os.Getenv("XMPPEDGE_DEMO_WAIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			t.Fatalf("XMPPEDGE_DEMO_WAIT=%q: want a duration such as 30s or 0", s)
		}
		wait = d
	}
	testbed.Require(t)
	t0 := time.Now()
	out := os.Stdout
	say := func(format string, a ...any) { fmt.Fprintf(out, format+"\n", a...) }

	// Ctrl-C (SIGINT to the terminal's process group: make, go test and
	// this test; xmppedge, Prosody and the clients have their own groups)
	// ends the demo after the step under way, through the test's
	// cleanups, so that no Prosody, client or xmppedge is left behind.
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt, syscall.SIGTERM)
	stopped := make(chan struct{})
	done := make(chan struct{})
	go func() {
		select {
		case s := <-interrupt:
			say("\n%v: stopping the demo…", s)
			close(stopped)
		case <-done:
		}
	}()
	var (
		gw               *gatewayProc
		company, partner *testbed.Prosody
	)
	// Registered first, so it runs last: after every other cleanup.
	t.Cleanup(func() {
		signal.Stop(interrupt)
		close(done)
		for _, p := range []*testbed.Prosody{company, partner} {
			if p != nil && !p.Exited() {
				t.Errorf("Prosody %s still running after the cleanups", p.Opts.Domain)
			}
		}
		if gw != nil {
			select {
			case <-gw.done:
			default:
				t.Errorf("xmppedge still running after the cleanups")
			}
		}
		say("Stopped everything the demo started (xmppedge, the Prosody servers, the clients, the DNS servers) and removed its files. It ran %v.", time.Since(t0).Round(100*time.Millisecond))
	})
	interrupted := func() bool {
		select {
		case <-stopped:
			return true
		default:
			return false
		}
	}
	// However the demo ends, xmppedge gets SIGTERM first and closes its
	// streams; the cleanups then stop the clients, the Prosody servers and
	// the DNS servers.
	defer func() {
		if gw != nil && !gw.stopped {
			gw.stop()
		}
	}()

	gatewayBinary(t) // built first, so that its log line comes before the story
	say("")
	say("xmppedge demo: a company and a partner XMPP server federating through xmppedge, on loopback")
	say("")
	say("  alice@company.test ── Prosody company.test %s", demoCompanyIP)
	say("                             │ s2s: every remote domain resolves to xmppedge (its internal DNS responder)")
	say("                        xmppedge  inside %s:5269 · outside %s:5269 · metrics http://%s/metrics", demoInsideIP, demoOutsideIP, demoMetricsAddr)
	say("                             │ s2s over TLS, certificates both ways (SASL EXTERNAL)")
	say("  bob@partner.test ─── Prosody partner.test %s", demoPartnerIP)
	say("")
	say("  policy: the shipped rules (rules/*.rego) with the shipped data (rules/partners.yaml):")
	say("          partner.test is a partner; messages with a confidential keyword stay inside")
	say("")

	// DNS: the Internet's view (the partner, xmppedge). The company server
	// asks xmppedge's internal DNS responder, which forwards to it.
	public := startDNSAt(t, demoPublicDNS)
	addServer(public, CompanyDomain, demoOutsideIP, S2SPort)
	addServer(public, PartnerDomain, demoPartnerIP, S2SPort)

	shipped, err := os.ReadFile("../../rules/partners.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ca := newCA(t)
	files := gatewayFiles(t, ca, PartnerDomain)
	files["partners.yaml"] = shipped
	start := time.Now()
	gw = startGatewayAt(t, demoConfig(ca.file), files, net.JoinHostPort(demoInsideIP, fmt.Sprint(S2SPort)), 60*time.Second)
	auditFile := filepath.Join(gw.dir, "audit", "audit.jsonl")
	say("  ✓ xmppedge started (%v)", time.Since(start).Round(time.Millisecond))
	if interrupted() {
		return
	}

	start = time.Now()
	companyOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: demoCompanyIP, DNS: net.JoinHostPort(demoInsideIP, "5300"), Users: Users}
	companyOpts.CertPEM, companyOpts.KeyPEM = ca.issue(t, CompanyDomain)
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: demoPartnerIP, DNS: demoPublicDNS, Users: Users,
		RequireEncryption: true, SecureAuth: true, CAFile: ca.file}
	partnerOpts.CertPEM, partnerOpts.KeyPEM = ca.issue(t, PartnerDomain)
	company = testbed.StartProsody(t, companyOpts)
	partner = testbed.StartProsody(t, partnerOpts)
	say("  ✓ Prosody company.test and Prosody partner.test started (%v)", time.Since(start).Round(time.Millisecond))
	if interrupted() {
		return
	}

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	say("  ✓ alice logged in to company.test, bob to partner.test (%v)", time.Since(start).Round(time.Millisecond))
	say("")
	if interrupted() {
		return
	}

	const msgWait = 15 * time.Second
	type message struct {
		from, to *testbed.Client
		id, body string
		refused  bool // by the shipped rules
	}
	short := func(c *testbed.Client) string { return strings.SplitN(c.JID, "@", 2)[0] }
	say("Messages:")
	for _, m := range []message{
		{alice, bob, "demo-1", "Hi Bob, lunch on Thursday?", false},
		{bob, alice, "demo-2", "Sure, 12:30 at the usual place.", false},
		{alice, bob, "demo-3", "Here are the CONFIDENTIAL Q3 figures: …", true},
		{alice, bob, "demo-4", "Never mind, I'll tell you on Thursday.", false},
	} {
		if interrupted() {
			return
		}
		sent := time.Now()
		if err := m.from.SendMessageID(m.to.JID, m.body, m.id); err != nil {
			t.Fatal(err)
		}
		ev, err := waitFate(m.from, m.to, m.id, msgWait, stopped)
		if interrupted() {
			return
		}
		if err != nil {
			t.Fatalf("%s → %s %q: %v", short(m.from), short(m.to), m.body, err)
		}
		line := fmt.Sprintf("  %-5s → %-5s %-45q", short(m.from), short(m.to), m.body)
		switch {
		case ev.Kind == "message" && !m.refused:
			say("%s DELIVERED (%v)", line, ev.At.Sub(sent).Round(time.Millisecond))
		case ev.Kind == "message_error" && m.refused:
			say("%s REFUSED by xmppedge", line)
			say("        the bounce %s got: <%s/> %q", short(m.from), ev.Error, ev.ErrorText)
			if ev.Error != "policy-violation" || !strings.Contains(ev.ErrorText, "confidential keyword") {
				t.Errorf("bounce of %s: %s %q, want policy-violation with the confidential keyword reason", m.id, ev.Error, ev.ErrorText)
			}
		default:
			t.Fatalf("%s → %s %q: got %+v, want it %s", short(m.from), short(m.to), m.body, ev, map[bool]string{true: "refused", false: "delivered"}[m.refused])
		}
	}
	// demo-4 came after demo-3 on the same stream: had demo-3 been
	// forwarded, bob would have it by now.
	for _, e := range bob.Messages() {
		if e.ID == "demo-3" {
			t.Fatalf("bob received the refused message: %+v", e)
		}
	}
	say("  bob got the three delivered messages, never the refused one.")
	if rec, err := gw.waitRecord("outgoing stream established", map[string]string{"leg": "outside", "to_domain": PartnerDomain}, 5*time.Second); err == nil {
		say("  (xmppedge → partner.test: %v, authenticated by %v)", rec["tls"], rec["auth"])
	}
	say("")

	// The audit records of the delivered and the refused messages.
	for _, want := range []struct{ id, decision string }{{"demo-1", "allow"}, {"demo-2", "allow"}, {"demo-3", "deny"}, {"demo-3", "bounced"}, {"demo-4", "allow"}} {
		if _, err := gw.waitAudit(func(r map[string]any) bool { return r["id"] == want.id && r["decision"] == want.decision }, 5*time.Second); err != nil {
			t.Errorf("audit record of %s (%s): %v", want.id, want.decision, err)
		}
	}
	say("Audit log: xmppedge audit tail -n 20 %s", auditFile)
	tailOut, err := exec.Command(gatewayBinary(t), "audit", "tail", "-n", "20", auditFile).CombinedOutput()
	if err != nil {
		t.Fatalf("xmppedge audit tail: %v\n%s", err, tailOut)
	}
	say("%s", indent(string(tailOut), "  "))
	verifyOut, err := exec.Command(gatewayBinary(t), "audit", "verify", auditFile).CombinedOutput()
	if err != nil {
		t.Errorf("xmppedge audit verify: %v\n%s", err, verifyOut)
	}
	say("Audit chain: xmppedge audit verify → %s", strings.TrimSpace(string(verifyOut)))
	say("")

	say("Metrics: http://%s/metrics (the non-zero samples of the main ones)", demoMetricsAddr)
	metrics, err := demoScrape()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"xmppedge_stanzas_total", "xmppedge_sessions", "xmppedge_session_attempts_total", "xmppedge_tls_handshakes_total", "xmppedge_audit_records_total"} {
		for _, l := range nonZeroSamples(metrics, name) {
			say("  %s", l)
		}
	}
	say("  (the refused message counts as denied and as bounced; the bounce to alice as relayed inbound)")
	for _, c := range []struct {
		outcome, direction string
		want               float64
	}{{"relayed", "outbound", 2}, {"relayed", "inbound", 2}, {"denied", "outbound", 1}, {"bounced", "outbound", 1}} {
		if v := metricValue(metrics, "xmppedge_stanzas_total", map[string]string{"direction": c.direction, "kind": "message", "outcome": c.outcome}); v != c.want {
			t.Errorf("%s %s messages: metric %v, want %v", c.outcome, c.direction, v, c.want)
		}
	}
	say("")

	if wait > 0 {
		say("Everything keeps running for %v; Ctrl-C stops it now. Meanwhile, in another terminal:", wait)
		say("  %s audit tail -f %s", gatewayBinary(t), auditFile)
		say("  curl -s http://%s/metrics | grep '^xmppedge_stanzas'", demoMetricsAddr)
		select {
		case <-stopped:
		case <-time.After(wait):
			say("%v passed: stopping the demo…", wait)
		}
	}
}

// waitFate waits for what becomes of message id sent by from to to: its
// delivery (a "message" event at to) or its bounce (a "message_error" at
// from); it gives up when stop is closed.
func waitFate(from, to *testbed.Client, id string, wait time.Duration, stop <-chan struct{}) (Event, error) {
	got := make(chan Event, 2)
	go func() {
		if ev, err := to.WaitEvent(wait, func(e Event) bool { return e.ID == id && e.Kind == "message" }); err == nil {
			got <- ev
		}
	}()
	go func() {
		if ev, err := from.WaitEvent(wait, func(e Event) bool { return e.ID == id && e.Kind == "message_error" }); err == nil {
			got <- ev
		}
	}()
	select {
	case ev := <-got:
		return ev, nil
	case <-time.After(wait):
		return Event{}, fmt.Errorf("neither delivered nor bounced within %v", wait)
	case <-stop:
		return Event{}, fmt.Errorf("interrupted")
	}
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+prefix)
}

// demoScrape fetches the demo's /metrics.
func demoScrape() (string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + demoMetricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(b), nil
}

// nonZeroSamples returns the exposition lines of metric name whose value
// is not zero.
func nonZeroSamples(text, name string) []string {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if m := re.FindStringSubmatch(line); m != nil && m[2] != "0" {
			out = append(out, line)
		}
	}
	return out
}

package e2e

import (
	"bufio"
	"bytes"
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
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// The gateway's addresses in the end-to-end topology:
//
//	company Prosody (127.0.0.2) ──internal DNS view: every remote domain → 127.0.0.4:5269──▶ xmppedge inside
//	xmppedge outside 127.0.0.5:5269 (STARTTLS), :5270 (direct TLS) ◀──public DNS view── partner Prosody (127.0.0.3)
const (
	GatewayOutsideIP = "127.0.0.5"
	DirectTLSPort    = 5270
	// InsideDNSAddr is xmppedge's internal DNS responder: the company
	// Prosody's only resolver, so it finds xmppedge for every remote
	// domain with no other routing setting.
	InsideDNSAddr = "127.0.0.4:5300"
	// MetricsAddr serves /metrics, /healthz, /readyz and the admin API.
	MetricsAddr = "127.0.0.4:9269"
	// AdminToken is the bearer token of the admin API (metrics.admin_token_file).
	AdminToken = "e2e-admin-token-0123456789abcdef"
)

// xmppedgeBinary is bin/xmppedge built with the race detector (unless
// XMPPEDGE_E2E_RACE=0, for measuring rates).
var xmppedgeBinary = &goBinary{name: "xmppedge", args: raceArgs("../../cmd/xmppedge")}

func raceArgs(pkg string) []string {
	if os.Getenv("XMPPEDGE_E2E_RACE") == "0" {
		return []string{pkg}
	}
	return []string{"-race", pkg}
}

// gatewayBinary returns xmppedge built once per test run.
func gatewayBinary(t testing.TB) string {
	t.Helper()
	p, err := xmppedgeBinary.build(t)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// gatewayProc is a running bin/xmppedge.
type gatewayProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	dir     string
	logFile string
	done    chan struct{}
	exitErr error
	stopped bool
}

// startGateway writes cfg (YAML) to a temporary folder (with the files in
// files, relative names, and an empty audit folder) and runs `xmppedge
// run` on it until its inside listener (at GatewayIP) accepts.
func startGateway(t testing.TB, cfg string, files map[string][]byte) *gatewayProc {
	t.Helper()
	return startGatewayAt(t, cfg, files, net.JoinHostPort(GatewayIP, fmt.Sprint(S2SPort)), 20*time.Second)
}

// startGatewayAt is startGateway for a config whose inside listener is
// insideAddr, waiting up to wait for it.
func startGatewayAt(t testing.TB, cfg string, files map[string][]byte, insideAddr string, wait time.Duration) *gatewayProc {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "audit"), 0o700); err != nil {
		t.Fatal(err)
	}
	return runGatewayAt(t, dir, cfg, files, insideAddr, wait)
}

// runGateway starts xmppedge in dir (a fresh one, or one a stopped gateway
// used: the audit log continues).
func runGateway(t testing.TB, dir, cfg string, files map[string][]byte) *gatewayProc {
	t.Helper()
	return runGatewayAt(t, dir, cfg, files, net.JoinHostPort(GatewayIP, fmt.Sprint(S2SPort)), 20*time.Second)
}

func runGatewayAt(t testing.TB, dir, cfg string, files map[string][]byte, insideAddr string, wait time.Duration) *gatewayProc {
	t.Helper()
	g := launchGateway(t, dir, cfg, files)
	g.waitListening(insideAddr, wait)
	return g
}

// launchGateway starts xmppedge in dir without waiting for it to listen
// (cluster nodes wait for each other before they listen).
func launchGateway(t testing.TB, dir, cfg string, files map[string][]byte) *gatewayProc {
	t.Helper()
	bin := gatewayBinary(t)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgFile := filepath.Join(dir, "xmppedge.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gatewayProc{t: t, dir: dir, logFile: filepath.Join(dir, fmt.Sprintf("xmppedge-%d.log", time.Now().UnixNano())), done: make(chan struct{})}
	logf, err := os.Create(g.logFile)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, "run", "-config", cfgFile)
	g.cmd.Stdout = logf
	g.cmd.Stderr = logf
	// Its own process group, as the test bed's Prosody servers and
	// clients: a Ctrl-C at the terminal reaches the test, which stops
	// xmppedge itself (TestDemo catches it and stops everything in order).
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.exitErr = g.cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	t.Cleanup(func() {
		if !g.stopped {
			g.cmd.Process.Kill()
			<-g.done
		}
		if keep := os.Getenv("XMPPEDGE_E2E_KEEP"); keep != "" {
			_ = os.MkdirAll(keep, 0o755)
			_ = os.WriteFile(filepath.Join(keep, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+"-"+filepath.Base(filepath.Dir(g.logFile))+"-"+filepath.Base(g.logFile)), []byte(g.log()), 0o644)
		}
		if t.Failed() || os.Getenv("XMPPEDGE_E2E_VERBOSE") != "" {
			t.Logf("xmppedge log:\n%s", tail(g.log(), 200))
		}
	})
	return g
}

// waitListening waits until the gateway accepts on insideAddr.
func (g *gatewayProc) waitListening(insideAddr string, wait time.Duration) {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", insideAddr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-g.done:
			t.Fatalf("xmppedge exited at start: %v\n%s", g.exitErr, g.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmppedge did not listen on %s: %v\n%s", insideAddr, err, g.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *gatewayProc) log() string {
	b, _ := os.ReadFile(g.logFile)
	return string(b)
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// records returns the JSON log records whose msg is msg.
func (g *gatewayProc) records(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(g.log())))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitRecord waits until a log record with msg matches all of fields.
func (g *gatewayProc) waitRecord(msg string, fields map[string]string, timeout time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, rec := range g.records(msg) {
			ok := true
			for k, v := range fields {
				if fmt.Sprint(rec[k]) != v {
					ok = false
				}
			}
			if ok {
				return rec, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no xmppedge log record %q with %v", msg, fields)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and checks that xmppedge exits cleanly within 10 s.
func (g *gatewayProc) stop() time.Duration {
	g.t.Helper()
	start := time.Now()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
		g.t.Errorf("xmppedge did not exit within 10 s of SIGTERM")
	}
	g.stopped = true
	if g.exitErr != nil {
		g.t.Errorf("xmppedge exited with %v after SIGTERM", g.exitErr)
	}
	return time.Since(start)
}

// publicDNS is the Internet's DNS view in the end-to-end suite (used by
// the partner Prosody and by xmppedge): company.test at the outside
// listener, the other domains at their own servers. The company Prosody
// uses xmppedge's internal DNS responder instead (InsideDNSAddr).
func publicDNS(t *testing.T, directTLS bool) *resolvetest.Server {
	public := startDNSAt(t, PublicDNSAddr)
	if directTLS {
		// XEP-0368: Prosody asks _xmpps-server first.
		public.AddSRV("_xmpps-server._tcp."+CompanyDomain, "xmpps."+CompanyDomain, DirectTLSPort, 10, 10)
		public.AddA("xmpps."+CompanyDomain, GatewayOutsideIP)
	} else {
		addServer(public, CompanyDomain, GatewayOutsideIP, S2SPort)
	}
	addServer(public, PartnerDomain, PartnerIP, S2SPort)
	addServer(public, DownDomain, DownIP, S2SPort)
	addServer(public, BrokenDomain, BrokenIP, S2SPort)
	startStreamErrorServer(t, net.JoinHostPort(BrokenIP, fmt.Sprint(S2SPort)), BrokenDomain, "internal-server-error")
	return public
}

// companyProsody starts the company server: its only resolver is
// xmppedge's internal DNS responder. With insideTLS it requires encryption
// and certificate authentication (s2s_secure_auth) on the inside leg and
// trusts xmppedge's internal CA (created by xmppedge at its first start,
// so start xmppedge first).
func companyProsody(t *testing.T, ca *testCA, gw *gatewayProc, insideTLS bool) *testbed.Prosody {
	t.Helper()
	return companyProsodyWith(t, ca, gw, insideTLS, Users)
}

// companyProsodyWith is companyProsody with its own users.
func companyProsodyWith(t *testing.T, ca *testCA, gw *gatewayProc, insideTLS bool, users map[string]string) *testbed.Prosody {
	t.Helper()
	opts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: CompanyIP, DNS: InsideDNSAddr, Users: users}
	opts.CertPEM, opts.KeyPEM = ca.issue(t, CompanyDomain)
	if insideTLS {
		internalCA, err := os.ReadFile(filepath.Join(gw.dir, "inside-ca.crt"))
		if err != nil {
			t.Fatalf("xmppedge did not create its internal CA: %v", err)
		}
		bundle := filepath.Join(t.TempDir(), "trusted.pem")
		if err := os.WriteFile(bundle, internalCA, 0o644); err != nil {
			t.Fatal(err)
		}
		opts.CAFile, opts.SecureAuth, opts.RequireEncryption = bundle, true, true
	}
	return testbed.StartProsody(t, opts)
}

// gatewayConfig is xmppedge's configuration in the test bed: the shipped
// rules with the test's partners.yaml, a sync audit log, both legs.
func gatewayConfig(caFile string) string {
	return gatewayConfigAt(gatewayAddrs{
		inside: GatewayIP, company: CompanyIP, outside: GatewayOutsideIP, directTLS: DirectTLSPort,
		publicDNS: PublicDNSAddr, responder: InsideDNSAddr, metrics: MetricsAddr,
	}, caFile)
}

// gatewayAddrs are where a test's gateway listens and what it talks to;
// the optional parts ("" or 0) are left out of the config.
type gatewayAddrs struct {
	inside, company, outside string // xmppedge's inside listener IP, the company server's IP, xmppedge's outside IP (all on S2SPort)
	directTLS                int    // xmppedge's direct-TLS port on outside (0: none)
	publicDNS                string // the resolver xmppedge asks (host:port)
	responder                string // inside.dns_listen (host:port)
	metrics                  string // metrics.listen, with the admin API (host:port)
	insideExtra              string // more lines of the inside section (e.g. tls)
	tls                      string // the tls section's own lines ("": company.test's certificate files)
}

// gatewayConfigAt is the test bed's gateway configuration at a's
// addresses: the shipped rules with the test's partners.yaml, a sync
// audit log, both legs.
func gatewayConfigAt(a gatewayAddrs, caFile string) string {
	rules, err := filepath.Abs("../../rules")
	if err != nil {
		panic(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "domains: [%s]\ninside:\n  listen: [\"%s:%d\"]\n  server: \"%s:%d\"\n  allow: [\"127.0.0.0/8\"]\n", CompanyDomain, a.inside, S2SPort, a.company, S2SPort)
	if a.responder != "" {
		fmt.Fprintf(&b, "  dns_listen: \"%s\"\n", a.responder)
	}
	b.WriteString(a.insideExtra)
	fmt.Fprintf(&b, "outside:\n  listen: [\"%s:%d\"]\n", a.outside, S2SPort)
	if a.directTLS != 0 {
		fmt.Fprintf(&b, "  listen_tls: [\"%s:%d\"]\n", a.outside, a.directTLS)
	}
	tls := a.tls
	if tls == "" {
		tls = "  certificates:\n    - {cert_file: company.crt, key_file: company.key}\n"
	}
	fmt.Fprintf(&b, `  require_tls: true
dns:
  servers: ["%s"]
tls:
%s  ca_files: [%s]
  system_roots: false
dialback:
  secret_file: dialback.secret
policy:
  rules: %s
  data: [partners.yaml]
  timeout: 2s # not the 50 ms default: on a shared CI machine under -race a decision may wait that long for a CPU
  warm_samples: policy-samples.json
audit:
  path: audit/audit.jsonl
  durability: sync
limits:
  connect_timeout: 5s
`, a.publicDNS, tls, caFile, rules)
	if a.metrics != "" {
		fmt.Fprintf(&b, "metrics:\n  listen: \"%s\"\n  admin: true\n  admin_token_file: admin.token\n", a.metrics)
	}
	b.WriteString("log:\n  level: debug\n  format: json\n")
	return b.String()
}

// withInsideTLS turns on TLS with certificate authentication on the inside
// leg (xmppedge creates its internal CA at first start).
func withInsideTLS(cfg string) string {
	return strings.Replace(cfg, "  allow: [\"127.0.0.0/8\"]\n", "  allow: [\"127.0.0.0/8\"]\n  tls: required\n  ca: {cert_file: inside-ca.crt, key_file: inside-ca.key}\n", 1)
}

// partnersYAML is the policy data: the partner domains (both directions)
// and the confidential keyword.
func partnersYAML(domains ...string) []byte {
	var b strings.Builder
	b.WriteString("partners:\n")
	for _, d := range domains {
		fmt.Fprintf(&b, "  - domain: %s\n    direction: both\n    require_cert: false\n", d)
	}
	b.WriteString("confidential:\n  keywords: [CONFIDENTIAL, \"INTERNAL ONLY\"]\n  patterns: ['\\b(?:\\d[ -]?){13,16}\\b']\n")
	return []byte(b.String())
}

// gatewayFiles are the files of a gateway config: its certificate and the
// policy data.
func gatewayFiles(t testing.TB, ca *testCA, partners ...string) map[string][]byte {
	cert, key := ca.issue(t, CompanyDomain)
	return map[string][]byte{"company.crt": cert, "company.key": key, "partners.yaml": partnersYAML(partners...), "admin.token": []byte(AdminToken + "\n")}
}

// TestGatewayFederation federates a real company Prosody with a real
// partner Prosody through xmppedge, and runs every exchange of the direct
// baseline through it.
//
//   - "external": the partner trusts xmppedge's CA and requires certificate
//     authentication (s2s_secure_auth): the outside leg uses SASL EXTERNAL
//     both ways; the inside leg uses dialback. Partner → xmppedge uses
//     STARTTLS.
//   - "dialback": the partner has a self-signed certificate and does not
//     trust xmppedge's: the outside leg is TLS with dialback both ways.
//     Partner → xmppedge uses direct TLS (XEP-0368, _xmpps-server).
func TestGatewayFederation(t *testing.T) {
	testbed.Require(t)
	t.Run("external", func(t *testing.T) { testGateway(t, true, false) })
	t.Run("dialback", func(t *testing.T) { testGateway(t, false, true) })
}

func testGateway(t *testing.T, withCA, directTLS bool) {
	t0 := time.Now()
	public := publicDNS(t, directTLS)

	ca := newCA(t)
	start := time.Now()
	cfg := gatewayConfig(ca.file)
	if withCA {
		cfg = withInsideTLS(cfg)
	}
	gw := startGateway(t, cfg, gatewayFiles(t, ca, PartnerDomain, DownDomain, BrokenDomain))
	step(t, "start xmppedge", start)

	start = time.Now()
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: public.Addr(), Users: Users, RequireEncryption: true}
	if withCA {
		partnerOpts.CertPEM, partnerOpts.KeyPEM = ca.issue(t, PartnerDomain)
		partnerOpts.CAFile = ca.file
		partnerOpts.SecureAuth = true
	}
	company := companyProsody(t, ca, gw, withCA)
	partner := testbed.StartProsody(t, partnerOpts)
	step(t, "start two Prosody servers", start)

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	step(t, "log in two clients", start)

	messageBothWays(t, alice, bob)

	// Each server only ever talked to xmppedge, and the outside leg is TLS
	// in both directions, authenticated as the variant says.
	outsideAuth := "dialback"
	if withCA {
		outsideAuth = "sasl_external"
	}
	rec, err := gw.waitRecord("outgoing stream established", map[string]string{"leg": "outside", "to_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["tls"] != "TLS 1.3" || rec["auth"] != outsideAuth {
		t.Errorf("outside outgoing stream: tls=%v auth=%v, want TLS 1.3 and %s", rec["tls"], rec["auth"], outsideAuth)
	}
	rec, err = gw.waitRecord("peer authenticated", map[string]string{"leg": "outside", "remote_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["tls"] != "TLS 1.3" || rec["method"] != outsideAuth {
		t.Errorf("outside incoming stream: tls=%v method=%v, want TLS 1.3 and %s", rec["tls"], rec["method"], outsideAuth)
	}
	// The inside leg: with inside TLS the company server (s2s_secure_auth)
	// and xmppedge authenticate each other by certificate both ways.
	insideAuth := "dialback"
	if withCA {
		insideAuth = "sasl_external"
	}
	if _, err := gw.waitRecord("peer authenticated", map[string]string{"leg": "inside", "remote_domain": CompanyDomain, "method": insideAuth}, 5*time.Second); err != nil {
		t.Error(err)
	}
	if rec, err := gw.waitRecord("outgoing stream established", map[string]string{"leg": "inside", "to_domain": CompanyDomain}, 5*time.Second); err != nil {
		t.Error(err)
	} else if rec["auth"] != insideAuth || (withCA && rec["tls"] != "TLS 1.3") {
		t.Errorf("inside outgoing stream: auth=%v tls=%v, want %s", rec["auth"], rec["tls"], insideAuth)
	}
	if withCA {
		if n := company.CountLog("Initiating dialback"); n != 0 {
			t.Errorf("the company server used dialback %d times with inside TLS", n)
		}
	}
	if err := partner.WaitLog("Stream encrypted (TLSv1.3", 5*time.Second); err != nil {
		t.Error(err)
	}
	if withCA {
		if err := partner.WaitLog("Accepting SASL EXTERNAL identity from company.test", time.Second); err != nil {
			t.Error(err)
		}
		if err := partner.WaitLog("SASL EXTERNAL with company.test succeeded", time.Second); err != nil {
			t.Error(err)
		}
	}
	if directTLS {
		if _, err := gw.waitRecord("connection accepted", map[string]string{"leg": "outside"}, time.Second); err != nil {
			t.Error(err)
		}
	}

	exerciseFederation(t, alice, bob)
	checkProbe(t, gw, withCA)

	// SIGTERM: every stream closed cleanly, exit within 10 s.
	d := gw.stop()
	t.Logf("xmppedge stopped %v after SIGTERM", d.Round(time.Millisecond))
	if _, err := gw.waitRecord("stopped", nil, time.Second); err != nil {
		t.Error(err)
	}
	for _, name := range []string{"stream closed by peer", "outgoing stream closed"} {
		if len(gw.records(name)) == 0 && len(gw.records("stream closed at shutdown")) == 0 {
			t.Errorf("no %q in the log after SIGTERM", name)
		}
	}
	step(t, "total", t0)
}

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The ACME test's own addresses, apart from the rest of the suite so that
// it can run while the other gateway tests run:
//
//	company Prosody 127.0.0.32 ──internal DNS (127.0.0.37): partner.test → 127.0.0.34:5269──▶ xmppedge inside
//	xmppedge outside 127.0.0.35:5269 / :5270, HTTP-01 on :5002 ◀──public DNS (127.0.0.36)── partner Prosody 127.0.0.33
//	Pebble 127.0.0.38:14000 (ACME) / :15000 (management), validating through the public DNS
const (
	acmeCompanyIP     = "127.0.0.32"
	acmePartnerIP     = "127.0.0.33"
	acmeInsideIP      = "127.0.0.34"
	acmeOutsideIP     = "127.0.0.35"
	acmePublicDNS     = "127.0.0.36:5300"
	acmeInternalDNS   = "127.0.0.37:5300"
	acmePebbleIP      = "127.0.0.38"
	acmePebblePort    = 14000
	acmePebbleMgmt    = 15000
	acmeHTTPPort      = 5002 // Pebble's httpPort: where its VA connects for HTTP-01
	acmeDirectTLSPort = 5270 // xmppedge's direct-TLS listener, Pebble's tlsPort (TLS-ALPN-01)

	// acmeValidity is the lifetime of the certificates Pebble issues (less
	// 1 s); acmeRenewBefore makes a certificate due ~4 s after its issue.
	acmeValidity      = 120 * time.Second
	acmeRenewBefore   = "115s"
	acmeCheckInterval = "3s"
)

// TestACMEFederation runs a real Pebble (a separate process) and shows:
//   - xmppedge obtains company.test's certificate from Pebble at start
//     (HTTP-01 through the public DNS view) and serves it on the outside
//     listeners;
//   - a partner Prosody that trusts only Pebble's issuing root and runs
//     with s2s_secure_auth federates with company.test through xmppedge,
//     authenticated by certificate (SASL EXTERNAL) both ways, no dialback;
//   - a renewal (short-lived certificates, renew_before a few seconds
//     short of their validity) swaps the served certificate without
//     dropping the established sessions.
func TestACMEFederation(t *testing.T) {
	testbed.Require(t)
	t0 := time.Now()

	// DNS: the public view (Pebble, partner, xmppedge) and the company's
	// internal view.
	public := startDNSAt(t, acmePublicDNS)
	public.AddA(CompanyDomain, acmeOutsideIP) // Pebble's HTTP-01 validation
	addServer(public, CompanyDomain, acmeOutsideIP, S2SPort)
	addServer(public, PartnerDomain, acmePartnerIP, S2SPort)
	internal := startDNSAt(t, acmeInternalDNS)
	addServer(internal, PartnerDomain, acmeInsideIP, S2SPort)

	start := time.Now()
	peb := startPebbleProcess(t, acmePublicDNS)
	step(t, "start Pebble (process) and fetch its root", start)

	ca := newCA(t) // signs partner.test's certificate
	start = time.Now()
	// The ACME order happens before the listeners open: wait longer.
	gw := startGatewayAt(t, acmeGatewayConfig(ca.file), map[string][]byte{
		"partners.yaml":     partnersYAML(PartnerDomain),
		"pebble-https.pem":  peb.httpsCAPEM,
		"pebble-issuer.pem": peb.rootPEM,
	}, net.JoinHostPort(acmeInsideIP, fmt.Sprint(S2SPort)), 40*time.Second)
	step(t, "start xmppedge (ACME order included)", start)

	// The certificate came from Pebble, and the start-up log says so.
	rec, err := gw.waitRecord("serving ACME certificate", map[string]string{"domain": CompanyDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if iss := fmt.Sprint(rec["issuer"]); !strings.Contains(iss, "Pebble") {
		t.Errorf("serving ACME certificate: issuer %q, want Pebble's", iss)
	}
	t.Logf("xmppedge: serving ACME certificate for %s, issuer %v, not_after %v", CompanyDomain, rec["issuer"], rec["not_after"])
	if _, err := gw.waitRecord("answering ACME HTTP-01 challenges", map[string]string{"listen": net.JoinHostPort(acmeOutsideIP, fmt.Sprint(acmeHTTPPort))}, time.Second); err != nil {
		t.Error(err)
	}
	first, err := acmeServedCert(peb.roots)
	if err != nil {
		t.Fatalf("direct TLS to xmppedge: %v", err)
	}
	if d := first.NotAfter.Sub(first.NotBefore); d > acmeValidity+time.Minute {
		t.Errorf("served certificate is valid for %v, want Pebble's short validity %v", d, acmeValidity)
	}
	t.Logf("served on %s:%d: serial %x, issuer %q, valid %v", acmeOutsideIP, acmeDirectTLSPort, first.SerialNumber, first.Issuer.CommonName, first.NotAfter.Sub(first.NotBefore).Round(time.Second))
	// The start-up summary names the same certificate (by its expiry).
	if want := fmt.Sprintf("certificate %s: valid until %s", CompanyDomain, first.NotAfter.UTC().Format(time.RFC3339)); !strings.Contains(gw.log(), want) {
		t.Errorf("start-up summary lacks %q", want)
	}

	start = time.Now()
	companyOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: acmeCompanyIP, DNS: acmeInternalDNS, Users: Users}
	companyOpts.CertPEM, companyOpts.KeyPEM = ca.issue(t, CompanyDomain)
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: acmePartnerIP, DNS: acmePublicDNS, Users: Users,
		RequireEncryption: true, SecureAuth: true, CAFile: peb.rootFile}
	partnerOpts.CertPEM, partnerOpts.KeyPEM = ca.issue(t, PartnerDomain)
	company := testbed.StartProsody(t, companyOpts)
	partner := testbed.StartProsody(t, partnerOpts)
	step(t, "start two Prosody servers", start)

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	step(t, "log in two clients", start)

	messageBothWays(t, alice, bob)

	// The outside leg: certificates both ways, no dialback.
	rec, err = gw.waitRecord("outgoing stream established", map[string]string{"leg": "outside", "to_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["auth"] != "sasl_external" || rec["tls"] != "TLS 1.3" {
		t.Errorf("outside outgoing stream: auth=%v tls=%v, want sasl_external over TLS 1.3", rec["auth"], rec["tls"])
	}
	rec, err = gw.waitRecord("peer authenticated", map[string]string{"leg": "outside", "remote_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["method"] != "sasl_external" || rec["tls"] != "TLS 1.3" {
		t.Errorf("outside incoming stream: method=%v tls=%v, want sasl_external over TLS 1.3", rec["method"], rec["tls"])
	}
	for _, want := range []string{"Accepting SASL EXTERNAL identity from company.test", "SASL EXTERNAL with company.test succeeded"} {
		if err := partner.WaitLog(want, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	if n := partner.CountLog("Initiating dialback"); n != 0 {
		t.Errorf("partner Prosody used dialback %d times with company.test's ACME certificate", n)
	}
	for _, r := range gw.records("peer authenticated") {
		if r["leg"] == "outside" && r["method"] != "sasl_external" {
			t.Errorf("outside peer authenticated with %v: %v", r["method"], r)
		}
	}

	// Renewal: the served certificate changes, the sessions stay.
	sessions := acmePartnerSessions(gw)
	partnerIn := partner.CountLog("Incoming s2s connection company.test->partner.test complete")
	partnerOut := partner.CountLog("Outgoing s2s connection partner.test->company.test complete")
	t.Logf("partner sessions before the renewal: %v", sessions)
	start = time.Now()
	before, err := acmeServedCert(peb.roots)
	if err != nil {
		t.Fatal(err)
	}
	var renewed *x509.Certificate
	for deadline := time.Now().Add(60 * time.Second); ; {
		c, err := acmeServedCert(peb.roots)
		if err != nil {
			t.Fatalf("after a renewal: %v", err)
		}
		if c.SerialNumber.Cmp(before.SerialNumber) != 0 {
			renewed = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the served certificate (serial %x) was not renewed within 60 s", before.SerialNumber)
		}
		time.Sleep(200 * time.Millisecond)
	}
	step(t, "served certificate renewed", start)
	t.Logf("renewed: serial %x -> %x, not_after %v -> %v", before.SerialNumber, renewed.SerialNumber, before.NotAfter.Format(time.TimeOnly), renewed.NotAfter.Format(time.TimeOnly))
	if _, err := gw.waitRecord("certificate renewed", map[string]string{"domain": CompanyDomain}, 5*time.Second); err != nil {
		t.Error(err)
	}

	acmeMessageBothWays(t, alice, bob, "renewed")
	if after := acmePartnerSessions(gw); !slices.Equal(after, sessions) {
		t.Errorf("partner sessions changed across the renewal: %v before, %v after", sessions, after)
	}
	if n := partner.CountLog("Incoming s2s connection company.test->partner.test complete"); n != partnerIn {
		t.Errorf("partner Prosody accepted %d new streams from company.test after the renewal", n-partnerIn)
	}
	if n := partner.CountLog("Outgoing s2s connection partner.test->company.test complete"); n != partnerOut {
		t.Errorf("partner Prosody opened %d new streams to company.test after the renewal", n-partnerOut)
	}
	if n := partner.CountLog("Initiating dialback"); n != 0 {
		t.Errorf("partner Prosody used dialback %d times", n)
	}
	// Every order was validated by Pebble against xmppedge itself (Pebble
	// reuses no authorization): HTTP-01 on http_listen or TLS-ALPN-01 on
	// the direct-TLS listener, whichever certmagic picked.
	valid := 0
	for _, r := range gw.records("authorization finalized") {
		if r["authz_status"] == "valid" {
			valid++
		}
	}
	httpAnswers, alpnAnswers := len(gw.records("served key authentication")), len(gw.records("served key authentication certificate"))
	if valid < 2 || httpAnswers+alpnAnswers == 0 {
		t.Errorf("ACME validations: %d valid authorizations (want the first order's and a renewal's), %d HTTP-01 and %d TLS-ALPN-01 answers from xmppedge", valid, httpAnswers, alpnAnswers)
	}
	t.Logf("Pebble issued %d certificates; xmppedge logged %d renewals, %d valid authorizations, answered %d HTTP-01 and %d TLS-ALPN-01 validation requests",
		peb.issued(), len(gw.records("certificate renewed")), valid, httpAnswers, alpnAnswers)

	d := gw.stop()
	t.Logf("xmppedge stopped %v after SIGTERM", d.Round(time.Millisecond))
	if _, err := gw.waitRecord("stopped", nil, time.Second); err != nil {
		t.Error(err)
	}
	step(t, "total", t0)
}

// acmeGatewayConfig is xmppedge's configuration for the ACME test: no
// certificate files, company.test's certificate from Pebble.
func acmeGatewayConfig(caFile string) string {
	return acmeConfig(acmeAddrs{
		inside: acmeInsideIP, company: acmeCompanyIP, outside: acmeOutsideIP, publicDNS: acmePublicDNS,
		pebbleIP: acmePebbleIP, pebblePort: acmePebblePort,
		extra: fmt.Sprintf("    renew_before: %s\n    check_interval: %s\n", acmeRenewBefore, acmeCheckInterval),
	}, caFile)
}

// acmeAddrs are where an ACME test's gateway listens and what it talks to.
type acmeAddrs struct {
	inside, company, outside string // xmppedge's inside listener, the company server, xmppedge's outside listeners
	publicDNS                string // host:port
	pebbleIP                 string
	pebblePort               int
	extra                    string // more lines of tls.acme
}

// acmeConfig is a gateway config whose certificate for company.test comes
// from Pebble (HTTP-01 on the outside address, TLS-ALPN-01 on the
// direct-TLS listener).
func acmeConfig(a acmeAddrs, caFile string) string {
	return gatewayConfigAt(gatewayAddrs{
		inside: a.inside, company: a.company, outside: a.outside, directTLS: acmeDirectTLSPort, publicDNS: a.publicDNS,
		tls: fmt.Sprintf("  acme:\n    ca: \"https://%s:%d/dir\"\n    email: \"ops@%s\"\n    ca_root: pebble-https.pem\n    storage: acme\n    http_listen: \"%s:%d\"\n%s",
			a.pebbleIP, a.pebblePort, CompanyDomain, a.outside, acmeHTTPPort, a.extra),
	}, caFile)
}

// acmeServedCert makes a direct-TLS handshake with xmppedge's outside
// listener (SNI company.test) and returns the leaf it presents, after
// checking that it chains to roots and is valid for company.test.
func acmeServedCert(roots *x509.CertPool) (*x509.Certificate, error) {
	return acmeServedCertAt(net.JoinHostPort(acmeOutsideIP, fmt.Sprint(acmeDirectTLSPort)), roots)
}

// acmeServedCertAt is acmeServedCert for the direct-TLS listener at addr.
func acmeServedCertAt(addr string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		ServerName:         CompanyDomain,
		InsecureSkipVerify: true, // verified below, against Pebble's root only
		NextProtos:         []string{"xmpp-server"},
	})
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	state := conn.ConnectionState()
	conn.Close()
	return acmeVerifiedLeaf(addr, state, roots)
}

// acmeVerifiedLeaf returns the leaf of a handshake with addr, after
// checking that it chains to roots and is valid for company.test.
func acmeVerifiedLeaf(addr string, state tls.ConnectionState, roots *x509.CertPool) (*x509.Certificate, error) {
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("%s presented no certificate", addr)
	}
	leaf := state.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: CompanyDomain, Roots: roots, Intermediates: inter}); err != nil {
		return nil, fmt.Errorf("certificate served by %s for %s (serial %x, issuer %q) does not chain to Pebble's root: %w", addr, CompanyDomain, leaf.SerialNumber, leaf.Issuer.CommonName, err)
	}
	return leaf, nil
}

// acmePartnerSessions returns the ids of xmppedge's outside sessions with
// partner.test, sorted.
func acmePartnerSessions(g *gatewayProc) []string {
	var ids []string
	for _, r := range g.records("outgoing stream established") {
		if r["leg"] == "outside" && r["to_domain"] == PartnerDomain {
			ids = append(ids, "out:"+fmt.Sprint(r["session"]))
		}
	}
	for _, r := range g.records("peer authenticated") {
		if r["leg"] == "outside" && r["remote_domain"] == PartnerDomain {
			ids = append(ids, "in:"+fmt.Sprint(r["session"]))
		}
	}
	slices.Sort(ids)
	return ids
}

// acmeMessageBothWays sends one message each way with ids tag-1 and tag-2.
func acmeMessageBothWays(t *testing.T, alice, bob *testbed.Client, tag string) {
	t.Helper()
	const wait = 15 * time.Second
	start := time.Now()
	if err := alice.SendMessageID(bob.JID, "after "+tag, tag+"-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitEvent(wait, func(e Event) bool { return e.Kind == "message" && e.ID == tag+"-1" }); err != nil {
		t.Fatalf("%s: alice -> bob: %v", tag, err)
	}
	if err := bob.SendMessageID(alice.JID, "after "+tag, tag+"-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(wait, func(e Event) bool { return e.Kind == "message" && e.ID == tag+"-2" }); err != nil {
		t.Fatalf("%s: bob -> alice: %v", tag, err)
	}
	step(t, "a message each way ("+tag+")", start)
}

// pebbleProc is a Pebble ACME server run as a separate process.
type pebbleProc struct {
	httpsCAPEM []byte         // the CA of Pebble's own HTTPS certificate (xmppedge's tls.acme.ca_root)
	rootPEM    []byte         // Pebble's issuing root, from its management API
	rootFile   string         // the same, as a file (the partner Prosody's cafile)
	roots      *x509.CertPool // the same, as a pool
	logFile    string
}

// issued counts the certificates Pebble has issued so far.
func (p *pebbleProc) issued() int {
	b, _ := os.ReadFile(p.logFile)
	return strings.Count(string(b), "Issued certificate serial")
}

// issuedSerials are the serials (hex, as Pebble logs them) of the
// certificates Pebble has issued so far.
func (p *pebbleProc) issuedSerials() []string {
	b, _ := os.ReadFile(p.logFile)
	var serials []string
	for _, line := range strings.Split(string(b), "\n") {
		if _, rest, ok := strings.Cut(line, "Issued certificate serial "); ok {
			serials = append(serials, strings.Fields(rest)[0])
		}
	}
	return serials
}

// orders counts the orders Pebble has received so far (new-order
// requests it accepted), whether or not they led to a certificate.
func (p *pebbleProc) orders() int {
	b, _ := os.ReadFile(p.logFile)
	return strings.Count(string(b), "Added order ")
}

// pebbleGo is Pebble built from the module in go.mod.
var pebbleGo = &goBinary{name: "pebble", args: []string{"github.com/letsencrypt/pebble/v2/cmd/pebble"}}

// pebbleBinary builds Pebble from the module in go.mod once per test run;
// when that fails it falls back to Debian's pebble package.
func pebbleBinary(t testing.TB) string {
	t.Helper()
	p, err := pebbleGo.build(t)
	if err == nil {
		return p
	}
	if p, lerr := exec.LookPath("pebble"); lerr == nil {
		t.Logf("%v; using %s", err, p)
		return p
	}
	t.Fatalf("%v\n(or install Debian's: apt-get install -y pebble)", err)
	return ""
}

// pebbleAddrs says where a Pebble process listens, which ports its VA
// validates on, and how long its certificates are valid.
type pebbleAddrs struct {
	IP                string
	Port, Mgmt        int // the ACME API and the management API
	HTTPPort, TLSPort int // where its VA connects for HTTP-01 and TLS-ALPN-01
	Validity          time.Duration
}

// acmePebble is the ACME test's Pebble.
var acmePebble = pebbleAddrs{IP: acmePebbleIP, Port: acmePebblePort, Mgmt: acmePebbleMgmt,
	HTTPPort: acmeHTTPPort, TLSPort: acmeDirectTLSPort, Validity: acmeValidity}

// startPebbleProcess runs the ACME test's Pebble (startPebbleAt).
func startPebbleProcess(t *testing.T, dns string) *pebbleProc {
	t.Helper()
	return startPebbleAt(t, acmePebble, dns)
}

// startPebbleAt runs Pebble at a with its own HTTPS certificate,
// validating through dns, and fetches its issuing root. Killed by
// t.Cleanup.
func startPebbleAt(t *testing.T, a pebbleAddrs, dns string) *pebbleProc {
	t.Helper()
	bin := pebbleBinary(t)
	dir := t.TempDir()

	// Pebble's HTTPS certificate, for its IP address.
	httpsCA, err := certstest.NewCA("xmppedge e2e Pebble HTTPS CA")
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "pebble"},
		DNSNames:     []string{"localhost", "pebble"},
		IPAddresses:  []net.IP{net.ParseIP(a.IP)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, httpsCA.Cert, key.Public(), httpsCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := certstest.WriteFiles(dir, "pebble-https",
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
	if err != nil {
		t.Fatal(err)
	}

	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           net.JoinHostPort(a.IP, fmt.Sprint(a.Port)),
		"managementListenAddress": net.JoinHostPort(a.IP, fmt.Sprint(a.Mgmt)),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                a.HTTPPort,
		"tlsPort":                 a.TLSPort,
		"keyAlgorithm":            "ecdsa",
		"profiles": map[string]any{"default": map[string]any{
			"description":    fmt.Sprintf("certificates valid for %v", a.Validity),
			"validityPeriod": int(a.Validity / time.Second),
		}},
	}}
	cfgJSON, _ := json.MarshalIndent(cfg, "", "  ")
	cfgFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, cfgJSON, 0o644); err != nil {
		t.Fatal(err)
	}

	p := &pebbleProc{httpsCAPEM: httpsCA.CertPEM, logFile: filepath.Join(dir, "pebble.log")}
	logf, err := os.Create(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dns)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // no random delay before validating
		"PEBBLE_WFE_NONCEREJECT=0", // no deliberate badNonce errors
		"PEBBLE_AUTHZREUSE=0",      // every order (renewals too) validates afresh
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start Pebble: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() || os.Getenv("XMPPEDGE_E2E_VERBOSE") != "" {
			b, _ := os.ReadFile(p.logFile)
			t.Logf("Pebble log:\n%s", tail(string(b), 80))
		}
	})

	// Its issuing root, over the management API (trusting the HTTPS CA).
	pool := x509.NewCertPool()
	pool.AddCert(httpsCA.Cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	url := fmt.Sprintf("https://%s/roots/0", net.JoinHostPort(a.IP, fmt.Sprint(a.Mgmt)))
	deadline := time.Now().Add(15 * time.Second)
	for {
		p.rootPEM, err = pebbleGet(client, url)
		if err == nil {
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(p.logFile)
			t.Fatalf("Pebble exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.logFile)
			t.Fatalf("Pebble's root from %s: %v\n%s", url, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The ACME API too.
	if _, err := pebbleGet(client, fmt.Sprintf("https://%s/dir", net.JoinHostPort(a.IP, fmt.Sprint(a.Port)))); err != nil {
		t.Fatalf("Pebble's ACME directory: %v", err)
	}
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(p.rootPEM) {
		t.Fatalf("Pebble's root is not PEM:\n%s", p.rootPEM)
	}
	p.rootFile = filepath.Join(dir, "pebble-issuer-root.pem")
	if err := os.WriteFile(p.rootFile, p.rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func pebbleGet(client *http.Client, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}

package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The cluster ACME test's own addresses (127.0.0.101 to 127.0.0.119),
// apart from the rest of the suite so that it can run beside it:
//
//	edgeN inside     127.0.0.101–103:5269
//	edgeN outside    127.0.0.104–106:5269 (STARTTLS), :5270 (direct TLS, TLS-ALPN-01), :5002 (HTTP-01)
//	edgeN NATS       127.0.0.107–109:4222 (clients), :6222 (routes)
//	Pebble           127.0.0.110:14000 (ACME), :15000 (management)
//	public DNS       127.0.0.111:5300: company.test → the front, xmpp.company.test → edge2, partner.test → its Prosody
//	front            127.0.0.115:5002, :5270: relays the CA's validations to edge2 once edge2 accepts there
//	company Prosody  127.0.0.112 (inside server), internal DNS 127.0.0.114:5300: partner.test → edge2's inside listener
//	partner Prosody  127.0.0.113
var (
	clusterACMEInsideIP  = [3]string{"127.0.0.101", "127.0.0.102", "127.0.0.103"}
	clusterACMEOutsideIP = [3]string{"127.0.0.104", "127.0.0.105", "127.0.0.106"}
	clusterACMENATSIP    = [3]string{"127.0.0.107", "127.0.0.108", "127.0.0.109"}
)

const (
	clusterACMEPublicDNS   = "127.0.0.111:5300"
	clusterACMECompanyIP   = "127.0.0.112"
	clusterACMEPartnerIP   = "127.0.0.113"
	clusterACMEInternalDNS = "127.0.0.114:5300"
	clusterACMEFrontIP     = "127.0.0.115"
	// clusterACMETarget is the node behind company.test's address (the
	// front) and xmpp.company.test's: every validation of Pebble's goes
	// to it, whichever node took the lock and ordered.
	clusterACMETarget = 1
)

// clusterACMEPebble validates on the ports every node uses on its own
// outside address; its certificates are valid for 90 days, so nothing is
// renewed while the test runs.
var clusterACMEPebble = pebbleAddrs{IP: "127.0.0.110", Port: 14000, Mgmt: 15000,
	HTTPPort: acmeHTTPPort, TLSPort: acmeDirectTLSPort, Validity: 90 * 24 * time.Hour}

// TestClusterACME runs three xmppedge nodes, each embedding one NATS
// server of one cluster, with company.test's certificate from one real
// Pebble (a separate process) and no certificate file, and shows:
//   - the cluster makes exactly one ACME order at Pebble, and Pebble
//     issues exactly one certificate: one node takes the lock in the
//     shared storage (the cluster's key-value bucket) and orders, the
//     others wait for it and load what it stored;
//   - the validation is answered by edge2, the only node behind
//     company.test's address, whichever node ordered (the first to take
//     the lock, so it changes from run to run; when another node did,
//     edge2 answers from the challenge the orderer put in the shared
//     storage, over HTTP-01 or, before its own listeners open,
//     TLS-ALPN-01);
//   - every node serves that certificate (the serial Pebble issued),
//     chained to Pebble's root, on direct TLS and after STARTTLS;
//   - a partner Prosody that trusts only Pebble's root and requires
//     certificates (s2s_secure_auth) federates with a company Prosody
//     through edge2, authenticated by SASL EXTERNAL both ways.
//
// company.test's address is a front, as a load balancer with a health
// check would be, that relays a validation to edge2 once edge2 accepts on
// the challenge port: the nodes open the shared storage, and with it their
// challenge listeners, up to seconds apart, and a validation that reaches
// a node still starting fails the order (the cluster then orders again).
func TestClusterACME(t *testing.T) {
	testbed.Require(t)
	t0 := time.Now()
	public := startDNSAt(t, clusterACMEPublicDNS)
	target := clusterACMEOutsideIP[clusterACMETarget]
	public.AddA(CompanyDomain, clusterACMEFrontIP) // Pebble's HTTP-01 and TLS-ALPN-01 validations
	for _, port := range []int{acmeHTTPPort, acmeDirectTLSPort} {
		clusterACMEFront(t, net.JoinHostPort(clusterACMEFrontIP, fmt.Sprint(port)), net.JoinHostPort(target, fmt.Sprint(port)))
	}
	addServer(public, CompanyDomain, target, S2SPort)
	addServer(public, PartnerDomain, clusterACMEPartnerIP, S2SPort)

	start := time.Now()
	peb := startPebbleAt(t, clusterACMEPebble, clusterACMEPublicDNS)
	step(t, "start Pebble (process) and fetch its root", start)

	ca := newCA(t) // signs the Prosody servers' certificates
	start = time.Now()
	nodes := clusterACMEStart(t, ca, peb)
	step(t, "start three nodes (cluster, ACME)", start)

	// One order, one certificate, at Pebble.
	orders, serials := peb.orders(), peb.issuedSerials()
	if orders != 1 || len(serials) != 1 {
		t.Fatalf("Pebble received %d orders and issued %d certificates (%v) for the cluster, want exactly one of each", orders, len(serials), serials)
	}
	orderer := clusterACMEOrderer(t, nodes)
	answered := clusterACMEAnswers(t, nodes, orderer)
	t.Logf("one order at Pebble, certificate serial %s: %s ordered, %s answered the validation (%s)", serials[0], clusterACMENode(orderer), clusterACMENode(clusterACMETarget), answered)

	// Every node serves it, direct TLS and STARTTLS.
	issuer := ""
	for i := range nodes {
		for _, how := range []string{"direct TLS", "STARTTLS"} {
			leaf, err := clusterACMEServed(i, how, peb.roots)
			if err != nil {
				t.Errorf("%s, %s: %v", clusterACMENode(i), how, err)
				continue
			}
			if got := hex.EncodeToString(leaf.SerialNumber.Bytes()); got != serials[0] {
				t.Errorf("%s serves serial %s on %s, want %s (the one Pebble issued)", clusterACMENode(i), got, how, serials[0])
			}
			issuer = leaf.Issuer.CommonName
		}
	}
	if !t.Failed() {
		t.Logf("all three nodes serve serial %s (issuer %q) on direct TLS and after STARTTLS", serials[0], issuer)
	}

	clusterACMEFederate(t, ca, peb, nodes[clusterACMETarget])
	if n := peb.orders(); n != 1 {
		t.Errorf("Pebble received %d orders by the end of the test, want 1", n)
	}

	start = time.Now()
	for _, g := range nodes {
		g.stop()
	}
	step(t, "stop three nodes (SIGTERM)", start)
	step(t, "total", t0)
}

// clusterACMEStart launches the three nodes at once (each waits for the
// others' NATS servers, then for the ACME certificate, before it
// listens) and waits until each accepts on its inside listener.
func clusterACMEStart(t *testing.T, ca *testCA, peb *pebbleProc) [3]*gatewayProc {
	t.Helper()
	files := map[string][]byte{"partners.yaml": partnersYAML(PartnerDomain), "pebble-https.pem": peb.httpsCAPEM,
		"dialback.secret": []byte("the cluster's one dialback secret\n")}
	var nodes [3]*gatewayProc
	for i := range nodes {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "audit"), 0o700); err != nil {
			t.Fatal(err)
		}
		nodes[i] = launchGateway(t, dir, clusterACMEConfig(ca.file, i), files)
	}
	for i, g := range nodes {
		g.waitListening(net.JoinHostPort(clusterACMEInsideIP[i], fmt.Sprint(S2SPort)), 3*time.Minute)
	}
	return nodes
}

// clusterACMEFront listens on addr and relays each connection to upstream
// once upstream accepts (trying for up to 60 s). Closed by t.Cleanup with
// its relays.
func clusterACMEFront(t *testing.T, addr, upstream string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("front on %s: %v", addr, err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				clusterACMERelay(down, upstream, done)
			}()
		}
	}()
}

// clusterACMERelay relays down to upstream, both ways, once upstream
// accepts, until either side closes or done is closed.
func clusterACMERelay(down net.Conn, upstream string, done <-chan struct{}) {
	defer down.Close()
	up := clusterACMEDial(upstream, 60*time.Second, done)
	if up == nil {
		return
	}
	defer up.Close()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-done:
			down.Close()
			up.Close()
		case <-finished:
		}
	}()
	go func() {
		_, _ = io.Copy(up, down)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	_, _ = io.Copy(down, up)
}

// clusterACMEDial connects to addr, trying until it accepts, wait passes
// or done is closed (nil then).
func clusterACMEDial(addr string, wait time.Duration, done <-chan struct{}) net.Conn {
	deadline := time.Now().Add(wait)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-done:
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clusterACMEOrderer returns the node that ordered: the only one that
// logged obtaining company.test's certificate.
func clusterACMEOrderer(t *testing.T, nodes [3]*gatewayProc) int {
	t.Helper()
	orderer := -1
	for i, g := range nodes {
		if len(g.records("obtaining certificate")) == 0 {
			continue
		}
		if orderer >= 0 {
			t.Fatalf("both %s and %s obtained company.test's certificate", clusterACMENode(orderer), clusterACMENode(i))
		}
		orderer = i
	}
	if orderer < 0 {
		t.Fatal("no node logged obtaining company.test's certificate")
	}
	if _, err := nodes[orderer].waitRecord("certificate obtained successfully", map[string]string{"identifier": CompanyDomain}, time.Second); err != nil {
		t.Error(err)
	}
	return orderer
}

// clusterACMEAnswers checks that edge2, and no other node, answered
// Pebble's validation requests, from the shared storage when another node
// ordered, and says how (challenge type, distributed or not).
func clusterACMEAnswers(t *testing.T, nodes [3]*gatewayProc, orderer int) string {
	t.Helper()
	var how []string
	for i, g := range nodes {
		answers := append(g.records("served key authentication"), g.records("served key authentication certificate")...)
		if i != clusterACMETarget {
			if len(answers) > 0 {
				t.Errorf("%s answered %d validation requests, but public DNS names only %s", clusterACMENode(i), len(answers), clusterACMENode(clusterACMETarget))
			}
			continue
		}
		if len(answers) == 0 {
			t.Fatalf("%s, the node public DNS names, answered no validation request", clusterACMENode(i))
		}
		for _, r := range answers {
			distributed := r["distributed"] == true
			if distributed != (orderer != i) {
				t.Errorf("%s answered with distributed=%v, but %s ordered: %v", clusterACMENode(i), r["distributed"], clusterACMENode(orderer), r)
			}
			how = append(how, fmt.Sprintf("%v distributed=%v", r["challenge"], r["distributed"]))
		}
	}
	return strings.Join(how, ", ")
}

// clusterACMEServed is the leaf node i serves for company.test on its
// outside listener, by direct TLS or after STARTTLS, checked against
// Pebble's root.
func clusterACMEServed(i int, how string, roots *x509.CertPool) (*x509.Certificate, error) {
	ip := clusterACMEOutsideIP[i]
	if how == "direct TLS" {
		return acmeServedCertAt(net.JoinHostPort(ip, fmt.Sprint(acmeDirectTLSPort)), roots)
	}
	addr := net.JoinHostPort(ip, fmt.Sprint(S2SPort))
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := s2sStartTLS(c, CompanyDomain); err != nil {
		return nil, fmt.Errorf("STARTTLS with %s: %w", addr, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: CompanyDomain, InsecureSkipVerify: true}) // verified against roots only
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("TLS handshake after STARTTLS with %s: %w", addr, err)
	}
	return acmeVerifiedLeaf(addr, tc.ConnectionState(), roots)
}

// clusterACMEFederate federates a partner Prosody (trusting only Pebble's
// root, requiring certificates) with a company Prosody through g (edge2,
// where public DNS sends partner.test's streams): a message each way, and
// SASL EXTERNAL both ways on the outside leg, no dialback.
func clusterACMEFederate(t *testing.T, ca *testCA, peb *pebbleProc, g *gatewayProc) {
	t.Helper()
	internal := startDNSAt(t, clusterACMEInternalDNS)
	addServer(internal, PartnerDomain, clusterACMEInsideIP[clusterACMETarget], S2SPort)
	start := time.Now()
	companyOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: clusterACMECompanyIP, DNS: clusterACMEInternalDNS, Users: Users}
	companyOpts.CertPEM, companyOpts.KeyPEM = ca.issue(t, CompanyDomain)
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: clusterACMEPartnerIP, DNS: clusterACMEPublicDNS, Users: Users,
		RequireEncryption: true, SecureAuth: true, CAFile: peb.rootFile}
	partnerOpts.CertPEM, partnerOpts.KeyPEM = ca.issue(t, PartnerDomain)
	company := testbed.StartProsody(t, companyOpts)
	partner := testbed.StartProsody(t, partnerOpts)
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	step(t, "start two Prosody servers and log in two clients", start)

	messageBothWays(t, alice, bob)
	out, err := g.waitRecord("outgoing stream established", map[string]string{"leg": "outside", "to_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	in, err := g.waitRecord("peer authenticated", map[string]string{"leg": "outside", "remote_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out["auth"] != "sasl_external" || in["method"] != "sasl_external" {
		t.Errorf("edge2's outside streams with partner.test: outgoing auth=%v, incoming method=%v, want sasl_external both", out["auth"], in["method"])
	}
	if err := partner.WaitLog("SASL EXTERNAL with company.test succeeded", 5*time.Second); err != nil {
		t.Error(err)
	}
	if n := partner.CountLog("Initiating dialback"); n != 0 {
		t.Errorf("partner Prosody used dialback %d times with company.test's ACME certificate", n)
	}
	t.Logf("partner.test federated through %s by SASL EXTERNAL both ways on company.test's ACME certificate", clusterACMENode(clusterACMETarget))
}

// clusterACMEConfig is node i's configuration: its own addresses, no
// certificate file, company.test's certificate from Pebble (HTTP-01 on
// http_listen, TLS-ALPN-01 on the direct-TLS listener), and the cluster
// section (which makes the cluster's key-value bucket ACME's storage).
func clusterACMEConfig(caFile string, i int) string {
	return acmeConfig(acmeAddrs{
		inside: clusterACMEInsideIP[i], company: clusterACMECompanyIP, outside: clusterACMEOutsideIP[i], publicDNS: clusterACMEPublicDNS,
		pebbleIP: clusterACMEPebble.IP, pebblePort: clusterACMEPebble.Port,
	}, caFile) + clusterSection(clusterACMENode(i), clusterACMENATSIP[:], i)
}

// clusterACMENode is node i's name (cluster.node).
func clusterACMENode(i int) string { return fmt.Sprintf("edge%d", i+1) }

package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The certificate test's own addresses (127.0.0.121–139), apart from the
// rest of the suite so that it can run while other tests run:
//
//	company Prosody 127.0.0.121 ──internal DNS (127.0.0.126): partner.test → 127.0.0.123:5269──▶ xmppedge inside
//	xmppedge outside 127.0.0.124:5269 ◀──public DNS (127.0.0.125)── partner Prosody 127.0.0.122
const (
	certCompanyIP   = "127.0.0.121"
	certPartnerIP   = "127.0.0.122"
	certInsideIP    = "127.0.0.123"
	certOutsideIP   = "127.0.0.124"
	certPublicDNS   = "127.0.0.125:5300"
	certInternalDNS = "127.0.0.126:5300"
)

// TestCertificates2026 shows certificates as issued since February 2026
// (Let's Encrypt: only the serverAuth extended key usage) on the outside
// leg, both ways, with real Prosody servers:
//   - a partner Prosody whose certificate has only the serverAuth usage,
//     presented as its TLS client certificate, federates inbound through
//     xmppedge by SASL EXTERNAL: the session's audit record says
//     sasl_external with a valid certificate; no dialback is used;
//   - xmppedge's own certificate has only the serverAuth usage too, and
//     the partner (s2s_secure_auth) accepts it for SASL EXTERNAL outbound:
//     no fallback to dialback.
func TestCertificates2026(t *testing.T) {
	testbed.Require(t)
	t0 := time.Now()

	public := startDNSAt(t, certPublicDNS)
	addServer(public, CompanyDomain, certOutsideIP, S2SPort)
	addServer(public, PartnerDomain, certPartnerIP, S2SPort)
	internal := startDNSAt(t, certInternalDNS)
	addServer(internal, PartnerDomain, certInsideIP, S2SPort)

	ca := newCA(t)
	companyCert, companyKey := issueServerAuthOnly(t, ca, CompanyDomain)
	start := time.Now()
	gw := startGatewayAt(t, certGatewayConfig(ca.file), map[string][]byte{
		"company.crt":   companyCert,
		"company.key":   companyKey,
		"partners.yaml": partnersYAML(PartnerDomain),
	}, net.JoinHostPort(certInsideIP, fmt.Sprint(S2SPort)), 20*time.Second)
	step(t, "start xmppedge", start)

	start = time.Now()
	companyOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: certCompanyIP, DNS: certInternalDNS, Users: Users}
	companyOpts.CertPEM, companyOpts.KeyPEM = ca.issue(t, CompanyDomain)
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: certPartnerIP, DNS: certPublicDNS, Users: Users,
		RequireEncryption: true, SecureAuth: true, CAFile: ca.file}
	partnerOpts.CertPEM, partnerOpts.KeyPEM = issueServerAuthOnly(t, ca, PartnerDomain)
	company := testbed.StartProsody(t, companyOpts)
	partner := testbed.StartProsody(t, partnerOpts)
	step(t, "start two Prosody servers", start)

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	step(t, "log in two clients", start)

	messageBothWays(t, alice, bob)

	// Inbound: the partner's serverAuth-only certificate authenticated it
	// by SASL EXTERNAL.
	rec, err := gw.waitRecord("peer authenticated", map[string]string{"leg": "outside", "remote_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["method"] != "sasl_external" {
		t.Errorf("partner.test authenticated inbound by %v, want sasl_external", rec["method"])
	}
	if err := partner.WaitLog("SASL EXTERNAL with company.test succeeded", 5*time.Second); err != nil {
		t.Error(err)
	}
	var auths []string
	for _, r := range gw.auditRecords(t) {
		if r["event"] == "session.auth" && r["leg"] == "outside" && r["remote_domain"] == PartnerDomain {
			auths = append(auths, fmt.Sprintf("%v %v %v %v", r["direction"], r["decision"], r["auth"], r["peer_cert"]))
		}
	}
	if len(auths) == 0 || slices.ContainsFunc(auths, func(s string) bool { return s != "inbound allow sasl_external valid" }) {
		t.Errorf("session.auth records of partner.test: %q, want inbound allow sasl_external valid", auths)
	}

	// Outbound: the partner accepted xmppedge's serverAuth-only
	// certificate, so nothing fell back to dialback.
	rec, err = gw.waitRecord("outgoing stream established", map[string]string{"leg": "outside", "to_domain": PartnerDomain}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rec["auth"] != "sasl_external" {
		t.Errorf("outside outgoing stream: auth=%v, want sasl_external", rec["auth"])
	}
	if err := partner.WaitLog("Accepting SASL EXTERNAL identity from company.test", 5*time.Second); err != nil {
		t.Error(err)
	}
	if n := len(gw.records("the server refused our certificate: falling back to dialback")); n != 0 {
		t.Errorf("xmppedge fell back to dialback %d times", n)
	}
	if n := partner.CountLog("Initiating dialback"); n != 0 {
		t.Errorf("the partner used dialback %d times", n)
	}

	acmeMessageBothWays(t, alice, bob, "eku")

	d := gw.stop()
	t.Logf("xmppedge stopped %v after SIGTERM", d.Round(time.Millisecond))
	step(t, "total", t0)
}

// issueServerAuthOnly is ca.issue with only the serverAuth extended key
// usage, as certificates are issued since 2026; it checks the usage.
func issueServerAuthOnly(t testing.TB, ca *testCA, domain string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{
		DNSNames:       []string{domain, "*." + domain},
		SRVNames:       []string{domain},
		XmppAddrs:      []string{domain},
		ServerAuthOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Fatalf("%s: extended key usage %v, want serverAuth only", domain, leaf.ExtKeyUsage)
	}
	return certPEM, keyPEM
}

// certGatewayConfig is xmppedge's configuration for the certificate test:
// its own addresses, no DNS responder and no metrics listener (their
// addresses belong to the other gateway tests).
func certGatewayConfig(caFile string) string {
	return gatewayConfigAt(gatewayAddrs{inside: certInsideIP, company: certCompanyIP, outside: certOutsideIP, publicDNS: certPublicDNS}, caFile)
}

package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// bedAddrs are one test's own addresses for a federationBed: the company
// and partner Prosody, the gateway's inside and outside listeners, the
// public and internal DNS views (IP:PORT), and optionally the gateway's
// metrics and admin listener.
type bedAddrs struct {
	company, partner, inside, outside string
	publicDNS, internalDNS, metrics   string
}

// federationBed is a company Prosody (alice logged in) behind a real
// xmppedge on its own addresses; the partner Prosody comes with
// startPartner (a test may start it more than once, differently).
//
//	company Prosody ──internal DNS: partner.test → inside:5269──▶ xmppedge inside
//	xmppedge outside:5269 ◀──public DNS: company.test → outside── partner Prosody
type federationBed struct {
	addrs   bedAddrs
	ca      *testCA
	gw      *gatewayProc
	company *testbed.Prosody
	alice   *testbed.Client
}

// startFederationBed starts the DNS views, xmppedge with the policy data
// partners (nil: partner.test, as gatewayFiles writes it), and the
// company Prosody with alice logged in.
func startFederationBed(t *testing.T, a bedAddrs, partners []byte) *federationBed {
	t.Helper()
	public := startDNSAt(t, a.publicDNS)
	addServer(public, CompanyDomain, a.outside, S2SPort)
	addServer(public, PartnerDomain, a.partner, S2SPort)
	internal := startDNSAt(t, a.internalDNS)
	addServer(internal, PartnerDomain, a.inside, S2SPort)

	b := &federationBed{addrs: a, ca: newCA(t)}
	files := gatewayFiles(t, b.ca, PartnerDomain)
	if partners != nil {
		files["partners.yaml"] = partners
	}
	cfg := gatewayConfigAt(gatewayAddrs{inside: a.inside, company: a.company, outside: a.outside, publicDNS: a.publicDNS, metrics: a.metrics}, b.ca.file)
	b.gw = startGatewayAt(t, cfg, files, net.JoinHostPort(a.inside, fmt.Sprint(S2SPort)), 20*time.Second)
	opts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: a.company, DNS: a.internalDNS, Users: Users}
	opts.CertPEM, opts.KeyPEM = b.ca.issue(t, CompanyDomain)
	b.company = testbed.StartProsody(t, opts)
	b.alice = testbed.StartClient(t, "alice@"+CompanyDomain, Password, b.company.C2SAddr())
	return b
}

// startPartner starts the partner Prosody with bob logged in: with
// certificate, it has a certificate of the test CA, trusts that CA and
// requires certificate authentication (SASL EXTERNAL both ways); without,
// a self-signed certificate (dialback both ways).
func (b *federationBed) startPartner(t *testing.T, certificate bool) (*testbed.Prosody, *testbed.Client) {
	t.Helper()
	opts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: b.addrs.partner, DNS: b.addrs.publicDNS, Users: Users, RequireEncryption: true}
	if certificate {
		opts.CertPEM, opts.KeyPEM = b.ca.issue(t, PartnerDomain)
		opts.CAFile, opts.SecureAuth = b.ca.file, true
	}
	p := testbed.StartProsody(t, opts)
	return p, testbed.StartClient(t, "bob@"+PartnerDomain, Password, p.C2SAddr())
}

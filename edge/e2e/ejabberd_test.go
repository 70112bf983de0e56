package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/edge/e2e/testbed"
)

// The ejabberd matrix: real ejabberd 23.01 (Debian 12) as the partner
// (with a company Prosody inside) and as the internal server (with a
// partner Prosody outside), each with dialback, SASL EXTERNAL and direct
// TLS, through a real xmppedge. With TestGatewayFederation (Prosody on
// both sides) it makes the matrix {Prosody, ejabberd} × {partner,
// internal server} × {dialback, SASL EXTERNAL, direct TLS}: in each row
// here the Prosody on the other side runs in the same mode, so the rows
// cover Prosody's cells too.
//
// One more row is not a cell of the matrix: an ejabberd partner whose
// verification of xmppedge's certificate crashes (an XmppAddr), and
// xmppedge's fallback to dialback.
//
// Each row has its own addresses (127.0.0.141–168, four per row), apart
// from the rest of the suite:
//
//	company server .N ──responder (xmppedge, .N+2:5300): every remote domain → .N+2:5269──▶ xmppedge inside .N+2
//	xmppedge outside .N+3:5269 (STARTTLS), :5270 (direct TLS) ◀──public DNS (.N+3:5300)── partner server .N+1
//
// ejabberd finds SRV records through Erlang's resolver (ERL_INETRC) but
// the SRV target's address through libc: each ejabberd gets a private
// /etc/hosts (testbed.EjabberdOptions.Hosts), as docs/ejabberd.md says.
const (
	ejdFirstIP    = 141
	ejdDirectTLS  = 5270 // the direct TLS listeners (xmppedge's listen_tls, ejabberd's tls: true, Prosody's s2s_direct_tls_ports)
	ejdDNSPort    = 5300
	ejdInsideName = "xmppedge-inside" // the responder's SRV target (its default)
)

// ejdAddrs are one row's addresses.
type ejdAddrs struct{ company, partner, inside, outside string }

func ejdRowAddrs(i int) ejdAddrs {
	ip := func(n int) string { return fmt.Sprintf("127.0.0.%d", ejdFirstIP+4*i+n) }
	return ejdAddrs{company: ip(0), partner: ip(1), inside: ip(2), outside: ip(3)}
}

func (a ejdAddrs) responder() string { return net.JoinHostPort(a.inside, fmt.Sprint(ejdDNSPort)) }
func (a ejdAddrs) public() string    { return net.JoinHostPort(a.outside, fmt.Sprint(ejdDNSPort)) }

// ejdRow is one row of the matrix.
type ejdRow struct {
	ejabberd string // "partner" or "internal": where ejabberd runs; Prosody runs on the other side
	mode     string // "dialback", "sasl_external" or "direct_tls"

	insideTLS string // xmppedge's inside.tls
	// How the streams must be authenticated: the partner's to xmppedge,
	// xmppedge's to the partner, the internal server's to xmppedge,
	// xmppedge's to it.
	outsideIn, outsideOut, insideIn, insideOut string
	insideEncrypted                            bool
}

var ejdMatrix = []ejdRow{
	// ejabberd as the partner: the outside leg is ejabberd ↔ xmppedge.
	{ejabberd: "partner", mode: "dialback", insideTLS: "off", outsideIn: "dialback", outsideOut: "dialback", insideIn: "dialback", insideOut: "dialback"},
	{ejabberd: "partner", mode: "sasl_external", insideTLS: "required", outsideIn: "sasl_external", outsideOut: "sasl_external", insideIn: "sasl_external", insideOut: "sasl_external", insideEncrypted: true},
	{ejabberd: "partner", mode: "direct_tls", insideTLS: "optional", outsideIn: "dialback", outsideOut: "dialback", insideIn: "sasl_external", insideOut: "dialback", insideEncrypted: true},
	// ejabberd as the internal server: the inside leg is ejabberd ↔ xmppedge.
	{ejabberd: "internal", mode: "dialback", insideTLS: "off", outsideIn: "dialback", outsideOut: "dialback", insideIn: "dialback", insideOut: "dialback"},
	{ejabberd: "internal", mode: "sasl_external", insideTLS: "required", outsideIn: "sasl_external", outsideOut: "sasl_external", insideIn: "sasl_external", insideOut: "sasl_external", insideEncrypted: true},
	{ejabberd: "internal", mode: "direct_tls", insideTLS: "optional", outsideIn: "dialback", outsideOut: "dialback", insideIn: "sasl_external", insideOut: "dialback", insideEncrypted: true},
	// Not a cell of the matrix: an ejabberd partner that trusts the issuer
	// of xmppedge's certificate, which has an XmppAddr. ejabberd 23.01's
	// verification crashes its stream with no answer to SASL EXTERNAL;
	// xmppedge connects again and uses dialback. The partner's own
	// certificate has none: it authenticates by SASL EXTERNAL.
	{ejabberd: "partner", mode: "xmppaddr_fallback", insideTLS: "off", outsideIn: "sasl_external", outsideOut: "dialback", insideIn: "dialback", insideOut: "dialback"},
}

// TestEjabberdMatrix runs each row with its own xmppedge, ejabberd,
// Prosody and two clients: a message each way, a ping to the other server
// each way and a version query of the ejabberd server across; then it
// checks the audit records of both legs (authentication method and TLS of
// every authenticated session, both directions), and for direct TLS which
// listener or port carried the outside leg.
//
//   - dialback: self-signed partner certificate (nobody trusts it), TLS
//     required outside (dialback over TLS; a partner that answers
//     xmppedge's SASL EXTERNAL with a failure, as ejabberd does, gets
//     dialback), plain inside leg (dialback).
//   - sasl_external: certificates from the test CA (DNS-ID and SRV-ID, no
//     XmppAddr: see ejdIssue), trusted both ways on the outside leg, and
//     xmppedge's internal CA trusted by the internal server (inside.tls:
//     required); no dialback anywhere (ejabberd without mod_s2s_dialback,
//     Prosody with s2s_secure_auth).
//   - direct_tls: the outside leg uses direct TLS (XEP-0368) both ways:
//     xmppedge connects to the partner's _xmpps-server target, the partner
//     (Prosody or ejabberd) to xmppedge's listen_tls. Authentication is
//     dialback (self-signed partner). The inside leg runs inside.tls:
//     optional: the internal server's certificate (test CA) is valid for
//     xmppedge, which offers SASL EXTERNAL and the internal server takes
//     it; the internal server does not trust xmppedge's internal CA, so
//     xmppedge's streams to it use dialback over TLS.
func TestEjabberdMatrix(t *testing.T) {
	testbed.RequireEjabberd(t)
	t0 := time.Now()
	for i, row := range ejdMatrix {
		t.Run(row.ejabberd+"/"+row.mode, func(t *testing.T) { testEjabberdRow(t, row, ejdRowAddrs(i)) })
	}
	step(t, "matrix total", t0)
}

func testEjabberdRow(t *testing.T, row ejdRow, a ejdAddrs) {
	t0 := time.Now()
	direct := row.mode == "direct_tls"

	// The public view: company.test at xmppedge's outside listeners, the
	// partner at its server.
	public := startDNSAt(t, a.public())
	addServer(public, CompanyDomain, a.outside, S2SPort)
	addServer(public, PartnerDomain, a.partner, S2SPort)
	if direct {
		// Direct TLS targets (XEP-0368) with a better priority than the
		// STARTTLS ones: ejabberd merges both services and orders the
		// targets by priority (Prosody and xmppedge try _xmpps-server
		// first anyway).
		public.AddSRV("_xmpps-server._tcp."+CompanyDomain, "xmpps."+CompanyDomain, ejdDirectTLS, 5, 10)
		public.AddA("xmpps."+CompanyDomain, a.outside)
		public.AddSRV("_xmpps-server._tcp."+PartnerDomain, "xmpps."+PartnerDomain, ejdDirectTLS, 5, 10)
		public.AddA("xmpps."+PartnerDomain, a.partner)
	}

	ca := newCA(t)
	start := time.Now()
	files := gatewayFiles(t, ca, PartnerDomain) // company.test's certificate with an XmppAddr
	if row.mode != "xmppaddr_fallback" {
		files["company.crt"], files["company.key"] = ejdIssue(t, ca, CompanyDomain)
	}
	gw := startGatewayAt(t, ejdGatewayConfig(a, ca.file, row.insideTLS), files,
		net.JoinHostPort(a.inside, fmt.Sprint(S2SPort)), 20*time.Second)
	step(t, "start xmppedge", start)
	insideCA := ""
	if row.insideTLS != "off" {
		insideCA = filepath.Join(gw.dir, "inside-ca.crt")
		if _, err := os.Stat(insideCA); err != nil {
			t.Fatalf("xmppedge did not create its internal CA: %v", err)
		}
	}

	start = time.Now()
	var (
		companyC2S, partnerC2S string
		ejd                    *testbed.Ejabberd
	)
	if row.ejabberd == "partner" {
		// Prosody inside, its only resolver the responder.
		copts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: a.company, DNS: a.responder(), Users: Users}
		copts.CertPEM, copts.KeyPEM = ejdIssue(t, ca, CompanyDomain)
		if row.insideTLS == "required" {
			copts.CAFile, copts.SecureAuth, copts.RequireEncryption = insideCA, true, true
		}
		companyC2S = testbed.StartProsody(t, copts).C2SAddr()

		// ejabberd outside: SRV through the public view, the SRV
		// target's address through its private hosts file.
		eopts := testbed.EjabberdOptions{Domain: PartnerDomain, IP: a.partner, DNS: a.public(), Users: Users,
			Hosts: map[string]string{"xmpp." + CompanyDomain: a.outside, "xmpps." + CompanyDomain: a.outside}, StartTLS: "required"}
		switch row.mode {
		case "sasl_external":
			eopts.CertPEM, eopts.KeyPEM = ejdIssue(t, ca, PartnerDomain)
			eopts.CAFile, eopts.SecureAuth = ca.file, true
		case "direct_tls":
			eopts.DirectTLSPort = ejdDirectTLS
		case "xmppaddr_fallback":
			eopts.CertPEM, eopts.KeyPEM = ejdIssue(t, ca, PartnerDomain)
			eopts.CAFile = ca.file
		}
		ejd = testbed.StartEjabberd(t, eopts)
		partnerC2S = ejd.C2SAddr()
	} else {
		// ejabberd inside, SRV records from the responder, the target
		// (xmppedge-inside.) in its hosts file.
		eopts := testbed.EjabberdOptions{Domain: CompanyDomain, IP: a.company, DNS: a.responder(), Users: Users,
			Hosts: map[string]string{ejdInsideName: a.inside}}
		eopts.CertPEM, eopts.KeyPEM = ejdIssue(t, ca, CompanyDomain)
		switch row.insideTLS {
		case "off":
			eopts.StartTLS = "false"
		case "optional":
			eopts.StartTLS = "optional"
		case "required":
			eopts.StartTLS, eopts.CAFile, eopts.SecureAuth = "required", insideCA, true
		}
		ejd = testbed.StartEjabberd(t, eopts)
		companyC2S = ejd.C2SAddr()

		popts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: a.partner, DNS: a.public(), Users: Users, RequireEncryption: true}
		switch row.mode {
		case "sasl_external":
			popts.CertPEM, popts.KeyPEM = ejdIssue(t, ca, PartnerDomain)
			popts.CAFile, popts.SecureAuth = ca.file, true
		case "direct_tls":
			popts.S2SDirectTLSPort = ejdDirectTLS
		}
		partnerC2S = testbed.StartProsody(t, popts).C2SAddr()
	}
	step(t, "start ejabberd and Prosody", start)

	// ejabberdctl reaches the node (the inetrc file resolves localhost).
	start = time.Now()
	if out, err := ejd.Ctl("registered_users", ejd.Opts.Domain); err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "bob") {
		t.Errorf("ejabberdctl registered_users %s: %q %v, want alice and bob", ejd.Opts.Domain, out, err)
	}
	step(t, "ejabberdctl registered_users", start)

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, companyC2S)
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partnerC2S)
	step(t, "log in two clients", start)

	messageBothWays(t, alice, bob)

	start = time.Now()
	for _, c := range []struct {
		from *testbed.Client
		to   string
	}{{alice, PartnerDomain}, {bob, CompanyDomain}} {
		if ev, err := c.from.Ping(c.to, 10*time.Second); err != nil || ev.Kind != "iq_result" {
			t.Errorf("ping %s -> %s: %+v %v", c.from.JID, c.to, ev, err)
		}
	}
	asker, ejdDomain := alice, PartnerDomain
	if row.ejabberd == "internal" {
		asker, ejdDomain = bob, CompanyDomain
	}
	if ev, err := asker.Version(ejdDomain, 10*time.Second); err != nil || ev.Kind != "iq_result" || !strings.HasPrefix(ev.Body, "ejabberd") {
		t.Errorf("version of %s: %+v %v, want ejabberd's answer", ejdDomain, ev, err)
	} else {
		t.Logf("version of %s: %s", ejdDomain, ev.Body)
	}
	step(t, "2 pings + 1 version across", start)

	// How each stream of both legs was authenticated, from the audit
	// records (and, for the internal server's streams to xmppedge, the log:
	// their session.auth record describes the outbound session to come).
	streams := ejdStreams(t, gw)
	for _, name := range []string{"partner -> xmppedge", "xmppedge -> partner", "internal -> xmppedge", "xmppedge -> internal"} {
		if s := streams[name]; s != nil {
			t.Logf("%-22s session %-6s auth %-13s tls %-9q local %-19s remote %s", name, s.session, s.auth, s.tls, s.local, s.remote)
		}
	}
	for _, want := range []struct {
		name, auth string
		encrypted  bool
	}{
		{"partner -> xmppedge", row.outsideIn, true},
		{"xmppedge -> partner", row.outsideOut, true},
		{"internal -> xmppedge", row.insideIn, row.insideEncrypted},
		{"xmppedge -> internal", row.insideOut, row.insideEncrypted},
	} {
		got := streams[want.name]
		switch {
		case got == nil:
			t.Errorf("%s: no authenticated stream audited", want.name)
		case got.auth != want.auth || (got.tls != "") != want.encrypted:
			t.Errorf("%s: auth %q, tls %q; want %s, encrypted %v", want.name, got.auth, got.tls, want.auth, want.encrypted)
		}
	}
	if direct {
		// xmppedge → partner: the partner's direct TLS port.
		if s := streams["xmppedge -> partner"]; s != nil && s.remote != net.JoinHostPort(a.partner, fmt.Sprint(ejdDirectTLS)) {
			t.Errorf("xmppedge -> partner went to %s, want the partner's direct TLS port %d", s.remote, ejdDirectTLS)
		}
		// partner → xmppedge: xmppedge's direct TLS listener.
		want := net.JoinHostPort(a.outside, fmt.Sprint(ejdDirectTLS))
		if s := streams["partner -> xmppedge"]; s != nil && s.local != want {
			t.Errorf("partner -> xmppedge arrived on %s, want %s", s.local, want)
		}
	}

	if row.ejabberd == "internal" {
		// ejabberd asked the responder for SRV records, never for the
		// target's address: that comes from libc (its hosts file).
		var srv, addr int
		for _, r := range gw.records("dns query") {
			switch {
			case r["name"] == "_xmpp-server._tcp."+PartnerDomain+".":
				srv++
			case r["name"] == ejdInsideName+".":
				addr++
			}
		}
		if srv == 0 || addr != 0 {
			t.Errorf("responder: %d SRV queries for %s, %d queries for %s.; want some, and none (libc reads the hosts file)", srv, PartnerDomain, addr, ejdInsideName)
		}
	}

	if row.mode == "xmppaddr_fallback" {
		// ejabberd's verification of xmppedge's certificate crashed, and
		// xmppedge says why it used dialback.
		if err := ejd.WaitErrorLog("get_cert_domains", 5*time.Second); err != nil {
			t.Error(err)
		}
		var reasons []string
		for _, r := range gw.auditRecords(t) {
			if r["event"] == "session.open" && r["leg"] == "outside" && r["remote_domain"] == PartnerDomain {
				reasons = append(reasons, fmt.Sprint(r["reason"]))
			}
		}
		if len(reasons) == 0 || !strings.Contains(reasons[0], "no answer to SASL EXTERNAL") {
			t.Errorf("xmppedge -> partner session.open reasons %q, want the fallback after no answer to SASL EXTERNAL", reasons)
		}
	}

	// ejabberd's side: it logs every stream it authenticated, with the
	// method (EXTERNAL or dialback); it tries EXTERNAL first.
	method := map[string]string{"dialback": "dialback", "sasl_external": "EXTERNAL"}
	local, remote, in, out := PartnerDomain, CompanyDomain, row.outsideOut, row.outsideIn
	if row.ejabberd == "internal" {
		local, remote, in, out = CompanyDomain, PartnerDomain, row.insideOut, row.insideIn
	}
	for _, want := range []string{
		fmt.Sprintf("Accepted inbound s2s %s authentication %s -> %s", method[in], remote, local),
		fmt.Sprintf("Accepted outbound s2s %s authentication %s -> %s", method[out], local, remote),
	} {
		if err := ejd.WaitLog(want, 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	if row.mode == "sasl_external" {
		if n := ejd.CountLog("s2s dialback authentication"); n != 0 {
			t.Errorf("ejabberd logged %d dialback authentications without mod_s2s_dialback", n)
		}
	}

	d := gw.stop()
	t.Logf("xmppedge stopped %v after SIGTERM", d.Round(time.Millisecond))
	step(t, "row total", t0)
}

// ejdStream is one authenticated s2s stream of the gateway.
type ejdStream struct {
	session, auth, tls string
	local, remote      string // the gateway's listener (incoming streams); the peer's address
}

// ejdStreams are the first authenticated stream each way with the partner
// and with the internal server, by name ("partner -> xmppedge", ...):
//   - xmppedge's outgoing streams from their session.open records (auth,
//     TLS, the address connected to);
//   - the partner's streams from their session.auth records (auth, TLS);
//     the listener they arrived on from the log;
//   - the internal server's streams from their session.auth records (the
//     pair allowed), their authentication and TLS from the log's "peer
//     authenticated" record of that session: on the inside leg the
//     session.auth record describes the outbound session to come and has
//     neither.
func ejdStreams(t *testing.T, gw *gatewayProc) map[string]*ejdStream {
	t.Helper()
	str := func(v any) string { s, _ := v.(string); return s }
	peers := map[string]map[string]any{}
	for _, r := range gw.records("peer authenticated") {
		if id := str(r["session"]); peers[id] == nil {
			peers[id] = r
		}
	}
	out := map[string]*ejdStream{}
	add := func(name string, s *ejdStream) {
		if out[name] == nil {
			out[name] = s
		}
	}
	for _, r := range gw.auditRecords(t) {
		if r["decision"] != "allow" {
			continue
		}
		id := str(r["session"])
		s := &ejdStream{session: id, auth: str(r["auth"]), tls: str(r["tls_version"]), remote: str(r["remote_addr"])}
		p := peers[id]
		if p != nil {
			s.local = str(p["local_addr"])
		}
		switch {
		case r["event"] == "session.open" && r["leg"] == "outside" && r["remote_domain"] == PartnerDomain:
			add("xmppedge -> partner", s)
		case r["event"] == "session.open" && r["leg"] == "inside" && r["local_domain"] == CompanyDomain:
			add("xmppedge -> internal", s)
		case r["event"] == "session.auth" && r["leg"] == "outside" && r["remote_domain"] == PartnerDomain:
			add("partner -> xmppedge", s)
		case r["event"] == "session.auth" && r["leg"] == "inside" && r["local_domain"] == CompanyDomain:
			if p == nil || s.auth != "" || s.tls != "" {
				t.Errorf("inside session %s: audit record %v, log record %v", id, r, p)
				continue
			}
			s.auth, s.tls = str(p["method"]), str(p["tls"])
			add("internal -> xmppedge", s)
		}
	}
	return out
}

// ejdIssue makes a certificate valid for domain as an XMPP server with a
// DNS-ID and an SRV-ID, and no XmppAddr: ejabberd 23.01 cannot verify a
// certificate with a domain XmppAddr (xmpp_stream_pkix:get_cert_domains
// crashes the stream with badarg, p1_xmpp 1.6.1), and public CAs issue
// DNS-IDs only anyway.
func ejdIssue(t testing.TB, ca *testCA, domain string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{domain, "*." + domain}, SRVNames: []string{domain}})
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

// ejdGatewayConfig is xmppedge's configuration for one row: the row's
// addresses, the internal DNS responder, inside.tls as given (with the
// internal CA unless off), no metrics listener.
func ejdGatewayConfig(a ejdAddrs, caFile, insideTLS string) string {
	inside := ""
	if insideTLS != "off" {
		inside = fmt.Sprintf("  tls: %s\n  ca: {cert_file: inside-ca.crt, key_file: inside-ca.key}\n", insideTLS)
	}
	return gatewayConfigAt(gatewayAddrs{
		inside: a.inside, company: a.company, outside: a.outside, directTLS: ejdDirectTLS,
		publicDNS: a.public(), responder: a.responder(), insideExtra: inside,
	}, caFile)
}

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

// TestDirectFederation is the baseline that proves the test bed with no
// gateway: company.test and partner.test federate directly, found by SRV in
// the test DNS. "dialback": self-signed certificates, so the servers
// authenticate each other with dialback over TLS; "external": certificates
// from one test CA that both trust, with s2s_secure_auth, so they use SASL
// EXTERNAL.
func TestDirectFederation(t *testing.T) {
	testbed.Require(t)
	t.Run("dialback", func(t *testing.T) { testDirect(t, false) })
	t.Run("external", func(t *testing.T) { testDirect(t, true) })
}

func testDirect(t *testing.T, withCA bool) {
	t0 := time.Now()

	dns := startDNS(t)
	addServer(dns, CompanyDomain, CompanyIP, S2SPort)
	addServer(dns, PartnerDomain, PartnerIP, S2SPort)
	addServer(dns, DownDomain, DownIP, S2SPort)
	addServer(dns, BrokenDomain, BrokenIP, S2SPort)
	startStreamErrorServer(t, net.JoinHostPort(BrokenIP, fmt.Sprint(S2SPort)), BrokenDomain, "internal-server-error")

	start := time.Now()
	companyOpts := testbed.ProsodyOptions{Domain: CompanyDomain, IP: CompanyIP, DNS: dns.Addr(), Users: Users, RequireEncryption: true}
	partnerOpts := testbed.ProsodyOptions{Domain: PartnerDomain, IP: PartnerIP, DNS: dns.Addr(), Users: Users, RequireEncryption: true}
	if withCA {
		ca := newCA(t)
		for _, o := range []*testbed.ProsodyOptions{&companyOpts, &partnerOpts} {
			o.CertPEM, o.KeyPEM = ca.issue(t, o.Domain)
			o.CAFile = ca.file
			o.SecureAuth = true
		}
	}
	company := testbed.StartProsody(t, companyOpts)
	partner := testbed.StartProsody(t, partnerOpts)
	step(t, "start two Prosody servers", start)

	start = time.Now()
	alice := testbed.StartClient(t, "alice@"+CompanyDomain, Password, company.C2SAddr())
	bob := testbed.StartClient(t, "bob@"+PartnerDomain, Password, partner.C2SAddr())
	step(t, "log in two clients", start)

	messageBothWays(t, alice, bob)
	for _, p := range []*testbed.Prosody{company, partner} {
		if err := p.WaitLog("Stream encrypted (TLS", 5*time.Second); err != nil {
			t.Error(err)
		}
	}
	if err := company.WaitLog("Outgoing s2s connection company.test->partner.test complete", 5*time.Second); err != nil {
		t.Error(err)
	}
	if err := partner.WaitLog("Incoming s2s connection company.test->partner.test complete", 5*time.Second); err != nil {
		t.Error(err)
	}
	// How the servers authenticated each other.
	if withCA {
		for _, p := range []*testbed.Prosody{company, partner} {
			if n := p.CountLog("Initiating dialback"); n != 0 {
				t.Errorf("%s used dialback %d times with valid certificates", p.Opts.Domain, n)
			}
			if err := p.WaitLog("certificate chain validation result: valid", time.Second); err != nil {
				t.Error(err)
			}
		}
		if err := company.WaitLog("SASL EXTERNAL with partner.test succeeded", time.Second); err != nil {
			t.Error(err)
		}
		if err := partner.WaitLog("Accepting SASL EXTERNAL identity from company.test", time.Second); err != nil {
			t.Error(err)
		}
	} else {
		if err := company.WaitLog("Initiating dialback", time.Second); err != nil {
			t.Error(err)
		}
	}

	exerciseFederation(t, alice, bob)

	t.Logf("DNS queries answered: %d", dns.Queries())
	step(t, "total", t0)
}

// messageBothWays sends one message from alice to bob and one back, and
// checks what arrives.
func messageBothWays(t *testing.T, alice, bob *testbed.Client) {
	t.Helper()
	const wait = 15 * time.Second
	// A message each way.
	start := time.Now()
	if err := alice.SendMessageID(bob.JID, "hello bob", "m1"); err != nil {
		t.Fatal(err)
	}
	ev, err := bob.WaitEvent(wait, func(e Event) bool { return e.Kind == "message" && e.ID == "m1" })
	if err != nil {
		t.Fatalf("alice -> bob: %v", err)
	}
	if ev.Body != "hello bob" || !strings.HasPrefix(ev.From, alice.JID+"/") {
		t.Fatalf("alice -> bob: got %+v", ev)
	}
	step(t, "first message company -> partner", start)
	start = time.Now()
	if err := bob.SendMessageID(alice.JID, "hello alice", "m2"); err != nil {
		t.Fatal(err)
	}
	ev, err = alice.WaitEvent(wait, func(e Event) bool { return e.Kind == "message" && e.ID == "m2" })
	if err != nil {
		t.Fatalf("bob -> alice: %v", err)
	}
	if ev.Body != "hello alice" || !strings.HasPrefix(ev.From, bob.JID+"/") {
		t.Fatalf("bob -> alice: got %+v", ev)
	}
	step(t, "first message partner -> company", start)
}

// exerciseFederation runs the exchanges every federation path must carry,
// from alice (company.test) and bob (partner.test), who have already
// exchanged one message each way: presence subscription both ways, pings
// and a version query both ways, a 1,000-message burst (none lost, order
// kept), and bounces from a server that is down (remote-server-not-found)
// and from one that closes its stream with an error (remote-server-timeout).
func exerciseFederation(t *testing.T, alice, bob *testbed.Client) {
	t.Helper()
	const wait = 15 * time.Second
	var (
		start = time.Now()
		ev    Event
		err   error
	)
	// Presence subscription both ways: alice asks, bob's client approves
	// and asks back, alice's client approves.
	if err := alice.Subscribe(bob.JID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.WaitEvent(wait, func(e Event) bool { return e.Kind == "presence" && e.From == bob.FullJID && e.Type != "unavailable" }); err != nil {
		t.Fatalf("alice never saw bob's presence: %v", err)
	}
	if _, err := bob.WaitEvent(wait, func(e Event) bool { return e.Kind == "presence" && e.From == alice.FullJID && e.Type != "unavailable" }); err != nil {
		t.Fatalf("bob never saw alice's presence: %v", err)
	}
	step(t, "presence subscription both ways", start)

	// Pings across: to the other's full JID and to the other server.
	start = time.Now()
	for _, c := range []struct {
		from *testbed.Client
		to   string
	}{{alice, bob.FullJID}, {bob, alice.FullJID}, {alice, PartnerDomain}, {bob, CompanyDomain}} {
		ev, err := c.from.Ping(c.to, 10*time.Second)
		if err != nil || ev.Kind != "iq_result" {
			t.Fatalf("ping %s -> %s: %+v %v", c.from.JID, c.to, ev, err)
		}
	}
	ev, err = alice.Version(PartnerDomain, 10*time.Second)
	if err != nil || ev.Kind != "iq_result" || !strings.HasPrefix(ev.Body, "Prosody") {
		t.Fatalf("version of %s: %+v %v", PartnerDomain, ev, err)
	}
	step(t, "4 pings + 1 version across", start)

	// A burst of 1,000 messages: none lost, order kept.
	const n = 1000
	before := len(bob.Messages())
	start = time.Now()
	for i := 0; i < n; i++ {
		if err := alice.SendMessageID(bob.JID, fmt.Sprintf("burst %04d", i), fmt.Sprintf("b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, err := bob.WaitMessages(before+n, 60*time.Second)
	if err != nil {
		t.Fatalf("burst: %v", err)
	}
	msgs = msgs[before:]
	if len(msgs) != n {
		t.Fatalf("burst: got %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if want := fmt.Sprintf("burst %04d", i); m.Body != want || m.ID != fmt.Sprintf("b%d", i) {
			t.Fatalf("burst: message %d is %q (id %s), want %q", i, m.Body, m.ID, want)
		}
	}
	d := time.Since(start)
	t.Logf("%-50s %8.1f ms (%.0f msg/s)", "1000-message burst", float64(d.Microseconds())/1000, n/d.Seconds())

	// A domain whose server is down bounces.
	start = time.Now()
	if err := alice.SendMessageID("nobody@"+DownDomain, "anyone there?", "down1"); err != nil {
		t.Fatal(err)
	}
	ev, err = alice.WaitEvent(wait, func(e Event) bool { return e.ID == "down1" && e.Kind != "message" })
	if err != nil {
		t.Fatalf("no bounce from %s: %v", DownDomain, err)
	}
	if ev.Kind != "message_error" || ev.Error != "remote-server-not-found" {
		t.Fatalf("bounce from %s: got %+v, want message_error remote-server-not-found", DownDomain, ev)
	}
	t.Logf("bounce from %s: %s %q", DownDomain, ev.Error, ev.ErrorText)
	step(t, "bounce from a down server", start)

	// A domain whose server opens a stream and closes it with a stream
	// error bounces with remote-server-timeout.
	start = time.Now()
	if err := alice.SendMessageID("nobody@"+BrokenDomain, "anyone there?", "broken1"); err != nil {
		t.Fatal(err)
	}
	ev, err = alice.WaitEvent(wait, func(e Event) bool { return e.ID == "broken1" && e.Kind != "message" })
	if err != nil {
		t.Fatalf("no bounce from %s: %v", BrokenDomain, err)
	}
	if ev.Kind != "message_error" || ev.Error != "remote-server-timeout" {
		t.Fatalf("bounce from %s: got %+v, want message_error remote-server-timeout", BrokenDomain, ev)
	}
	t.Logf("bounce from %s: %s %q", BrokenDomain, ev.Error, ev.ErrorText)
	step(t, "bounce from a server closing with a stream error", start)

}

type Event = testbed.Event

// testCA is a certstest CA with its certificate written to a file.
type testCA struct {
	*certstest.CA
	file string
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	ca, err := certstest.NewCA("xmppedge e2e test CA")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{CA: ca, file: file}
}

// issue makes a certificate valid for domain as an XMPP server (DNS-ID,
// SRV-ID and XmppAddr).
func (ca *testCA) issue(t testing.TB, domain string) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{
		DNSNames:  []string{domain, "*." + domain},
		SRVNames:  []string{domain},
		XmppAddrs: []string{domain},
	})
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

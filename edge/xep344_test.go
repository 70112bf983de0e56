package edge

// XEP-0344 "dialback without dialback" on the outside leg: a db:result on
// a TLS-protected stream whose certificate is valid (trusted chain, RFC
// 6125 identity) for the db:result's from is answered valid without
// asking that domain's authoritative server; every other db:result goes
// through db:verify as before. The session.auth record says which.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/resolve"
)

// forgedKey is a dialback key no authoritative server issued: only a
// db:result the certificate settles is answered valid with it.
const forgedKey = "0000000000000000000000000000000000000000000000000000000000000000"

// otherAuthority is other.test's authoritative server (direct TLS with a
// trusted certificate): it vouches for otherKey's keys and records what
// it was asked.
type otherAuthority struct {
	*fakeServer
	mu    sync.Mutex
	asked []string
}

const otherAuthoritySecret = "other-authority-secret"

func otherKey(id string) string {
	return dialback.Key(otherAuthoritySecret, "company.test", "other.test", id)
}

func startOtherAuthority(t *testing.T, e *testEnv) *otherAuthority {
	t.Helper()
	a := &otherAuthority{fakeServer: startFakeServerTLS(t, "other.test", e.tlsConfig(t, "other.test"))}
	a.setVerify(func(from, to, id, key string) bool {
		a.mu.Lock()
		a.asked = append(a.asked, from+" "+to+" "+id)
		a.mu.Unlock()
		return from == "company.test" && to == "other.test" && dialback.Equal(key, otherKey(id))
	})
	e.res.set("other.test", a.addr(), true)
	return a
}

func (a *otherAuthority) askedCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.asked)
}

// dwdStep is one db:result of a stream and the answer it must get.
type dwdStep struct {
	from   string // the db:result's from (to company.test)
	forged bool   // send forgedKey, not the authority's key for the stream
	typ    string // the answer: valid | invalid | error
	cond   string // of an error answer
	// settled: answered by the certificate, no authority asked; else the
	// from's authority is asked exactly once.
	settled bool
}

// sessionAuths returns the session.auth allow records from index n on.
func sessionAuths(a *fakeAuditor, n int) []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Record
	for _, r := range a.records[n:] {
		if r.Event == audit.EventSessionAuth && r.Decision == audit.DecisionAllow {
			out = append(out, r)
		}
	}
	return out
}

func auditLen(a *fakeAuditor) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.records)
}

// dialbackCount reads xmppedge_dialback_total{role="receiving",result}.
func dialbackCount(t testing.TB, m *metrics.Metrics, result string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "xmppedge_dialback_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var role, res string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "role":
					role = l.GetValue()
				case "result":
					res = l.GetValue()
				}
			}
			if role == metrics.DialbackReceiving && res == result {
				return mt.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Hostile and honest peers sending db:result over TLS: only a certificate
// the gateway trusts, valid for the db:result's own from, spares the
// db:verify; a certificate of the attacker's own CA, or one for another
// domain, goes to the authoritative server, and a forged key gets nothing
// through to the internal server.
func TestHostileDialbackWithoutDialback(t *testing.T) {
	m := metrics.New("test")
	h := newHostileEnv(t, func(o *Options) { o.Metrics = m })
	other := startOtherAuthority(t, h.testEnv)
	otherCert := hostileCert(t, h.ca, "other.test") // trusted, for another domain
	n := 0
	for _, tt := range []struct {
		name   string
		cert   *tls.Certificate
		header string // the stream header's from
		steps  []dwdStep
		end    string // the stream error that ends the stream; "": a message is relayed
	}{
		{name: "certificate of the attacker's own CA, forged key", cert: &h.untrusted, header: "partner.test",
			steps: []dwdStep{{from: "partner.test", forged: true, typ: "invalid"}}, end: "not-authorized"},
		{name: "certificate of the attacker's own CA, the authority's key", cert: &h.untrusted, header: "partner.test",
			steps: []dwdStep{{from: "partner.test", typ: "valid"}}},
		{name: "trusted certificate for another domain, forged key", cert: &otherCert, header: "partner.test",
			steps: []dwdStep{{from: "partner.test", forged: true, typ: "invalid"}}, end: "not-authorized"},
		{name: "trusted certificate valid for the from", cert: &h.trusted, header: "partner.test",
			steps: []dwdStep{{from: "partner.test", forged: true, typ: "valid", settled: true}}},
		{name: "header from another domain, certificate valid for the db:result's from", cert: &h.trusted, header: "other.test",
			steps: []dwdStep{{from: "partner.test", forged: true, typ: "valid", settled: true}}},
		{name: "multiplexed from the certificate is not valid for, forged key", cert: &h.trusted, header: "partner.test",
			steps: []dwdStep{
				{from: "partner.test", forged: true, typ: "valid", settled: true},
				{from: "other.test", forged: true, typ: "error", cond: "forbidden"},
			}},
		{name: "multiplexed from the certificate is not valid for, its authority's key", cert: &h.trusted, header: "partner.test",
			steps: []dwdStep{
				{from: "partner.test", forged: true, typ: "valid", settled: true},
				{from: "other.test", typ: "valid"},
			}},
		{name: "multiplexed from the certificate is valid for", cert: &otherCert, header: "partner.test",
			steps: []dwdStep{
				{from: "other.test", forged: true, typ: "valid", settled: true},
				{from: "partner.test", typ: "valid"},
			}},
	} {
		n++
		t.Run(tt.name, func(t *testing.T) {
			recs := auditLen(h.aud)
			certValid := dialbackCount(t, m, metrics.DialbackValidCert)
			p, _ := h.tlsPeer(t, tt.cert, tt.header)
			var settled []string
			for _, s := range tt.steps {
				partnerBefore, otherBefore := len(h.askedAuthority()), other.askedCount()
				key := forgedKey
				switch {
				case s.forged:
				case s.from == "partner.test":
					key = partnerKey(p.hdr.ID)
				default:
					key = otherKey(p.hdr.ID)
				}
				hostileWrite(p, "<db:result from='"+s.from+"' to='company.test'>"+key+"</db:result>")
				expectDialbackAnswer(t, p, "result", "company.test", s.from, s.typ, s.cond)
				partnerAsked, otherAsked := len(h.askedAuthority())-partnerBefore, other.askedCount()-otherBefore
				want := [2]int{}
				switch {
				case s.settled:
					settled = append(settled, s.from)
				case s.from == "partner.test":
					want[0] = 1
				default:
					want[1] = 1
				}
				if got := [2]int{partnerAsked, otherAsked}; got != want {
					t.Fatalf("db:result from %s: partner.test's and other.test's authorities asked %v times, want %v", s.from, got, want)
				}
			}
			if tt.end != "" {
				expectStreamErrorApp(t, p, tt.end, "")
			} else {
				// What was authenticated is relayed; what was not
				// (other.test after its forged key) ends the stream.
				for i, s := range tt.steps {
					id := fmt.Sprintf("dwd-%d-%s", n, s.from)
					hostileWrite(p, hostileAddressed("message", "bob@"+s.from+"/x", "alice@company.test", id, "<body>hi</body>"))
					if s.typ != "valid" {
						expectStreamErrorApp(t, p, "invalid-from", "")
						break
					}
					h.expectRelayed(t, id)
					h.letPairs[s.from+" company.test"] = true
					if i == len(tt.steps)-1 {
						hostileClose(t, p)
					}
				}
			}
			// The session.auth record of each allowed pair says how it was
			// authenticated.
			var byXEP344 []string
			for _, r := range sessionAuths(h.aud, recs) {
				if r.Auth != "dialback" {
					t.Errorf("session.auth of %s: auth %q, want dialback", r.RemoteDomain, r.Auth)
				}
				if strings.Contains(r.Reason, "XEP-0344") {
					byXEP344 = append(byXEP344, r.RemoteDomain)
					if want := "XEP-0344: the certificate is valid for " + r.RemoteDomain + ", dialback answered without db:verify"; r.Reason != want || r.PeerCert != "valid" {
						t.Errorf("session.auth of %s: reason %q, peer_cert %q; want %q, valid", r.RemoteDomain, r.Reason, r.PeerCert, want)
					}
				}
			}
			if !slices.Equal(byXEP344, settled) {
				t.Errorf("session.auth records saying XEP-0344: %v, want %v", byXEP344, settled)
			}
			if got := dialbackCount(t, m, metrics.DialbackValidCert) - certValid; got != float64(len(settled)) {
				t.Errorf("xmppedge_dialback_total{result=valid_cert} grew by %v, want %d", got, len(settled))
			}
			h.finish(t, p)
		})
	}
}

// outside.dialback_shortcut: false — every key is verified with the
// authoritative server, even with a certificate valid for the from.
func TestDialbackShortcutOff(t *testing.T) {
	h := newHostileEnv(t, func(o *Options) { o.Outside.NoDialbackShortcut = true })
	p, _ := h.tlsPeer(t, &h.trusted, "partner.test")
	hostileWrite(p, "<db:result from='partner.test' to='company.test'>"+forgedKey+"</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "invalid", "")
	expectStreamErrorApp(t, p, "not-authorized", "")
	if asked := h.askedAuthority(); len(asked) != 1 {
		t.Fatalf("partner.test's authority asked %q, want once", asked)
	}
	p, _ = h.tlsPeer(t, &h.trusted, "partner.test")
	hostileWrite(p, "<db:result from='partner.test' to='company.test'>"+partnerKey(p.hdr.ID)+"</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
	if asked := h.askedAuthority(); len(asked) != 2 {
		t.Fatalf("partner.test's authority asked %q, want twice", asked)
	}
	for _, r := range sessionAuths(h.aud, 0) {
		if strings.Contains(r.Reason, "XEP-0344") {
			t.Errorf("session.auth says XEP-0344 with the shortcut off: %+v", r)
		}
	}
	h.finish(t, p)
}

// The shipped rules decide a pair the certificate settles as any dialback
// pair (auth "dialback"): a require_cert partner is refused before
// anything else happens — no authority asked, the refusal audited — while
// a partner without require_cert is answered at once.
func TestDialbackShortcutShippedRules(t *testing.T) {
	eng := shippedRules(t, "partners:\n  - domain: partner.test\n  - domain: secure.test\n    require_cert: true\n")
	env := newTestEnv(t, func(o *Options) { o.Policy = eng })
	var mu sync.Mutex
	asked := 0
	for _, d := range []string{"partner.test", "secure.test"} {
		a := startFakeServerTLS(t, d, env.tlsConfig(t, d))
		a.setVerify(func(from, to, id, key string) bool {
			mu.Lock()
			asked++
			mu.Unlock()
			return false
		})
		env.res.set(d, a.addr(), true)
	}
	open := func(domain string) *peer {
		cert := hostileCert(t, env.ca, domain)
		p := dialPeer(t, env.outside)
		p.open(domain, "company.test")
		upgradeTLS(t, p, &cert)
		p.open(domain, "company.test")
		return p
	}

	p := open("secure.test")
	p.send("<db:result from='secure.test' to='company.test'>" + forgedKey + "</db:result>")
	p.expectStreamError("policy-violation")
	deny := env.aud.find(audit.EventSessionAuth, audit.DecisionDeny)
	if len(deny) != 1 || deny[0].RemoteDomain != "secure.test" || deny[0].Auth != "dialback" || !strings.Contains(deny[0].Reason, "must authenticate with a certificate") {
		t.Fatalf("session.auth deny records: %+v", deny)
	}

	p = open("partner.test")
	p.send("<db:result from='partner.test' to='company.test'>" + forgedKey + "</db:result>")
	expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
	p.send("<message from='bob@partner.test/x' to='alice@company.test' id='in1'><body>hi</body></message>")
	env.internal.expectStanza(t, "id='in1'")
	allow := env.aud.find(audit.EventSessionAuth, audit.DecisionAllow)
	if len(allow) != 1 || allow[0].RemoteDomain != "partner.test" || !strings.HasPrefix(allow[0].Reason, "XEP-0344: ") {
		t.Fatalf("session.auth allow records: %+v", allow)
	}
	mu.Lock()
	defer mu.Unlock()
	if asked != 0 {
		t.Fatalf("an authoritative server was asked %d times", asked)
	}
}

// tlsaDNS is a validating resolver's stand-in for TLSA records: it
// answers the zones set, with the AD bit where marked, and counts the
// TLSA questions.
type tlsaDNS struct {
	addr  string
	mu    sync.Mutex
	zones map[string]tlsaAnswer // FQDN, lowercase
	asked int
}

type tlsaAnswer struct {
	records []dns.RR
	ad      bool
}

func startTLSADNS(t *testing.T) *tlsaDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &tlsaDNS{addr: pc.LocalAddr().String(), zones: map[string]tlsaAnswer{}}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	go srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server did not start")
	}
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *tlsaDNS) set(name string, a tlsaAnswer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zones = map[string]tlsaAnswer{strings.ToLower(dns.Fqdn(name)): a}
}

func (d *tlsaDNS) questions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked
}

func (d *tlsaDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	d.mu.Lock()
	if req.Question[0].Qtype == dns.TypeTLSA {
		d.asked++
	}
	a, ok := d.zones[strings.ToLower(req.Question[0].Name)]
	d.mu.Unlock()
	if ok {
		resp.Answer = a.records
		resp.AuthenticatedData = a.ad
	} else {
		resp.Rcode = dns.RcodeNameError
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(4096, opt.Do())
	}
	w.WriteMsg(resp)
}

// daneEE is a DANE-EE TLSA record (3 1 1: SHA-256 of the key) for cert.
func daneEE(t testing.TB, name string, cert *tls.Certificate) dns.RR {
	t.Helper()
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	return &dns.TLSA{
		Hdr:   dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTLSA, Class: dns.ClassINET, Ttl: 60},
		Usage: 3, Selector: 1, MatchingType: 1, Certificate: hex.EncodeToString(sum[:]),
	}
}

// namedResolver is the fake resolver with host names for targets (TLSA
// records are published under the SRV target's name).
type namedResolver struct {
	*fakeResolver
	hosts map[string]string // host name → IP
}

func (r *namedResolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, ok := r.hosts[host]; ok {
		host = ip
	}
	return r.fakeResolver.LookupHost(ctx, host)
}

// XEP-0344 with DANE (tls.dane on): a certificate of a CA the gateway does
// not trust is as good as a trusted one for a db:result when it matches
// the DNSSEC-authenticated TLSA records of the from's servers — reached
// through a DNSSEC-authenticated SRV answer. Unauthenticated TLSA records,
// records for another certificate, or an unauthenticated SRV answer leave
// the key to db:verify; and nothing is looked up for a domain the policy
// refuses.
func TestHostileDialbackDANE(t *testing.T) {
	tlsa := startTLSADNS(t)
	var named *namedResolver
	h := newHostileEnv(t, func(o *Options) {
		o.Outside.DANEResolver = tlsa.addr
		named = &namedResolver{fakeResolver: o.Outside.Resolver.(*fakeResolver), hosts: map[string]string{}}
		o.Outside.Resolver = named
	})
	host, portStr, _ := net.SplitHostPort(h.authority.addr())
	port, _ := strconv.Atoi(portStr)
	named.hosts["xmpp.partner.test"] = host
	srv := func(secure bool) {
		h.res.mu.Lock()
		h.res.targets["partner.test"] = []resolve.Target{{Host: "xmpp.partner.test", Port: uint16(port), DirectTLS: true, Secure: secure}}
		h.res.mu.Unlock()
	}
	name := fmt.Sprintf("_%d._tcp.xmpp.partner.test", port)
	someoneElse := hostileCert(t, h.ca, "partner.test")
	for _, tt := range []struct {
		name      string
		srvSecure bool
		tlsa      tlsaAnswer
		deny      bool
		settled   bool // answered valid without db:verify
	}{
		{name: "DANE-EE match, authenticated", srvSecure: true, tlsa: tlsaAnswer{records: []dns.RR{daneEE(t, name, &h.untrusted)}, ad: true}, settled: true},
		{name: "DANE-EE match, not authenticated", srvSecure: true, tlsa: tlsaAnswer{records: []dns.RR{daneEE(t, name, &h.untrusted)}}},
		{name: "authenticated TLSA of another certificate", srvSecure: true, tlsa: tlsaAnswer{records: []dns.RR{daneEE(t, name, &someoneElse)}, ad: true}},
		{name: "SRV answer not authenticated", tlsa: tlsaAnswer{records: []dns.RR{daneEE(t, name, &h.untrusted)}, ad: true}},
		{name: "domain the policy refuses", srvSecure: true, tlsa: tlsaAnswer{records: []dns.RR{daneEE(t, name, &h.untrusted)}, ad: true}, deny: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv(tt.srvSecure)
			tlsa.set(name, tt.tlsa)
			h.pol.setDeny("partner.test", tt.deny)
			recs, asked, questions := auditLen(h.aud), len(h.askedAuthority()), tlsa.questions()
			p := h.untrustedPeer(t)
			hostileWrite(p, "<db:result from='partner.test' to='company.test'>"+forgedKey+"</db:result>")
			switch {
			case tt.deny:
				expectStreamErrorApp(t, p, "policy-violation", "")
				if q := tlsa.questions() - questions; q != 0 {
					t.Fatalf("%d TLSA questions for a domain the policy refuses", q)
				}
				h.pol.setDeny("partner.test", false) // for finish's canary
			case tt.settled:
				expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "valid", "")
				id := fmt.Sprintf("dane-%d", recs)
				hostileWrite(p, hostileAddressed("message", "bob@partner.test/x", "alice@company.test", id, "<body>hi</body>"))
				h.expectRelayed(t, id)
				hostileClose(t, p)
			default:
				expectDialbackAnswer(t, p, "result", "company.test", "partner.test", "invalid", "")
				expectStreamErrorApp(t, p, "not-authorized", "")
			}
			// TLSA is looked up only through an authenticated SRV answer,
			// and only for a domain the policy allows.
			if q, want := tlsa.questions()-questions, tt.srvSecure && !tt.deny; (q > 0) != want {
				t.Errorf("%d TLSA questions, want some: %v", q, want)
			}
			wantAsked := 1
			if tt.deny || tt.settled {
				wantAsked = 0
			}
			if got := len(h.askedAuthority()) - asked; got != wantAsked {
				t.Errorf("partner.test's authority asked %d times, want %d", got, wantAsked)
			}
			var reasons []string
			for _, r := range sessionAuths(h.aud, recs) {
				reasons = append(reasons, r.Reason)
			}
			var want []string
			switch {
			case tt.settled:
				want = []string{"", "XEP-0344: the certificate matches the DNSSEC-authenticated TLSA records (DANE) of partner.test's servers, dialback answered without db:verify"}
			case !tt.deny:
				want = []string{""}
			}
			if !slices.Equal(reasons, want) {
				t.Errorf("session.auth allow reasons %q, want %q", reasons, want)
			}
			h.finish(t, p)
		})
	}
}

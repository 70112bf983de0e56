package dnsresponder

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Allow == nil {
		cfg.Allow = loopback
	}
	s, err := Start(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func ask(t *testing.T, server, network, name string, qtype uint16, edns bool) *dns.Msg {
	t.Helper()
	req := new(dns.Msg).SetQuestion(name, qtype)
	if edns {
		req.SetEdns0(1232, false)
	}
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.ExchangeContext(testContext(t), req, server)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	if resp.Id != req.Id {
		t.Fatalf("answer id %d, query id %d", resp.Id, req.Id)
	}
	if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
		t.Errorf("question not copied: %v", resp.Question)
	}
	return resp
}

// rrStrings renders records without their TTL-independent parts changed.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		if _, ok := rr.(*dns.OPT); ok {
			continue
		}
		out = append(out, strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

var (
	inside4  = netip.MustParseAddrPort("127.0.0.1:15269")
	inside6  = netip.MustParseAddrPort("[::1]:15269")
	loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
)

func TestAnswers(t *testing.T) {
	s := start(t, Config{
		Local:       []string{"company.test", "Bücher.test"},
		InsideAddrs: []netip.AddrPort{inside4, inside6},
		TTL:         30,
	})
	tests := []struct {
		name      string
		network   string
		qname     string
		qtype     uint16
		edns      bool
		rcode     int
		aa        bool
		answer    []string
		extra     []string
		soaInAuth bool
	}{
		{
			name: "SRV of a remote domain points at the inside listener", network: "udp",
			qname: "_xmpp-server._tcp.partner.test.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_xmpp-server._tcp.partner.test. 30 IN SRV 0 0 15269 xmppedge-inside."},
			extra:  []string{"xmppedge-inside. 30 IN A 127.0.0.1", "xmppedge-inside. 30 IN AAAA ::1"},
		},
		{
			name: "same over TCP with EDNS", network: "tcp", edns: true,
			qname: "_xmpp-server._tcp.partner.test.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_xmpp-server._tcp.partner.test. 30 IN SRV 0 0 15269 xmppedge-inside."},
			extra:  []string{"xmppedge-inside. 30 IN A 127.0.0.1", "xmppedge-inside. 30 IN AAAA ::1"},
		},
		{
			name: "owner name keeps the case asked (0x20)", network: "udp",
			qname: "_XMPP-Server._TCP.Partner.TEST.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_XMPP-Server._TCP.Partner.TEST. 30 IN SRV 0 0 15269 xmppedge-inside."},
			extra:  []string{"xmppedge-inside. 30 IN A 127.0.0.1", "xmppedge-inside. 30 IN AAAA ::1"},
		},
		{
			name: "direct TLS service is not offered inside", network: "udp",
			qname: "_xmpps-server._tcp.partner.test.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true, soaInAuth: true,
		},
		{
			name: "other type at the SRV name: NODATA", network: "udp",
			qname: "_xmpp-server._tcp.partner.test.", qtype: dns.TypeTXT, rcode: dns.RcodeSuccess, aa: true, soaInAuth: true,
		},
		{
			name: "A of the target", network: "udp",
			qname: "xmppedge-inside.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"xmppedge-inside. 30 IN A 127.0.0.1"},
		},
		{
			name: "AAAA of the target", network: "tcp",
			qname: "XMPPedge-inside.", qtype: dns.TypeAAAA, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"XMPPedge-inside. 30 IN AAAA ::1"},
		},
		{
			name: "MX of the target: NODATA", network: "udp",
			qname: "xmppedge-inside.", qtype: dns.TypeMX, rcode: dns.RcodeSuccess, aa: true, soaInAuth: true,
		},
		{name: "local domain refused", network: "udp", qname: "_xmpp-server._tcp.company.test.", qtype: dns.TypeSRV, rcode: dns.RcodeRefused},
		{name: "local domain refused, direct TLS", network: "udp", qname: "_xmpps-server._tcp.company.test.", qtype: dns.TypeSRV, rcode: dns.RcodeRefused},
		{name: "IDN local domain refused", network: "udp", qname: "_xmpp-server._tcp.xn--bcher-kva.test.", qtype: dns.TypeSRV, rcode: dns.RcodeRefused},
		{name: "subdomain of a local domain is remote", network: "udp", qname: "_xmpp-server._tcp.muc.company.test.", qtype: dns.TypeSRV, rcode: dns.RcodeSuccess, aa: true,
			answer: []string{"_xmpp-server._tcp.muc.company.test. 30 IN SRV 0 0 15269 xmppedge-inside."},
			extra:  []string{"xmppedge-inside. 30 IN A 127.0.0.1", "xmppedge-inside. 30 IN AAAA ::1"}},
		{name: "a remote domain's A record is not ours", network: "udp", qname: "partner.test.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "client service is not ours", network: "udp", qname: "_xmpp-client._tcp.partner.test.", qtype: dns.TypeSRV, rcode: dns.RcodeRefused},
		{name: "service of the root", network: "udp", qname: "_xmpp-server._tcp.", qtype: dns.TypeSRV, rcode: dns.RcodeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := ask(t, s.Addr(), tt.network, tt.qname, tt.qtype, tt.edns)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			if resp.Authoritative != tt.aa {
				t.Errorf("AA %v, want %v", resp.Authoritative, tt.aa)
			}
			if got := rrStrings(resp.Answer); strings.Join(got, "\n") != strings.Join(tt.answer, "\n") {
				t.Errorf("answer\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.answer, "\n"))
			}
			if got := rrStrings(resp.Extra); strings.Join(got, "\n") != strings.Join(tt.extra, "\n") {
				t.Errorf("additional\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.extra, "\n"))
			}
			hasSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tt.soaInAuth {
				t.Errorf("authority %v, want SOA: %v", resp.Ns, tt.soaInAuth)
			}
			if tt.edns && resp.IsEdns0() == nil {
				t.Errorf("no OPT in the answer to an EDNS query")
			}
		})
	}
}

func TestTargetNameAndTTLConfigurable(t *testing.T) {
	s := start(t, Config{
		InsideAddrs: []netip.AddrPort{inside4},
		TargetName:  "Edge.Inside.Company.Test",
		Local:       []string{"company.test"},
	})
	resp := ask(t, s.Addr(), "udp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, false)
	want := "_xmpp-server._tcp.partner.test. 60 IN SRV 0 0 15269 edge.inside.company.test."
	if got := rrStrings(resp.Answer); len(got) != 1 || got[0] != want {
		t.Errorf("answer %v, want %s", got, want)
	}
	// The target wins over the local domain it lives under.
	resp = ask(t, s.Addr(), "udp", "edge.inside.company.test.", dns.TypeA, false)
	if got := rrStrings(resp.Answer); len(got) != 1 || got[0] != "edge.inside.company.test. 60 IN A 127.0.0.1" {
		t.Errorf("target A: %v", got)
	}
}

// TestResolverFindsInside checks the responder with the resolver xmppedge
// itself uses, which asks both services like Prosody does.
func TestResolverFindsInside(t *testing.T) {
	s := start(t, Config{Local: []string{"company.test"}, InsideAddrs: []netip.AddrPort{inside4}})
	r, err := resolve.New(resolve.Config{Servers: []string{s.Addr()}, MaxCacheEntries: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	targets, err := r.LookupS2S(ctx, "partner.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 || targets[0] != (resolve.Target{Host: "xmppedge-inside", Port: 15269}) {
		t.Errorf("targets %+v", targets)
	}
	addrs, err := r.LookupHost(ctx, targets[0].Host)
	if err != nil || len(addrs) != 1 || addrs[0] != inside4.Addr() {
		t.Errorf("addresses %v, %v", addrs, err)
	}
	if _, err := r.LookupS2S(ctx, "company.test"); err == nil {
		t.Errorf("local domain resolved; want the REFUSED failure")
	}
}

func TestForward(t *testing.T) {
	up, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	up.AddSRV("_xmpp-server._tcp.company.test", "prosody.company.test", 5269, 0, 0)
	up.AddA("prosody.company.test", "127.0.0.9")
	up.AddA("partner.test", "192.0.2.1")

	silent := silentUDP(t)
	s := start(t, Config{
		Local:          []string{"company.test"},
		InsideAddrs:    []netip.AddrPort{inside4},
		Forward:        []string{silent, up.Addr()}, // the first does not answer: the second is asked
		ForwardTimeout: 300 * time.Millisecond,
	})
	tests := []struct {
		name    string
		network string
		qname   string
		qtype   uint16
		rcode   int
		answer  string
	}{
		{"local SRV forwarded", "udp", "_xmpp-server._tcp.company.test.", dns.TypeSRV, dns.RcodeSuccess, "SRV 0 0 5269 prosody.company.test."},
		{"local A forwarded over TCP", "tcp", "prosody.company.test.", dns.TypeA, dns.RcodeSuccess, "A 127.0.0.9"},
		{"remote domain's A forwarded", "udp", "partner.test.", dns.TypeA, dns.RcodeSuccess, "A 192.0.2.1"},
		{"remote SRV still ours", "udp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, dns.RcodeSuccess, "SRV 0 0 15269 xmppedge-inside."},
		{"upstream NXDOMAIN relayed", "udp", "nothing.company.test.", dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := ask(t, s.Addr(), tt.network, tt.qname, tt.qtype, true)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			got := strings.Join(rrStrings(resp.Answer), "\n")
			if !strings.Contains(got, tt.answer) {
				t.Errorf("answer %q lacks %q", got, tt.answer)
			}
		})
	}

	up.Close()
	resp := ask(t, s.Addr(), "udp", "www.company.test.", dns.TypeA, false)
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("with every upstream down: rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

// silentUDP is a UDP address that reads queries and never answers.
func silentUDP(t *testing.T) string {
	t.Helper()
	s, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close() // nothing listens there any more: queries time out or are refused by the kernel
	return addr
}

func TestTruncatedOverUDP(t *testing.T) {
	var addrs []netip.AddrPort
	for i := 1; i <= 60; i++ {
		addrs = append(addrs, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 5269))
	}
	s := start(t, Config{InsideAddrs: addrs})
	resp := ask(t, s.Addr(), "udp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, false)
	if !resp.Truncated {
		t.Errorf("a %d-address answer over UDP without EDNS is not truncated", len(addrs))
	}
	resp = ask(t, s.Addr(), "tcp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, false)
	if resp.Truncated || len(resp.Extra) != len(addrs) {
		t.Errorf("over TCP: truncated %v, %d additional records", resp.Truncated, len(resp.Extra))
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no inside address", Config{Listen: "127.0.0.1:0"}, "no inside listener address"},
		{"unspecified inside address", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:5269")}}, "listens on all addresses"},
		{"ports differ", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4, netip.MustParseAddrPort("127.0.0.2:5270")}}, "different ports"},
		{"bad upstream", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, Forward: []string{"dns.example"}}, "upstream resolver"},
		{"bad target", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, TargetName: "bad name!"}, "target name"},
		{"bad local domain", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, Local: []string{"a..b"}}, "local domain"},
		{"bad listen", Config{Listen: "nowhere", InsideAddrs: []netip.AddrPort{inside4}}, "not IP:PORT"},
		{"nobody allowed", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, Allow: []netip.Prefix{}}, "no source network is allowed"},
		{"invalid allowed network", Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, Allow: []netip.Prefix{{}}}, "not a network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.Allow == nil {
				tt.cfg.Allow = loopback
			}
			s, err := Start(testContext(t), tt.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("started; want an error about %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestStopsOnCloseAndOnCancel(t *testing.T) {
	for _, how := range []string{"close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			s, err := Start(ctx, Config{Listen: "127.0.0.1:0", InsideAddrs: []netip.AddrPort{inside4}, Allow: loopback})
			if err != nil {
				t.Fatal(err)
			}
			ask(t, s.Addr(), "tcp", "xmppedge-inside.", dns.TypeA, false)
			if how == "close" {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			} else {
				cancel()
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				c := &dns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
				_, _, err := c.Exchange(new(dns.Msg).SetQuestion("xmppedge-inside.", dns.TypeA), s.Addr())
				if err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("still answering after being stopped")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err := s.Close(); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// askFrom sends one query from the loopback address from, over network.
func askFrom(t *testing.T, from netip.Addr, server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	var local net.Addr = &net.UDPAddr{IP: from.AsSlice()}
	if network == "tcp" {
		local = &net.TCPAddr{IP: from.AsSlice()}
	}
	req := new(dns.Msg).SetQuestion(name, qtype)
	req.SetEdns0(1232, false)
	c := &dns.Client{Net: network, Timeout: 3 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 3 * time.Second}}
	resp, _, err := c.ExchangeContext(testContext(t), req, server)
	if err != nil {
		t.Fatalf("%s %s over %s from %s: %v", name, dns.TypeToString[qtype], network, from, err)
	}
	if resp.Id != req.Id || len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
		t.Fatalf("answer does not match the query: %v", resp)
	}
	return resp
}

// The responder answers only the sources of Allow: from any other it
// answers REFUSED, over UDP and TCP, with nothing in it, asks no upstream
// and counts the refusal.
func TestRefusesSourcesOutsideAllow(t *testing.T) {
	up, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	up.AddA("www.partner.test", "192.0.2.1")

	s := start(t, Config{
		Local:       []string{"company.test"},
		InsideAddrs: []netip.AddrPort{inside4},
		Forward:     []string{up.Addr()},
		Allow:       []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	allowed, refused := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.9")
	tests := []struct {
		name    string
		from    netip.Addr
		network string
		qname   string
		qtype   uint16
		rcode   int
		answer  string // substring of the answer section; "" none
	}{
		{"allowed SRV over UDP", allowed, "udp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, dns.RcodeSuccess, "SRV 0 0 15269 xmppedge-inside."},
		{"allowed SRV over TCP", allowed, "tcp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, dns.RcodeSuccess, "SRV 0 0 15269 xmppedge-inside."},
		{"allowed forwarded", allowed, "udp", "www.partner.test.", dns.TypeA, dns.RcodeSuccess, "A 192.0.2.1"},
		{"refused SRV over UDP", refused, "udp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, dns.RcodeRefused, ""},
		{"refused SRV over TCP", refused, "tcp", "_xmpp-server._tcp.partner.test.", dns.TypeSRV, dns.RcodeRefused, ""},
		{"refused target A", refused, "udp", "xmppedge-inside.", dns.TypeA, dns.RcodeRefused, ""},
		{"refused, not forwarded, over UDP", refused, "udp", "www.partner.test.", dns.TypeA, dns.RcodeRefused, ""},
		{"refused, not forwarded, over TCP", refused, "tcp", "www.partner.test.", dns.TypeA, dns.RcodeRefused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, upBefore := s.Refused(), up.Queries()
			resp := askFrom(t, tt.from, s.Addr(), tt.network, tt.qname, tt.qtype)
			if resp.Rcode != tt.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
			}
			got := strings.Join(rrStrings(resp.Answer), "\n")
			if tt.answer == "" && (got != "" || len(resp.Ns) != 0 || len(rrStrings(resp.Extra)) != 0) {
				t.Errorf("a refusal carries records: answer %q, authority %v, additional %v", got, resp.Ns, resp.Extra)
			}
			if !strings.Contains(got, tt.answer) {
				t.Errorf("answer %q lacks %q", got, tt.answer)
			}
			wantRefused := before
			if tt.rcode == dns.RcodeRefused {
				wantRefused++
				if n := up.Queries(); n != upBefore {
					t.Errorf("the upstream was asked %d time(s) for a refused source", n-upBefore)
				}
				if resp.Authoritative || resp.RecursionAvailable {
					t.Errorf("a refusal claims AA %v / RA %v", resp.Authoritative, resp.RecursionAvailable)
				}
			}
			if got := s.Refused(); got != wantRefused {
				t.Errorf("Refused() = %d, want %d", got, wantRefused)
			}
		})
	}
}

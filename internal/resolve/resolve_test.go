package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
)

// startDNS starts a test DNS server on loopback, closed when the test ends.
func startDNS(t *testing.T) *resolvetest.Server {
	t.Helper()
	srv, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("starting the test DNS server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func newResolver(t *testing.T, servers ...string) *Resolver {
	t.Helper()
	r, err := New(Config{Servers: servers, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// silentServer is a UDP socket that reads queries and never answers.
func silentServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestLookupS2S(t *testing.T) {
	type srv struct {
		name, target     string
		port, prio, wght uint16
	}
	tests := []struct {
		name    string
		domain  string
		srvs    []srv
		addrs   map[string]string
		want    []Target
		wantErr error
	}{
		{
			name:   "priority order ascending",
			domain: "example.org",
			srvs: []srv{
				{"_xmpp-server._tcp.example.org", "c.example.org", 5269, 30, 0},
				{"_xmpp-server._tcp.example.org", "a.example.org", 5270, 10, 0},
				{"_xmpp-server._tcp.example.org", "b.example.org", 5271, 20, 0},
			},
			want: []Target{{"a.example.org", 5270, false, false}, {"b.example.org", 5271, false, false}, {"c.example.org", 5269, false, false}},
		},
		{
			name:   "direct TLS targets come before STARTTLS targets",
			domain: "example.org",
			srvs: []srv{
				{"_xmpp-server._tcp.example.org", "starttls.example.org", 5269, 0, 0},
				{"_xmpps-server._tcp.example.org", "tls.example.org", 5270, 50, 0},
			},
			want: []Target{{"tls.example.org", 5270, true, false}, {"starttls.example.org", 5269, false, false}},
		},
		{
			name:   "fallback when the domain has no SRV records (NXDOMAIN)",
			domain: "nosrv.example",
			want:   []Target{{"nosrv.example", 5269, false, false}},
		},
		{
			name:   "fallback when the SRV names exist without SRV records (NODATA)",
			domain: "nodata.example",
			addrs:  map[string]string{"_xmpp-server._tcp.nodata.example": "192.0.2.1"},
			want:   []Target{{"nodata.example", 5269, false, false}},
		},
		{
			name:    "both services say dot",
			domain:  "dot.example",
			srvs:    []srv{{"_xmpp-server._tcp.dot.example", ".", 0, 0, 0}, {"_xmpps-server._tcp.dot.example", ".", 0, 0, 0}},
			wantErr: ErrNoService,
		},
		{
			name:    "STARTTLS says dot, direct TLS absent",
			domain:  "dot.example",
			srvs:    []srv{{"_xmpp-server._tcp.dot.example", ".", 0, 0, 0}},
			wantErr: ErrNoService,
		},
		{
			name:    "direct TLS says dot, STARTTLS absent",
			domain:  "dot.example",
			srvs:    []srv{{"_xmpps-server._tcp.dot.example", ".", 0, 0, 0}},
			wantErr: ErrNoService,
		},
		{
			name:   "direct TLS says dot, STARTTLS has a target",
			domain: "dot.example",
			srvs: []srv{
				{"_xmpps-server._tcp.dot.example", ".", 0, 0, 0},
				{"_xmpp-server._tcp.dot.example", "xmpp.dot.example", 5269, 0, 0},
			},
			want: []Target{{"xmpp.dot.example", 5269, false, false}},
		},
		{
			name:   "mixed case domain and target are lowercased",
			domain: "MiXeD.Example.",
			srvs:   []srv{{"_xmpp-server._tcp.mixed.example", "XMPP.Mixed.Example", 5269, 0, 0}},
			want:   []Target{{"xmpp.mixed.example", 5269, false, false}},
		},
		{
			name:   "IDN domain is asked as A-label",
			domain: "bücher.example",
			srvs:   []srv{{"_xmpp-server._tcp.xn--bcher-kva.example", "xmpp.xn--bcher-kva.example", 5269, 0, 0}},
			want:   []Target{{"xmpp.xn--bcher-kva.example", 5269, false, false}},
		},
		{
			name:   "fallback uses the A-label of an IDN domain",
			domain: "bücher.example",
			want:   []Target{{"xn--bcher-kva.example", 5269, false, false}},
		},
	}
	dnsServer := startDNS(t)
	r := newResolver(t, dnsServer.Addr())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dnsServer.Clear()
			for _, s := range tt.srvs {
				dnsServer.AddSRV(s.name, s.target, s.port, s.prio, s.wght)
			}
			for name, ip := range tt.addrs {
				dnsServer.AddA(name, ip)
			}
			got, err := r.LookupS2S(testContext(t), tt.domain)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LookupS2S(%q) = %v, %v; want error %v", tt.domain, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LookupS2S(%q): %v", tt.domain, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("LookupS2S(%q) = %+v; want %+v", tt.domain, got, tt.want)
			}
		})
	}
}

func TestLookupS2SWeightedChoice(t *testing.T) {
	dnsServer := startDNS(t)
	dnsServer.SetTTL(300) // cached: the draws exercise the ordering, not the server
	dnsServer.AddSRV("_xmpp-server._tcp.weighted.example", "heavy.weighted.example", 5269, 10, 90)
	dnsServer.AddSRV("_xmpp-server._tcp.weighted.example", "light.weighted.example", 5269, 10, 10)
	dnsServer.AddSRV("_xmpp-server._tcp.weighted.example", "backup.weighted.example", 5269, 20, 100)
	r := newResolver(t, dnsServer.Addr())
	ctx := testContext(t)
	const draws = 1000
	heavyFirst := 0
	for range draws {
		got, err := r.LookupS2S(ctx, "weighted.example")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("got %d targets, want 3: %+v", len(got), got)
		}
		if got[2].Host != "backup.weighted.example" {
			t.Fatalf("the priority-20 target must come last: %+v", got)
		}
		if got[0].Host == "heavy.weighted.example" {
			heavyFirst++
		}
	}
	if share := float64(heavyFirst) / draws; share < 0.80 || share > 0.97 {
		t.Errorf("weight-90 target came first in %.1f%% of draws; want 80-97%%", share*100)
	}
	if q := dnsServer.Queries(); q != 2 {
		t.Errorf("server saw %d queries for %d lookups with TTL 300; want 2 (one per service)", q, draws)
	}
}

func TestOrderSRVWeights(t *testing.T) {
	tests := []struct {
		name       string
		weights    []uint16
		first      int // index of the record whose share of first places is checked
		minS, maxS float64
	}{
		{"90/10", []uint16{90, 10}, 0, 0.85, 0.95},
		{"10/90", []uint16{10, 90}, 1, 0.85, 0.95},
		{"weight 0 rarely first next to a heavy record", []uint16{0, 100}, 0, 0.0, 0.03},
		{"all weight 0 evenly", []uint16{0, 0}, 0, 0.45, 0.55},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var records []*dns.SRV
			for i, w := range tt.weights {
				records = append(records, &dns.SRV{Target: fmt.Sprintf("t%d.", i), Weight: w, Priority: 1})
			}
			r := newResolver(t, "127.0.0.1:53")
			const draws = 20000
			hits := 0
			for range draws {
				out := orderSRV(records, r.intN)
				if len(out) != len(records) {
					t.Fatalf("orderSRV lost records: %d of %d", len(out), len(records))
				}
				if out[0] == records[tt.first] {
					hits++
				}
			}
			if share := float64(hits) / draws; share < tt.minS || share > tt.maxS {
				t.Errorf("record %d first in %.3f of draws; want %.2f-%.2f", tt.first, share, tt.minS, tt.maxS)
			}
		})
	}
}

func TestLookupS2SFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *resolvetest.Server)
		want  string
	}{
		{
			name:  "SERVFAIL",
			setup: func(s *resolvetest.Server) { s.SetRcode("_xmpp-server._tcp.broken.example", dns.RcodeServerFailure) },
			want:  "SERVFAIL",
		},
		{
			name:  "REFUSED",
			setup: func(s *resolvetest.Server) { s.SetRcode("_xmpps-server._tcp.broken.example", dns.RcodeRefused) },
			want:  "REFUSED",
		},
	}
	dnsServer := startDNS(t)
	r := newResolver(t, dnsServer.Addr())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dnsServer.Clear()
			dnsServer.AddSRV("_xmpp-server._tcp.broken.example", "xmpp.broken.example", 5269, 0, 0)
			tt.setup(dnsServer)
			got, err := r.LookupS2S(testContext(t), "broken.example")
			if err == nil {
				t.Fatalf("LookupS2S = %+v; want an error", got)
			}
			if errors.Is(err, ErrNoService) {
				t.Errorf("a DNS failure must not read as ErrNoService: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "broken.example") {
				t.Errorf("error %q should name the domain and %s", err, tt.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	silent := silentServer(t)
	r, err := New(Config{Servers: []string{silent}, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := r.LookupS2S(testContext(t), "slow.example")
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("LookupS2S = %+v; want a timeout error", got)
	}
	if !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("error %q should say the server did not answer in time", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("lookup took %v with a 200ms timeout", elapsed)
	}
}

func TestContextCancelStopsLookup(t *testing.T) {
	silent := silentServer(t)
	r, err := New(Config{Servers: []string{silent}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err = r.LookupHost(ctx, "slow.example")
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("LookupHost error = %v; want one wrapping context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("cancelled lookup took %v", elapsed)
	}
}

func TestServersTriedInOrder(t *testing.T) {
	tests := []struct {
		name  string
		first func(t *testing.T) string
	}{
		{"first server never answers", silentServer},
		{"first server answers SERVFAIL", func(t *testing.T) string {
			s := startDNS(t)
			s.SetRcode("_xmpp-server._tcp.failover.example", dns.RcodeServerFailure)
			s.SetRcode("_xmpps-server._tcp.failover.example", dns.RcodeServerFailure)
			return s.Addr()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startDNS(t)
			good.AddSRV("_xmpp-server._tcp.failover.example", "xmpp.failover.example", 5269, 0, 0)
			r, err := New(Config{Servers: []string{tt.first(t), good.Addr()}, Timeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.LookupS2S(testContext(t), "failover.example")
			if err != nil {
				t.Fatal(err)
			}
			want := []Target{{"xmpp.failover.example", 5269, false, false}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v; want %+v", got, want)
			}
		})
	}
}

func TestCache(t *testing.T) {
	tests := []struct {
		name        string
		ttl         uint32
		addSRV      bool
		wantQueries int // for two identical lookups (each asks two SRV names)
	}{
		{"positive answer with TTL is cached", 60, true, 2},
		{"TTL 0 answer is not cached", 0, true, 4},
		{"negative answer cached for the SOA minimum", 60, false, 2},
		{"negative answer with SOA minimum 0 is not cached", 0, false, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dnsServer := startDNS(t)
			dnsServer.SetTTL(tt.ttl)
			if tt.addSRV {
				dnsServer.AddSRV("_xmpp-server._tcp.cached.example", "xmpp.cached.example", 5269, 0, 0)
			}
			r := newResolver(t, dnsServer.Addr())
			ctx := testContext(t)
			first, err := r.LookupS2S(ctx, "cached.example")
			if err != nil {
				t.Fatal(err)
			}
			// Differently spelt, same question.
			second, err := r.LookupS2S(ctx, "CACHED.example.")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(first, second) {
				t.Errorf("cached answer differs: %+v then %+v", first, second)
			}
			if got := dnsServer.Queries(); got != tt.wantQueries {
				t.Errorf("server saw %d queries; want %d", got, tt.wantQueries)
			}
		})
	}
}

func TestCacheExpires(t *testing.T) {
	dnsServer := startDNS(t)
	dnsServer.SetTTL(60)
	dnsServer.AddA("host.example", "192.0.2.7")
	r := newResolver(t, dnsServer.Addr())
	now := time.Now()
	r.cache.now = func() time.Time { return now }
	ctx := testContext(t)
	for range 2 {
		if _, err := r.LookupHost(ctx, "host.example"); err != nil {
			t.Fatal(err)
		}
	}
	if got := dnsServer.QueriesFor("host.example", dns.TypeA); got != 1 {
		t.Fatalf("A queries = %d before expiry; want 1", got)
	}
	now = now.Add(61 * time.Second)
	if _, err := r.LookupHost(ctx, "host.example"); err != nil {
		t.Fatal(err)
	}
	if got := dnsServer.QueriesFor("host.example", dns.TypeA); got != 2 {
		t.Errorf("A queries = %d after the TTL passed; want 2", got)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newAnswerCache(100)
	for i := range 1000 {
		c.put(cacheKey{name: fmt.Sprintf("n%d.", i), qtype: dns.TypeA}, answer{}, time.Minute)
		if n := c.len(); n > 100 {
			t.Fatalf("cache holds %d entries; bound is 100", n)
		}
	}
	if _, ok := c.get(cacheKey{name: "n999.", qtype: dns.TypeA}); !ok {
		t.Error("the entry just added is missing")
	}
}

func TestTCPFallbackOnTruncation(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(s *resolvetest.Server)
		targets int
	}{
		{"server forces TC", func(s *resolvetest.Server) {
			s.SetTruncateUDP(true)
			s.AddSRV("_xmpp-server._tcp.big.example", "xmpp.big.example", 5269, 0, 0)
		}, 1},
		{"answer larger than the UDP buffer", func(s *resolvetest.Server) {
			for i := range 80 {
				s.AddSRV("_xmpp-server._tcp.big.example",
					fmt.Sprintf("a-rather-long-target-name-number-%02d.xmpp-servers.big.example", i), 5269, uint16(i), 0)
			}
		}, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dnsServer := startDNS(t)
			tt.setup(dnsServer)
			r := newResolver(t, dnsServer.Addr())
			got, err := r.LookupS2S(testContext(t), "big.example")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.targets {
				t.Fatalf("got %d targets; want %d", len(got), tt.targets)
			}
			for i := 1; i < len(got); i++ { // priorities were 0..79 in name order
				if got[i-1].Host > got[i].Host {
					t.Fatalf("targets out of priority order at %d: %s > %s", i, got[i-1].Host, got[i].Host)
				}
			}
			// UDP then TCP for the big name.
			if q := dnsServer.QueriesFor("_xmpp-server._tcp.big.example", dns.TypeSRV); q != 2 {
				t.Errorf("server saw %d queries for the truncated name; want 2 (UDP, then TCP)", q)
			}
		})
	}
}

func TestLookupHost(t *testing.T) {
	tests := []struct {
		name    string
		host    string
		want    []string
		wantErr error
	}{
		{"A before AAAA", "dual.example", []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}, nil},
		{"IPv6 only", "v6.example", []string{"2001:db8::6"}, nil},
		{"mixed case", "DUAL.Example.", []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"}, nil},
		{"IPv4 literal", "203.0.113.9", []string{"203.0.113.9"}, nil},
		{"IPv6 literal in brackets", "[2001:db8::9]", []string{"2001:db8::9"}, nil},
		{"IDN", "bücher.example", []string{"192.0.2.44"}, nil},
		{"NXDOMAIN", "missing.example", nil, ErrNotFound},
		{"name without addresses", "srv-only.dual.example", nil, ErrNotFound}, // it holds an SRV record only
	}
	dnsServer := startDNS(t)
	dnsServer.AddA("dual.example", "2001:db8::1")
	dnsServer.AddA("dual.example", "192.0.2.1")
	dnsServer.AddA("dual.example", "192.0.2.2")
	dnsServer.AddAAAA("v6.example", "2001:db8::6")
	dnsServer.AddA("xn--bcher-kva.example", "192.0.2.44")
	dnsServer.AddSRV("srv-only.dual.example", "dual.example", 5269, 0, 0) // a host name: no underscore (HostnameProblem)
	r := newResolver(t, dnsServer.Addr())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.LookupHost(testContext(t), tt.host)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LookupHost(%q) = %v, %v; want %v", tt.host, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LookupHost(%q): %v", tt.host, err)
			}
			var want []netip.Addr
			for _, s := range tt.want {
				want = append(want, netip.MustParseAddr(s))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("LookupHost(%q) = %v; want %v", tt.host, got, want)
			}
		})
	}
}

func TestLookupHostFailureIsNotNotFound(t *testing.T) {
	dnsServer := startDNS(t)
	dnsServer.SetRcode("down.example", dns.RcodeServerFailure)
	r := newResolver(t, dnsServer.Addr())
	_, err := r.LookupHost(testContext(t), "down.example")
	if err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupHost error = %v; want a failure that is not ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("error %q should say SERVFAIL", err)
	}
}

func TestInvalidNames(t *testing.T) {
	dnsServer := startDNS(t) // must never be asked
	r := newResolver(t, dnsServer.Addr())
	tests := []string{"", ".", "bad..example", "xn--.example", "xn--zz-.example", "-a.example", "a b.example",
		"a/b.example", strings.Repeat("a", 64) + ".example", strings.Repeat("abcdefghi.", 26) + "example"}
	for _, name := range tests {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			if got, err := r.LookupS2S(testContext(t), name); err == nil {
				t.Errorf("LookupS2S(%q) = %+v; want an error", name, got)
			}
			if got, err := r.LookupHost(testContext(t), name); err == nil {
				t.Errorf("LookupHost(%q) = %+v; want an error", name, got)
			}
		})
	}
	if q := dnsServer.Queries(); q != 0 {
		t.Errorf("invalid names reached the DNS server (%d queries)", q)
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name    string
		servers []string
		want    []string
		wantErr bool
	}{
		{"IP and port", []string{"127.0.0.53:5300"}, []string{"127.0.0.53:5300"}, false},
		{"bare IP gets port 53", []string{"192.0.2.1"}, []string{"192.0.2.1:53"}, false},
		{"bare IPv6", []string{"::1"}, []string{"[::1]:53"}, false},
		{"bracketed IPv6 with port", []string{"[::1]:5353"}, []string{"[::1]:5353"}, false},
		{"hostname refused", []string{"dns.example:53"}, nil, true},
		{"port 0 refused", []string{"127.0.0.1:0"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(Config{Servers: tt.servers})
			if tt.wantErr {
				if err == nil {
					t.Fatalf("New(%v) succeeded; want an error", tt.servers)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.servers, tt.want) {
				t.Errorf("servers = %v; want %v", r.servers, tt.want)
			}
			if r.timeout != DefaultTimeout || r.cache.max != DefaultMaxCacheEntries {
				t.Errorf("defaults not applied: timeout %v, cache %d", r.timeout, r.cache.max)
			}
		})
	}
}

func TestNewFromResolvConf(t *testing.T) {
	if _, err := os.Stat(resolvConfPath); err != nil {
		t.Skipf("%s not readable here: %v", resolvConfPath, err)
	}
	r, err := New(Config{})
	if err != nil {
		t.Skipf("system resolver configuration unusable here: %v", err)
	}
	if len(r.servers) == 0 {
		t.Error("no servers taken from resolv.conf")
	}
}

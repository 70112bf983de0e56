package resolvetest

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestServerAnswers(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.AddSRV("_xmpp-server._tcp.example.org", "xmpp.example.org", 5269, 5, 10)
	s.AddA("xmpp.example.org", "192.0.2.1")
	s.AddA("xmpp.example.org", "2001:db8::1")
	s.AddA("gone.example.org", "192.0.2.9")
	s.Remove("gone.example.org")
	s.AddA("host.parent.example", "192.0.2.3")
	s.AddA("blocked.example", "192.0.2.4")
	s.AddA("child.blocked.example", "192.0.2.5")
	s.SetNXDomain("blocked.example")
	s.SetRcode("fail.example", dns.RcodeServerFailure)

	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		net        string
		wantRcode  int
		wantAnswer int
		wantExtra  int // records besides OPT
		wantSOA    bool
	}{
		{"SRV with target addresses in additional", "_xmpp-server._tcp.example.org.", dns.TypeSRV, "udp", dns.RcodeSuccess, 1, 2, false},
		{"SRV over TCP", "_xmpp-server._tcp.example.org.", dns.TypeSRV, "tcp", dns.RcodeSuccess, 1, 2, false},
		{"case of the question preserved", "_XMPP-server._TCP.Example.ORG.", dns.TypeSRV, "udp", dns.RcodeSuccess, 1, 2, false},
		{"A", "xmpp.example.org.", dns.TypeA, "udp", dns.RcodeSuccess, 1, 0, false},
		{"AAAA", "xmpp.example.org.", dns.TypeAAAA, "udp", dns.RcodeSuccess, 1, 0, false},
		{"NODATA for a type the name lacks", "xmpp.example.org.", dns.TypeMX, "udp", dns.RcodeSuccess, 0, 0, true},
		{"NODATA for an empty non-terminal", "_tcp.example.org.", dns.TypeSRV, "udp", dns.RcodeSuccess, 0, 0, true},
		{"NODATA for a parent of a record", "parent.example.", dns.TypeA, "udp", dns.RcodeSuccess, 0, 0, true},
		{"NXDOMAIN for an unknown name", "unknown.example.", dns.TypeA, "udp", dns.RcodeNameError, 0, 0, true},
		{"NXDOMAIN after Remove", "gone.example.org.", dns.TypeA, "udp", dns.RcodeNameError, 0, 0, true},
		{"NXDOMAIN forced", "blocked.example.", dns.TypeA, "udp", dns.RcodeNameError, 0, 0, true},
		{"forced rcode", "fail.example.", dns.TypeA, "udp", dns.RcodeServerFailure, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &dns.Client{Net: tt.net, Timeout: 2 * time.Second}
			req := new(dns.Msg)
			req.SetQuestion(tt.qname, tt.qtype)
			req.SetEdns0(1232, false)
			resp, _, err := c.Exchange(req, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tt.wantRcode {
				t.Errorf("rcode %s; want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.wantRcode])
			}
			if tt.wantRcode != dns.RcodeServerFailure && !resp.Authoritative {
				t.Error("AA bit not set")
			}
			if len(resp.Question) != 1 || resp.Question[0] != req.Question[0] {
				t.Errorf("question %v; want %v", resp.Question, req.Question)
			}
			if len(resp.Answer) != tt.wantAnswer {
				t.Errorf("%d answers; want %d: %v", len(resp.Answer), tt.wantAnswer, resp.Answer)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Name != tt.qname || rr.Header().Ttl != 0 {
					t.Errorf("answer %v: want owner %s and TTL 0", rr, tt.qname)
				}
			}
			extra := 0
			for _, rr := range resp.Extra {
				if rr.Header().Rrtype != dns.TypeOPT {
					extra++
				}
			}
			if extra != tt.wantExtra {
				t.Errorf("%d additional records; want %d: %v", extra, tt.wantExtra, resp.Extra)
			}
			if resp.IsEdns0() == nil {
				t.Error("EDNS0 query answered without OPT")
			}
			gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
			if gotSOA != tt.wantSOA {
				t.Errorf("authority %v; want SOA: %v", resp.Ns, tt.wantSOA)
			}
		})
	}
	if q := s.Queries(); q != len(tests) {
		t.Errorf("Queries() = %d; want %d", q, len(tests))
	}
	if q := s.QueriesFor("_xmpp-server._tcp.example.org", dns.TypeSRV); q != 3 {
		t.Errorf("QueriesFor(SRV) = %d; want 3", q)
	}
	s.Clear()
	if q := s.Queries(); q != 0 {
		t.Errorf("Queries() after Clear = %d", q)
	}
}

func TestServerFixedAddressAndTTL(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	s.Close()
	// The port just freed can be taken again explicitly.
	s, err = Start(addr)
	if err != nil {
		t.Skipf("port %s was taken again in between: %v", addr, err)
	}
	defer s.Close()
	if s.Addr() != addr {
		t.Errorf("Addr() = %s; want %s", s.Addr(), addr)
	}
	s.SetTTL(30)
	s.AddA("ttl.example", "192.0.2.1")
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, q := range []struct {
		name string
		want uint32
	}{{"ttl.example.", 30}, {"missing.example.", 30}} {
		req := new(dns.Msg)
		req.SetQuestion(q.name, dns.TypeA)
		resp, _, err := c.Exchange(req, addr)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Answer) == 1 {
			if resp.Answer[0].Header().Ttl != q.want {
				t.Errorf("%s: TTL %d; want %d", q.name, resp.Answer[0].Header().Ttl, q.want)
			}
		} else if soa, ok := resp.Ns[0].(*dns.SOA); !ok || soa.Minttl != q.want {
			t.Errorf("%s: authority %v; want SOA with minimum %d", q.name, resp.Ns, q.want)
		}
	}
}

func TestStartRejectsBadAddress(t *testing.T) {
	if s, err := Start("not an address"); err == nil {
		s.Close()
		t.Fatal("Start accepted a malformed address")
	}
}

package resolvetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/internal/dnslisten"
)

// Server is a running in-memory DNS server. Create it with Start and stop it
// with Close.
type Server struct {
	udp *dns.Server
	tcp *dns.Server

	addr string

	mu          sync.Mutex
	records     map[string][]dns.RR // lowercase FQDN -> records, TTL applied at answer time
	nxdomain    map[string]bool     // lowercase FQDN forced to NXDOMAIN
	rcodes      map[string]int      // lowercase FQDN -> forced response code
	ttl         uint32
	truncateUDP bool
	secure      map[string]bool // lowercase FQDN answered with the AD bit
	queries     int
	perName     map[string]int // "name/TYPE" -> count
}

// Start listens on addr over UDP and TCP (the same port for both) and serves
// until Close. addr is "IP:PORT"; port 0 picks a free port, which Addr then
// reports.
func Start(addr string) (*Server, error) {
	s := &Server{
		records:  make(map[string][]dns.RR),
		nxdomain: make(map[string]bool),
		rcodes:   make(map[string]int),
		perName:  make(map[string]int),
	}
	pc, ln, err := dnslisten.UDPAndTCP(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("resolvetest: %w", err)
	}
	s.addr = pc.LocalAddr().String()

	udpStarted := make(chan struct{})
	tcpStarted := make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP), NotifyStartedFunc: func() { close(udpStarted) }}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP), NotifyStartedFunc: func() { close(tcpStarted) }}
	udpDone := make(chan error, 1)
	tcpDone := make(chan error, 1)
	go func() { udpDone <- s.udp.ActivateAndServe() }()
	go func() { tcpDone <- s.tcp.ActivateAndServe() }()
	for _, w := range []struct {
		started chan struct{}
		done    chan error
	}{{udpStarted, udpDone}, {tcpStarted, tcpDone}} {
		select {
		case <-w.started:
		case err := <-w.done:
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("resolvetest: serving on %s failed: %w", s.addr, err)
		case <-time.After(5 * time.Second):
			pc.Close()
			ln.Close()
			return nil, fmt.Errorf("resolvetest: server on %s did not start within 5s", s.addr)
		}
	}
	return s, nil
}

// Addr is the "IP:PORT" the server answers on (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners.
func (s *Server) Close() error {
	return errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
}

// AddSRV adds an SRV record, e.g. AddSRV("_xmpp-server._tcp.example.org",
// "xmpp.example.org", 5269, 10, 50). A target of "." announces that the
// service is decidedly not available.
func (s *Server) AddSRV(name string, target string, port, prio, weight uint16) {
	rr := &dns.SRV{
		Hdr:      dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeSRV, Class: dns.ClassINET},
		Priority: prio,
		Weight:   weight,
		Port:     port,
		Target:   fqdn(target),
	}
	s.add(rr)
}

// AddA adds an address record for name: an A record for an IPv4 address, an
// AAAA record for an IPv6 one. It panics on a malformed address, as tests
// write them literally.
func (s *Server) AddA(name string, ip string) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		panic(fmt.Sprintf("resolvetest: AddA(%q, %q): %v", name, ip, err))
	}
	addr = addr.Unmap()
	if addr.Is4() {
		s.add(&dns.A{Hdr: dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IP(addr.AsSlice())})
		return
	}
	s.add(&dns.AAAA{Hdr: dns.RR_Header{Name: fqdn(name), Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, AAAA: net.IP(addr.AsSlice())})
}

// AddAAAA is AddA for an IPv6 address; it exists for readability.
func (s *Server) AddAAAA(name string, ip string) { s.AddA(name, ip) }

func (s *Server) add(rr dns.RR) {
	key := strings.ToLower(rr.Header().Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[key] = append(s.records[key], rr)
	delete(s.nxdomain, key)
}

// Remove drops every record of name (and any SetNXDomain or SetRcode on it).
// A name with no records left and no names below it gets NXDOMAIN.
func (s *Server) Remove(name string) {
	key := strings.ToLower(fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, key)
	delete(s.nxdomain, key)
	delete(s.rcodes, key)
}

// SetNXDomain drops every record of name and answers NXDOMAIN for it even if
// names below it exist.
func (s *Server) SetNXDomain(name string) {
	key := strings.ToLower(fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, key)
	s.nxdomain[key] = true
}

// SetRcode makes every query for name answered with rcode (e.g.
// dns.RcodeServerFailure, dns.RcodeRefused) and nothing else. Remove undoes it.
func (s *Server) SetRcode(name string, rcode int) {
	key := strings.ToLower(fqdn(name))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcodes[key] = rcode
}

// SetTTL sets the TTL (seconds) of every answer from now on, including the
// SOA minimum of negative answers. The default is 0: nothing may be cached.
func (s *Server) SetTTL(seconds uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = seconds
}

// SetSecure makes the answers for name carry the AD bit, as a validating
// resolver's do for DNSSEC-authenticated data.
func (s *Server) SetSecure(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secure == nil {
		s.secure = make(map[string]bool)
	}
	s.secure[dns.Fqdn(strings.ToLower(name))] = true
}

// SetTruncateUDP makes every UDP answer an empty response with the TC bit, so
// clients must retry over TCP. TCP answers are unaffected.
func (s *Server) SetTruncateUDP(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncateUDP = on
}

// Clear drops every record and every SetNXDomain/SetRcode, and resets the
// query counters. The TTL and truncation settings stay.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = make(map[string][]dns.RR)
	s.nxdomain = make(map[string]bool)
	s.rcodes = make(map[string]int)
	s.queries = 0
	s.perName = make(map[string]int)
}

// Queries is the number of queries received so far over UDP and TCP.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// QueriesFor is the number of queries received for name with type qtype
// (e.g. dns.TypeSRV).
func (s *Server) QueriesFor(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perName[countKey(fqdn(name), qtype)]
}

func countKey(name string, qtype uint16) string {
	return strings.ToLower(name) + "/" + dns.TypeToString[qtype]
}

func (s *Server) serveUDP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, true) }
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, false) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, overUDP bool) {
	resp := s.answer(req, overUDP)
	_ = w.WriteMsg(resp)
}

// answer builds the response to req.
func (s *Server) answer(req *dns.Msg, overUDP bool) *dns.Msg {
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeFormatError)
		if req.Opcode != dns.OpcodeQuery {
			resp.Rcode = dns.RcodeNotImplemented
		}
		return resp
	}
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	q := req.Question[0]
	qname := strings.ToLower(q.Name)

	s.mu.Lock()
	defer s.mu.Unlock()
	resp.AuthenticatedData = s.secure[qname]
	s.queries++
	s.perName[countKey(qname, q.Qtype)]++

	udpSize := 0
	if opt := req.IsEdns0(); opt != nil {
		udpSize = int(opt.UDPSize())
		resp.SetEdns0(1232, false)
	}
	if overUDP && s.truncateUDP {
		resp.Truncated = true
		return resp
	}
	if rcode, ok := s.rcodes[qname]; ok {
		resp.Rcode = rcode
		resp.Authoritative = false
		return resp
	}
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		resp.Rcode = dns.RcodeRefused
		resp.Authoritative = false
		return resp
	}
	if !s.exists(qname) {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{s.soa()}
		return resp
	}
	for _, rr := range s.records[qname] {
		if q.Qtype == dns.TypeANY || rr.Header().Rrtype == q.Qtype {
			resp.Answer = append(resp.Answer, s.withTTL(rr, q.Name))
		}
	}
	if len(resp.Answer) == 0 {
		resp.Ns = []dns.RR{s.soa()}
	}
	// Addresses of SRV targets we know go in the additional section.
	for _, rr := range resp.Answer {
		srv, ok := rr.(*dns.SRV)
		if !ok || srv.Target == "." {
			continue
		}
		for _, extra := range s.records[strings.ToLower(srv.Target)] {
			if t := extra.Header().Rrtype; t == dns.TypeA || t == dns.TypeAAAA {
				resp.Extra = append(resp.Extra, s.withTTL(extra, extra.Header().Name))
			}
		}
	}
	if overUDP {
		if udpSize < dns.MinMsgSize {
			udpSize = dns.MinMsgSize
		}
		resp.Truncate(udpSize)
	}
	return resp
}

// exists reports whether name has records or names below it (an empty
// non-terminal), and is not forced to NXDOMAIN. Called with s.mu held.
func (s *Server) exists(name string) bool {
	if s.nxdomain[name] {
		return false
	}
	if len(s.records[name]) > 0 {
		return true
	}
	if _, forced := s.rcodes[name]; forced {
		return true
	}
	suffix := "." + name
	if name == "." {
		suffix = "."
	}
	for owner, rrs := range s.records {
		if len(rrs) > 0 && strings.HasSuffix(owner, suffix) {
			return true
		}
	}
	return false
}

// withTTL copies rr with the server's TTL and the owner name spelled as asked
// (resolvers that randomise the case of names compare it).
func (s *Server) withTTL(rr dns.RR, owner string) dns.RR {
	c := dns.Copy(rr)
	c.Header().Ttl = s.ttl
	c.Header().Name = owner
	return c
}

// soa is the SOA record put in the authority section of negative answers: the
// root owns it so it is "in zone" for every name.
func (s *Server) soa() dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:      "ns.resolvetest.",
		Mbox:    "hostmaster.resolvetest.",
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.ttl,
	}
}

func fqdn(name string) string {
	if name == "" {
		return "."
	}
	return dns.Fqdn(name)
}

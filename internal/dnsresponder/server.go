package dnsresponder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/xmppedge/xmppedge/internal/dnslisten"
)

// Defaults for Config fields left zero.
const (
	DefaultTargetName     = "xmppedge-inside."
	DefaultTTL            = 60
	DefaultForwardTimeout = 2 * time.Second

	serviceStartTLS  = "_xmpp-server._tcp."
	serviceDirectTLS = "_xmpps-server._tcp."
	// ednsSize is the UDP payload size we advertise in answers (DNS flag
	// day 2020).
	ednsSize = 1232
)

// Config configures the responder.
type Config struct {
	// Listen is "IP:PORT" for both UDP and TCP; port 0 picks a free port
	// (see Server.Addr).
	Listen string
	// Local are the company's domains: queries about them are forwarded or
	// refused, never pointed at xmppedge.
	Local []string
	// InsideAddrs are the addresses of xmppedge's inside listener(s), all on
	// the same port.
	InsideAddrs []netip.AddrPort
	// TargetName is the SRV target announced for the inside listener;
	// default "xmppedge-inside.".
	TargetName string
	// Forward are upstream resolvers ("IP" or "IP:PORT") for every query
	// the responder does not answer itself; empty: those are refused.
	Forward []string
	// Allow are the source networks the responder answers (the internal
	// server's); every query from another source is answered REFUSED,
	// over UDP and TCP alike, and counted (Server.Refused). Required: the
	// responder is never an open resolver.
	Allow []netip.Prefix
	// ForwardTimeout bounds one query to one upstream; default 2s.
	ForwardTimeout time.Duration
	// TTL of the records answered, in seconds; default 60.
	TTL uint32
	// Logger receives one debug line per query and warnings for upstream
	// failures; nil discards.
	Logger *slog.Logger
}

// Server is a running responder. Create it with Start; stop it with Close
// or by cancelling the context given to Start.
type Server struct {
	target  string // lowercase FQDN
	port    uint16
	v4, v6  []netip.Addr
	local   map[string]bool // lowercase FQDN, A-labels
	forward []string
	allow   []netip.Prefix
	ttl     uint32
	log     *slog.Logger

	refused atomic.Uint64 // queries refused for their source

	udpClient, tcpClient *dns.Client

	udp, tcp *dns.Server
	addr     string

	ctx       context.Context // the server's lifetime; parent of forwarded queries
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	served    sync.WaitGroup
}

// Start validates cfg, binds UDP and TCP on cfg.Listen and serves until
// Close is called or ctx is cancelled.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dnsresponder: not started: %w", err)
	}
	pc, ln, err := listenBoth(ctx, cfg.Listen)
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	s.ctx, s.cancel = context.WithCancel(context.Background())

	udpStarted, tcpStarted := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serveUDP), NotifyStartedFunc: func() { close(udpStarted) }}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serveTCP), NotifyStartedFunc: func() { close(tcpStarted) },
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	udpDone, tcpDone := make(chan error, 1), make(chan error, 1)
	s.served.Add(2)
	go func() { defer s.served.Done(); udpDone <- s.udp.ActivateAndServe() }()
	go func() { defer s.served.Done(); tcpDone <- s.tcp.ActivateAndServe() }()
	for _, w := range []struct {
		started chan struct{}
		done    chan error
	}{{udpStarted, udpDone}, {tcpStarted, tcpDone}} {
		select {
		case <-w.started:
		case err := <-w.done:
			s.Close()
			return nil, fmt.Errorf("dnsresponder: serving on %s failed: %w", s.addr, err)
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("dnsresponder: not started: %w", ctx.Err())
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.ctx.Done():
		}
	}()
	s.log.Info("internal DNS responder listening", "addr", s.addr, "target", s.target, "port", s.port,
		"local", len(s.local), "forward", s.forward)
	return s, nil
}

func newServer(cfg Config) (*Server, error) {
	s := &Server{local: make(map[string]bool), ttl: cfg.TTL, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.ttl == 0 {
		s.ttl = DefaultTTL
	}
	if err := s.setTarget(cfg.TargetName); err != nil {
		return nil, err
	}
	if err := s.setInsideAddrs(cfg.InsideAddrs); err != nil {
		return nil, err
	}
	if err := s.setLocal(cfg.Local); err != nil {
		return nil, err
	}
	if err := s.setAllow(cfg.Allow); err != nil {
		return nil, err
	}
	if err := s.setForward(cfg.Forward, cfg.ForwardTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

// setTarget sets the SRV target name announced for local domains
// (DefaultTargetName when target is "").
func (s *Server) setTarget(target string) error {
	if target == "" {
		target = DefaultTargetName
	}
	t, err := canonicalName(target)
	if err == nil && t == "." {
		err = errors.New("it is the root")
	}
	if err == nil {
		err = hostNameProblem(t)
	}
	if err != nil {
		return fmt.Errorf("dnsresponder: target name %q is not a valid host name (like %s): %w", target, DefaultTargetName, err)
	}
	s.target = t
	return nil
}

// setInsideAddrs sets the port and the addresses announced for the
// target from the inside listeners' addresses, which must share a port.
func (s *Server) setInsideAddrs(addrs []netip.AddrPort) error {
	if len(addrs) == 0 {
		return errors.New("dnsresponder: no inside listener address to announce: set the inside listener's address (IP:PORT)")
	}
	for i, ap := range addrs {
		if !ap.IsValid() || ap.Port() == 0 {
			return fmt.Errorf("dnsresponder: inside listener address %q is not IP:PORT", ap)
		}
		a := ap.Addr().Unmap()
		if a.IsUnspecified() {
			return fmt.Errorf("dnsresponder: inside listener %s listens on all addresses; announce the address the internal server should connect to instead", ap)
		}
		if i == 0 {
			s.port = ap.Port()
		} else if ap.Port() != s.port {
			return fmt.Errorf("dnsresponder: inside listeners %s and %s are on different ports; one SRV target can announce one port: list only listeners on port %d", addrs[0], ap, s.port)
		}
		if a.Is4() {
			s.v4 = append(s.v4, a)
		} else {
			s.v6 = append(s.v6, a.WithZone(""))
		}
	}
	return nil
}

// setLocal sets the local domains, answered for the gateway.
func (s *Server) setLocal(domains []string) error {
	for _, d := range domains {
		n, err := canonicalName(d)
		if err == nil && n == "." {
			err = errors.New("it is empty")
		}
		if err == nil {
			err = hostNameProblem(n)
		}
		if err != nil {
			return fmt.Errorf("dnsresponder: local domain %q is not a valid domain name: %w", d, err)
		}
		s.local[n] = true
	}
	return nil
}

// setAllow sets the source networks that may query.
func (s *Server) setAllow(networks []netip.Prefix) error {
	if len(networks) == 0 {
		return errors.New("dnsresponder: no source network is allowed to query: list the internal server's networks in Allow (inside.dns_allow)")
	}
	for _, p := range networks {
		if !p.IsValid() {
			return fmt.Errorf("dnsresponder: allowed network %q is not a network in CIDR notation", p)
		}
		s.allow = append(s.allow, p.Masked())
	}
	return nil
}

// setForward sets the upstream resolvers that other names are forwarded
// to and the clients that ask them (DefaultForwardTimeout when timeout is
// not positive).
func (s *Server) setForward(upstreams []string, timeout time.Duration) error {
	for _, f := range upstreams {
		addr, err := parseUpstream(f)
		if err != nil {
			return err
		}
		s.forward = append(s.forward, addr)
	}
	if timeout <= 0 {
		timeout = DefaultForwardTimeout
	}
	s.udpClient = &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsSize}
	s.tcpClient = &dns.Client{Net: "tcp", Timeout: timeout}
	return nil
}

// canonicalName lowercases name, converts its labels to A-labels (IDNA; a
// service label like _xmpp-server is kept as it is) and makes it fully
// qualified. The root is ".".
func canonicalName(name string) (string, error) {
	n := strings.TrimSuffix(strings.TrimSpace(name), ".")
	if n == "" {
		return ".", nil
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if isASCII(l) {
			labels[i] = strings.ToLower(l)
			continue
		}
		a, err := idna.Lookup.ToASCII(l)
		if err != nil {
			return "", fmt.Errorf("label %q is not a valid internationalised label: %w", l, err)
		}
		labels[i] = strings.ToLower(a)
	}
	fq := dns.Fqdn(strings.Join(labels, "."))
	if _, ok := dns.IsDomainName(fq); !ok {
		return "", errors.New("not a domain name")
	}
	return fq, nil
}

// hostNameProblem checks a canonical FQDN against the host name syntax
// (letters, digits and hyphens; no hyphen at either end of a label).
func hostNameProblem(fq string) error {
	for l := range strings.SplitSeq(strings.TrimSuffix(fq, "."), ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q is empty, too long or starts or ends with a hyphen", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q holds %q: only letters, digits and hyphens are allowed", l, c)
			}
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func parseUpstream(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("dnsresponder: upstream resolver %q is not an IP address with an optional port (like 192.0.2.53:53)", s)
	}
	return ap.String(), nil
}

// listenBoth binds UDP and TCP to the same port; with port 0 it retries a
// few times until TCP can take the port UDP got.
func listenBoth(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	pc, ln, err := dnslisten.UDPAndTCP(ctx, addr)
	var le *dnslisten.Error
	if errors.As(err, &le) {
		switch le.Net {
		case "":
			return nil, nil, fmt.Errorf("dnsresponder: listen address %q is not IP:PORT: %w", addr, le.Err)
		case "udp":
			return nil, nil, fmt.Errorf("dnsresponder: cannot listen on udp %s (is another DNS server on it?): %w", addr, le.Err)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dnsresponder: %w", err)
	}
	return pc, ln, nil
}

// Addr is the "IP:PORT" the responder serves on (UDP and TCP).
func (s *Server) Addr() string { return s.addr }

// Refused is the number of queries refused so far because their source is
// outside Config.Allow.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// allowed reports whether a query from addr may be answered.
func (s *Server) allowed(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ip = ap.Addr()
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range s.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Close stops serving and waits for the listeners to stop. It is safe to
// call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range []*dns.Server{s.udp, s.tcp} {
			if err := srv.ShutdownContext(ctx); err != nil && !strings.Contains(err.Error(), "server not started") {
				errs = append(errs, err)
			}
		}
		// Closing the sockets also stops a server that was still starting.
		_ = s.udp.PacketConn.Close()
		_ = s.tcp.Listener.Close()
		s.served.Wait()
		s.closeErr = errors.Join(errs...)
		s.log.Info("internal DNS responder stopped", "addr", s.addr)
	})
	return s.closeErr
}

func (s *Server) serveUDP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, true) }
func (s *Server) serveTCP(w dns.ResponseWriter, req *dns.Msg) { s.serve(w, req, false) }

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg, overUDP bool) {
	var resp *dns.Msg
	var how string
	if s.allowed(w.RemoteAddr()) {
		resp, how = s.answer(req, overUDP)
	} else {
		// Not even parsed further: a source outside Allow learns nothing
		// and cannot use the responder to reach the upstreams.
		if s.refused.Add(1) == 1 {
			s.log.Warn("dns: refused a query from a source outside inside.dns_allow; further refusals are logged at debug level and counted",
				"client", w.RemoteAddr().String())
		}
		resp, how = refusal(req), "refused-source"
	}
	if resp == nil {
		return
	}
	if overUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = int(min(opt.UDPSize(), ednsSize))
		}
		resp.Truncate(size)
	}
	if len(req.Question) == 1 {
		q := req.Question[0]
		s.log.Debug("dns query", "name", q.Name, "type", dns.TypeToString[q.Qtype], "answer", how,
			"rcode", dns.RcodeToString[resp.Rcode], "client", w.RemoteAddr().String())
	}
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns answer not sent", "client", w.RemoteAddr().String(), "err", err)
	}
}

// answer builds the response to req and says how it was made (for the
// log): "inside", "nodata", "forwarded", "refused", ...
func (s *Server) answer(req *dns.Msg, overUDP bool) (*dns.Msg, string) {
	resp := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		return resp.SetRcode(req, dns.RcodeNotImplemented), "notimp"
	}
	if len(req.Question) != 1 {
		return resp.SetRcode(req, dns.RcodeFormatError), "formerr"
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return s.refuseOrForward(req, overUDP)
	}
	name, err := canonicalName(q.Name)
	if err != nil {
		return s.refuseOrForward(req, overUDP)
	}

	switch {
	case name == s.target:
		return s.authoritative(req, s.targetRecords(q), s.target), "target"
	case strings.HasPrefix(name, serviceStartTLS):
		domain := strings.TrimPrefix(name, serviceStartTLS)
		if !s.remote(domain) {
			return s.refuseOrForward(req, overUDP)
		}
		var rrs, extra []dns.RR
		if q.Qtype == dns.TypeSRV || q.Qtype == dns.TypeANY {
			rrs = []dns.RR{&dns.SRV{
				Hdr:      dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: s.ttl},
				Priority: 0, Weight: 0, Port: s.port, Target: s.target,
			}}
			extra = s.addressRecords(true, true)
		}
		resp := s.authoritative(req, rrs, domain)
		resp.Extra = append(resp.Extra, extra...)
		return resp, "inside"
	case strings.HasPrefix(name, serviceDirectTLS):
		domain := strings.TrimPrefix(name, serviceDirectTLS)
		if !s.remote(domain) {
			return s.refuseOrForward(req, overUDP)
		}
		return s.authoritative(req, nil, domain), "no-direct-tls"
	}
	return s.refuseOrForward(req, overUDP)
}

// remote reports whether domain (canonical) is a remote domain the
// responder answers for: not local, and a real domain name.
func (s *Server) remote(domain string) bool {
	return domain != "." && domain != "" && !s.local[domain] && !strings.HasPrefix(domain, "_")
}

// authoritative makes an AA answer with rrs; with no rrs it is NODATA with
// an SOA of zone for negative caching.
func (s *Server) authoritative(req *dns.Msg, rrs []dns.RR, zone string) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	resp.RecursionAvailable = len(s.forward) > 0
	resp.Answer = rrs
	if len(rrs) == 0 {
		resp.Ns = []dns.RR{&dns.SOA{
			Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
			Ns:      s.target,
			Mbox:    "hostmaster." + s.target,
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  s.ttl,
		}}
	}
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(ednsSize, opt.Do())
	}
	return resp
}

// targetRecords answers a query about the target name itself, with the
// owner name as asked.
func (s *Server) targetRecords(q dns.Question) []dns.RR {
	var rrs []dns.RR
	switch q.Qtype {
	case dns.TypeA:
		rrs = s.addressRecords(true, false)
	case dns.TypeAAAA:
		rrs = s.addressRecords(false, true)
	case dns.TypeANY:
		rrs = s.addressRecords(true, true)
	}
	for _, rr := range rrs {
		rr.Header().Name = q.Name
	}
	return rrs
}

func (s *Server) addressRecords(v4, v6 bool) []dns.RR {
	var rrs []dns.RR
	if v4 {
		for _, a := range s.v4 {
			rrs = append(rrs, &dns.A{Hdr: dns.RR_Header{Name: s.target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.ttl}, A: a.AsSlice()})
		}
	}
	if v6 {
		for _, a := range s.v6 {
			rrs = append(rrs, &dns.AAAA{Hdr: dns.RR_Header{Name: s.target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: s.ttl}, AAAA: a.AsSlice()})
		}
	}
	return rrs
}

func (s *Server) refuseOrForward(req *dns.Msg, overUDP bool) (*dns.Msg, string) {
	if len(s.forward) == 0 {
		return refusal(req), "refused"
	}
	return s.forwardQuery(req, overUDP), "forwarded"
}

// refusal is a REFUSED answer to req.
func refusal(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg).SetRcode(req, dns.RcodeRefused)
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(ednsSize, opt.Do())
	}
	return resp
}

// forwardQuery asks the upstreams in order, over the client's transport,
// and relays the first answer (keeping its TC bit, so a UDP client retries
// over TCP). SERVFAIL when none answers.
func (s *Server) forwardQuery(req *dns.Msg, overUDP bool) *dns.Msg {
	client := s.tcpClient
	if overUDP {
		client = s.udpClient
	}
	up := req.Copy()
	up.Id = dns.Id()
	var errs []error
	for _, server := range s.forward {
		ctx, cancel := context.WithTimeout(s.ctx, client.Timeout)
		resp, _, err := client.ExchangeContext(ctx, up, server)
		cancel()
		if err == nil && resp.Id != up.Id {
			err = errors.New("answer id does not match the query")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", server, err))
			continue
		}
		resp.Id = req.Id
		return resp
	}
	s.log.Warn("dns: no upstream resolver answered; answering SERVFAIL", "name", req.Question[0].Name,
		"type", dns.TypeToString[req.Question[0].Qtype], "err", errors.Join(errs...))
	resp := new(dns.Msg).SetRcode(req, dns.RcodeServerFailure)
	resp.RecursionAvailable = true
	return resp
}

package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
)

// ErrNoService is returned (wrapped) by LookupS2S when the domain announces
// with an SRV target of "." that it offers no XMPP server-to-server service.
var ErrNoService = errors.New("resolve: domain offers no XMPP s2s service")

// ErrNotFound is returned (wrapped) by LookupHost when the name does not
// exist or has no address.
var ErrNotFound = errors.New("resolve: name not found")

// Defaults for Config fields left zero.
const (
	DefaultTimeout         = 2 * time.Second
	DefaultMaxCacheEntries = 10000
	// DefaultS2SPort is the port of the fallback target when a domain has no
	// SRV records (RFC 6120 §3.2.2).
	DefaultS2SPort = 5269
	// resolvConfPath is read when Config.Servers is empty.
	resolvConfPath = "/etc/resolv.conf"
	// ednsBufferSize is the UDP payload size we advertise (the DNS flag day
	// 2020 recommendation).
	ednsBufferSize = 1232
)

// SRV service names (RFC 6120 §3.2.1, XEP-0368).
const (
	serviceDirectTLS = "_xmpps-server._tcp."
	serviceStartTLS  = "_xmpp-server._tcp."
)

// Config configures a Resolver.
type Config struct {
	// Servers are the DNS servers to ask, "IP:PORT" ("IP" alone means port
	// 53), tried in order. Empty means the nameservers of /etc/resolv.conf.
	Servers []string
	// Timeout bounds each query to one server; default 2s.
	Timeout time.Duration
	// MaxCacheEntries bounds the answer cache; default 10000. A negative
	// value disables the cache.
	MaxCacheEntries int
}

// Target is one place to connect to for s2s.
type Target struct {
	Host      string // SRV target (lowercase, no trailing dot), or the domain itself for the fallback
	Port      uint16
	DirectTLS bool // from _xmpps-server._tcp (XEP-0368): TLS from the first byte, ALPN xmpp-server
	// Secure: the SRV answer that names the target was DNSSEC-authenticated
	// (the resolver set the AD bit). False for the fallback target.
	Secure bool
}

// Resolver looks up s2s targets and host addresses. Create it with New; it is
// safe for concurrent use.
type Resolver struct {
	servers []string
	timeout time.Duration
	cache   *answerCache
	udp     *dns.Client
	tcp     *dns.Client
	// intN returns a uniform random int in [0, n); it orders SRV records of
	// equal priority by weight.
	intN func(n int) int
}

// New creates a Resolver. It fails when a server address is malformed or,
// with no servers configured, when /etc/resolv.conf cannot be read.
func New(cfg Config) (*Resolver, error) {
	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile(resolvConfPath)
		if err != nil {
			return nil, fmt.Errorf("resolve: no DNS servers configured and %s cannot be read: %w", resolvConfPath, err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, fmt.Errorf("resolve: no DNS servers configured and %s lists no nameserver", resolvConfPath)
		}
	}
	normalized := make([]string, 0, len(servers))
	for _, s := range servers {
		addr, err := parseServer(s)
		if err != nil {
			return nil, err
		}
		normalized = append(normalized, addr)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxEntries := cfg.MaxCacheEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxCacheEntries
	}
	return &Resolver{
		servers: normalized,
		timeout: timeout,
		cache:   newAnswerCache(maxEntries),
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsBufferSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
		intN:    rand.IntN,
	}, nil
}

// parseServer turns "IP:PORT", "[IPv6]:PORT" or a bare IP into "IP:PORT".
func parseServer(s string) (string, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("resolve: DNS server %q is not an IP address with an optional port (like 192.0.2.1:53): %w", s, err)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("resolve: DNS server %q has port 0", s)
	}
	return ap.String(), nil
}

// LookupS2S returns the connection targets for a remote domain in the order to
// try: _xmpps-server._tcp.DOMAIN targets (DirectTLS) first, then
// _xmpp-server._tcp.DOMAIN targets, each group in RFC 2782 order. With no SRV
// record for either service it returns Target{Host: domain, Port: 5269}. When
// the domain announces "." for the services it has, the error wraps
// ErrNoService. DNS failures are errors, never a reason to fall back.
func (r *Resolver) LookupS2S(ctx context.Context, domain string) ([]Target, error) {
	name, err := normalizeName(domain)
	if err != nil {
		return nil, err
	}
	type result struct {
		srv srvResult
		err error
	}
	var directTLS, startTLS result
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		directTLS.srv, directTLS.err = r.lookupSRV(ctx, serviceDirectTLS+name)
	}()
	go func() {
		defer wg.Done()
		startTLS.srv, startTLS.err = r.lookupSRV(ctx, serviceStartTLS+name)
	}()
	wg.Wait()
	if err := errors.Join(directTLS.err, startTLS.err); err != nil {
		return nil, fmt.Errorf("resolve: cannot find the XMPP servers of %s: %w", name, err)
	}

	switch {
	case directTLS.srv.absent && startTLS.srv.absent:
		return []Target{{Host: name, Port: DefaultS2SPort}}, nil
	case len(directTLS.srv.records) == 0 && len(startTLS.srv.records) == 0:
		return nil, fmt.Errorf("%w: %s publishes the SRV target \".\" (service decidedly not available)", ErrNoService, name)
	}
	targets := make([]Target, 0, len(directTLS.srv.records)+len(startTLS.srv.records))
	for _, rr := range orderSRV(directTLS.srv.records, r.intN) {
		targets = append(targets, Target{Host: hostOf(rr.Target), Port: rr.Port, DirectTLS: true, Secure: directTLS.srv.secure})
	}
	for _, rr := range orderSRV(startTLS.srv.records, r.intN) {
		targets = append(targets, Target{Host: hostOf(rr.Target), Port: rr.Port, Secure: startTLS.srv.secure})
	}
	return targets, nil
}

// srvResult is what one SRV name says: nothing (absent), "." (no records,
// not absent), or usable records.
type srvResult struct {
	absent  bool
	records []*dns.SRV
	secure  bool // DNSSEC-authenticated (AD)
}

func (r *Resolver) lookupSRV(ctx context.Context, name string) (srvResult, error) {
	ans, err := r.query(ctx, name, dns.TypeSRV)
	if err != nil {
		return srvResult{}, err
	}
	res := srvResult{secure: ans.secure}
	sawDot := false
	for _, rr := range ans.records {
		srv, ok := rr.(*dns.SRV)
		if !ok {
			continue
		}
		if srv.Target == "." {
			sawDot = true
			continue
		}
		res.records = append(res.records, srv)
	}
	res.absent = len(res.records) == 0 && !sawDot
	return res, nil
}

// LookupHost returns the IPv4 (A) then IPv6 (AAAA) addresses of host. An IP
// literal returns itself. A name that does not exist or has no address gives
// an error wrapping ErrNotFound. If one of the two queries fails but the other
// yields addresses, those addresses are returned.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	literal := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip, err := netip.ParseAddr(literal); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	name, err := normalizeName(host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	var err4, err6 error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); v4, err4 = r.lookupAddrs(ctx, name, dns.TypeA) }()
	go func() { defer wg.Done(); v6, err6 = r.lookupAddrs(ctx, name, dns.TypeAAAA) }()
	wg.Wait()
	addrs := append(v4, v6...)
	if len(addrs) > 0 {
		return addrs, nil
	}
	if err := errors.Join(err4, err6); err != nil {
		return nil, fmt.Errorf("resolve: cannot find the addresses of %s: %w", name, err)
	}
	return nil, fmt.Errorf("%w: %s has no A or AAAA record", ErrNotFound, name)
}

func (r *Resolver) lookupAddrs(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	ans, err := r.query(ctx, name, qtype)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	for _, rr := range ans.records {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			if qtype == dns.TypeA {
				ip = rr.A
			}
		case *dns.AAAA:
			if qtype == dns.TypeAAAA {
				ip = rr.AAAA
			}
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			addrs = append(addrs, a.Unmap())
		}
	}
	return addrs, nil
}

// normalizeName returns name as a lowercase A-label FQDN without the trailing
// dot, or an error saying why it cannot be looked up.
func normalizeName(name string) (string, error) {
	n := strings.TrimSuffix(strings.TrimSpace(name), ".")
	if n == "" {
		return "", fmt.Errorf("resolve: empty domain name")
	}
	ascii := true
	for i := 0; i < len(n); i++ {
		if n[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(n)
		if err != nil {
			return "", fmt.Errorf("resolve: %q is not a valid internationalized domain name: %w", name, err)
		}
		n = a
	}
	n = strings.ToLower(n)
	if problem := HostnameProblem(n); problem != "" {
		return "", fmt.Errorf("resolve: %q is not a valid domain name: %s", name, problem)
	}
	return n, nil
}

// HostnameProblem says what is wrong with a lowercase ASCII name without
// the trailing dot, or "" when it is a valid DNS host name (RFC 1123 §2.1,
// RFC 5890 §2.3.1): at most 253 characters, labels of 1-63 letters, digits
// and hyphens (not first or last), and "xn--" labels that are valid
// A-labels. An underscore is not allowed: host names, and so XMPP domains
// and SRV targets, have none (it only appears in service owner names such
// as _xmpp-server._tcp, which are never checked here). The problem is a
// phrase for the caller to put after the name or the field it names.
func HostnameProblem(n string) string {
	if len(n) > 253 {
		return "longer than 253 characters"
	}
	for _, label := range strings.Split(n, ".") {
		switch {
		case label == "":
			return "it has an empty label (two dots in a row?)"
		case len(label) > 63:
			return fmt.Sprintf("label %q is longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Sprintf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return fmt.Sprintf("label %q contains %q (only letters, digits and hyphens)", label, c)
			}
		}
		if strings.HasPrefix(label, "xn--") {
			if _, err := idna.Lookup.ToUnicode(label); err != nil {
				return fmt.Sprintf("label %q is an invalid A-label (xn--): %v", label, err)
			}
		}
	}
	return ""
}

func hostOf(target string) string {
	return strings.ToLower(strings.TrimSuffix(target, "."))
}

// orderSRV sorts records as RFC 2782 asks: ascending priority; inside one
// priority, repeatedly pick a record at random with probability proportional
// to its weight (weight-0 records placed first in the candidate list, so they
// have a small chance when heavier ones exist and an even one among
// themselves).
func orderSRV(records []*dns.SRV, intN func(n int) int) []*dns.SRV {
	byPriority := make(map[uint16][]*dns.SRV)
	var priorities []uint16
	for _, rr := range records {
		if _, seen := byPriority[rr.Priority]; !seen {
			priorities = append(priorities, rr.Priority)
		}
		byPriority[rr.Priority] = append(byPriority[rr.Priority], rr)
	}
	slices.Sort(priorities)
	out := make([]*dns.SRV, 0, len(records))
	for _, p := range priorities {
		group := byPriority[p]
		// Weight-0 entries first, others after, each in the order received.
		candidates := make([]*dns.SRV, 0, len(group))
		for _, rr := range group {
			if rr.Weight == 0 {
				candidates = append(candidates, rr)
			}
		}
		for _, rr := range group {
			if rr.Weight != 0 {
				candidates = append(candidates, rr)
			}
		}
		for len(candidates) > 0 {
			total := 0
			for _, rr := range candidates {
				total += int(rr.Weight)
			}
			pick := 0
			if total == 0 {
				pick = intN(len(candidates))
			} else {
				// RFC 2782: a uniform number in [0, total]; the first record
				// whose running sum is >= it is chosen.
				n := intN(total + 1)
				sum := 0
				for i, rr := range candidates {
					sum += int(rr.Weight)
					if sum >= n {
						pick = i
						break
					}
				}
			}
			out = append(out, candidates[pick])
			candidates = append(candidates[:pick], candidates[pick+1:]...)
		}
	}
	return out
}

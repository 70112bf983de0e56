package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// query answers (name, qtype) from the cache or from the servers. A
// successful answer has rcode NOERROR or NXDOMAIN; anything else is an error.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (answer, error) {
	fqdn := dns.Fqdn(strings.ToLower(name))
	key := cacheKey{name: fqdn, qtype: qtype}
	if a, ok := r.cache.get(key); ok {
		return a, nil
	}
	req := new(dns.Msg)
	req.SetQuestion(fqdn, qtype)
	req.RecursionDesired = true
	// DO: ask a validating resolver to say (AD) whether the answer is
	// DNSSEC-authenticated.
	req.SetEdns0(ednsBufferSize, true)

	var failures []error
	for _, server := range r.servers {
		if err := ctx.Err(); err != nil {
			failures = append(failures, err)
			break
		}
		resp, err := r.exchange(ctx, req, server)
		if err != nil {
			failures = append(failures, fmt.Errorf("server %s: %w", server, err))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
		default:
			failures = append(failures, fmt.Errorf("server %s answered %s", server, rcodeName(resp.Rcode)))
			continue
		}
		a := answer{rcode: resp.Rcode, records: resp.Answer, secure: resp.AuthenticatedData}
		r.cache.put(key, a, cacheTTL(resp))
		return a, nil
	}
	return answer{}, fmt.Errorf("%s %s: %w", dns.TypeToString[qtype], strings.TrimSuffix(fqdn, "."), errors.Join(failures...))
}

// exchange sends req to one server over UDP, and again over TCP when the UDP
// answer is truncated. Each attempt is bounded by the resolver's timeout and
// ends early when ctx is done.
func (r *Resolver) exchange(ctx context.Context, req *dns.Msg, server string) (*dns.Msg, error) {
	resp, err := r.exchangeOnce(ctx, r.udp, req, server)
	if err != nil {
		return nil, err
	}
	if resp.Truncated {
		resp, err = r.exchangeOnce(ctx, r.tcp, req, server)
		if err != nil {
			return nil, fmt.Errorf("answer truncated over UDP, and over TCP: %w", err)
		}
	}
	return resp, nil
}

func (r *Resolver) exchangeOnce(ctx context.Context, client *dns.Client, req *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	conn, err := client.DialContext(ctx, server)
	if err != nil {
		return nil, describeNetError(ctx, err, r.timeout)
	}
	defer conn.Close()
	// Cancellation (not only the deadline) interrupts the read.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	resp, _, err := client.ExchangeWithConnContext(ctx, req, conn)
	if err != nil {
		return nil, describeNetError(ctx, err, r.timeout)
	}
	if len(resp.Question) != 1 || resp.Question[0].Qtype != req.Question[0].Qtype ||
		!strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) {
		return nil, fmt.Errorf("the answer is for another question")
	}
	return resp, nil
}

// describeNetError says "timed out after 2s" or "cancelled" instead of an
// i/o timeout on some socket, keeping the cause for errors.Is.
func describeNetError(ctx context.Context, err error, timeout time.Duration) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		if cerr := context.Cause(ctx); errors.Is(cerr, context.DeadlineExceeded) || cerr == nil {
			return fmt.Errorf("no answer within %s: %w", timeout, err)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("lookup cancelled: %w", context.Cause(ctx))
	}
	return err
}

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("rcode %d", rcode)
}

// cacheTTL is how long an answer may be cached: the smallest TTL of its
// answer records; for a negative answer (NXDOMAIN or no records) the SOA
// minimum capped by the SOA's own TTL (RFC 2308 §5), or 0 without an SOA.
func cacheTTL(resp *dns.Msg) time.Duration {
	if resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0 {
		ttl := resp.Answer[0].Header().Ttl
		for _, rr := range resp.Answer[1:] {
			ttl = min(ttl, rr.Header().Ttl)
		}
		return time.Duration(ttl) * time.Second
	}
	for _, rr := range resp.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return 0
}

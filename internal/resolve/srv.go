package resolve

import (
	"context"

	"github.com/miekg/dns"
)

// SRVAnswer is what one SRV name says, as published.
type SRVAnswer struct {
	Records  []*dns.SRV // in the order received, "." targets included
	NXDomain bool       // the name does not exist
	Secure   bool       // DNSSEC-authenticated (the resolver set the AD bit)
}

// LookupSRV asks for the SRV records of _xmpps-server._tcp.DOMAIN
// (directTLS) or _xmpp-server._tcp.DOMAIN as they are published, for
// diagnosis; LookupS2S is what connecting uses.
func (r *Resolver) LookupSRV(ctx context.Context, domain string, directTLS bool) (SRVAnswer, error) {
	n, err := normalizeName(domain)
	if err != nil {
		return SRVAnswer{}, err
	}
	service := serviceStartTLS
	if directTLS {
		service = serviceDirectTLS
	}
	ans, err := r.query(ctx, service+n, dns.TypeSRV)
	if err != nil {
		return SRVAnswer{}, err
	}
	a := SRVAnswer{NXDomain: ans.rcode == dns.RcodeNameError, Secure: ans.secure}
	for _, rr := range ans.records {
		if srv, ok := rr.(*dns.SRV); ok {
			a.Records = append(a.Records, srv)
		}
	}
	return a, nil
}

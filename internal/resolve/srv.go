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

// LookupSRV asks for the SRV records of name (e.g.
// "_xmpp-server._tcp.example.com") as they are published, for diagnosis;
// LookupS2S is what connecting uses.
func (r *Resolver) LookupSRV(ctx context.Context, name string) (SRVAnswer, error) {
	n, err := normalizeName(name)
	if err != nil {
		return SRVAnswer{}, err
	}
	ans, err := r.query(ctx, n, dns.TypeSRV)
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

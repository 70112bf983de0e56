package resolve

import "testing"

// The SRV answer's AD bit reaches the targets it names (Target.Secure) and
// LookupSRV, so that DANE needs no DNS client of its own.
func TestSRVSecure(t *testing.T) {
	dns := startDNS(t)
	dns.AddSRV("_xmpp-server._tcp.secure.test", "xmpp.secure.test", 5269, 0, 0)
	dns.SetSecure("_xmpp-server._tcp.secure.test")
	dns.AddSRV("_xmpp-server._tcp.plain.test", "xmpp.plain.test", 5269, 0, 0)
	r := newResolver(t, dns.Addr())
	ctx := testContext(t)
	for domain, want := range map[string]bool{"secure.test": true, "plain.test": false} {
		targets, err := r.LookupS2S(ctx, domain)
		if err != nil || len(targets) != 1 {
			t.Fatalf("%s: %v %v", domain, targets, err)
		}
		if targets[0].Secure != want {
			t.Errorf("%s: Secure = %v, want %v", domain, targets[0].Secure, want)
		}
		a, err := r.LookupSRV(ctx, domain, false)
		if err != nil || len(a.Records) != 1 || a.Secure != want || a.NXDomain {
			t.Errorf("LookupSRV %s = %+v, %v", domain, a, err)
		}
	}
	dns.SetNXDomain("_xmpps-server._tcp.none.test")
	if a, err := r.LookupSRV(ctx, "none.test", true); err != nil || !a.NXDomain || len(a.Records) != 0 {
		t.Errorf("NXDOMAIN: %+v, %v", a, err)
	}
}

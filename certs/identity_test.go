package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

func TestMatchIdentity(t *testing.T) {
	ca := newTestCA(t, "Identity Test CA")
	tests := []struct {
		name   string
		opts   certstest.LeafOptions
		domain string
		want   bool
	}{
		{"exact DNS-ID", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "example.org", true},
		{"DNS-ID other domain", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "example.com", false},
		{"DNS-ID is not a suffix match", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "chat.example.org", false},
		{"second DNS-ID", certstest.LeafOptions{DNSNames: []string{"a.test", "b.test"}}, "b.test", true},
		{"case of the domain", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "EXAMPLE.Org", true},
		{"case of the DNS-ID", certstest.LeafOptions{DNSNames: []string{"Example.ORG"}}, "example.org", true},
		{"trailing dot in the domain", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "example.org.", true},
		{"trailing dot in the DNS-ID", certstest.LeafOptions{DNSNames: []string{"example.org."}}, "example.org", true},
		{"wildcard matches one label", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "chat.example.org", true},
		{"wildcard matches one label, any case", certstest.LeafOptions{DNSNames: []string{"*.Example.org"}}, "CHAT.example.org", true},
		{"wildcard does not match the parent", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "example.org", false},
		{"wildcard does not match two labels", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "a.b.example.org", false},
		{"wildcard is not a suffix", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "badexample.org", false},
		{"wildcard does not match empty label", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, ".example.org", false},
		{"wildcard domain is not a name", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "*.example.org", false},
		{"wildcard matches an A-label as a whole", certstest.LeafOptions{DNSNames: []string{"*.example.org"}}, "xn--bcher-kva.example.org", true},
		{"partial wildcard f*", certstest.LeafOptions{DNSNames: []string{"f*.example.org"}}, "foo.example.org", false},
		{"partial wildcard *o", certstest.LeafOptions{DNSNames: []string{"*o.example.org"}}, "foo.example.org", false},
		{"partial wildcard in an A-label", certstest.LeafOptions{DNSNames: []string{"xn--*.example.org"}}, "xn--bcher-kva.example.org", false},
		{"wildcard not left-most", certstest.LeafOptions{DNSNames: []string{"chat.*.org"}}, "chat.example.org", false},
		{"double wildcard", certstest.LeafOptions{DNSNames: []string{"*.*.example.org"}}, "a.b.example.org", false},
		{"bare wildcard", certstest.LeafOptions{DNSNames: []string{"*"}}, "example", false},
		{"SRV-ID _xmpp-server", certstest.LeafOptions{SRVNames: []string{"partner.test"}}, "partner.test", true},
		{"SRV-ID _xmpp-server, case", certstest.LeafOptions{RawSRVNames: []string{"_XMPP-Server.Partner.test"}}, "partner.TEST", true},
		{"SRV-ID other domain", certstest.LeafOptions{SRVNames: []string{"partner.test"}}, "other.test", false},
		{"SRV-ID _xmpp-client does not identify a server", certstest.LeafOptions{RawSRVNames: []string{"_xmpp-client.partner.test"}}, "partner.test", false},
		{"SRV-ID without service", certstest.LeafOptions{RawSRVNames: []string{"partner.test"}}, "partner.test", false},
		{"SRV-ID is not a wildcard", certstest.LeafOptions{RawSRVNames: []string{"_xmpp-server.*.test"}}, "partner.test", false},
		{"XmppAddr domain", certstest.LeafOptions{XmppAddrs: []string{"partner.test"}}, "partner.test", true},
		{"XmppAddr other domain", certstest.LeafOptions{XmppAddrs: []string{"partner.test"}}, "other.test", false},
		{"XmppAddr with node is not a server", certstest.LeafOptions{XmppAddrs: []string{"user@partner.test"}}, "partner.test", false},
		{"XmppAddr with resource is not a server", certstest.LeafOptions{XmppAddrs: []string{"partner.test/res"}}, "partner.test", false},
		{"XmppAddr U-label vs A-label domain", certstest.LeafOptions{XmppAddrs: []string{"bücher.example"}}, "xn--bcher-kva.example", true},
		{"IDN: A-label DNS-ID, U-label domain", certstest.LeafOptions{DNSNames: []string{"xn--bcher-kva.example"}}, "bücher.example", true},
		{"IDN: A-label DNS-ID, A-label domain", certstest.LeafOptions{DNSNames: []string{"xn--bcher-kva.example"}}, "XN--BCHER-KVA.example", true},
		{"IDN: U-label upper case", certstest.LeafOptions{DNSNames: []string{"xn--bcher-kva.example"}}, "BÜCHER.example", true},
		{"IDN: different name", certstest.LeafOptions{DNSNames: []string{"xn--bcher-kva.example"}}, "bucher.example", false},
		{"all three kinds together", certstest.LeafOptions{DNSNames: []string{"a.test"}, SRVNames: []string{"b.test"}, XmppAddrs: []string{"c.test"}}, "c.test", true},
		{"no SAN, matching CN", certstest.LeafOptions{CommonName: "example.org"}, "example.org", false},
		{"SAN without the domain, matching CN", certstest.LeafOptions{CommonName: "example.org", DNSNames: []string{"other.org"}}, "example.org", false},
		{"empty domain", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "", false},
		{"domain of dots", certstest.LeafOptions{DNSNames: []string{"example.org"}}, "..", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, _, _ := issueLeaf(t, ca, tt.opts)
			if got := MatchIdentity(cert, tt.domain); got != tt.want {
				t.Fatalf("MatchIdentity(%v, %q) = %v, want %v", tt.opts, tt.domain, got, tt.want)
			}
		})
	}
}

func TestMatchIdentityWithoutExtensions(t *testing.T) {
	tests := []struct {
		name   string
		cert   *x509.Certificate
		domain string
		want   bool
	}{
		{"nil certificate", nil, "example.org", false},
		{"hand-built with DNSNames", &x509.Certificate{DNSNames: []string{"example.org"}}, "example.org", true},
		{"hand-built with only a CN", &x509.Certificate{Subject: pkix.Name{CommonName: "example.org"}}, "example.org", false},
		{"malformed SAN extension", &x509.Certificate{
			DNSNames:   []string{"example.org"},
			Extensions: []pkix.Extension{{Id: oidSubjectAltName, Value: []byte{0x30, 0x05, 0x82}}},
		}, "example.org", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MatchIdentity(tt.cert, tt.domain); got != tt.want {
				t.Fatalf("MatchIdentity() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSubjectAltNames(t *testing.T) {
	ca := newTestCA(t, "SAN Test CA")
	cert, _, _ := issueLeaf(t, ca, certstest.LeafOptions{
		DNSNames:    []string{"a.test", "*.b.test"},
		SRVNames:    []string{"c.test"},
		RawSRVNames: []string{"_xmpp-client.d.test"},
		XmppAddrs:   []string{"e.test"},
	})
	got, err := certificateNames(cert)
	if err != nil {
		t.Fatalf("certificateNames: %v", err)
	}
	want := subjectAltNames{
		DNSNames:  []string{"a.test", "*.b.test"},
		SRVNames:  []string{"_xmpp-server.c.test", "_xmpp-client.d.test"},
		XmppAddrs: []string{"e.test"},
	}
	if !slices.Equal(got.DNSNames, want.DNSNames) || !slices.Equal(got.SRVNames, want.SRVNames) || !slices.Equal(got.XmppAddrs, want.XmppAddrs) {
		t.Fatalf("names = %+v, want %+v", got, want)
	}
	// crypto/x509 must agree on the dNSNames in our hand-written extension.
	if !slices.Equal(cert.DNSNames, want.DNSNames) {
		t.Fatalf("crypto/x509 parsed DNSNames %v, want %v", cert.DNSNames, want.DNSNames)
	}

	bad := []struct {
		name string
		der  []byte
	}{
		{"empty", nil},
		{"not a sequence", mustMarshal(t, 5)},
		{"trailing data", append(mustMarshal(t, []asn1.RawValue{}), 0)},
		{"universal entry", mustMarshal(t, []asn1.RawValue{{Class: asn1.ClassUniversal, Tag: asn1.TagUTF8String, Bytes: []byte("x")}})},
		{"dNSName not IA5", mustMarshal(t, []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte("bü.test")}})},
		{"otherName primitive", mustMarshal(t, []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte("x")}})},
		{"otherName without value", mustMarshal(t, []asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, oidOnXmppAddr)}})},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if names, err := parseSubjectAltNames(tt.der); err == nil {
				t.Fatalf("parseSubjectAltNames(%x) = %+v, want an error", tt.der, names)
			}
		})
	}
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sanSeeds returns SubjectAltName extension values from real test
// certificates, to seed the fuzzers.
func sanSeeds(f *testing.F) [][]byte {
	ca := newTestCA(f, "Fuzz CA")
	var seeds [][]byte
	for _, opts := range []certstest.LeafOptions{
		{DNSNames: []string{"example.org", "*.example.org"}},
		{SRVNames: []string{"partner.test"}, RawSRVNames: []string{"_xmpp-client.partner.test"}},
		{XmppAddrs: []string{"bücher.example", "user@partner.test/r"}},
		{DNSNames: []string{"a.test"}, SRVNames: []string{"b.test"}, XmppAddrs: []string{"c.test"}},
	} {
		cert, _, _ := issueLeaf(f, ca, opts)
		for _, ext := range cert.Extensions {
			if ext.Id.Equal(oidSubjectAltName) {
				seeds = append(seeds, ext.Value)
			}
		}
	}
	return seeds
}

func FuzzParseSubjectAltNames(f *testing.F) {
	for _, s := range sanSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0xa0, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		names, err := parseSubjectAltNames(der)
		if err != nil {
			return
		}
		// Whatever parsed must be usable.
		set := newIdentitySet(names)
		for _, n := range set.covered() {
			if n == "" {
				t.Fatalf("empty covered name from %x", der)
			}
		}
	})
}

func FuzzMatchIdentity(f *testing.F) {
	for _, s := range sanSeeds(f) {
		for _, d := range []string{"example.org", "chat.example.org", "partner.test", "xn--bcher-kva.example", "c.test", "", "*.example.org"} {
			f.Add(s, d)
		}
	}
	f.Fuzz(func(t *testing.T, der []byte, domain string) {
		cert := &x509.Certificate{Extensions: []pkix.Extension{{Id: oidSubjectAltName, Value: der}}}
		got := MatchIdentity(cert, domain)
		if !got {
			return
		}
		// A match implies a valid reference domain that matches again in
		// another spelling.
		norm, err := normalizeDomain(domain)
		if err != nil {
			t.Fatalf("MatchIdentity(%q) matched a domain that does not normalise: %v", domain, err)
		}
		for _, spelling := range []string{norm, norm + ".", strings.ToUpper(norm)} {
			if !MatchIdentity(cert, spelling) {
				t.Fatalf("MatchIdentity(%q) matched but %q did not", domain, spelling)
			}
		}
	})
}

// The TLS server name of every client configuration this package builds
// (the Store's towards the Internet, the internal CA's towards the
// internal server) is the remote domain in A-label form, whatever its
// spelling.
func TestServerName(t *testing.T) {
	ca, _ := newInternalCA(t)
	store, err := LoadStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain, want string
	}{
		{"partner.test", "partner.test"},
		{"Partner.TEST.", "partner.test"},
		{"bücher.test", "xn--bcher-kva.test"},
		{"BÜCHER.test", "xn--bcher-kva.test"},
		{"xn--bcher-kva.test", "xn--bcher-kva.test"},
		{"ＦＵＬＬＷＩＤＴＨ.test", "fullwidth.test"},
		{"", ""},
		{"a..test", "a..test"}, // not a domain name: as given
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			if got := ServerName(tt.domain); got != tt.want {
				t.Errorf("ServerName(%q) = %q, want %q", tt.domain, got, tt.want)
			}
			for name, cfg := range map[string]*tls.Config{
				"Store.ClientConfig":            store.ClientConfig("company.test", tt.domain, false),
				"Store.ClientConfig direct TLS": store.ClientConfig("company.test", tt.domain, true),
				"InternalCA.ClientConfig":       ca.ClientConfig("partner.test", tt.domain),
			} {
				if cfg.ServerName != tt.want {
					t.Errorf("%s: ServerName %q, want %q", name, cfg.ServerName, tt.want)
				}
			}
		})
	}
}

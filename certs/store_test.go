package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// testStore holds two local domains: company.test (DNS-ID and SRV-ID)
// and other.test plus *.wild.test.
func testStore(t *testing.T) (*Store, []KeyPairFiles) {
	t.Helper()
	ca := newTestCA(t, "Store Test CA")
	dir := t.TempDir()
	pairs := []KeyPairFiles{
		writePair(t, ca, dir, "company", certstest.LeafOptions{DNSNames: []string{"company.test"}, SRVNames: []string{"company.test"}}),
		writePair(t, ca, dir, "other", certstest.LeafOptions{DNSNames: []string{"other.test", "*.wild.test"}, XmppAddrs: []string{"xn--bcher-kva.test"}}),
	}
	s, err := LoadStore(pairs)
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	if p := s.Problems(); len(p) != 0 {
		t.Fatalf("Problems() = %v, want none", p)
	}
	return s, pairs
}

func leafOf(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.CommonName
}

func TestStoreCertificate(t *testing.T) {
	s, _ := testStore(t)
	tests := []struct {
		domain string
		want   string // CN of the chosen certificate; "" = nil
	}{
		{"company.test", "company.test"},
		{"COMPANY.test.", "company.test"},
		{"other.test", "other.test"},
		{"chat.wild.test", "other.test"},
		{"bücher.test", "other.test"},
		{"wild.test", ""},
		{"unknown.test", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			got := s.Certificate(tt.domain)
			if tt.want == "" {
				if got != nil {
					t.Fatalf("Certificate(%q) = %s, want nil", tt.domain, leafOf(got))
				}
				return
			}
			if leafOf(got) != tt.want {
				t.Fatalf("Certificate(%q) = %q, want %q", tt.domain, leafOf(got), tt.want)
			}
		})
	}
	wantDomains := []string{"*.wild.test", "company.test", "other.test", "xn--bcher-kva.test"}
	if got := s.Domains(); !slices.Equal(got, wantDomains) {
		t.Fatalf("Domains() = %v, want %v", got, wantDomains)
	}
}

func TestStorePrefersValidCertificate(t *testing.T) {
	ca := newTestCA(t, "Store Test CA")
	dir := t.TempDir()
	expiredAt := time.Now().Add(-time.Minute)
	pairs := []KeyPairFiles{
		writePair(t, ca, dir, "old", certstest.LeafOptions{CommonName: "old", DNSNames: []string{"company.test"},
			NotBefore: expiredAt.Add(-time.Hour), NotAfter: expiredAt}),
		writePair(t, ca, dir, "new", certstest.LeafOptions{CommonName: "new", DNSNames: []string{"company.test"}}),
		writePair(t, ca, dir, "nosan", certstest.LeafOptions{CommonName: "nosan.test"}),
	}
	s, err := LoadStore(pairs)
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	if got := leafOf(s.Certificate("company.test")); got != "new" {
		t.Fatalf("Certificate chose %q, want the valid one", got)
	}
	problems := s.Problems()
	if len(problems) != 2 ||
		!strings.Contains(problems[0], pairs[0].CertFile) || !strings.Contains(problems[0], "has expired") ||
		!strings.Contains(problems[1], pairs[2].CertFile) || !strings.Contains(problems[1], "names no domain") {
		t.Fatalf("Problems() = %q, want the expired file and the file naming no domain", problems)
	}
	// An expired certificate is still served when nothing better exists.
	s2, err := LoadStore(pairs[:1])
	if err != nil {
		t.Fatalf("LoadStore: %v", err)
	}
	if got := leafOf(s2.Certificate("company.test")); got != "old" {
		t.Fatalf("Certificate chose %q, want the expired one as a last resort", got)
	}
}

func TestLoadStoreErrors(t *testing.T) {
	ca := newTestCA(t, "Store Test CA")
	dir := t.TempDir()
	a := writePair(t, ca, dir, "a", certstest.LeafOptions{DNSNames: []string{"a.test"}})
	b := writePair(t, ca, dir, "b", certstest.LeafOptions{DNSNames: []string{"b.test"}})
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name     string
		pair     KeyPairFiles
		wantFile string
		wantText string
	}{
		{"missing certificate file", KeyPairFiles{CertFile: missing, KeyFile: a.KeyFile}, missing, "cannot be read"},
		{"missing key file", KeyPairFiles{CertFile: a.CertFile, KeyFile: missing}, missing, "cannot be read"},
		{"certificate not PEM", KeyPairFiles{CertFile: garbage, KeyFile: a.KeyFile}, garbage, "is not PEM"},
		{"key not PEM", KeyPairFiles{CertFile: a.CertFile, KeyFile: garbage}, garbage, "is not PEM"},
		{"key file holds a certificate", KeyPairFiles{CertFile: a.CertFile, KeyFile: b.CertFile}, b.CertFile, "holds no PRIVATE KEY"},
		{"certificate file holds a key", KeyPairFiles{CertFile: a.KeyFile, KeyFile: a.KeyFile}, a.KeyFile, "holds no CERTIFICATE"},
		{"key of another certificate", KeyPairFiles{CertFile: a.CertFile, KeyFile: b.KeyFile}, b.KeyFile, "does not belong to certificate file " + a.CertFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadStore([]KeyPairFiles{tt.pair})
			if err == nil {
				t.Fatal("LoadStore succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.wantFile) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("error %q does not name %s and say %q", err, tt.wantFile, tt.wantText)
			}
		})
	}
}

func TestStoreConfigs(t *testing.T) {
	s, _ := testStore(t)
	server := s.ServerConfig("company.test", true)
	if server.MinVersion != tls.VersionTLS12 || server.ClientAuth != tls.RequestClientCert ||
		!slices.Equal(server.NextProtos, []string{"xmpp-server"}) {
		t.Fatalf("ServerConfig = MinVersion %x ClientAuth %v NextProtos %v", server.MinVersion, server.ClientAuth, server.NextProtos)
	}
	if s.ServerConfig("company.test", false).NextProtos != nil {
		t.Fatal("ServerConfig without ALPN sets NextProtos")
	}
	// Shared per fallback and ALPN (crypto/tls keeps a connection's config
	// for its life), each still choosing by its own fallback; bounded.
	if s.ServerConfig("company.test", true) != server || s.ServerConfig("company.test", false) == server ||
		s.ServerConfig("other.test", true) == server {
		t.Fatal("ServerConfig is not shared per fallback domain and ALPN")
	}
	for i := range 2 * maxSharedServerConfigs {
		s.ServerConfig(fmt.Sprintf("d%d.test", i), false)
	}
	if n := len(s.serverConfigs); n != maxSharedServerConfigs {
		t.Fatalf("%d shared server configs, want the bound %d", n, maxSharedServerConfigs)
	}
	if s.ServerConfig("company.test", true) != server {
		t.Fatal("a shared config was dropped")
	}
	tests := []struct {
		name     string
		sni      string
		fallback string
		want     string
	}{
		{"SNI chooses", "other.test", "company.test", "other.test"},
		{"SNI chooses a wildcard", "x.wild.test", "company.test", "other.test"},
		{"no SNI: fallback", "", "other.test", "other.test"},
		{"unknown SNI: fallback", "unknown.test", "other.test", "other.test"},
		{"nothing matches: first certificate", "unknown.test", "unknown.test", "company.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := s.ServerConfig(tt.fallback, false)
			got, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatalf("GetCertificate: %v", err)
			}
			if leafOf(got) != tt.want {
				t.Fatalf("GetCertificate chose %q, want %q", leafOf(got), tt.want)
			}
		})
	}

	empty, err := LoadStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.ServerConfig("company.test", false).GetCertificate(&tls.ClientHelloInfo{}); err == nil {
		t.Fatal("GetCertificate on an empty store succeeded")
	}

	client := s.ClientConfig("company.test", "bücher.test", true)
	if client.ServerName != "xn--bcher-kva.test" || !client.InsecureSkipVerify || client.MinVersion != tls.VersionTLS12 ||
		!slices.Equal(client.NextProtos, []string{"xmpp-server"}) {
		t.Fatalf("ClientConfig = ServerName %q InsecureSkipVerify %v MinVersion %x NextProtos %v",
			client.ServerName, client.InsecureSkipVerify, client.MinVersion, client.NextProtos)
	}
	cc, err := client.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || leafOf(cc) != "company.test" {
		t.Fatalf("client certificate = %q, %v; want company.test", leafOf(cc), err)
	}
	if c := s.ClientConfig("unknown.test", "partner.test", false); c.GetClientCertificate != nil || c.Certificates != nil || c.NextProtos != nil {
		t.Fatal("ClientConfig for a domain without a certificate offers one, or sets ALPN")
	}
}

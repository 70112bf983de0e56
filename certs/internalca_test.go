package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

func TestLoadOrCreateInternalCA(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca, created, err := LoadOrCreateInternalCA(certFile, keyFile)
	if err != nil || !created {
		t.Fatalf("first start: created %v, %v", created, err)
	}
	for file, want := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644} {
		info, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s mode %04o, want %04o", file, info.Mode().Perm(), want)
		}
	}
	root := parseOne(t, ca.CertPEM())
	if !root.IsCA || root.NotAfter.Before(time.Now().AddDate(9, 11, 0)) {
		t.Errorf("CA certificate: IsCA %v, not after %v", root.IsCA, root.NotAfter)
	}
	if k, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", root.PublicKey)
	}

	again, created, err := LoadOrCreateInternalCA(certFile, keyFile)
	if err != nil || created {
		t.Fatalf("second start: created %v, %v", created, err)
	}
	if string(again.CertPEM()) != string(ca.CertPEM()) {
		t.Error("the second start has another CA certificate")
	}

	other := newTestCA(t, "Other")
	leafPair := writePair(t, other, dir, "leaf", certstest.LeafOptions{DNSNames: []string{"a.test"}})
	otherKey := filepath.Join(dir, "other.key")
	if err := os.WriteFile(otherKey, mustRead(t, leafPair.KeyFile), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key, wantErr string
	}{
		{"only the key exists", filepath.Join(dir, "missing.crt"), keyFile, "exists but certificate file"},
		{"only the certificate exists", certFile, filepath.Join(dir, "missing.key"), "exists but key file"},
		{"key of another certificate", certFile, otherKey, "does not fit"},
		{"a leaf, not a CA", leafPair.CertFile, leafPair.KeyFile, "does not hold a CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadOrCreateInternalCA(tt.cert, tt.key)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseOne(t *testing.T, pemData []byte) *x509.Certificate {
	t.Helper()
	certs, err := parseCertificatesPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func newInternalCA(t *testing.T, opts ...InternalCAOption) (*InternalCA, *Verifier) {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := LoadOrCreateInternalCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]string{filepath.Join(dir, "ca.crt")}, false)
	if err != nil {
		t.Fatal(err)
	}
	return ca, v
}

func TestInternalCAMint(t *testing.T) {
	ca, v := newInternalCA(t)
	tests := []struct {
		domain    string
		wantNames []string
	}{
		{"partner.test", []string{"partner.test", "_xmpp-server.partner.test"}},
		{"Partner.EXAMPLE.", []string{"partner.example", "_xmpp-server.partner.example"}},
		{"bücher.test", []string{"xn--bcher-kva.test", "_xmpp-server.xn--bcher-kva.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			c, err := ca.Certificate(tt.domain)
			if err != nil {
				t.Fatalf("Certificate: %v", err)
			}
			leaf := c.Leaf
			if life := leaf.NotAfter.Sub(leaf.NotBefore); life < DefaultLeafLifetime || life > DefaultLeafLifetime+2*time.Minute {
				t.Errorf("lifetime %v, want about %v", life, DefaultLeafLifetime)
			}
			if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("extended key usage %v", leaf.ExtKeyUsage)
			}
			if !MatchIdentity(leaf, tt.domain) {
				t.Errorf("MatchIdentity(%q) is false", tt.domain)
			}
			if MatchIdentity(leaf, "other.test") {
				t.Error("matches other.test")
			}
			// DNS-ID and SRV-ID only: ejabberd crashes the stream on a
			// certificate with a domain XmppAddr (p1_xmpp's
			// get_cert_domains), so it would never accept ours.
			names, err := certificateNames(leaf)
			if err != nil {
				t.Fatal(err)
			}
			if len(names.XmppAddrs) != 0 || len(names.DNSNames) != 1 || len(names.SRVNames) != 1 {
				t.Errorf("subjectAltName %+v, want one DNS-ID and one SRV-ID, no XmppAddr", names)
			}
			verdict := v.Verify([]*x509.Certificate{leaf}, tt.domain, time.Now())
			if !verdict.Valid || verdict.Issuer != internalCAName || !slices.Equal(verdict.Names, tt.wantNames) {
				t.Errorf("Verify = %+v, want valid with names %v", verdict, tt.wantNames)
			}
			// crypto/x509 agrees for both usages.
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(ca.CertPEM())
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("x509 verify for %v: %v", usage, err)
				}
			}
		})
	}
	if _, err := ca.Certificate("*.partner.test"); err == nil {
		t.Error("minted a wildcard")
	}
}

func TestInternalCACaching(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	ca, _ := newInternalCA(t, WithLeafLifetime(3*time.Hour), withClock(func() time.Time { return *now.Load() }))
	at := func(d time.Duration) {
		t0 := start.Add(d)
		now.Store(&t0)
	}
	first, err := ca.Certificate("partner.test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		at       time.Duration
		domain   string
		wantSame bool
	}{
		{"same domain, at once", 0, "partner.test", true},
		{"other spelling of the same domain", 0, "PARTNER.test.", true},
		{"before two thirds of the life", 119 * time.Minute, "partner.test", true},
		{"after two thirds of the life", 121 * time.Minute, "partner.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			at(tt.at)
			c, err := ca.Certificate(tt.domain)
			if err != nil {
				t.Fatal(err)
			}
			if (c == first) != tt.wantSame {
				t.Errorf("same certificate %v, want %v", c == first, tt.wantSame)
			}
		})
	}
	other, _ := ca.Certificate("other.test")
	if other == first || !MatchIdentity(other.Leaf, "other.test") {
		t.Error("other.test did not get its own certificate")
	}
}

func TestInternalCAConcurrent(t *testing.T) {
	ca, _ := newInternalCA(t)
	domains := []string{"a.test", "b.test", "c.test", "d.test"}
	var wg sync.WaitGroup
	results := make([][]*tls.Certificate, len(domains))
	for i := range results {
		results[i] = make([]*tls.Certificate, 16)
	}
	for i, d := range domains {
		for j := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := ca.Certificate(d)
				if err != nil {
					t.Error(err)
				}
				results[i][j] = c
			}()
		}
	}
	wg.Wait()
	for i, row := range results {
		for _, c := range row {
			if c != row[0] {
				t.Errorf("%s was minted more than once", domains[i])
			}
		}
	}
}

// The inside leg: xmppedge stands in for partner.test towards the company
// server both as a server (inbound to xmppedge) and as a client, and the
// company server's view verifies against the internal CA.
func TestInternalCAHandshake(t *testing.T) {
	ca, v := newInternalCA(t)
	// The internal server, with its own certificate from another CA.
	company := newTestCA(t, "Company CA")
	store, err := LoadStore([]KeyPairFiles{writePair(t, company, t.TempDir(), "company", certstest.LeafOptions{DNSNames: []string{"company.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		server     *tls.Config
		client     *tls.Config
		noSNI      bool
		checkOnSrv bool // the internal CA's certificate is the client's
	}{
		{"xmppedge accepts, SNI partner.test", ca.ServerConfig("fallback.test"), store.ClientConfig("company.test", "partner.test", false), false, false},
		{"xmppedge accepts, no SNI: stream to", ca.ServerConfig("partner.test"), store.ClientConfig("company.test", "partner.test", false), true, false},
		{"xmppedge connects as partner.test", store.ServerConfig("company.test", false), ca.ClientConfig("partner.test", "company.test"), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.noSNI {
				tt.client.ServerName = ""
			}
			server, client := handshake(t, tt.server, tt.client)
			if server.err != nil || client.err != nil {
				t.Fatalf("handshake: server %v, client %v", server.err, client.err)
			}
			chain := client.state.PeerCertificates
			if tt.checkOnSrv {
				chain = server.state.PeerCertificates
			}
			if verdict := v.Verify(chain, "partner.test", time.Now()); !verdict.Valid {
				t.Errorf("the company server's verdict on xmppedge: %+v", verdict)
			}
		})
	}
}

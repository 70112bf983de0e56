package certstest

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	ca, err := NewCA("certstest CA")
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "certstest CA" {
		t.Fatalf("CA certificate: IsCA %v, CN %q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	notAfter := time.Now().Add(time.Hour).Truncate(time.Second)
	tests := []struct {
		name       string
		opts       LeafOptions
		wantCN     string
		wantDNS    []string
		wantEKU    []x509.ExtKeyUsage
		wantCrit   bool // SAN extension critical
		wantNoSAN  bool
		wantExpiry time.Time
		wantCRL    []string
	}{
		{
			name:    "DNS names only",
			opts:    LeafOptions{DNSNames: []string{"a.test", "*.a.test"}},
			wantCN:  "a.test",
			wantDNS: []string{"a.test", "*.a.test"},
			wantEKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name:       "otherNames with DNS names, server auth only",
			opts:       LeafOptions{DNSNames: []string{"b.test"}, SRVNames: []string{"b.test"}, XmppAddrs: []string{"b.test"}, ServerAuthOnly: true, NotAfter: notAfter},
			wantCN:     "b.test",
			wantDNS:    []string{"b.test"},
			wantEKU:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantExpiry: notAfter,
		},
		{
			name:    "CRL distribution point",
			opts:    LeafOptions{DNSNames: []string{"e.test"}, CRLDistributionPoints: []string{"http://crl.e.test/ca.crl"}},
			wantCN:  "e.test",
			wantDNS: []string{"e.test"},
			wantEKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantCRL: []string{"http://crl.e.test/ca.crl"},
		},
		{
			name:     "otherNames only, empty subject: critical SAN",
			opts:     LeafOptions{EmptySubject: true, SRVNames: []string{"d.test"}},
			wantEKU:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantCrit: true,
		},
		{
			name:      "no SAN",
			opts:      LeafOptions{CommonName: "c.test"},
			wantCN:    "c.test",
			wantEKU:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			wantNoSAN: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, keyPEM, err := ca.Issue(tt.opts)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("the key does not fit the certificate: %v", err)
			}
			if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Fatalf("key is %T, want ECDSA", pair.PrivateKey)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatal("key is not PKCS#8 PEM")
			}
			leaf := pair.Leaf
			// crypto/x509 does not understand a critical SAN holding only
			// otherNames (certs.Verifier does).
			if !tt.wantCrit {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: poolOf(ca.Cert), KeyUsages: tt.wantEKU}); err != nil {
					t.Fatalf("leaf does not verify against the CA: %v", err)
				}
			}
			if err := leaf.CheckSignatureFrom(ca.Cert); err != nil {
				t.Fatalf("leaf is not signed by the CA: %v", err)
			}
			if leaf.Subject.CommonName != tt.wantCN {
				t.Errorf("CN = %q, want %q", leaf.Subject.CommonName, tt.wantCN)
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, tt.wantDNS)
			}
			if !slices.Equal(leaf.ExtKeyUsage, tt.wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, tt.wantEKU)
			}
			if !tt.wantExpiry.IsZero() && !leaf.NotAfter.Equal(tt.wantExpiry) {
				t.Errorf("NotAfter = %v, want %v", leaf.NotAfter, tt.wantExpiry)
			}
			if !slices.Equal(leaf.CRLDistributionPoints, tt.wantCRL) {
				t.Errorf("CRLDistributionPoints = %v, want %v", leaf.CRLDistributionPoints, tt.wantCRL)
			}
			var san *bool
			for _, ext := range leaf.Extensions {
				if ext.Id.Equal(oidSubjectAltName) {
					san = &ext.Critical
				}
			}
			if tt.wantNoSAN != (san == nil) {
				t.Fatalf("SAN extension present: %v, want %v", san != nil, !tt.wantNoSAN)
			}
			if san != nil && *san != tt.wantCrit {
				t.Errorf("SAN critical = %v, want %v", *san, tt.wantCrit)
			}
		})
	}
	if _, _, err := ca.Issue(LeafOptions{SRVNames: []string{"bücher.test"}}); err == nil {
		t.Error("Issue accepted a non-ASCII SRV name")
	}
}

func poolOf(c *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	// An existing, too open key file must be tightened.
	if err := os.WriteFile(filepath.Join(dir, "x.key"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := WriteFiles(dir, "x", []byte("cert"), []byte("key"))
	if err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	tests := []struct {
		file     string
		content  string
		wantMode os.FileMode
	}{
		{certFile, "cert", 0o644},
		{keyFile, "key", 0o600},
	}
	for _, tt := range tests {
		info, err := os.Stat(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != tt.wantMode {
			t.Errorf("%s has mode %04o, want %04o", tt.file, info.Mode().Perm(), tt.wantMode)
		}
		if data, _ := os.ReadFile(tt.file); string(data) != tt.content {
			t.Errorf("%s holds %q, want %q", tt.file, data, tt.content)
		}
	}
	if _, _, err := WriteFiles(filepath.Join(dir, "missing"), "x", nil, nil); err == nil {
		t.Error("WriteFiles into a missing directory succeeded")
	}
}

package certs

import (
	"crypto/x509"
	"encoding/pem"
	"testing"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

func newTestCA(t testing.TB, name string) *certstest.CA {
	t.Helper()
	ca, err := certstest.NewCA(name)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// issueLeaf issues a leaf and returns it parsed, with its PEM forms.
func issueLeaf(t testing.TB, ca *certstest.CA, opts certstest.LeafOptions) (*x509.Certificate, []byte, []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(opts)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("Issue returned no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return cert, certPEM, keyPEM
}

// writePair issues a leaf and writes it to dir as name.crt / name.key.
func writePair(t testing.TB, ca *certstest.CA, dir, name string, opts certstest.LeafOptions) KeyPairFiles {
	t.Helper()
	_, certPEM, keyPEM := issueLeaf(t, ca, opts)
	certFile, keyFile, err := certstest.WriteFiles(dir, name, certPEM, keyPEM)
	if err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	return KeyPairFiles{CertFile: certFile, KeyFile: keyFile}
}

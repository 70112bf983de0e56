package certs

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

func TestVerifierVerify(t *testing.T) {
	trusted := newTestCA(t, "Trusted Test CA")
	untrusted := newTestCA(t, "Untrusted Test CA")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, trusted.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]string{caFile}, false)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	now := time.Now()
	expiredAt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	leaf := func(ca *certstest.CA, opts certstest.LeafOptions) []*x509.Certificate {
		cert, _, _ := issueLeaf(t, ca, opts)
		return []*x509.Certificate{cert}
	}
	tests := []struct {
		name       string
		chain      []*x509.Certificate
		domain     string
		now        time.Time
		wantValid  bool
		wantReason string
		wantIssuer string
		wantNames  []string
	}{
		{
			name:       "valid DNS-ID",
			chain:      leaf(trusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}}),
			domain:     "partner.test",
			now:        now,
			wantValid:  true,
			wantIssuer: "Trusted Test CA",
			wantNames:  []string{"partner.test"},
		},
		{
			name:       "valid SRV-ID, server-auth-only certificate",
			chain:      leaf(trusted, certstest.LeafOptions{SRVNames: []string{"partner.test"}, ServerAuthOnly: true}),
			domain:     "partner.test",
			now:        now,
			wantValid:  true,
			wantIssuer: "Trusted Test CA",
			wantNames:  []string{"_xmpp-server.partner.test"},
		},
		{
			name:       "valid XmppAddr with the CA in the chain",
			chain:      append(leaf(trusted, certstest.LeafOptions{XmppAddrs: []string{"partner.test"}}), trusted.Cert),
			domain:     "partner.test",
			now:        now,
			wantValid:  true,
			wantIssuer: "Trusted Test CA",
		},
		{
			name:       "empty subject, critical SAN with only otherNames",
			chain:      leaf(trusted, certstest.LeafOptions{EmptySubject: true, SRVNames: []string{"partner.test"}}),
			domain:     "partner.test",
			now:        now,
			wantValid:  true,
			wantIssuer: "Trusted Test CA",
			wantNames:  []string{"_xmpp-server.partner.test"},
		},
		{
			name:       "untrusted CA",
			chain:      leaf(untrusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}}),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate signed by unknown authority",
			wantIssuer: "Untrusted Test CA",
		},
		{
			name:       "untrusted CA presenting itself as intermediate",
			chain:      append(leaf(untrusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}}), untrusted.Cert),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate signed by unknown authority",
		},
		{
			name: "expired",
			chain: leaf(trusted, certstest.LeafOptions{DNSNames: []string{"partner.test"},
				NotBefore: expiredAt.Add(-48 * time.Hour), NotAfter: expiredAt}),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate has expired (not after 2026-01-01T00:00:00Z)",
		},
		{
			name:       "not yet valid",
			chain:      leaf(trusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}, NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)}),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate is not yet valid (not before ",
		},
		{
			name:       "valid at an earlier time",
			chain:      leaf(trusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}, NotBefore: now.Add(-50 * time.Minute), NotAfter: now.Add(-10 * time.Minute)}),
			domain:     "partner.test",
			now:        now.Add(-30 * time.Minute),
			wantValid:  true,
			wantIssuer: "Trusted Test CA",
		},
		{
			name:       "issuing CA not yet valid",
			chain:      leaf(trusted, certstest.LeafOptions{DNSNames: []string{"partner.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}),
			domain:     "partner.test",
			now:        now.Add(-36 * time.Hour),
			wantReason: "certificate chain is not valid at this time (an issuing certificate has expired or is not yet valid)",
		},
		{
			name:       "wrong name",
			chain:      leaf(trusted, certstest.LeafOptions{DNSNames: []string{"a.test", "b.test"}}),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate is not valid for partner.test (names: a.test, b.test)",
			wantNames:  []string{"a.test", "b.test"},
		},
		{
			name:       "no SAN, CN matches",
			chain:      leaf(trusted, certstest.LeafOptions{CommonName: "partner.test"}),
			domain:     "partner.test",
			now:        now,
			wantReason: "certificate is not valid for partner.test (it names no domain)",
		},
		{
			name:       "empty chain",
			chain:      nil,
			domain:     "partner.test",
			now:        now,
			wantReason: "no certificate presented",
		},
		{
			name:       "nil leaf",
			chain:      []*x509.Certificate{nil},
			domain:     "partner.test",
			now:        now,
			wantReason: "no certificate presented",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.Verify(tt.chain, tt.domain, tt.now)
			if got.Valid != tt.wantValid {
				t.Fatalf("Valid = %v (reason %q), want %v", got.Valid, got.Reason, tt.wantValid)
			}
			if tt.wantValid && got.Reason != "" {
				t.Errorf("valid verdict has reason %q", got.Reason)
			}
			if !strings.HasPrefix(got.Reason, tt.wantReason) {
				t.Errorf("Reason = %q, want %q", got.Reason, tt.wantReason)
			}
			if tt.wantIssuer != "" && got.Issuer != tt.wantIssuer {
				t.Errorf("Issuer = %q, want %q", got.Issuer, tt.wantIssuer)
			}
			if tt.wantNames != nil && !slices.Equal(got.Names, tt.wantNames) {
				t.Errorf("Names = %v, want %v", got.Names, tt.wantNames)
			}
		})
	}
}

func TestVerifierWithoutRoots(t *testing.T) {
	ca := newTestCA(t, "Some CA")
	v, err := NewVerifier(nil, false)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	cert, _, _ := issueLeaf(t, ca, certstest.LeafOptions{DNSNames: []string{"partner.test"}})
	got := v.Verify([]*x509.Certificate{cert}, "partner.test", time.Now())
	if got.Valid || got.Reason != "certificate signed by unknown authority" {
		t.Fatalf("Verify = %+v, want unknown authority", got)
	}
}

func TestNewVerifierErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not-pem.txt")
	keyOnly := filepath.Join(dir, "key-only.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyOnly, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{"missing file", filepath.Join(dir, "missing.pem"), "cannot be read"},
		{"not PEM", notPEM, "is not PEM"},
		{"no certificate", keyOnly, "holds no CERTIFICATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewVerifier([]string{tt.file}, false)
			if err == nil {
				t.Fatal("NewVerifier succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.file) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %q does not name %s and say %q", err, tt.file, tt.wantErr)
			}
		})
	}
}

func TestNewVerifierSystemRoots(t *testing.T) {
	if _, err := x509.SystemCertPool(); err != nil {
		t.Skipf("no system roots here: %v", err)
	}
	if _, err := NewVerifier(nil, true); err != nil {
		t.Fatalf("NewVerifier with system roots: %v", err)
	}
}

func TestVerifierHandlesCriticalOtherNameSAN(t *testing.T) {
	ca := newTestCA(t, "Trusted Test CA")
	v, err := NewVerifier(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	v.roots.AddCert(ca.Cert)
	cert, _, _ := issueLeaf(t, ca, certstest.LeafOptions{EmptySubject: true, XmppAddrs: []string{"partner.test"}})
	if len(cert.UnhandledCriticalExtensions) != 1 {
		t.Fatalf("crypto/x509 now handles the critical SAN (%v): this test no longer tests anything", cert.UnhandledCriticalExtensions)
	}
	if got := v.Verify([]*x509.Certificate{cert}, "partner.test", time.Now()); !got.Valid {
		t.Fatalf("Verify = %+v, want valid", got)
	}
	if len(cert.UnhandledCriticalExtensions) != 1 {
		t.Fatal("Verify modified the caller's certificate")
	}
}

func TestOutcomeNames(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{DANENotApplicable.String(), "not applicable"},
		{DANEMatched.String(), "matched"},
		{DANEFailed.String(), "failed"},
		{DANELookupFailed.String(), "lookup failed"},
		{DANEStatus(4).String(), "DANEStatus(4)"},
		{DANEStatus(-1).String(), "DANEStatus(-1)"},
		{POSHNotApplicable.String(), "not applicable"},
		{POSHMatched.String(), "matched"},
		{POSHFailed.String(), "failed"},
		{POSHError.String(), "error"},
		{POSHStatus(7).String(), "POSHStatus(7)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("String() = %q, want %q", tt.got, tt.want)
		}
	}
}

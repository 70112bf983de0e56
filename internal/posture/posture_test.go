package posture

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	noTLS       = Posture{Auth: "dialback"}
	db12        = Posture{TLS: "TLS 1.2", Auth: "dialback"}
	db13        = Posture{TLS: "TLS 1.3", Auth: "dialback"}
	dbCert13    = Posture{TLS: "TLS 1.3", Auth: "dialback", CertValid: true}
	sasl12      = Posture{TLS: "TLS 1.2", Auth: "sasl_external", CertValid: true}
	sasl13      = Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true}
	sasl13DANE  = Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true, DANE: true}
	dbCertDANE3 = Posture{TLS: "TLS 1.3", Auth: "dialback", CertValid: true, DANE: true}
)

func TestOrder(t *testing.T) {
	tests := []struct {
		name     string
		p, best  Posture
		weaker   []string
		stronger bool
	}{
		{"same", sasl13, sasl13, nil, false},
		{"no TLS below 1.2", noTLS, db12, []string{"no TLS < TLS 1.2"}, false},
		{"1.2 below 1.3", db12, db13, []string{"TLS 1.2 < TLS 1.3"}, false},
		{"dialback below certificate", db13, dbCert13, []string{"dialback < certificate"}, false},
		{"certificate below SASL EXTERNAL", dbCert13, sasl13, []string{"certificate < sasl_external"}, false},
		{"dialback from a SASL EXTERNAL partner", db13, sasl13, []string{"dialback < sasl_external"}, false},
		{"both dimensions", db12, sasl13, []string{"TLS 1.2 < TLS 1.3", "dialback < sasl_external"}, false},
		{"DANE lost", sasl13, sasl13DANE, []string{"no DANE < DANE"}, false},
		{"stronger", sasl13, db12, nil, true},
		{"mixed: stronger auth, weaker TLS", sasl12, db13, []string{"TLS 1.2 < TLS 1.3"}, true},
		{"a cert without SASL counts as dialback with a certificate", Posture{TLS: "TLS 1.3", Auth: "dialback", CertValid: true}, sasl13, []string{"certificate < sasl_external"}, false},
		{"unknown TLS is no TLS", Posture{TLS: "TLS 1.1", Auth: "dialback"}, db12, []string{"TLS 1.1 < TLS 1.2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Weaker(tt.p, tt.best); !slices.Equal(got, tt.weaker) {
				t.Errorf("Weaker = %q, want %q", got, tt.weaker)
			}
			if got := Stronger(tt.p, tt.best); got != tt.stronger {
				t.Errorf("Stronger = %v, want %v", got, tt.stronger)
			}
		})
	}
}

func TestBestPerDimension(t *testing.T) {
	tests := []struct{ p, q, want Posture }{
		{sasl12, db13, Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true}},
		{dbCertDANE3, sasl12, Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true, DANE: true}},
		{noTLS, noTLS, noTLS},
	}
	for _, tt := range tests {
		if got := Best(tt.p, tt.q); got != tt.want {
			t.Errorf("Best(%v, %v) = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}

func TestStoreObserveAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posture.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	steps := []struct {
		p              Posture
		first, raised  bool
		downgrade      int
		reasonFragment string
	}{
		{db13, true, true, 0, "first posture recorded: TLS 1.3, dialback"},
		{sasl13, false, true, 0, "posture raised: TLS 1.3, sasl_external (was TLS 1.3, dialback)"},
		{sasl13, false, false, 0, ""},
		{db13, false, false, 1, "this session TLS 1.3, dialback, best seen TLS 1.3, sasl_external (dialback < sasl_external)"},
	}
	for i, st := range steps {
		o, err := s.Observe("Partner.TEST", st.p, "in-1", now)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if o.First != st.first || o.Raised != st.raised || len(o.Downgrade) != st.downgrade {
			t.Fatalf("step %d: %+v", i, o)
		}
		if st.reasonFragment != "" && !strings.Contains(o.Reason(st.p), st.reasonFragment) {
			t.Errorf("step %d: reason %q, want %q", i, o.Reason(st.p), st.reasonFragment)
		}
	}
	// A restart remembers the best, not the last.
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := s2.Observe("partner.test", db13, "in-2", now)
	if len(o.Downgrade) != 1 || o.Previous != sasl13 {
		t.Fatalf("after reopening: %+v, want a downgrade from %v", o, sasl13)
	}
	if e := s2.Snapshot()["partner.test"]; e.Last == nil || e.Last.Posture != db13 || e.Best.Posture != sasl13 {
		t.Errorf("snapshot = %+v", e)
	}
}

func TestStoreFailures(t *testing.T) {
	dir := t.TempDir()
	damaged := filepath.Join(dir, "damaged.json")
	if err := os.WriteFile(damaged, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(damaged); err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), "remove it") {
		t.Errorf("damaged file: err = %v, want it refused with the fix", err)
	}
	wrongVersion := filepath.Join(dir, "v2.json")
	if err := os.WriteFile(wrongVersion, []byte(`{"version":2,"best":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(wrongVersion); err == nil {
		t.Error("version 2 accepted")
	}
	// A folder that is gone: the write fails, the posture stays in memory.
	s, err := Open(filepath.Join(dir, "gone", "posture.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Observe("a.test", sasl13, "", time.Now()); err == nil || !strings.Contains(err.Error(), "cannot be written") {
		t.Errorf("write into a missing folder: err = %v", err)
	}
	if o, _ := s.Observe("a.test", db13, "", time.Now()); len(o.Downgrade) != 1 {
		t.Errorf("not kept in memory after a failed write: %+v", o)
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte(`{"version":1,"best":{"a.test":{"tls":"TLS 1.3","auth":"sasl_external","cert_valid":true,"at":"2026-12-01T10:00:00Z"}}}`))
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "p.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path)
		if err != nil {
			return
		}
		// Whatever was read, observing and reopening works.
		if _, err := s.Observe("x.test", db12, "", time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path); err != nil {
			t.Fatalf("the store's own file does not reopen: %v", err)
		}
	})
}

package certs

import (
	"slices"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

func TestExpiringSoonStatic(t *testing.T) {
	ca := newTestCA(t, "Expiry CA")
	dir := t.TempDir()
	now := time.Now()
	s, err := LoadStore([]KeyPairFiles{
		writePair(t, ca, dir, "soon", certstest.LeafOptions{DNSNames: []string{"soon.test"}, NotAfter: now.Add(3 * 24 * time.Hour)}),
		writePair(t, ca, dir, "later", certstest.LeafOptions{DNSNames: []string{"later.test", "*.later.test"}, NotAfter: now.Add(60 * 24 * time.Hour)}),
		writePair(t, ca, dir, "gone", certstest.LeafOptions{DNSNames: []string{"gone.test"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close() // nothing to stop for a file Store
	tests := []struct {
		within time.Duration
		want   []string
	}{
		{0, []string{"gone.test"}},
		{ExpiryWarning, []string{"gone.test", "soon.test"}},
		{90 * 24 * time.Hour, []string{"*.later.test", "gone.test", "later.test", "soon.test"}},
	}
	for _, tt := range tests {
		if got := s.ExpiringSoon(tt.within); !slices.Equal(got, tt.want) {
			t.Errorf("ExpiringSoon(%v) = %v, want %v", tt.within, got, tt.want)
		}
	}
	if got := s.Expiry()["soon.test"]; got.Sub(now.Add(3*24*time.Hour)).Abs() > time.Second {
		t.Errorf("Expiry[soon.test] = %v", got)
	}
}

package policy

import (
	"testing"
	"time"
)

func TestPartnersFromData(t *testing.T) {
	e := shippedEngine(t, `
partners:
  - domain: partner.test
    agreement: {owner: legal@company.test, reference: NDA-17, expires: 2027-03-31}
    require_posture: {tls: 1.3, auth: certificate}
  - {domain: news.test, direction: inbound, agreement: {owner: o, reference: R2, expires: "2027-01-01T12:00:00+02:00"}}
  - {domain: free.test}
`, Config{})
	ps := e.Partners()
	if len(ps) != 3 {
		t.Fatalf("partners = %+v, want 3", ps)
	}
	if a := ps[0].Agreement; a == nil || a.Owner != "legal@company.test" || a.Reference != "NDA-17" || !a.Expires.Equal(time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("partner.test agreement = %+v", a)
	}
	if rp := ps[0].RequirePosture; rp == nil || rp.TLS != "1.3" || rp.Auth != "certificate" {
		t.Errorf("partner.test require_posture = %+v (an unquoted 1.3 is the string 1.3)", rp)
	}
	if a := ps[1].Agreement; a == nil || !a.Expires.Equal(time.Date(2027, 1, 1, 10, 0, 0, 0, time.UTC)) || ps[1].Direction != "inbound" {
		t.Errorf("news.test = %+v %+v", ps[1], a)
	}
	if ps[2].Agreement != nil || ps[2].RequirePosture != nil || ps[2].Direction != "both" {
		t.Errorf("free.test = %+v", ps[2])
	}
	for domain, want := range map[string]string{"partner.test": "partner.test", "PARTNER.test": "partner.test", "a.partner.test": "", "evil.test": ""} {
		if got := e.PartnerOf(domain); got != want {
			t.Errorf("PartnerOf(%s) = %q, want %q", domain, got, want)
		}
	}
	// The engine decides with the normalised expiry.
	in := SessionInput{Direction: Inbound, RemoteDomain: "news.test", TLS: tls13, Auth: "dialback"}
	for _, tt := range []struct {
		now   string
		allow bool
	}{
		{"2027-01-01T09:59:00Z", true},
		{"2027-01-01T10:00:00Z", false},
		{"", false},
	} {
		in.Now = tt.now
		if d := e.DecideSession(testContext(t), &in); d.Allow != tt.allow {
			t.Errorf("now %q: allow = %v (%s), want %v", tt.now, d.Allow, d.Reason, tt.allow)
		}
	}
}

func TestNowInputAndDecidedFrom(t *testing.T) {
	tests := []struct {
		in       time.Time
		now      string
		firstSee time.Time
	}{
		{time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC), "2027-03-31T00:00:00Z", time.Date(2027, 3, 31, 0, 0, 0, 0, time.UTC)},
		{time.Date(2027, 3, 31, 0, 0, 30, 5, time.UTC), "2027-03-31T00:00:00Z", time.Date(2027, 3, 31, 0, 1, 0, 0, time.UTC)},
		{time.Date(2027, 3, 31, 2, 0, 59, 0, time.FixedZone("CEST", 7200)), "2027-03-31T00:00:00Z", time.Date(2027, 3, 31, 0, 1, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		if got := NowInput(tt.in); got != tt.now {
			t.Errorf("NowInput(%v) = %s, want %s", tt.in, got, tt.now)
		}
		if got := DecidedFrom(tt.in); !got.Equal(tt.firstSee) {
			t.Errorf("DecidedFrom(%v) = %v, want %v", tt.in, got, tt.firstSee)
		}
	}
}

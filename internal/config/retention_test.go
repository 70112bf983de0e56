package config

import (
	"strings"
	"testing"
	"time"
)

func TestValidateRetention(t *testing.T) {
	day := func(s string) TimeBound { t, _ := parseTimeBound(s); return TimeBound{t} }
	hold := func(h LegalHoldConfig) func(c *Config) {
		return func(c *Config) {
			c.Audit.Retention = Duration(2555 * 24 * time.Hour)
			c.Audit.LegalHolds = append(c.Audit.LegalHolds, h)
		}
	}
	tests := []struct {
		name    string
		change  func(c *Config)
		field   string // "" means: valid
		problem string
	}{
		{"retention with the file backend", func(c *Config) { c.Audit.Retention = Duration(2555 * 24 * time.Hour) }, "", ""},
		{"negative retention", func(c *Config) { c.Audit.Retention = Duration(-time.Hour) }, "audit.retention", "negative"},
		{"a domain hold", hold(LegalHoldConfig{Reference: "CASE-1", Domains: []string{"Partner.example"}}), "", ""},
		{"a JID hold with dates", hold(LegalHoldConfig{Reference: "CASE-2", JIDs: []string{"bob@partner.example"}, Since: day("2026-01-01"), Until: day("2026-02-01")}), "", ""},
		{"dates only", hold(LegalHoldConfig{Reference: "CASE-3", Since: day("2026-01-01")}), "", ""},
		{"no reference", hold(LegalHoldConfig{Domains: []string{"partner.example"}}), "audit.legal_holds[0].reference", "required"},
		{"duplicate reference", func(c *Config) {
			hold(LegalHoldConfig{Reference: "CASE-1", Domains: []string{"a.example"}})(c)
			hold(LegalHoldConfig{Reference: "CASE-1", Domains: []string{"b.example"}})(c)
		}, "audit.legal_holds[1].reference", "also audit.legal_holds[0]'s"},
		{"holds everything", hold(LegalHoldConfig{Reference: "ALL"}), "audit.legal_holds[0]", "holds every record"},
		{"a JID among domains", hold(LegalHoldConfig{Reference: "C", Domains: []string{"bob@partner.example"}}), "audit.legal_holds[0].domains[0]", "a user goes in jids"},
		{"a domain among JIDs", hold(LegalHoldConfig{Reference: "C", JIDs: []string{"partner.example"}}), "audit.legal_holds[0].jids[0]", "a whole domain goes in domains"},
		{"until before since", hold(LegalHoldConfig{Reference: "C", Domains: []string{"p.example"}, Since: day("2026-02-01"), Until: day("2026-01-01")}), "audit.legal_holds[0].until", "not after since"},
		{"holds with jetstream", func(c *Config) {
			c.Cluster, c.Audit.Backend = embeddedCluster(), "jetstream"
			c.Audit.LegalHolds = []LegalHoldConfig{{Reference: "C", Domains: []string{"p.example"}}}
		}, "audit.legal_holds", "jetstream backend drops records by age only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkValidate(t, tt.change, tt.field, tt.problem) })
	}
}

func TestLegalHoldsYAML(t *testing.T) {
	yaml := minimalYAML + `  retention: 2555d
  legal_holds:
    - reference: CASE-2026-17
      domains: [partner.example]
      jids: [bob@other.example]
      since: 2026-01-01
      until: 2026-03-15T12:00:00+01:00
`
	cfg, err := Parse([]byte(yaml), "testdata")
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Audit
	if a.Retention.Std() != 2555*24*time.Hour {
		t.Errorf("retention = %v", a.Retention)
	}
	if len(a.LegalHolds) != 1 {
		t.Fatalf("legal_holds = %+v", a.LegalHolds)
	}
	h := a.LegalHolds[0]
	if h.Reference != "CASE-2026-17" || h.Domains[0] != "partner.example" || h.JIDs[0] != "bob@other.example" {
		t.Errorf("hold = %+v", h)
	}
	if !h.Since.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) || !h.Until.Equal(time.Date(2026, 3, 15, 11, 0, 0, 0, time.UTC)) {
		t.Errorf("since %v until %v", h.Since, h.Until)
	}
}

func TestTimeBoundYAML(t *testing.T) {
	tests := []struct {
		value   string
		want    time.Time
		problem string
	}{
		{"2026-03-15", time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), ""},
		{"2026-03-15T10:20:30Z", time.Date(2026, 3, 15, 10, 20, 30, 0, time.UTC), ""},
		{`"2026-03-15T10:20:30.5-02:00"`, time.Date(2026, 3, 15, 12, 20, 30, 5e8, time.UTC), ""},
		{"15.03.2026", time.Time{}, "not a date or time"},
		{"2026-13-01", time.Time{}, "not a date or time"},
		{"[2026-03-15]", time.Time{}, "must be a date"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			yaml := minimalYAML + "  legal_holds:\n    - reference: R\n      domains: [p.example]\n      since: " + tt.value + "\n"
			cfg, err := Parse([]byte(yaml), "testdata")
			if tt.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := cfg.Audit.LegalHolds[0].Since.Time; !got.Equal(tt.want) {
					t.Errorf("since = %v; want %v", got, tt.want)
				}
				return
			}
			fe := requireFieldErrors(t, err)
			if len(fe) != 1 || !strings.Contains(fe[0].Problem, tt.problem) {
				t.Errorf("got %v; want one problem containing %q", err, tt.problem)
			}
		})
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"2555d", "1d12h", "0d", "10s", "d", "9223372036854775807d", "1d-5h", "1dd", "01d1ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDuration(s)
		if err != nil {
			return
		}
		if std, serr := time.ParseDuration(s); serr == nil && std != d {
			t.Fatalf("parseDuration(%q) = %v, time.ParseDuration says %v", s, d, std)
		}
		if strings.Contains(s, "d") && d < 0 {
			t.Fatalf("parseDuration(%q) = %v: negative days", s, d)
		}
	})
}

func FuzzParseTimeBound(f *testing.F) {
	for _, s := range []string{"2026-03-15", "2026-03-15T10:20:30Z", "2026-03-15T10:20:30.123+02:00", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseTimeBound(s)
		if err != nil {
			return
		}
		if b.Location() != time.UTC {
			t.Fatalf("parseTimeBound(%q) = %v: not UTC", s, b)
		}
	})
}

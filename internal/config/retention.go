package config

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// LegalHoldConfig keeps the audit files that hold records it matches
// (audit.legal_holds): records of any of Domains or JIDs (none given: all
// records) whose time is in [Since, Until).
type LegalHoldConfig struct {
	// Reference names the hold, like a case or ticket number; the logs,
	// `xmppedge audit retain` and the audit.anchor record name it.
	Reference string `yaml:"reference"`
	// Domains match a record's local or remote domain, or the domain of
	// its from or to.
	Domains []string `yaml:"domains"`
	// JIDs match from or to: a bare JID any resource, a full JID exactly.
	JIDs []string `yaml:"jids"`
	// Since and Until bound the records' time: a date (2026-03-15, UTC)
	// or an RFC 3339 time; left out: open.
	Since TimeBound `yaml:"since"`
	Until TimeBound `yaml:"until"`
}

// TimeBound is a point in time written as a date (2026-03-15, midnight
// UTC) or an RFC 3339 time (2026-03-15T10:00:00Z).
type TimeBound struct{ time.Time }

// UnmarshalYAML reads a date or an RFC 3339 time.
func (b *TimeBound) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind != yaml.ScalarNode {
		return typeError(node, "must be a date like 2026-03-15 or a time like 2026-03-15T10:00:00Z")
	}
	t, err := parseTimeBound(node.Value)
	if err != nil {
		return typeError(node, err.Error())
	}
	b.Time = t
	return nil
}

// MarshalYAML writes the bound as RFC 3339.
func (b TimeBound) MarshalYAML() (any, error) {
	if b.IsZero() {
		return "", nil
	}
	return b.UTC().Format(time.RFC3339Nano), nil
}

// parseTimeBound reads "2026-03-15" (UTC) or an RFC 3339 time.
func parseTimeBound(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date or time: write a date like 2026-03-15 (UTC) or a time like 2026-03-15T10:00:00Z", s)
}

// validateRetention checks audit.retention and audit.legal_holds.
func (c *Config) validateRetention(v *validator) {
	a := &c.Audit
	if a.Retention < 0 {
		v.add("audit.retention", "%v is negative: give a duration like 2555d, or leave it out to keep every record", time.Duration(a.Retention))
	}
	if len(a.LegalHolds) > 0 && a.Backend == AuditBackendJetStream {
		v.add("audit.legal_holds", "the jetstream backend drops records by age only (audit.retention is the stream's max age) and cannot keep held ones: "+
			"while a hold is in force, leave audit.retention out (keep every record), or use the file backend")
	}
	refs := map[string]int{}
	for i := range a.LegalHolds {
		c.validateLegalHold(v, i, refs)
	}
}

func (c *Config) validateLegalHold(v *validator, i int, refs map[string]int) {
	h := &c.Audit.LegalHolds[i]
	field := fmt.Sprintf("audit.legal_holds[%d]", i)
	h.Reference = strings.TrimSpace(h.Reference)
	switch j, seen := refs[h.Reference]; {
	case h.Reference == "":
		v.add(field+".reference", "required: name the hold (a case or ticket number, like CASE-2026-17); the logs and the audit.anchor record name it")
	case seen:
		v.add(field+".reference", "%q is also audit.legal_holds[%d]'s reference: give each hold its own", h.Reference, j)
	default:
		refs[h.Reference] = i
	}
	if len(h.Domains) == 0 && len(h.JIDs) == 0 && h.Since.IsZero() && h.Until.IsZero() {
		v.add(field, "holds every record: give domains, jids or since/until (to keep every file, leave audit.retention out instead)")
	}
	for j, d := range h.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		h.Domains[j] = d
		if d == "" || strings.ContainsAny(d, "@/ ") {
			v.add(fmt.Sprintf("%s.domains[%d]", field, j), "%q is not a domain: write one like partner.example (a user goes in jids)", d)
		}
	}
	for j, jid := range h.JIDs {
		jid = strings.TrimSpace(jid)
		h.JIDs[j] = jid
		local, domain, ok := strings.Cut(jid, "@")
		if !ok || local == "" || domain == "" || strings.HasPrefix(domain, "/") {
			v.add(fmt.Sprintf("%s.jids[%d]", field, j), "%q is not a user's JID: write user@domain (any resource) or user@domain/resource; a whole domain goes in domains", jid)
		}
	}
	if !h.Since.IsZero() && !h.Until.IsZero() && !h.Since.Before(h.Until.Time) {
		v.add(field+".until", "%s is not after since (%s): until is the end of the held period", h.Until.Format(time.RFC3339), h.Since.Format(time.RFC3339))
	}
}

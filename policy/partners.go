package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Partner agreements and posture requirements, as the policy data holds
// them on a partner entry (rules/partners.yaml):
//
//	agreement:       {owner: legal@company.test, reference: NDA-2026-17, expires: 2027-03-31}
//	require_posture: {tls: "1.3", auth: certificate}
//
// The shipped rules refuse a partner's sessions once input.now reaches
// its agreement's expires (a date is midnight UTC at its start), and a
// session below its require_posture. The gateway reads the same entries
// (Engine.Partners) for the days-left metric, the re-check when an
// agreement expires, and `xmppedge partners`.

// Agreement is the agreement a partner entry is allowed under.
type Agreement struct {
	Owner     string    `json:"owner"`
	Reference string    `json:"reference"`
	Expires   time.Time `json:"expires"` // the instant sessions are refused from
}

// PostureRequirement is a partner entry's require_posture.
type PostureRequirement struct {
	TLS  string `json:"tls,omitempty"`  // "1.2" | "1.3"
	Auth string `json:"auth,omitempty"` // "dialback" | "certificate" | "sasl_external"
}

// Partner is one partner entry of the loaded policy data.
type Partner struct {
	Domain         string              `json:"domain"`    // A-label form; may be a pattern ("*.example.org")
	Direction      string              `json:"direction"` // inbound | outbound | both
	RequireCert    bool                `json:"require_cert,omitempty"`
	Agreement      *Agreement          `json:"agreement,omitempty"`
	RequirePosture *PostureRequirement `json:"require_posture,omitempty"`
}

// NowInput is t as SessionInput.Now: UTC, RFC 3339, to the minute.
func NowInput(t time.Time) string {
	return t.UTC().Truncate(time.Minute).Format(time.RFC3339)
}

// DecidedFrom is the first instant at which a decision made with
// SessionInput.Now = NowInput(t) sees t: t rounded up to the minute. A
// re-check meant to see an expiry at t runs then.
func DecidedFrom(t time.Time) time.Time {
	if r := t.Truncate(time.Minute); r.Equal(t) {
		return t
	}
	return t.Truncate(time.Minute).Add(time.Minute)
}

// Partners returns the partner entries of the active policy's data, in
// data order. A policy without data.xmppedge.partners has none.
func (e *Engine) Partners() []Partner { return slices.Clone(e.current.Load().partners) }

// PartnerOf is the partner entry's domain (pattern) that domain falls
// under in the active policy's data ("*.partner.test" for
// chat.partner.test), or "" when none does: a bounded name for metric
// labels.
func (e *Engine) PartnerOf(domain string) string {
	if v := e.current.Load().facets.partner.lookup(domain); len(v) > 0 {
		return v[0].pattern
	}
	return ""
}

// partnersOf reads the partner entries of a normalised data document.
func partnersOf(data map[string]any) []Partner {
	root, _ := data[dataRoot].(map[string]any)
	list, _ := root["partners"].([]any)
	out := make([]Partner, 0, len(list))
	for _, x := range list {
		entry, _ := x.(map[string]any)
		p := Partner{Direction: "both"}
		p.Domain, _ = entry["domain"].(string)
		if d, ok := entry["direction"].(string); ok {
			p.Direction = d
		}
		p.RequireCert, _ = entry["require_cert"].(bool)
		if a, ok := entry["agreement"].(map[string]any); ok {
			ag := &Agreement{}
			ag.Owner, _ = a["owner"].(string)
			ag.Reference, _ = a["reference"].(string)
			s, _ := a["expires"].(string)
			ag.Expires, _ = time.Parse(time.RFC3339, s) // normalised on load
			p.Agreement = ag
		}
		if r, ok := entry["require_posture"].(map[string]any); ok {
			rp := &PostureRequirement{}
			rp.TLS, _ = r["tls"].(string)
			rp.Auth, _ = r["auth"].(string)
			p.RequirePosture = rp
		}
		out = append(out, p)
	}
	return out
}

// normalizeAgreement checks a partner entry's agreement and writes its
// expires as an RFC 3339 timestamp in UTC (a date: midnight UTC at its
// start), the form the rules compare.
func normalizeAgreement(entry map[string]any) error {
	v, ok := entry["agreement"]
	if !ok {
		return nil
	}
	a, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("agreement must be an object {owner, reference, expires}")
	}
	for _, k := range []string{"owner", "reference"} {
		if s, ok := a[k].(string); !ok || strings.TrimSpace(s) == "" {
			return fmt.Errorf("agreement.%s is missing: name who signed it (owner) and how it is filed (reference)", k)
		}
	}
	for k := range a {
		if k != "owner" && k != "reference" && k != "expires" {
			return fmt.Errorf("agreement.%s is not a field of an agreement (owner, reference, expires)", k)
		}
	}
	t, err := parseExpires(a["expires"])
	if err != nil {
		return fmt.Errorf("agreement.expires: %w", err)
	}
	if t = t.UTC(); t.Year() > 9999 {
		return fmt.Errorf("agreement.expires: %v is past the year 9999: write a date before it", a["expires"])
	}
	a["expires"] = t.Format(time.RFC3339)
	return nil
}

// parseExpires reads an expiry: a date (2027-03-31) or an RFC 3339
// timestamp (2027-03-31T17:00:00+02:00).
func parseExpires(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		if t, err := time.Parse(time.DateOnly, x); err == nil {
			return t, nil
		}
		if t, err := time.Parse(time.RFC3339, x); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("%q is neither a date (2027-03-31) nor an RFC 3339 time (2027-03-31T17:00:00Z)", x)
	case nil:
		return time.Time{}, fmt.Errorf("missing: write the date the agreement ends (e.g. expires: 2027-03-31)")
	}
	return time.Time{}, fmt.Errorf("%v is not a date: write e.g. expires: 2027-03-31", v)
}

// Values of require_posture.
var (
	postureTLSValues  = []string{"1.2", "1.3"}
	postureAuthValues = []string{"dialback", "certificate", "sasl_external"}
)

// checkRequirePosture checks a partner entry's require_posture.
func checkRequirePosture(entry map[string]any) error {
	v, ok := entry["require_posture"]
	if !ok {
		return nil
	}
	r, ok := v.(map[string]any)
	if !ok || len(r) == 0 {
		return fmt.Errorf("require_posture must be an object, e.g. {tls: \"1.3\", auth: certificate}")
	}
	for k, x := range r {
		s, _ := x.(string)
		switch k {
		case "tls":
			if f, ok := number(x); ok { // tls: 1.3 unquoted in YAML
				s = strconv.FormatFloat(f, 'f', -1, 64)
				r["tls"] = s
			}
			if !slices.Contains(postureTLSValues, s) {
				return fmt.Errorf("require_posture.tls is %v: write \"1.2\" or \"1.3\" (quoted, a string)", x)
			}
		case "auth":
			if !slices.Contains(postureAuthValues, s) {
				return fmt.Errorf("require_posture.auth is %v: one of %s", x, strings.Join(postureAuthValues, ", "))
			}
		default:
			return fmt.Errorf("require_posture.%s is not a posture field (tls, auth)", k)
		}
	}
	return nil
}

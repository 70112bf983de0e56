package policy

import (
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestStanzaDecisionStrip: strip is read into StanzaDecision.Strip; a
// malformed strip fails the decision closed; a deny carries none.
func TestStanzaDecisionStrip(t *testing.T) {
	status := Child{Name: "status", Namespace: "jabber:server"}
	avatar := Child{Name: "x", Namespace: "vcard-temp:x:update"}
	tests := []struct {
		name   string
		result string // the decision's value, a Rego term
		allow  bool
		strip  []Child
		fail   string // substring of the failure reason; "" when valid
	}{
		{"no strip", `{"allow": true}`, true, nil, ""},
		{"array", `{"allow": true, "strip": [{"name": "status", "namespace": "jabber:server"}]}`, true, []Child{status}, ""},
		{"set, sorted", `{"allow": true, "strip": {{"name": "x", "namespace": "vcard-temp:x:update"}, {"name": "status", "namespace": "jabber:server"}}}`, true, []Child{status, avatar}, ""},
		{"empty", `{"allow": true, "strip": []}`, true, nil, ""},
		{"deny drops strip", `{"allow": false, "strip": [{"name": "status", "namespace": "jabber:server"}]}`, false, nil, ""},
		{"not a list", `{"allow": true, "strip": "status"}`, false, nil, "strip is string"},
		{"not an object", `{"allow": true, "strip": ["status"]}`, false, nil, "want an object"},
		{"no namespace", `{"allow": true, "strip": [{"name": "status"}]}`, false, nil, "both name and namespace"},
		{"empty name", `{"allow": true, "strip": [{"name": "", "namespace": "jabber:server"}]}`, false, nil, "non-empty string"},
		{"name not a string", `{"allow": true, "strip": [{"name": 1, "namespace": "jabber:server"}]}`, false, nil, "non-empty string"},
		{"unknown key", `{"allow": true, "strip": [{"name": "status", "namespace": "jabber:server", "nmespace": "x"}]}`, false, nil, "unknown key"},
		{"malformed in a deny", `{"allow": false, "strip": [{"name": "status"}]}`, false, nil, "both name and namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t, map[string]string{"p.rego": "package xmppedge.stanza\ndecision := " + tt.result + "\n"}, Config{})
			in := StanzaInput{Direction: "outbound", Kind: "presence"}
			ctx := testContext(t)
			for round := range 2 { // the second from the cache (a failure: evaluated again)
				d := e.DecideStanza(ctx, &in)
				if d.Allow != tt.allow || !reflect.DeepEqual(d.Strip, tt.strip) {
					t.Fatalf("round %d: %+v, want allow %v strip %v", round, d, tt.allow, tt.strip)
				}
				if tt.fail != "" && (!strings.Contains(d.Reason, "fail") || !strings.Contains(d.Reason, tt.fail)) {
					t.Fatalf("reason %q, want a failure mentioning %q", d.Reason, tt.fail)
				}
				if wantCached := tt.fail == "" && round == 1; d.Cached != wantCached {
					t.Errorf("round %d: cached = %v, want %v", round, d.Cached, wantCached)
				}
			}
			if f := e.Stats().Failures; (f > 0) != (tt.fail != "") {
				t.Errorf("failures = %d", f)
			}
		})
	}
}

// TestDryRunDenyHasNoStrip: a would-deny passes as it came, unstripped.
func TestDryRunDenyHasNoStrip(t *testing.T) {
	e, _ := newTestEngine(t, map[string]string{"p.rego": `package xmppedge.stanza
decision := {"allow": false, "reason": "no", "strip": [{"name": "status", "namespace": "jabber:server"}]}
`}, Config{Mode: ModeDryRun})
	d := e.DecideStanza(testContext(t), &StanzaInput{Kind: "presence"})
	if !d.Allow || !d.WouldDeny || d.Strip != nil {
		t.Fatalf("%+v", d)
	}
}

// TestSessionDecisionRate: rate is read into SessionDecision.Rate; a
// malformed rate fails the decision closed; a deny carries none.
func TestSessionDecisionRate(t *testing.T) {
	tests := []struct {
		name   string
		result string
		allow  bool
		rate   *Rate
		fail   string
	}{
		{"no rate", `{"allow": true}`, true, nil, ""},
		{"rate", `{"allow": true, "rate": {"per_second": 20, "burst": 50}}`, true, &Rate{PerSecond: 20, Burst: 50}, ""},
		{"fractional rate", `{"allow": true, "rate": {"per_second": 0.5, "burst": 1}}`, true, &Rate{PerSecond: 0.5, Burst: 1}, ""},
		{"integral float burst", `{"allow": true, "rate": {"per_second": 2, "burst": 3.0}}`, true, &Rate{PerSecond: 2, Burst: 3}, ""},
		{"deny drops rate", `{"allow": false, "rate": {"per_second": 20, "burst": 50}}`, false, nil, ""},
		{"not an object", `{"allow": true, "rate": 20}`, false, nil, "rate is number"},
		{"zero per second", `{"allow": true, "rate": {"per_second": 0, "burst": 5}}`, false, nil, "positive number"},
		{"negative per second", `{"allow": true, "rate": {"per_second": -1, "burst": 5}}`, false, nil, "positive number"},
		{"per second a string", `{"allow": true, "rate": {"per_second": "20", "burst": 5}}`, false, nil, "positive number"},
		{"zero burst", `{"allow": true, "rate": {"per_second": 1, "burst": 0}}`, false, nil, "integer from 1"},
		{"fractional burst", `{"allow": true, "rate": {"per_second": 1, "burst": 2.5}}`, false, nil, "integer from 1"},
		{"huge burst", `{"allow": true, "rate": {"per_second": 1, "burst": 1e12}}`, false, nil, "integer from 1"},
		{"no burst", `{"allow": true, "rate": {"per_second": 1}}`, false, nil, "both per_second and burst"},
		{"unknown key", `{"allow": true, "rate": {"per_second": 1, "burst": 2, "per_minute": 60}}`, false, nil, "has the key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t, map[string]string{"p.rego": "package xmppedge.session\ndecision := " + tt.result + "\n"}, Config{})
			in := SessionInput{Direction: "inbound", RemoteDomain: "partner.test"}
			ctx := testContext(t)
			for round := range 2 {
				d := e.DecideSession(ctx, &in)
				if d.Allow != tt.allow || !reflect.DeepEqual(d.Rate, tt.rate) {
					t.Fatalf("round %d: %+v (rate %+v), want allow %v rate %+v", round, d, d.Rate, tt.allow, tt.rate)
				}
				if tt.fail != "" && (!strings.Contains(d.Reason, "fail") || !strings.Contains(d.Reason, tt.fail)) {
					t.Fatalf("reason %q, want a failure mentioning %q", d.Reason, tt.fail)
				}
				if wantCached := tt.fail == "" && round == 1; d.Cached != wantCached {
					t.Errorf("round %d: cached = %v, want %v", round, d.Cached, wantCached)
				}
			}
		})
	}
}

// TestDecisionHead: the object, allow and reason every decision holds.
func TestDecisionHead(t *testing.T) {
	tests := []struct {
		result     string // a Rego term
		wantAllow  bool
		wantReason string
		fail       string // substring of the error; "" when valid
	}{
		{`{"allow": true}`, true, "", ""},
		{`{"allow": false, "reason": "not a partner"}`, false, "not a partner", ""},
		{`{"allow": true, "reason": 3}`, false, "", "reason is number, want a string"},
		{`{"reason": "x"}`, false, "", "has no allow"},
		{`{"allow": "yes"}`, false, "", "allow is string, want a boolean"},
		{`true`, false, "", "is boolean, want an object with allow"},
	}
	for _, tt := range tests {
		t.Run(tt.result, func(t *testing.T) {
			var allow bool
			var reason string
			obj, err := decisionHead(ast.MustParseTerm(tt.result), "p.decision", &allow, &reason)
			if tt.fail != "" {
				if err == nil || !strings.Contains(err.Error(), tt.fail) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.fail)
				}
				return
			}
			if err != nil || obj == nil {
				t.Fatalf("obj %v, err %v", obj, err)
			}
			if allow != tt.wantAllow || reason != tt.wantReason {
				t.Errorf("allow %v reason %q, want %v %q", allow, reason, tt.wantAllow, tt.wantReason)
			}
		})
	}
}

package edge

import (
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// require_posture on an outgoing stream, with the shipped rules: the
// session is decided before connecting (require: posture), and again once
// the stream is authenticated. The fake partner authenticates by dialback
// over TLS 1.3 with a valid certificate ("TLS 1.3, certificate"): a
// partner that requires a certificate gets the stanza; one that requires
// SASL EXTERNAL does not — the stream is closed, the stanza is bounced to
// its sender with policy-violation naming the posture, and the session.auth
// deny record says why.
func TestRequirePostureOutgoing(t *testing.T) {
	tests := []struct {
		name      string
		posture   string
		delivered bool
	}{
		{"certificate met by dialback with a valid certificate", `{tls: "1.3", auth: certificate}`, true},
		{"sasl_external not met by dialback", `{tls: "1.3", auth: sasl_external}`, false},
		{"TLS 1.2 met by TLS 1.3", `{tls: "1.2"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eng := shippedRules(t, "partners:\n  - {domain: partner.test, require_posture: "+tt.posture+"}\n")
			env := newTestEnv(t, func(o *Options) { o.Policy = eng })
			partner := startFakeServerTLS(t, "partner.test", env.tlsConfig(t, "partner.test"))
			env.res.set("partner.test", partner.addr(), true)
			p := authedInside(t, env, "partner.test")
			p.send("<message from='alice@company.test/r' to='bob@partner.test' id='rp1'><body>hi</body></message>")
			if tt.delivered {
				partner.expectStanza(t, "id='rp1'")
				if deny := env.aud.find(audit.EventSessionAuth, audit.DecisionDeny); len(deny) != 0 {
					t.Fatalf("session.auth deny records: %+v", deny)
				}
				return
			}
			got := env.internal.expectStanza(t, "id='rp1'", "type='error'", "<policy-violation")
			if !strings.Contains(got, "require_posture") || strings.Contains(got, "<body>") {
				t.Fatalf("bounce %q: want the posture named, and no body echoed", got)
			}
			deny := env.aud.find(audit.EventSessionAuth, audit.DecisionDeny)
			if len(deny) != 1 || deny[0].RemoteDomain != "partner.test" || deny[0].Auth != "dialback" || !strings.Contains(deny[0].Reason, "requires posture TLS 1.3, sasl_external") {
				t.Fatalf("session.auth deny records: %+v", deny)
			}
			if n := partner.accepts.Load(); n == 0 {
				t.Fatal("the partner was never connected to: the refusal must come once the stream is authenticated")
			}
		})
	}
}

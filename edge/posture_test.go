package edge

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/policy"
)

func TestPostureWatch(t *testing.T) {
	store, err := posture.Open(filepath.Join(t.TempDir(), "posture.json"))
	if err != nil {
		t.Fatal(err)
	}
	aud := &fakeAuditor{}
	m := metrics.New("test")
	w := &postureWatch{store: store, rec: recorder{sink: aud, m: m}, log: slog.New(slog.DiscardHandler), m: m,
		partner: func(d string) string {
			if strings.HasSuffix(d, "partner.test") {
				return "*.partner.test"
			}
			return ""
		}}
	facts := func(domain, tlsv, auth string, certValid bool) *policy.SessionInput {
		return &policy.SessionInput{Direction: policy.Inbound, LocalDomain: "company.test", RemoteDomain: domain, Auth: auth,
			TLS: policy.TLSInfo{Version: tlsv, PeerCertValid: certValid, PeerCertError: map[bool]string{false: "self-signed"}[certValid]}}
	}
	steps := []struct {
		name  string
		in    *policy.SessionInput
		dane  bool
		event string // "" none
	}{
		{"first: recorded", facts("a.partner.test", "TLS 1.3", "sasl_external", true), false, EventPostureRaised},
		{"the same: nothing", facts("a.partner.test", "TLS 1.3", "sasl_external", true), false, ""},
		{"dialback after SASL EXTERNAL: downgrade", facts("a.partner.test", "TLS 1.3", "dialback", false), false, EventPostureDowngrade},
		{"DANE: raised", facts("a.partner.test", "TLS 1.3", "sasl_external", true), true, EventPostureRaised},
		{"not yet authenticated: nothing", facts("a.partner.test", "", "", false), false, ""},
		{"a stranger downgrading counts as other", facts("stranger.test", "TLS 1.3", "sasl_external", true), false, EventPostureRaised},
		{"… and its downgrade", facts("stranger.test", "TLS 1.2", "sasl_external", true), false, EventPostureDowngrade},
	}
	for _, st := range steps {
		before := len(aud.records)
		w.observe("s1", st.in, "192.0.2.1:5269", st.dane)
		switch got := aud.records[before:]; {
		case st.event == "" && len(got) != 0:
			t.Errorf("%s: records %+v, want none", st.name, got)
		case st.event != "" && (len(got) != 1 || got[0].Event != st.event):
			t.Errorf("%s: records %+v, want one %s", st.name, got, st.event)
		case st.event != "" && (got[0].RemoteDomain != st.in.RemoteDomain || got[0].Auth != st.in.Auth || got[0].Reason == ""):
			t.Errorf("%s: record %+v does not describe the session", st.name, got[0])
		}
	}
	down := aud.records[1]
	if !strings.Contains(down.Reason, "dialback < sasl_external") || down.PeerCert != "self-signed" {
		t.Errorf("downgrade record %+v", down)
	}
	if n := testutil.CollectAndCount(m.Registry(), "xmppedge_posture_downgrades_total"); n != 2 {
		t.Errorf("%d downgrade series, want *.partner.test and other", n)
	}
	if !isDANE(&certs.Verdict{Valid: true, Method: certs.MethodDANEEE}) || isDANE(&certs.Verdict{Valid: true, Method: certs.MethodPKIX}) || isDANE(nil) {
		t.Error("isDANE")
	}
	// Off without a store.
	(&postureWatch{}).observe("s2", facts("a.partner.test", "", "dialback", false), "", false)
}

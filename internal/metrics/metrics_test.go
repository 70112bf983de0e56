package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// exercise calls every method with ordinary and hostile label values.
func exercise(m *Metrics) {
	m.SessionOpened(LegOutside, RoleIncoming, AuthDialback)
	m.SessionOpened(LegInside, RoleOutgoing, "dialback,sasl_external")
	m.SessionAttempt(LegOutside, RoleOutgoing)
	m.SessionFailure(LegOutside, RoleOutgoing, FailTLS)
	m.SessionFailure(LegOutside, RoleOutgoing, "partner.example said no")
	m.Stanza(DirInbound, KindMessage, OutcomeRelayed, "")
	m.Stanza(DirOutbound, KindIQ, OutcomeDenied, ReasonPolicyViolation)
	m.Stanza(DirOutbound, "juliet@capulet.example", OutcomeBounced, "teapot")
	m.Bytes(LegOutside, BytesReceived, 1234)
	m.Bytes(LegInside, BytesSent, 99)
	m.PolicyDecision(PolicyKindStanza, 3*time.Microsecond, true, false)
	m.PolicyDecision(PolicyKindSession, 40*time.Microsecond, false, true)
	m.DNSLookup(QTypeSRV, 2*time.Millisecond, nil)
	m.DNSLookup("AAAA", time.Second, errors.New("timeout"))
	m.TLSHandshake(LegOutside, ResultSuccess, "TLS 1.3")
	m.TLSHandshake(LegOutside, ResultFailure, "")
	m.Dialback(DialbackReceiving, DialbackValid)
	m.SASLExternalFallback(LegOutside, FallbackSASL)
	m.SASLExternalFallback(LegInside, "our certificate for company.test")
	m.AuditRecord(5*time.Microsecond, nil)
	m.AuditRecord(0, errors.New("disk full"))
	m.AuditFsync(200 * time.Microsecond)
	m.QueueDepth(LegOutside, 3)
	m.CertificateExpiry("company.test", time.Unix(1900000000, 0))
	m.PolicyRevision("rev-1")
	m.Reload(nil)
	m.ReloadClosedSessions(2)
	m.AgreementExpiry(map[string]time.Time{"partner.test": time.Unix(1900000000, 0)})
	m.PostureDowngrade("partner.test")
	m.PostureDowngrade("")
	m.PartnerPosture("partner.test", 2, 3, false)
	m.PartnerPosture("", 2, 3, false)
}

func TestLabelValuesAreBounded(t *testing.T) {
	tests := []struct {
		name  string
		call  func(m *Metrics)
		count func(m *Metrics) float64
		want  float64
	}{
		{
			name:  "known auth",
			call:  func(m *Metrics) { m.SessionOpened("outside", "incoming", "dialback") },
			count: func(m *Metrics) float64 { return sessionsGauge(m, "outside", "incoming", "dialback") },
			want:  1,
		},
		{
			name: "open then close",
			call: func(m *Metrics) {
				m.SessionOpened("inside", "outgoing", "sasl_external")
				m.SessionClosed("inside", "outgoing", "sasl_external")
			},
			count: func(m *Metrics) float64 { return sessionsGauge(m, "inside", "outgoing", "sasl_external") },
			want:  0,
		},
		{
			name:  "auth per pair, all the same",
			call:  func(m *Metrics) { m.SessionOpened("outside", "incoming", "dialback,dialback") },
			count: func(m *Metrics) float64 { return sessionsGauge(m, "outside", "incoming", "dialback") },
			want:  1,
		},
		{
			name:  "auth per pair, different",
			call:  func(m *Metrics) { m.SessionOpened("outside", "incoming", "dialback,sasl_external") },
			count: func(m *Metrics) float64 { return sessionsGauge(m, "outside", "incoming", "mixed") },
			want:  1,
		},
		{
			name:  "empty auth is none",
			call:  func(m *Metrics) { m.SessionOpened("inside", "incoming", "") },
			count: func(m *Metrics) float64 { return sessionsGauge(m, "inside", "incoming", "none") },
			want:  1,
		},
		{
			name:  "unknown leg is other",
			call:  func(m *Metrics) { m.SessionOpened("sideways", "incoming", "dialback") },
			count: func(m *Metrics) float64 { return sessionsGauge(m, "other", "incoming", "dialback") },
			want:  1,
		},
		{
			name: "case-insensitive",
			call: func(m *Metrics) { m.SessionAttempt("OUTSIDE", "Outgoing") },
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_session_attempts_total", "leg", "outside", "direction", "outgoing")
			},
			want: 1,
		},
		{
			name: "unknown failure reason is other",
			call: func(m *Metrics) {
				m.SessionFailure("outside", "outgoing", "connection refused by 192.0.2.1")
				m.SessionFailure("outside", "outgoing", FailDNS)
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_session_failures_total", "leg", "outside", "direction", "outgoing", "reason", "other")
			},
			want: 1,
		},
		{
			name: "stanza relayed, empty reason is none",
			call: func(m *Metrics) {
				m.Stanza("inbound", "message", "relayed", "")
				m.Stanza("inbound", "message", "relayed", "none")
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_stanzas_total", "direction", "inbound", "kind", "message", "outcome", "relayed", "reason", "none")
			},
			want: 2,
		},
		{
			name: "stanza with a JID as kind and free text as reason",
			call: func(m *Metrics) { m.Stanza("outbound", "romeo@montague.example", "bounced", "the server is on fire") },
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_stanzas_total", "direction", "outbound", "kind", "other", "outcome", "bounced", "reason", "other")
			},
			want: 1,
		},
		{
			name: "bytes add up",
			call: func(m *Metrics) {
				m.Bytes("outside", "sent", 100)
				m.Bytes("outside", "sent", 23)
				m.Bytes("outside", "sent", -5)
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_bytes_total", "leg", "outside", "direction", "sent")
			},
			want: 123,
		},
		{
			name: "policy cache hits and failures",
			call: func(m *Metrics) {
				m.PolicyDecision("stanza", time.Microsecond, true, false)
				m.PolicyDecision("stanza", time.Microsecond, true, false)
				m.PolicyDecision("stanza", 30*time.Microsecond, false, true)
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_policy_decision_cache_hits_total", "kind", "stanza") +
					10*counterValue(m, "xmppedge_policy_decision_failures_total", "kind", "stanza")
			},
			want: 12,
		},
		{
			name: "dns failure",
			call: func(m *Metrics) {
				m.DNSLookup("SRV", time.Millisecond, errors.New("SERVFAIL"))
				m.DNSLookup("SRV", time.Millisecond, nil)
			},
			count: func(m *Metrics) float64 { return counterValue(m, "xmppedge_dns_lookup_failures_total", "qtype", "SRV") },
			want:  1,
		},
		{
			name: "tls version spellings",
			call: func(m *Metrics) {
				m.TLSHandshake("outside", "success", "TLS 1.3")
				m.TLSHandshake("outside", "success", "TLSv1.3")
				m.TLSHandshake("outside", "success", "1.3")
				m.TLSHandshake("outside", "success", "SSLv3")
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_tls_handshakes_total", "leg", "outside", "result", "success", "version", "1.3")
			},
			want: 3,
		},
		{
			name: "dialback",
			call: func(m *Metrics) { m.Dialback("authoritative", "invalid") },
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_dialback_total", "role", "authoritative", "result", "invalid")
			},
			want: 1,
		},
		{
			name: "SASL EXTERNAL fallbacks, unknown cause is other",
			call: func(m *Metrics) {
				m.SASLExternalFallback("outside", "tls")
				m.SASLExternalFallback("outside", "TLS")
				m.SASLExternalFallback("outside", "remote error: tls: bad certificate")
			},
			count: func(m *Metrics) float64 {
				return counterValue(m, "xmppedge_sasl_external_fallbacks_total", "leg", "outside", "cause", "tls") +
					10*counterValue(m, "xmppedge_sasl_external_fallbacks_total", "leg", "outside", "cause", "other")
			},
			want: 12,
		},
		{
			name: "audit failure is not a record",
			call: func(m *Metrics) {
				m.AuditRecord(time.Millisecond, errors.New("EIO"))
				m.AuditRecord(time.Millisecond, nil)
			},
			count: func(m *Metrics) float64 {
				return testutil.ToFloat64(m.auditRecords) + 10*testutil.ToFloat64(m.auditFailures)
			},
			want: 11,
		},
		{
			name:  "queue depth",
			call:  func(m *Metrics) { m.QueueDepth("outside", 5); m.QueueDepth("outside", -2) },
			count: func(m *Metrics) float64 { return gaugeValue(m, "xmppedge_queued_stanzas", "leg", "outside") },
			want:  3,
		},
		{
			name:  "reload closed sessions",
			call:  func(m *Metrics) { m.ReloadClosedSessions(2); m.ReloadClosedSessions(0) },
			count: func(m *Metrics) float64 { return testutil.ToFloat64(m.reloadClosed) },
			want:  2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New("test")
			tt.call(m)
			if got := tt.count(m); got != tt.want {
				t.Errorf("value = %v, want %v\n%s", got, tt.want, scrape(t, m))
			}
		})
	}
}

func TestPolicyRevisionKeepsOneSeries(t *testing.T) {
	m := New("test")
	m.PolicyRevision("a1")
	m.PolicyRevision("b2")
	m.PolicyRevision("b2")
	want := `
# HELP xmppedge_policy_info The policy revision in force (value 1).
# TYPE xmppedge_policy_info gauge
xmppedge_policy_info{revision="b2"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "xmppedge_policy_info"); err != nil {
		t.Error(err)
	}
}

func TestCertificateExpiry(t *testing.T) {
	m := New("test")
	m.CertificateExpiry("company.test", time.Unix(1900000000, 0))
	m.CertificateExpiry("old.test", time.Unix(1800000000, 0))
	m.CertificateExpiry("old.test", time.Time{})
	want := `
# HELP xmppedge_certificate_expiry_timestamp_seconds Not-after time of the certificate presented for each local domain, in seconds since the epoch.
# TYPE xmppedge_certificate_expiry_timestamp_seconds gauge
xmppedge_certificate_expiry_timestamp_seconds{domain="company.test"} 1.9e+09
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "xmppedge_certificate_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
}

func TestBuildInfo(t *testing.T) {
	m := New("1.2.3")
	out := scrape(t, m)
	if !strings.Contains(out, `xmppedge_build_info{goversion="go`) || !strings.Contains(out, `version="1.2.3"} 1`) {
		t.Errorf("no build info in:\n%s", grep(out, "build_info"))
	}
	for _, want := range []string{"go_goroutines", "process_"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %s* metrics", want)
		}
	}
}

// TestHotPathDoesNotAllocate checks the promise made to the gateway: once a
// label combination has been used, reporting it allocates nothing.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New("test")
	calls := []struct {
		name string
		f    func()
	}{
		{"SessionOpened", func() { m.SessionOpened(LegOutside, RoleIncoming, AuthDialback) }},
		{"SessionClosed", func() { m.SessionClosed(LegOutside, RoleIncoming, AuthDialback) }},
		{"SessionAttempt", func() { m.SessionAttempt(LegInside, RoleIncoming) }},
		{"SessionFailure", func() { m.SessionFailure(LegInside, RoleOutgoing, "weird") }},
		{"Stanza", func() { m.Stanza(DirInbound, KindMessage, OutcomeRelayed, "") }},
		{"Bytes", func() { m.Bytes(LegOutside, BytesReceived, 400) }},
		{"PolicyDecision", func() { m.PolicyDecision(PolicyKindStanza, time.Microsecond, true, false) }},
		{"DNSLookup", func() { m.DNSLookup(QTypeSRV, time.Millisecond, nil) }},
		{"TLSHandshake", func() { m.TLSHandshake(LegOutside, ResultSuccess, "TLS 1.3") }},
		{"Dialback", func() { m.Dialback(DialbackReceiving, DialbackValid) }},
		{"AuditRecord", func() { m.AuditRecord(time.Microsecond, nil) }},
		{"AuditFsync", func() { m.AuditFsync(time.Millisecond) }},
		{"QueueDepth", func() { m.QueueDepth(LegOutside, 1) }},
	}
	for _, c := range calls {
		c.f() // resolve the child
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", c.name, n)
		}
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *Metrics
	exercise(m) // must not panic
}

func TestTwoInstancesDoNotShareSeries(t *testing.T) {
	a, b := New("a"), New("b")
	a.Stanza(DirInbound, KindMessage, OutcomeRelayed, "")
	if got := counterValue(b, "xmppedge_stanzas_total", "direction", "inbound", "kind", "message", "outcome", "relayed", "reason", "none"); got != 0 {
		t.Errorf("second instance sees %v stanzas", got)
	}
}

// TestMetricsLint runs client_golang's linter (always) and promtool check
// metrics (when installed: Debian package "prometheus") over the /metrics
// output after every metric has been used.
func TestMetricsLint(t *testing.T) {
	m := New("test")
	exercise(m)

	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	body := scrape(t, m)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("XMPPEDGE_REQUIRE_PROMTOOL") != "" {
			t.Fatalf("promtool is required (XMPPEDGE_REQUIRE_PROMTOOL is set) but not on PATH: install Debian's package prometheus")
		}
		t.Skip("promtool not on PATH: install Debian's package prometheus (apt-get install -y prometheus) to check /metrics with it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestHealthEndpoints(t *testing.T) {
	tests := []struct {
		name       string
		ready      func() []string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"healthz", nil, "/healthz", http.StatusOK, "ok\n"},
		{"ready without a check", nil, "/readyz", http.StatusOK, "ready\n"},
		{"ready", func() []string { return nil }, "/readyz", http.StatusOK, "ready\n"},
		{
			"not ready",
			func() []string { return []string{"audit: /var/lib/x is not writable", "policy: not loaded\nyet"} },
			"/readyz", http.StatusServiceUnavailable,
			"audit: /var/lib/x is not writable\npolicy: not loaded yet\n",
		},
		{"metrics", nil, "/metrics", http.StatusOK, ""},
		{"unknown", nil, "/nope", http.StatusNotFound, ""},
	}
	m := New("test")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(m.Mux(tt.ready))
			defer srv.Close()
			resp, err := srv.Client().Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
			if tt.path == "/metrics" && !strings.Contains(string(body), "xmppedge_build_info") {
				t.Errorf("/metrics lacks xmppedge_build_info")
			}
		})
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d", rec.Code)
	}
	return rec.Body.String()
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func sessionsGauge(m *Metrics, leg, role, auth string) float64 {
	return gaugeValue(m, "xmppedge_sessions", "leg", leg, "role", role, "auth", auth)
}

func counterValue(m *Metrics, name string, labelPairs ...string) float64 {
	return sampleValue(m, name, labelPairs...)
}

func gaugeValue(m *Metrics, name string, labelPairs ...string) float64 {
	return sampleValue(m, name, labelPairs...)
}

// sampleValue finds the counter or gauge sample of name with exactly the
// given labels; 0 when there is none.
func sampleValue(m *Metrics, name string, labelPairs ...string) float64 {
	families, err := m.Registry().Gather()
	if err != nil {
		panic(err)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labelPairs); i += 2 {
		want[labelPairs[i]] = labelPairs[i+1]
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, s := range f.GetMetric() {
			if len(s.GetLabel()) != len(want) {
				continue
			}
			for _, l := range s.GetLabel() {
				if want[l.GetName()] != l.GetValue() {
					continue samples
				}
			}
			if s.Counter != nil {
				return s.GetCounter().GetValue()
			}
			return s.GetGauge().GetValue()
		}
	}
	return 0
}

// The cluster metrics read their source at each scrape.
func TestWatchCluster(t *testing.T) {
	m := New("test")
	var healthy error
	appended, acked, failed := uint64(10), uint64(7), uint64(2)
	m.WatchCluster(ClusterSource{
		Healthy:     func() error { return healthy },
		AuditStream: func() (uint64, uint64, uint64) { return appended, acked, failed },
	})
	tests := []struct {
		name   string
		set    func()
		metric string
		want   float64
	}{
		{"quorum", func() {}, "xmppedge_cluster_quorum", 1},
		{"quorum lost", func() { healthy = errors.New("no quorum") }, "xmppedge_cluster_quorum", 0},
		{"pending", func() {}, "xmppedge_audit_stream_pending", 3},
		{"acknowledged", func() {}, "xmppedge_audit_stream_acknowledged_total", 7},
		{"failed batches", func() {}, "xmppedge_audit_stream_failed_batches_total", 2},
		{"pending drained", func() { acked = 10 }, "xmppedge_audit_stream_pending", 0},
	}
	for _, tt := range tests {
		tt.set()
		if got := scrapeValue(t, m, tt.metric); got != tt.want {
			t.Errorf("%s: %s = %v, want %v", tt.name, tt.metric, got, tt.want)
		}
	}
}

// scrapeValue gathers m and returns the value of the unlabelled metric name.
func scrapeValue(t *testing.T, m *Metrics, name string) float64 {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name || len(f.GetMetric()) != 1 {
			continue
		}
		mm := f.GetMetric()[0]
		switch {
		case mm.GetGauge() != nil:
			return mm.GetGauge().GetValue()
		case mm.GetCounter() != nil:
			return mm.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

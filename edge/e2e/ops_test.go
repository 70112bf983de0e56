package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// httpGet fetches a URL of xmppedge's metrics listener.
func httpGet(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + MetricsAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminGet fetches an admin API path with a bearer token ("" = none).
func adminGet(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+MetricsAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue sums the samples of name whose labels include all of want.
func metricValue(text, name string, want map[string]string) float64 {
	total := 0.0
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? ([0-9.e+-]+)$`)
	for _, line := range strings.Split(text, "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ok := true
		for k, v := range want {
			if !strings.Contains(m[1], k+`="`+v+`"`) {
				ok = false
			}
		}
		if ok {
			f, _ := strconv.ParseFloat(m[2], 64)
			total += f
		}
	}
	return total
}

// checkMetrics checks /metrics after TestGatewayPolicyAndAudit's exchange:
// outbound relayed messages, the one denied message, open sessions, and
// promtool's verdict on the exposition.
func checkMetrics(t *testing.T, outboundRelayed, inboundRelayedAtLeast int) {
	t.Helper()
	code, text := httpGet(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	relayed := metricValue(text, "xmppedge_stanzas_total", map[string]string{"direction": "outbound", "kind": "message", "outcome": "relayed"})
	if int(relayed) != outboundRelayed {
		t.Errorf("outbound messages relayed: metric %v, the test sent %d", relayed, outboundRelayed)
	}
	in := metricValue(text, "xmppedge_stanzas_total", map[string]string{"direction": "inbound", "kind": "message", "outcome": "relayed"})
	if int(in) < inboundRelayedAtLeast {
		t.Errorf("inbound messages relayed: metric %v, want at least %d", in, inboundRelayedAtLeast)
	}
	if d := metricValue(text, "xmppedge_stanzas_total", map[string]string{"direction": "outbound", "kind": "message", "outcome": "denied", "reason": "policy-violation"}); d != 1 {
		t.Errorf("denied outbound messages: metric %v, want 1", d)
	}
	if s := metricValue(text, "xmppedge_sessions", map[string]string{"leg": "outside"}); s < 2 {
		t.Errorf("open outside sessions: metric %v, want at least 2 (one each way)", s)
	}
	t.Logf("metrics: %v outbound and %v inbound messages relayed, 1 denied", relayed, in)
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool is missing (Debian package prometheus): %v", err)
		}
		t.Logf("promtool not installed: skipping `promtool check metrics`")
		return
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// checkReadiness checks /healthz and /readyz, and that /readyz turns 503
// when the audit folder cannot be written (made immutable: the tests run
// as root, for whom file modes do not stop a write).
func checkReadiness(t *testing.T, gw *gatewayProc) {
	t.Helper()
	if code, body := httpGet(t, "/healthz"); code != 200 {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := httpGet(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	dir := filepath.Join(gw.dir, "audit")
	lock, unlock := exec.Command("chmod", "0500", dir), exec.Command("chmod", "0700", dir)
	if os.Geteuid() == 0 {
		lock, unlock = exec.Command("chattr", "+i", dir), exec.Command("chattr", "-i", dir)
	}
	if out, err := lock.CombinedOutput(); err != nil {
		t.Fatalf("cannot make %s unwritable: %v %s", dir, err, out)
	}
	code, body := httpGet(t, "/readyz")
	unlock.Run()
	if code != 503 || !strings.Contains(body, "audit") {
		t.Errorf("/readyz with the audit folder unwritable: %d %q, want 503 naming the audit log", code, body)
	}
	if code, body := httpGet(t, "/readyz"); code != 200 {
		t.Errorf("/readyz after the folder is writable again: %d %s", code, body)
	}
}

// checkAdmin lists sessions through the admin API: refused without the
// bearer token or with a wrong one, answered with it.
func checkAdmin(t *testing.T) {
	t.Helper()
	for _, token := range []string{"", "wrong-token"} {
		if code, body := adminGet(t, "/admin/sessions", token); code != http.StatusUnauthorized {
			t.Fatalf("/admin/sessions with token %q: %d %s, want 401", token, code, body)
		}
	}
	code, body := adminGet(t, "/admin/sessions", AdminToken)
	if code != 200 {
		t.Fatalf("/admin/sessions: %d %s", code, body)
	}
	var sessions []map[string]any
	if err := json.Unmarshal([]byte(body), &sessions); err != nil {
		t.Fatalf("/admin/sessions is not a JSON list: %v", err)
	}
	found := false
	for _, s := range sessions {
		if s["leg"] == "outside" && s["direction"] == "outgoing" && fmt.Sprint(s["remote"]) == "["+PartnerDomain+"]" && s["tls_version"] == "TLS 1.3" {
			found = true
		}
	}
	if !found {
		t.Errorf("/admin/sessions has no outgoing TLS session to %s: %s", PartnerDomain, body)
	}
}

// probe runs `xmppedge probe -config` against the test bed.
func probe(t *testing.T, gw *gatewayProc, domain string) (string, int) {
	t.Helper()
	cmd := exec.Command(gatewayBinary(t), "probe", "-config", filepath.Join(gw.dir, "xmppedge.yaml"), "-timeout", "5s", domain)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}

// checkProbe: against partner.test the probe prints the SRV records, the
// TLS facts, the certificate verdict and a successful dialback; against a
// domain without SRV, a server that is down and (certValid false) a wrong
// certificate, it says what is wrong.
func checkProbe(t *testing.T, gw *gatewayProc, certValid bool) {
	t.Helper()
	out, code := probe(t, gw, PartnerDomain)
	t.Logf("xmppedge probe %s (exit %d):\n%s", PartnerDomain, code, out)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`_xmpp-server\._tcp\.partner\.test`),
		regexp.MustCompile(`TLS ?1\.3`),
		regexp.MustCompile(`(?m)^\s*PASS\s+dialback`),
		regexp.MustCompile(`(?m)^\s*PASS\s+policy: outbound sessions with partner\.test allowed`),
		regexp.MustCompile(`(?m)^\s*PASS\s+policy: inbound sessions with partner\.test allowed`),
	} {
		if !want.MatchString(out) {
			t.Errorf("probe %s: output lacks %s", PartnerDomain, want)
		}
	}
	certLine := regexp.MustCompile(`(?m)^\s*(PASS|WARN|FAIL)\s+certificate\b.*$`).FindString(out)
	switch {
	case certLine == "":
		t.Errorf("probe %s: no certificate verdict line", PartnerDomain)
	case certValid && !strings.Contains(certLine, "PASS"):
		t.Errorf("probe %s: certificate should be valid: %s", PartnerDomain, certLine)
	case !certValid && strings.Contains(certLine, "PASS"):
		t.Errorf("probe %s: a self-signed certificate passed: %s", PartnerDomain, certLine)
	}
	for _, c := range []struct{ domain, want string }{
		{DownDomain, "refused"},
		{"nosrv.test", "nosrv.test"},
	} {
		out, code := probe(t, gw, c.domain)
		fails := regexp.MustCompile(`(?m)^\s*FAIL\s+.*$`).FindAllString(out, -1)
		if code == 0 || len(fails) == 0 || !strings.Contains(strings.Join(fails, "\n"), c.want) {
			t.Errorf("probe %s: exit %d, FAIL lines %q, want one naming %q\n%s", c.domain, code, fails, c.want, out)
		} else {
			t.Logf("probe %s: %s", c.domain, strings.TrimSpace(fails[0]))
		}
	}
}

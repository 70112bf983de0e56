package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/edge"
	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/metrics"
)

// file is one file a test puts in the config's folder.
type file struct {
	content []byte
	mode    os.FileMode // default 0600
}

func writeFiles(t *testing.T, dir string, files map[string]file) {
	t.Helper()
	for name, f := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		mode := f.mode
		if mode == 0 {
			mode = 0o600
		}
		if err := os.WriteFile(path, f.content, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
	}
}

// insert puts text after the line that starts with after (a section head
// such as "audit:"), or at the end when after is "".
func insert(after, text string) func(string) string {
	return func(cfg string) string {
		if after == "" {
			return cfg + text
		}
		return strings.Replace(cfg, after+"\n", after+"\n"+text, 1)
	}
}

// auditChain writes an audit file of one record, chained with key.
func auditChain(t *testing.T, path string, key []byte) []byte {
	t.Helper()
	l, err := audit.Open(audit.Config{Path: path, HMACKey: key, Node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := l.Append(&audit.Record{Event: audit.EventSessionOpen, RemoteDomain: "partner.test"})
	if err == nil {
		err = l.WaitDurable(context.Background(), seq)
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// otherKeyPEM is a private key that belongs to no certificate of the
// config.
func otherKeyPEM(t *testing.T) []byte {
	t.Helper()
	ca, err := certstest.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := ca.Issue(certstest.LeafOptions{DNSNames: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// Every start-up refusal of run is reported by check, naming the field:
// each case runs both commands on the same files. run gets a context that
// has already ended, so that it returns even if it started.
func TestStartRefusals(t *testing.T) {
	keyA := []byte(strings.Repeat("a", 32))
	const token = "0123456789abcdef0123456789abcdef"
	metricsAdmin := "metrics:\n  listen: \"127.0.0.1:0\"\n  admin: true\n"
	insideCA := "  tls: required\n  ca: {cert_file: ca/inside-ca.crt, key_file: ca/inside-ca.key}\n"
	tests := []struct {
		name    string
		files   func(t *testing.T, dir string) map[string]file
		edit    func(string) string
		field   string
		problem string
	}{
		{
			name: "dialback secret readable by others",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"dialback.secret": {[]byte("0123456789abcdef\n"), 0o644}}
			},
			field: "dialback.secret_file", problem: "chmod 600",
		},
		{
			name: "dialback secret empty",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"dialback.secret": {[]byte("\n"), 0o600}}
			},
			field: "dialback.secret_file", problem: "is empty",
		},
		{
			name: "dialback secret is a folder",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"dialback.secret/x": {[]byte("x"), 0o600}}
			},
			field: "dialback.secret_file", problem: "not a regular file",
		},
		{
			name: "audit HMAC key too short",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"audit.key": {[]byte("short\n"), 0o600}}
			},
			edit:  insert("audit:", "  hmac_key_file: audit.key\n"),
			field: "audit.hmac_key_file", problem: "use at least",
		},
		{
			name:  "audit HMAC key readable by others",
			files: func(*testing.T, string) map[string]file { return map[string]file{"audit.key": {keyA, 0o644}} },
			edit:  insert("audit:", "  hmac_key_file: audit.key\n"),
			field: "audit.hmac_key_file", problem: "chmod 600",
		},
		{
			name: "audit file written with another HMAC key",
			files: func(t *testing.T, dir string) map[string]file {
				other := filepath.Join(t.TempDir(), "audit.jsonl")
				return map[string]file{"audit.key": {keyA, 0o600}, "audit.jsonl": {auditChain(t, other, []byte(strings.Repeat("b", 32))), 0o600}}
			},
			edit:  insert("audit:", "  hmac_key_file: audit.key\n"),
			field: "audit.path", problem: "another audit.hmac_key_file",
		},
		{
			name: "audit file edited",
			files: func(t *testing.T, dir string) map[string]file {
				data := auditChain(t, filepath.Join(t.TempDir(), "audit.jsonl"), nil)
				return map[string]file{"audit.jsonl": {bytes.Replace(data, []byte("partner.test"), []byte("partner.evil"), 1), 0o600}}
			},
			field: "audit.path", problem: "does not verify",
		},
		{
			name: "newest rotated audit file torn",
			files: func(t *testing.T, dir string) map[string]file {
				data := auditChain(t, filepath.Join(t.TempDir(), "audit.jsonl"), nil)
				return map[string]file{"audit.jsonl." + "20260101T000000Z.00000000000000000001": {data[:len(data)-5], 0o600}}
			},
			field: "audit.path", problem: "does not end in a complete record",
		},
		{
			name: "audit file is a folder",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"audit.jsonl/x": {[]byte("x"), 0o600}}
			},
			field: "audit.path", problem: "not a regular file",
		},
		{
			name:  "admin API without authentication",
			edit:  insert("", metricsAdmin),
			field: "metrics.admin", problem: "needs authentication",
		},
		{
			name: "admin token readable by others",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"admin.token": {[]byte(token), 0o644}}
			},
			edit:  insert("", metricsAdmin+"  admin_token_file: admin.token\n"),
			field: "metrics.admin_token_file", problem: "chmod 600",
		},
		{
			name: "admin token too short",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"admin.token": {[]byte("abc\n"), 0o600}}
			},
			edit:  insert("", metricsAdmin+"  admin_token_file: admin.token\n"),
			field: "metrics.admin_token_file", problem: "use at least 16",
		},
		{
			name:  "admin token file missing",
			edit:  insert("", metricsAdmin+"  admin_token_file: admin.token\n"),
			field: "metrics.admin_token_file", problem: "does not exist",
		},
		{
			name: "client CA that holds no certificate",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"clients.pem": {[]byte("not PEM\n"), 0o644}}
			},
			edit:  insert("", metricsAdmin+"  client_ca: clients.pem\n  tls_cert_file: company.test.crt\n  tls_key_file: company.test.key\n"),
			field: "metrics.client_ca", problem: "holds no PEM certificate",
		},
		{
			name:  "client CA without TLS",
			files: func(*testing.T, string) map[string]file { return map[string]file{"clients.pem": {[]byte("x"), 0o644}} },
			edit:  insert("", metricsAdmin+"  client_ca: clients.pem\n"),
			field: "metrics.tls_cert_file", problem: "required with metrics.client_ca",
		},
		{
			name: "metrics key that does not fit the certificate",
			files: func(t *testing.T, _ string) map[string]file {
				return map[string]file{"other.key": {otherKeyPEM(t), 0o600}}
			},
			edit:  insert("", "metrics:\n  listen: \"127.0.0.1:0\"\n  tls_cert_file: company.test.crt\n  tls_key_file: other.key\n"),
			field: "metrics.tls_cert_file", problem: "do not load as a pair",
		},
		{
			name: "internal CA key without its certificate",
			files: func(t *testing.T, _ string) map[string]file {
				return map[string]file{"ca/inside-ca.key": {otherKeyPEM(t), 0o600}}
			},
			edit:  insert("  server: \"127.0.0.2:5269\"", insideCA),
			field: "inside.ca", problem: "exists but certificate file",
		},
		{
			name: "internal CA that is no CA",
			files: func(t *testing.T, dir string) map[string]file {
				crt, _ := os.ReadFile(filepath.Join(dir, "company.test.crt"))
				key, _ := os.ReadFile(filepath.Join(dir, "company.test.key"))
				return map[string]file{"ca/inside-ca.crt": {crt, 0o644}, "ca/inside-ca.key": {key, 0o600}}
			},
			edit:  insert("  server: \"127.0.0.2:5269\"", insideCA),
			field: "inside.ca", problem: "does not hold a CA certificate",
		},
		{
			name: "DNS responder with an inside listener on every address",
			edit: func(s string) string {
				return strings.Replace(s, `listen: ["127.0.0.10:5269"]`, "listen: [\":5271\"]\n  dns_listen: \"127.0.0.10:5300\"", 1)
			},
			field: "inside.listen[0]", problem: "listens on every address",
		},
		{
			name:  "DNS responder allowlist not CIDR",
			edit:  insert("  server: \"127.0.0.2:5269\"", "  dns_listen: \"127.0.0.10:5300\"\n  dns_allow: [\"127.0.0.1/33\"]\n"),
			field: "inside.dns_allow[0]", problem: "CIDR",
		},
		{
			name:  "stanza rate negative",
			edit:  insert("", "limits:\n  stanza_rate: -1\n"),
			field: "limits.stanza_rate", problem: "out of range",
		},
		{
			name:  "certificate key missing",
			edit:  func(s string) string { return strings.Replace(s, "company.test.key", "nope.key", 1) },
			field: "tls.certificates[0].key_file", problem: "nope.key",
		},
		{
			name: "policy that does not compile",
			files: func(*testing.T, string) map[string]file {
				return map[string]file{"bad/x.rego": {[]byte("package xmppedge.session\n\ndecision := {\n"), 0o644}}
			},
			edit:  func(s string) string { return strings.Replace(s, "rules: "+rulesDir(t), "rules: bad", 1) },
			field: "policy.rules", problem: "x.rego",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, cmd := range []string{"check", "run"} {
				t.Run(cmd, func(t *testing.T) {
					dir := t.TempDir()
					path := writeConfigIn(t, dir, tt.edit)
					if tt.files != nil {
						writeFiles(t, dir, tt.files(t, dir))
					}
					ctx, cancel := context.WithCancel(context.Background())
					cancel()
					var out, errOut bytes.Buffer
					code := runCLIContext(ctx, []string{cmd, "-config", path}, &out, &errOut)
					all := out.String() + errOut.String()
					if code != 1 {
						t.Fatalf("exit %d, want 1; output:\n%s", code, all)
					}
					if !strings.Contains(all, "  "+tt.field+": ") || !strings.Contains(all, tt.problem) {
						t.Errorf("output does not name %s with %q:\n%s", tt.field, tt.problem, all)
					}
					if _, err := os.Stat(filepath.Join(dir, "dialback.secret")); err == nil && tt.field != "dialback.secret_file" {
						t.Errorf("%s created the dialback secret although it refused to start", cmd)
					}
				})
			}
		})
	}
}

// check creates nothing: no dialback secret, no internal CA, no audit file.
func TestCheckCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	path := writeConfigIn(t, dir, insert("  server: \"127.0.0.2:5269\"", "  tls: required\n  ca: {cert_file: inside-ca.crt, key_file: inside-ca.key}\n"))
	var out, errOut bytes.Buffer
	if code := runCLI([]string{"check", "-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	for _, name := range []string{"dialback.secret", "inside-ca.crt", "inside-ca.key", "audit.jsonl"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("check created %s", name)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".xmppedge-check-") {
			t.Errorf("check left %s behind", e.Name())
		}
	}
}

func TestGatewayLimits(t *testing.T) {
	tests := []struct {
		name string
		in   config.LimitsConfig
		want edge.Limits
	}{
		{"defaults", config.LimitsConfig{}, edge.Limits{MaxStanzaSize: 512 << 10, QueueSize: 10000, ConnectTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute,
			ConnectionsPerIP: 64, NewConnectionsPerIP: 16, StanzaRate: 200, StanzaBurst: 400}},
		{"set", config.LimitsConfig{MaxStanzaSize: 20000, QueueSize: 5, ConnectTimeout: config.Duration(time.Second), IdleTimeout: config.Duration(time.Minute),
			ConnectionsPerIP: 3, NewConnectionsPerIP: 0.5, StanzaRate: 7.5, StanzaBurst: 9},
			edge.Limits{MaxStanzaSize: 20000, QueueSize: 5, ConnectTimeout: time.Second, IdleTimeout: time.Minute,
				ConnectionsPerIP: 3, NewConnectionsPerIP: 0.5, StanzaRate: 7.5, StanzaBurst: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Limits: tt.in}
			cfg.ApplyDefaults()
			if got := gatewayLimits(cfg.Limits); got != tt.want {
				t.Errorf("gatewayLimits = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// nullAuditor satisfies audit.Sink for a gateway that relays nothing.
type nullAuditor struct{}

func (nullAuditor) Append(*audit.Record) (uint64, error)      { return 1, nil }
func (nullAuditor) WaitDurable(context.Context, uint64) error { return nil }
func (nullAuditor) Healthy() error                            { return nil }
func (nullAuditor) Close() error                              { return nil }

// A reload re-reads the admin token file; a token file that is not
// acceptable rejects the whole reload and the running token stays.
func TestReloadAdminToken(t *testing.T) {
	dir := t.TempDir()
	first, second := strings.Repeat("1", 32), strings.Repeat("2", 32)
	writeFiles(t, dir, map[string]file{"admin.token": {[]byte(first + "\n"), 0o600}})
	path := writeConfigIn(t, dir, insert("", "metrics:\n  listen: \"127.0.0.1:0\"\n  admin: true\n  admin_token_file: admin.token\n"))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := prepare(ctx, cfg, discardLogger(), true)
	if err != nil {
		t.Fatal(err)
	}
	opt := st.opt
	opt.DialbackSecret, opt.Policy, opt.Audit = st.secret, st.eng, nullAuditor{}
	gw, err := edge.New(opt) // not started: nothing listens
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	n := &node{cfgPath: path, cfg: cfg, log: discardLogger(), level: new(slog.LevelVar), gw: gw, eng: st.eng, adminAuth: st.adminAuth, m: metrics.New("test")}

	mux := http.NewServeMux()
	if err := admin.Register(mux, admin.Funcs{Sessions: func() any { return []admin.Session{} }}, admin.Options{Auth: n.adminAuth}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	status := func(token string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/admin/sessions", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status(first) != 200 || status(second) != 401 {
		t.Fatal("the first token is not the one in force")
	}

	steps := []struct {
		name       string
		content    string
		mode       os.FileMode
		wantErr    string // "" means the reload succeeds
		nowAllowed string
		nowRefused string
	}{
		{"rotated", second + "\n", 0o600, "", second, first},
		{"readable by others", first + "\n", 0o644, "metrics.admin_token_file", second, first},
		{"too short", "abc\n", 0o600, "metrics.admin_token_file", second, first},
	}
	for _, s := range steps {
		writeFiles(t, dir, map[string]file{"admin.token": {[]byte(s.content), s.mode}})
		err := n.reload(ctx)
		var fe config.FieldErrors
		switch {
		case s.wantErr == "" && err != nil:
			t.Errorf("%s: reload: %v", s.name, err)
		case s.wantErr != "" && (!errors.As(err, &fe) || !strings.Contains(err.Error(), s.wantErr)):
			t.Errorf("%s: reload error %v, want one naming %s", s.name, err, s.wantErr)
		}
		if status(s.nowAllowed) != 200 || status(s.nowRefused) != 401 {
			t.Errorf("%s: the token in force is not %.4s…", s.name, s.nowAllowed)
		}
		if strings.Contains(errString(err), strings.TrimSpace(s.content)) && len(strings.TrimSpace(s.content)) > 3 {
			t.Errorf("%s: the reload error quotes the token: %v", s.name, err)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A SIGHUP reload is on record like POST /reload.
func TestSIGHUPReloadAudited(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(audit.Config{Path: path, Node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{alog: l, log: discardLogger()}
	n.auditReload(context.Background(), "signal SIGHUP", nil)
	n.auditReload(context.Background(), "signal SIGHUP", errors.New("policy: x.rego:3: unexpected token\ntls.certificates: no certificate"))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []*audit.Record
	if err := audit.ReadRecords([]string{path}, func(r *audit.Record, _ []byte) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []struct{ decision, reason string }{
		{"allow", ""},
		{"error", "rejected, the running configuration is kept: policy: x.rego:3: unexpected token; tls.certificates: no certificate"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i, w := range want {
		r := got[i]
		if r.Event != audit.EventAdmin || r.Actor != "signal SIGHUP" || r.Action != admin.ActionReload || r.Decision != w.decision || r.Reason != w.reason {
			t.Errorf("record %d: %+v, want admin/signal SIGHUP/reload/%s/%q", i, r, w.decision, w.reason)
		}
	}
	if res, err := audit.Verify([]string{path}, nil); err != nil || !res.OK {
		t.Errorf("Verify: %+v %v", res, err)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The metrics listener as run wires it: HTTPS with a client CA and a
// token; /metrics and the health endpoints open, the admin API guarded,
// its actions on record.
func TestMetricsListener(t *testing.T) {
	dir := t.TempDir()
	serverCA, err := certstest.NewCA("metrics server CA")
	if err != nil {
		t.Fatal(err)
	}
	clientCA, err := certstest.NewCA("ops CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := serverCA.Issue(certstest.LeafOptions{DNSNames: []string{"metrics.test"}})
	if err != nil {
		t.Fatal(err)
	}
	aliceCert, aliceKey, err := clientCA.Issue(certstest.LeafOptions{CommonName: "alice", DNSNames: []string{"alice.ops.test"}})
	if err != nil {
		t.Fatal(err)
	}
	const token = "tok-0123456789abcdef0123456789"
	writeFiles(t, dir, map[string]file{
		"metrics.crt": {srvCert, 0o644}, "metrics.key": {srvKey, 0o600},
		"ops-ca.crt": {clientCA.CertPEM, 0o644}, "admin.token": {[]byte(token + "\n"), 0o600},
	})
	path := writeConfigIn(t, dir, insert("", "metrics:\n  listen: \"127.0.0.1:0\"\n  admin: true\n  admin_token_file: admin.token\n"+
		"  client_ca: ops-ca.crt\n  tls_cert_file: metrics.crt\n  tls_key_file: metrics.key\n"))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := prepare(ctx, cfg, discardLogger(), true)
	if err != nil {
		t.Fatal(err)
	}
	if st.metricsTLS == nil || st.adminAuth == nil {
		t.Fatal("prepare gave no TLS configuration or no authentication")
	}
	alog, err := openAudit(context.Background(), cfg, nil, discardLogger(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	opt := st.opt
	opt.DialbackSecret, opt.Policy, opt.Audit = st.secret, st.eng, alog
	gw, err := edge.New(opt) // not started: only the metrics listener listens
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	n := &node{cfgPath: path, cfg: cfg, log: discardLogger(), level: new(slog.LevelVar), gw: gw, eng: st.eng, alog: alog, adminAuth: st.adminAuth, m: metrics.New("test")}
	srv, addr, err := n.serveHTTP(st.metricsTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.CertPEM)
	alice, err := tls.X509KeyPair(aliceCert, aliceKey)
	if err != nil {
		t.Fatal(err)
	}
	client := func(cert *tls.Certificate) *http.Client {
		tc := &tls.Config{RootCAs: roots, ServerName: "metrics.test"}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	tests := []struct {
		name   string
		client *http.Client
		path   string
		header string // Authorization
		want   int
	}{
		{"metrics open", client(nil), "/metrics", "", 200},
		{"healthz open", client(nil), "/healthz", "", 200},
		{"admin without credentials", client(nil), "/admin/sessions", "", 401},
		{"admin with a wrong token", client(nil), "/admin/sessions", "Bearer " + strings.Repeat("w", 30), 401},
		{"admin with the token", client(nil), "/admin/sessions", "Bearer " + token, 200},
		{"admin with a client certificate", client(&alice), "/admin/sessions", "", 200},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", "https://"+addr+tt.path, nil)
		if tt.header != "" {
			req.Header.Set("Authorization", tt.header)
		}
		resp, err := tt.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	// Plain HTTP is not served.
	if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
		if resp.StatusCode == 200 {
			t.Error("/metrics answered over plain HTTP")
		}
		resp.Body.Close()
	}
	if err := alog.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	err = audit.ReadRecords([]string{cfg.ResolvePath(cfg.Audit.Path)}, func(r *audit.Record, _ []byte) error {
		if r.Event == audit.EventAdmin {
			got = append(got, r.Actor+"/"+r.Action+"/"+r.Decision)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"unauthenticated/sessions.list/deny", "unauthenticated/sessions.list/deny", "bearer token/sessions.list/allow",
		"client certificate CN=alice/sessions.list/allow"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("admin records:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/posture"
)

const testToken = "0123456789abcdef0123456789abcdef"

// fakeGateway is a Source with two sessions.
type fakeGateway struct {
	mu        sync.Mutex
	sessions  map[string]Session
	reloadErr error
	reloads   int
}

func newFake() *fakeGateway {
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &fakeGateway{sessions: map[string]Session{
		"s1": {ID: "s1", Leg: "outside", Direction: "incoming", Local: []string{"company.test"}, Remote: []string{"partner.test"},
			RemoteAddr: "192.0.2.7:40000", TLSVersion: "TLS 1.3", Auth: "dialback", StanzasIn: 3, Started: started},
		"s2": {ID: "s2", Leg: "inside", Direction: "outgoing", Local: []string{"partner.test"}, Remote: []string{"company.test"},
			RemoteAddr: "127.0.0.1:5269", StanzasOut: 3, Started: started},
	}}
}

func (f *fakeGateway) SessionsJSON() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []Session{}
	for _, id := range []string{"s1", "s2"} {
		if s, ok := f.sessions[id]; ok {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeGateway) CloseSession(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.sessions[id]
	delete(f.sessions, id)
	return ok
}

func (f *fakeGateway) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

func (f *fakeGateway) PartnersJSON() any {
	return []PartnerState{{Domain: "partner.test", Partner: "partner.test", Sessions: 1,
		Best: &posture.Seen{Posture: posture.Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true}}}}
}

func (f *fakeGateway) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// fakeAuditor records what the API appends; appendErr and healthErr make
// it fail.
type fakeAuditor struct {
	mu        sync.Mutex
	records   []audit.Record
	waited    int
	appendErr error
	healthErr error
}

func (a *fakeAuditor) Append(r *audit.Record) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.appendErr != nil {
		return 0, a.appendErr
	}
	a.records = append(a.records, *r)
	return uint64(len(a.records)), nil
}

func (a *fakeAuditor) WaitDurable(ctx context.Context, seq uint64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waited++
	return nil
}

func (a *fakeAuditor) Healthy() error { return a.healthErr }

func (a *fakeAuditor) Close() error { return nil }

func (a *fakeAuditor) all() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.records...)
}

func tokenAuth(t *testing.T) *Auth {
	t.Helper()
	a, err := NewAuth(AuthConfig{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// server serves the API (and an open /healthz, as the metrics listener
// does) with the options; logs collects its log lines.
func server(t *testing.T, src Source, opt Options) (*httptest.Server, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	opt.Logger = slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "ok\n") })
	if err := Register(mux, src, opt); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &logs
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func do(t *testing.T, c *http.Client, method, url string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestEndpoints(t *testing.T) {
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string // default: the bearer token
		reloadErr  error
		wantStatus int
		wantBody   string // substring
		wantLeft   int    // sessions left afterwards
		wantReload int
		wantAudit  *audit.Record // Event, Actor, Action, Target, Decision, Reason (prefix); nil: none
	}{
		{name: "list", method: "GET", path: "/admin/sessions", wantStatus: 200, wantBody: `"remote_addr": "192.0.2.7:40000"`, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionList, Decision: "allow"}},
		{name: "partners", method: "GET", path: "/admin/partners", wantStatus: 200, wantBody: `"auth": "sasl_external"`, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionPartners, Decision: "allow"}},
		{name: "partners without a token", method: "GET", path: "/admin/partners", header: map[string]string{}, wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionPartners, Decision: "deny", Reason: "no credentials"}},
		{name: "close", method: "POST", path: "/admin/sessions/s1/close", wantStatus: 200, wantBody: "closed", wantLeft: 1,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionClose, Target: "s1", Decision: "allow"}},
		{name: "close unknown", method: "POST", path: "/admin/sessions/nope/close", wantStatus: 404, wantBody: "no session with id nope", wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionClose, Target: "nope", Decision: "error", Reason: "no session with id nope"}},
		{name: "close needs POST", method: "GET", path: "/admin/sessions/s1/close", wantStatus: 405, wantLeft: 2},
		{
			name: "close from a cross-origin page is refused", method: "POST", path: "/admin/sessions/s1/close",
			header:     map[string]string{"Authorization": "Bearer " + testToken, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			wantStatus: 403, wantLeft: 2,
		},
		{name: "reload", method: "POST", path: "/reload", wantStatus: 200, wantBody: "reloaded", wantLeft: 2, wantReload: 1,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionReload, Decision: "allow"}},
		{
			name: "reload rejected", method: "POST", path: "/reload",
			reloadErr:  errors.Join(errors.New("policy: rules/x.rego:3: unexpected token"), fmt.Errorf("tls: %w", errors.New("cert.pem: no such file\nsecond line"))),
			wantStatus: 500, wantBody: "policy: rules/x.rego:3: unexpected token\ntls: cert.pem: no such file\nsecond line\n",
			wantLeft: 2, wantReload: 1,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionReload, Decision: "error",
				Reason: "rejected, the running configuration is kept: policy: rules/x.rego:3: unexpected token; tls: cert.pem: no such file; second line"},
		},
		{name: "reload needs POST", method: "GET", path: "/reload", wantStatus: 405, wantLeft: 2},
		// Unauthenticated: nothing is done, the attempt is on record.
		{name: "list without a token", method: "GET", path: "/admin/sessions", header: map[string]string{}, wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionList, Decision: "deny", Reason: "no credentials"}},
		{name: "close with a wrong token", method: "POST", path: "/admin/sessions/s1/close", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 32)},
			wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionClose, Target: "s1", Decision: "deny", Reason: "wrong bearer token"}},
		{name: "reload with a token prefix", method: "POST", path: "/reload", header: map[string]string{"Authorization": "Bearer " + testToken[:20]},
			wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionReload, Decision: "deny", Reason: "wrong bearer token"}},
		{name: "reload with the token and more", method: "POST", path: "/reload", header: map[string]string{"Authorization": "Bearer " + testToken + "x"},
			wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionReload, Decision: "deny", Reason: "wrong bearer token"}},
		{name: "basic authentication", method: "GET", path: "/admin/sessions", header: map[string]string{"Authorization": "Basic " + testToken},
			wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionList, Decision: "deny", Reason: "the Authorization header is not a bearer token"}},
		{name: "the token without a scheme", method: "GET", path: "/admin/sessions", header: map[string]string{"Authorization": testToken},
			wantStatus: 401, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorUnauthenticated, Action: ActionList, Decision: "deny", Reason: "the Authorization header is not a bearer token"}},
		{name: "scheme is case-insensitive", method: "GET", path: "/admin/sessions", header: map[string]string{"Authorization": "bearer " + testToken},
			wantStatus: 200, wantLeft: 2,
			wantAudit: &audit.Record{Actor: ActorBearerToken, Action: ActionList, Decision: "allow"}},
		// Open endpoints stay open.
		{name: "healthz needs nothing", method: "GET", path: "/healthz", header: map[string]string{}, wantStatus: 200, wantBody: "ok", wantLeft: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newFake()
			src.reloadErr = tt.reloadErr
			aud := &fakeAuditor{}
			srv, logs := server(t, src, Options{Auth: tokenAuth(t), Audit: aud})
			header := tt.header
			if header == nil {
				header = bearer
			}
			resp, body := do(t, srv.Client(), tt.method, srv.URL+tt.path, header)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %q lacks %q", body, tt.wantBody)
			}
			if tt.wantStatus == 401 {
				challenge := resp.Header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer ") {
					t.Errorf("401 with WWW-Authenticate %q, want a Bearer challenge", challenge)
				}
				if sent := header["Authorization"] != ""; sent != strings.Contains(challenge, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q: invalid_token should be there exactly when a token was sent", challenge)
				}
			}
			if n := src.left(); n != tt.wantLeft {
				t.Errorf("%d sessions left, want %d", n, tt.wantLeft)
			}
			if src.reloads != tt.wantReload {
				t.Errorf("%d reloads, want %d", src.reloads, tt.wantReload)
			}
			recs := aud.all()
			if tt.wantAudit == nil {
				if len(recs) != 0 {
					t.Errorf("audited %+v, want nothing", recs)
				}
			} else {
				if len(recs) != 1 {
					t.Fatalf("%d audit records, want 1: %+v", len(recs), recs)
				}
				got, want := recs[0], tt.wantAudit
				if got.Event != audit.EventAdmin || got.Actor != want.Actor || got.Action != want.Action || got.Target != want.Target ||
					got.Decision != want.Decision || !strings.HasPrefix(got.Reason, want.Reason) || !strings.HasPrefix(got.RemoteAddr, "127.0.0.1:") {
					t.Errorf("audit record %+v\nwant event admin, remote_addr 127.0.0.1:*, %+v", got, *want)
				}
				if want.Decision != "deny" && aud.waited != 1 {
					t.Errorf("the action's record was waited for %d times, want 1", aud.waited)
				}
			}
			// The token is never written anywhere.
			if strings.Contains(logs.String(), testToken[:16]) || strings.Contains(fmt.Sprintf("%+v", recs), testToken[:16]) {
				t.Errorf("the token leaked:\n%s\n%+v", logs, recs)
			}
			if tt.wantAudit != nil && !strings.Contains(logs.String(), tt.wantAudit.Action) {
				t.Errorf("the action is not logged:\n%s", logs)
			}
		})
	}
}

// The API fails closed when the audit log cannot store records.
func TestAuditUnavailable(t *testing.T) {
	down := errors.New("disk full")
	bearer := map[string]string{"Authorization": "Bearer " + testToken}
	tests := []struct {
		name       string
		aud        *fakeAuditor
		method     string
		path       string
		wantStatus int
		wantBody   string
		wantLeft   int
		wantReload int
	}{
		{"list not shown when not on record", &fakeAuditor{appendErr: down}, "GET", "/admin/sessions", 503, "audit record could not be written", 2, 0},
		{"close refused while unhealthy", &fakeAuditor{healthErr: down}, "POST", "/admin/sessions/s1/close", 503, "nothing was done", 2, 0},
		{"reload refused while unhealthy", &fakeAuditor{healthErr: down}, "POST", "/reload", 503, "nothing was done", 2, 0},
		{"close done but not on record", &fakeAuditor{appendErr: down}, "POST", "/admin/sessions/s1/close", 500, "closed, but the audit record could not be written: disk full", 1, 0},
		{"reload done but not on record", &fakeAuditor{appendErr: down}, "POST", "/reload", 500, "reloaded, but the audit record could not be written", 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newFake()
			srv, _ := server(t, src, Options{Auth: tokenAuth(t), Audit: tt.aud})
			resp, body := do(t, srv.Client(), tt.method, srv.URL+tt.path, bearer)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%d %q, want %d and %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if strings.Contains(body, `"id"`) {
				t.Errorf("sessions shown without a record: %s", body)
			}
			if n := src.left(); n != tt.wantLeft {
				t.Errorf("%d sessions left, want %d", n, tt.wantLeft)
			}
			if src.reloads != tt.wantReload {
				t.Errorf("%d reloads, want %d", src.reloads, tt.wantReload)
			}
		})
	}
}

func TestSetTokenRotates(t *testing.T) {
	auth := tokenAuth(t)
	srv, _ := server(t, newFake(), Options{Auth: auth})
	newToken := strings.Repeat("n", 40)
	if err := auth.SetToken(newToken); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token string
		want  int
	}{{testToken, 401}, {newToken, 200}} {
		resp, _ := do(t, srv.Client(), "GET", srv.URL+"/admin/sessions", map[string]string{"Authorization": "Bearer " + tc.token})
		if resp.StatusCode != tc.want {
			t.Errorf("token %.4s…: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
	if err := auth.SetToken("short"); err == nil {
		t.Error("a 5-character token accepted")
	}
	certOnly, err := NewAuth(AuthConfig{ClientCertificates: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := certOnly.SetToken(newToken); err == nil {
		t.Error("SetToken on an Auth without tokens succeeded")
	}
}

func TestAuthRequired(t *testing.T) {
	if _, err := NewAuth(AuthConfig{}); err == nil {
		t.Error("NewAuth without a token or client certificates succeeded")
	}
	if _, err := NewAuth(AuthConfig{Token: "tooshort"}); err == nil {
		t.Error("NewAuth with a short token succeeded")
	}
	if err := Register(http.NewServeMux(), newFake(), Options{}); err == nil {
		t.Error("Register without authentication succeeded")
	}
}

// pki is a client CA, a server certificate for admin.test, and a way to
// issue client certificates.
type pki struct {
	ca       *certstest.CA
	pool     *x509.CertPool
	server   tls.Certificate
	serverCA *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := certstest.NewCA("admin client CA")
	if err != nil {
		t.Fatal(err)
	}
	srvCA, err := certstest.NewCA("admin server CA")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := srvCA.Issue(certstest.LeafOptions{DNSNames: []string{"admin.test"}})
	if err != nil {
		t.Fatal(err)
	}
	server, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, pool: x509.NewCertPool(), server: server, serverCA: x509.NewCertPool()}
	p.pool.AddCert(ca.Cert)
	p.serverCA.AddCert(srvCA.Cert)
	return p
}

func (p *pki) client(t *testing.T, ca *certstest.CA, cn string) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{CommonName: cn, DNSNames: []string{cn + ".ops.test"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

func TestClientCertificates(t *testing.T) {
	p := newPKI(t)
	other, err := certstest.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	alice := p.client(t, p.ca, "alice")
	mallory := p.client(t, other, "mallory")
	tests := []struct {
		name       string
		token      string // "": certificates only
		cert       *tls.Certificate
		header     map[string]string
		path       string
		wantStatus int // 0: the handshake fails
		wantActor  string
	}{
		{name: "verified certificate", cert: alice, path: "/admin/sessions", wantStatus: 200, wantActor: "client certificate CN=alice"},
		{name: "no certificate", path: "/admin/sessions", wantStatus: 403, wantActor: ActorUnauthenticated},
		{name: "a token when only certificates count", header: map[string]string{"Authorization": "Bearer " + testToken}, path: "/admin/sessions", wantStatus: 403, wantActor: ActorUnauthenticated},
		{name: "certificate of another CA", cert: mallory, path: "/admin/sessions", wantStatus: 0},
		{name: "health without a certificate", path: "/healthz", wantStatus: 200},
		{name: "both configured: the certificate", token: testToken, cert: alice, path: "/admin/sessions", wantStatus: 200, wantActor: "client certificate CN=alice"},
		{name: "both configured: the token", token: testToken, header: map[string]string{"Authorization": "Bearer " + testToken}, path: "/admin/sessions", wantStatus: 200, wantActor: ActorBearerToken},
		{name: "both configured: neither", token: testToken, path: "/admin/sessions", wantStatus: 401, wantActor: ActorUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			auth, err := NewAuth(AuthConfig{Token: tt.token, ClientCertificates: true})
			if err != nil {
				t.Fatal(err)
			}
			aud := &fakeAuditor{}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeText(w, 200, "ok\n") })
			if err := Register(mux, newFake(), Options{Auth: auth, Audit: aud}); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(mux)
			srv.TLS = ServerTLSConfig(p.server, p.pool)
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
			srv.StartTLS()
			t.Cleanup(srv.Close)

			tc := &tls.Config{RootCAs: p.serverCA, ServerName: "admin.test"}
			if tt.cert != nil {
				// Sent whatever the server's list of acceptable CAs
				// (crypto/tls would otherwise hold back mallory's).
				cert := tt.cert
				tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if tt.wantStatus == 0 {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a certificate of another CA got through the handshake: %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			recs := aud.all()
			if tt.wantActor == "" {
				if len(recs) != 0 {
					t.Errorf("audited %+v", recs)
				}
				return
			}
			if len(recs) != 1 || !strings.HasPrefix(recs[0].Actor, tt.wantActor) {
				t.Errorf("audit records %+v, want one with actor %q", recs, tt.wantActor)
			}
		})
	}
}

func TestServerTLSConfigWithoutClientCA(t *testing.T) {
	p := newPKI(t)
	cfg := ServerTLSConfig(p.server, nil)
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Errorf("without a client CA: ClientAuth %v, ClientCAs %v; want no client certificates (a nil pool would mean the system's roots)", cfg.ClientAuth, cfg.ClientCAs)
	}
	cfg = ServerTLSConfig(p.server, p.pool)
	if cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs != p.pool || cfg.MinVersion < tls.VersionTLS12 {
		t.Errorf("with a client CA: %+v", cfg)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return path
	}
	secret := "s3cr3t-t0ken-" + strings.Repeat("q", 20)
	tests := []struct {
		name    string
		path    string
		want    string // the token; "" means an error
		problem string
	}{
		{"good", write("good", secret+"\n", 0o600), secret, ""},
		{"owner read only", write("ro", "  "+secret+"  \n", 0o400), secret, ""},
		{"readable by others", write("open", secret, 0o644), "", "has mode 0644 and can be read by group or others: run chmod 600 "},
		{"readable by the group", write("group", secret, 0o640), "", "chmod 600"},
		{"empty", write("empty", "\n\n", 0o600), "", "is empty"},
		{"short", write("short", "abc123", 0o600), "", "has 6 characters: use at least 16"},
		{"two lines", write("lines", secret+"\n"+secret, 0o600), "", "other than letters, digits"},
		{"space inside", write("space", "abcdefgh ijklmnopq", 0o600), "", "other than letters, digits"},
		{"too big", write("big", strings.Repeat("a", 5000), 0o600), "", "more than the 4096"},
		{"missing", filepath.Join(dir, "gone"), "", "cannot be opened"},
		{"a folder", dir, "", "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadToken(tt.path)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("LoadToken = %q, %v; want the token", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadToken succeeded; want an error with %q", tt.problem)
			}
			if !strings.Contains(err.Error(), tt.problem) || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q lacks %q or the path", err, tt.problem)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}

func TestSessionsJSONShape(t *testing.T) {
	mux := http.NewServeMux()
	if err := Register(mux, newFake(), Options{Auth: tokenAuth(t)}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/admin/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	mux.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got []map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, rec.Body)
	}
	if len(got) != 2 {
		t.Fatalf("%d sessions, want 2", len(got))
	}
	for _, key := range []string{"id", "leg", "direction", "local", "remote", "remote_addr", "stanzas_in", "stanzas_out", "bytes_in", "bytes_out", "started", "age_seconds"} {
		if _, ok := got[0][key]; !ok {
			t.Errorf("session lacks %q: %v", key, got[0])
		}
	}
}

func TestFuncsAdapter(t *testing.T) {
	tests := []struct {
		name       string
		funcs      Funcs
		method     string
		path       string
		wantStatus int
	}{
		{"no functions: list", Funcs{}, "GET", "/admin/sessions", http.StatusNotImplemented},
		{"no functions: close", Funcs{}, "POST", "/admin/sessions/x/close", http.StatusNotImplemented},
		{"no functions: reload", Funcs{}, "POST", "/reload", http.StatusNotImplemented},
		{"no functions: partners", Funcs{}, "GET", "/admin/partners", http.StatusNotImplemented},
		{"list", Funcs{Sessions: func() any { return []Session{} }}, "GET", "/admin/sessions", http.StatusOK},
		{"close", Funcs{Close: func(id string) bool { return id == "x" }}, "POST", "/admin/sessions/x/close", http.StatusOK},
		{"reload", Funcs{ReloadFn: func() error { return nil }}, "POST", "/reload", http.StatusOK},
		{"unencodable sessions", Funcs{Sessions: func() any { return func() {} }}, "GET", "/admin/sessions", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			if err := Register(mux, tt.funcs, Options{Auth: tokenAuth(t)}); err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			mux.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
		})
	}
}

// Refused attempts are recorded up to the budget per minute; the ones
// beyond are counted into the next recorded refusal.
func TestRefusalBudget(t *testing.T) {
	aud := &fakeAuditor{}
	// An api driven directly, with a manual clock.
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &api{src: newFake(), auth: tokenAuth(t), aud: aud, log: slog.New(slog.DiscardHandler)}
	a.refusals.now = func() time.Time { return clock }
	h := a.guard(ActionList, a.list)
	refuse := func(n int) {
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/admin/sessions", nil))
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", rec.Code)
			}
		}
	}
	refuse(refusalsPerWindow + 5)
	if n := len(aud.all()); n != refusalsPerWindow {
		t.Fatalf("%d records in the first minute, want %d", n, refusalsPerWindow)
	}
	clock = clock.Add(refusalWindow)
	refuse(1)
	recs := aud.all()
	if len(recs) != refusalsPerWindow+1 {
		t.Fatalf("%d records, want %d", len(recs), refusalsPerWindow+1)
	}
	if last := recs[len(recs)-1]; !strings.Contains(last.Reason, "no credentials; 5 more refused attempt(s)") {
		t.Errorf("the next refusal does not carry the count: %q", last.Reason)
	}
	refuse(1)
	if last := aud.all()[refusalsPerWindow+1]; strings.Contains(last.Reason, "more refused") {
		t.Errorf("the count is carried twice: %q", last.Reason)
	}
	// Authenticated actions are never held back by the budget.
	refuse(refusalsPerWindow) // the budget of this window runs out
	if n := len(aud.all()); n != 2*refusalsPerWindow {
		t.Fatalf("%d records, want %d", n, 2*refusalsPerWindow)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/admin/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("an authenticated request after the budget ran out: %d", rec.Code)
	}
	if last := aud.all()[len(aud.all())-1]; last.Actor != ActorBearerToken {
		t.Errorf("the authenticated listing is not on record: %+v", last)
	}
}

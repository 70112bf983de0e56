package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/posture"
)

const partnersData = `partners:
  - domain: partner.test
    agreement: {owner: legal@company.test, reference: NDA-17, expires: 2027-03-31}
    require_posture: {tls: "1.3", auth: certificate}
  - {domain: "*.partner.test", agreement: {owner: ops@company.test, reference: OLD-1, expires: 2026-11-01}}
  - {domain: news.test, direction: inbound}
`

const partnersToken = "partners-cli-test-token-0123456789"

// fakeAdmin serves GET /admin/partners for the token, as the gateway does.
func fakeAdmin(t *testing.T) *httptest.Server {
	seen := func(p posture.Posture, day int) *posture.Seen {
		return &posture.Seen{Posture: p, At: time.Date(2026, 11, day, 0, 0, 0, 0, time.UTC)}
	}
	sasl := posture.Posture{TLS: "TLS 1.3", Auth: "sasl_external", CertValid: true}
	db := posture.Posture{TLS: "TLS 1.2", Auth: "dialback"}
	states := []admin.PartnerState{
		{Domain: "partner.test", Partner: "partner.test", Sessions: 2, Best: seen(sasl, 20), Last: seen(db, 30)},
		{Domain: "a.partner.test", Partner: "*.partner.test", Sessions: 1, Best: seen(db, 2), Last: seen(db, 2)},
		{Domain: "stranger.test", Sessions: 1},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/admin/partners" || r.Header.Get("Authorization") != "Bearer "+partnersToken {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(states)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPartnersCommand(t *testing.T) {
	srv := fakeAdmin(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		admin  string // the metrics section; "" none
		token  string
		out    []string // lines (fields split by spaces) that must appear
		stderr string
	}{
		{name: "no admin API", out: []string{
			"partner.test both legal@company.test NDA-17 2027-03-31T00:00:00Z 119 ? - - TLS 1.3, certificate",
			"*.partner.test both ops@company.test OLD-1 2026-11-01T00:00:00Z EXPIRED ? - - -",
			"news.test inbound - - - - ? - - -",
		}, stderr: "not asked (the admin API with a token is not configured"},
		{name: "the running gateway", admin: strings.TrimPrefix(srv.URL, "http://"), token: partnersToken, out: []string{
			"partner.test both legal@company.test NDA-17 2027-03-31T00:00:00Z 119 2 TLS 1.2, dialback (2026-11-30) TLS 1.3, sasl_external (2026-11-20) TLS 1.3, certificate",
			"*.partner.test both ops@company.test OLD-1 2026-11-01T00:00:00Z EXPIRED 1 TLS 1.2, dialback (2026-11-02) TLS 1.2, dialback (2026-11-02) -",
			"news.test inbound - - - - 0 - - -",
		}},
		{name: "a wrong token", admin: strings.TrimPrefix(srv.URL, "http://"), token: strings.Repeat("w", 20),
			out: []string{"news.test inbound - - - - ? - - -"}, stderr: "401 Unauthorized"},
		{name: "a gateway not running", admin: "127.0.0.231:1", token: partnersToken,
			out: []string{"news.test inbound - - - - ? - - -"}, stderr: "not asked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "partners.yaml"), []byte(partnersData), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "admin.token"), []byte(tt.token+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			path := writeConfigIn(t, dir, func(s string) string {
				s = strings.Replace(s, filepath.Join(rulesDir(t), "partners.yaml"), filepath.Join(dir, "partners.yaml"), 1)
				if tt.admin != "" {
					s += "metrics:\n  listen: \"" + tt.admin + "\"\n  admin: true\n  admin_token_file: admin.token\n"
				}
				return s
			})
			var out, errOut bytes.Buffer
			if code := partnersCommand(context.Background(), []string{"-config", path}, &out, &errOut, now); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			got := map[string]bool{}
			for _, l := range strings.Split(out.String(), "\n") {
				got[strings.Join(strings.Fields(l), " ")] = true
			}
			for _, want := range tt.out {
				if !got[want] {
					t.Errorf("no line %q in\n%s", want, out.String())
				}
			}
			if !strings.Contains(errOut.String(), tt.stderr) || tt.stderr == "" && errOut.Len() > 0 {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.stderr)
			}
		})
	}
}

func TestPartnersCommandJSONAndErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "partners.yaml"), []byte(partnersData), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeConfigIn(t, dir, func(s string) string {
		return strings.Replace(s, filepath.Join(rulesDir(t), "partners.yaml"), filepath.Join(dir, "partners.yaml"), 1)
	})
	var out, errOut bytes.Buffer
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	if code := partnersCommand(context.Background(), []string{"-config", path, "-json"}, &out, &errOut, now); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rows []partnerRow
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[0].DaysLeft == nil || *rows[0].DaysLeft != 119 || rows[1].DaysLeft == nil || *rows[1].DaysLeft != -31 || rows[2].Sessions != nil {
		t.Errorf("rows = %+v", rows)
	}
	// A data file with a broken agreement: the field and the fix.
	if err := os.WriteFile(filepath.Join(dir, "partners.yaml"), []byte("partners: [{domain: a.test, agreement: {owner: o, reference: r, expires: soon}}]"), 0o600); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if code := partnersCommand(context.Background(), []string{"-config", path}, &out, &errOut, now); code != 1 || !strings.Contains(errOut.String(), "agreement.expires") {
		t.Errorf("broken data: exit %d, %s", code, errOut.String())
	}
}

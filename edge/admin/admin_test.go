package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

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

func TestEndpoints(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		reloadErr  error
		wantStatus int
		wantBody   string // substring
		wantLeft   int    // sessions left afterwards
		wantReload int
	}{
		{name: "list", method: "GET", path: "/admin/sessions", wantStatus: 200, wantBody: `"remote_addr": "192.0.2.7:40000"`, wantLeft: 2},
		{name: "close", method: "POST", path: "/admin/sessions/s1/close", wantStatus: 200, wantBody: "closed", wantLeft: 1},
		{name: "close unknown", method: "POST", path: "/admin/sessions/nope/close", wantStatus: 404, wantBody: "no session with id nope", wantLeft: 2},
		{name: "close needs POST", method: "GET", path: "/admin/sessions/s1/close", wantStatus: 405, wantLeft: 2},
		{
			name: "close from a cross-origin page is refused", method: "POST", path: "/admin/sessions/s1/close",
			header:     map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			wantStatus: 403, wantLeft: 2,
		},
		{name: "reload", method: "POST", path: "/reload", wantStatus: 200, wantBody: "reloaded", wantLeft: 2, wantReload: 1},
		{
			name: "reload rejected", method: "POST", path: "/reload",
			reloadErr:  errors.Join(errors.New("policy: rules/x.rego:3: unexpected token"), fmt.Errorf("tls: %w", errors.New("cert.pem: no such file\nsecond line"))),
			wantStatus: 500, wantBody: "policy: rules/x.rego:3: unexpected token\ntls: cert.pem: no such file\nsecond line\n",
			wantLeft: 2, wantReload: 1,
		},
		{name: "reload needs POST", method: "GET", path: "/reload", wantStatus: 405, wantLeft: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newFake()
			src.reloadErr = tt.reloadErr
			mux := http.NewServeMux()
			var logs bytes.Buffer
			RegisterLogged(mux, src, slog.New(slog.NewTextHandler(&logs, nil)))
			srv := httptest.NewServer(mux)
			defer srv.Close()

			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q lacks %q", body, tt.wantBody)
			}
			if n := len(src.sessions); n != tt.wantLeft {
				t.Errorf("%d sessions left, want %d", n, tt.wantLeft)
			}
			if src.reloads != tt.wantReload {
				t.Errorf("%d reloads, want %d", src.reloads, tt.wantReload)
			}
		})
	}
}

func TestSessionsJSONShape(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux, newFake())
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/admin/sessions", nil))
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
		{"list", Funcs{Sessions: func() any { return []Session{} }}, "GET", "/admin/sessions", http.StatusOK},
		{"close", Funcs{Close: func(id string) bool { return id == "x" }}, "POST", "/admin/sessions/x/close", http.StatusOK},
		{"reload", Funcs{ReloadFn: func() error { return nil }}, "POST", "/reload", http.StatusOK},
		{"unencodable sessions", Funcs{Sessions: func() any { return func() {} }}, "GET", "/admin/sessions", http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			Register(mux, tt.funcs)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
		})
	}
}

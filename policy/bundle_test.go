package policy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

const bundlePolicy = `package xmppedge.session

default decision := {"allow": false, "reason": "not a partner"}

decision := {"allow": true} if xmppedge.domain_in(input.remote_domain, [p.domain | some p in data.xmppedge.partners])
`

// buildBundle makes a bundle archive; signKey signs it; tamper changes the
// policy after signing.
func buildBundle(t testing.TB, revision string, partners []string, signKey *ecdsa.PrivateKey, tamper bool) []byte {
	t.Helper()
	var ps []any
	for _, p := range partners {
		ps = append(ps, map[string]any{"domain": p})
	}
	b := bundle.Bundle{
		Manifest: bundle.Manifest{Revision: revision},
		Data:     map[string]any{"xmppedge": map[string]any{"partners": ps}},
		Modules: []bundle.ModuleFile{{
			URL: "/policy/session.rego", Path: "/policy/session.rego",
			Raw: []byte(bundlePolicy), Parsed: ast.MustParseModuleWithOpts(bundlePolicy, ast.ParserOptions{RegoVersion: ast.RegoV1}),
		}},
	}
	if signKey != nil {
		der, err := x509.MarshalPKCS8PrivateKey(signKey)
		if err != nil {
			t.Fatal(err)
		}
		priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := b.GenerateSignature(bundle.NewSigningConfig(string(priv), "ES256", ""), "ci", false); err != nil {
			t.Fatal(err)
		}
	}
	if tamper {
		evil := strings.Replace(bundlePolicy, `default decision := {"allow": false`, `default decision := {"allow": true`, 1)
		b.Modules[0].Raw = []byte(evil)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).DisableFormat(true).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bundleServer serves one bundle at /bundle.tar.gz on 127.0.0.1 with ETags.
type bundleServer struct {
	mu       sync.Mutex
	body     []byte
	requests int
	srv      *httptest.Server
}

func newBundleServer(t *testing.T, body []byte) *bundleServer {
	s := &bundleServer{body: body}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body := s.body
		s.requests++
		s.mu.Unlock()
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Write(body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *bundleServer) set(body []byte) {
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

func (s *bundleServer) url() string { return s.srv.URL + "/bundle.tar.gz" }

func TestBundleLoadAndPoll(t *testing.T) {
	srv := newBundleServer(t, buildBundle(t, "v1", []string{"partner.test", "*.example.org"}, nil, false))
	e, err := New(testContext(t), withTestTimeout(Config{Bundle: &BundleConfig{URL: srv.url(), Poll: 20 * time.Millisecond}}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if e.Revision() != "v1" {
		t.Fatalf("revision %q, want the manifest's v1", e.Revision())
	}
	if d := e.DecideSession(ctx, &SessionInput{RemoteDomain: "chat.example.org"}); !d.Allow || d.Revision != "v1" {
		t.Fatalf("%+v", d)
	}
	if d := e.DecideSession(ctx, &SessionInput{RemoteDomain: "other.test"}); d.Allow {
		t.Fatalf("%+v", d)
	}
	revs := make(chan string, 4)
	e.OnReload(func(r string) { revs <- r })
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.Watch(wctx); close(done) }()
	defer func() { cancel(); <-done }()

	srv.set(buildBundle(t, "v2", []string{"other.test"}, nil, false))
	select {
	case r := <-revs:
		if r != "v2" {
			t.Fatalf("reloaded to %q", r)
		}
	case <-time.After(waitBound):
		t.Fatalf("the bundle poll did not pick up v2 within %v", waitBound)
	}
	if !e.DecideSession(ctx, &SessionInput{RemoteDomain: "other.test"}).Allow || e.DecideSession(ctx, &SessionInput{RemoteDomain: "partner.test"}).Allow {
		t.Fatal("v2 not applied")
	}
	// A broken bundle is rejected; v2 stays.
	srv.set([]byte("not a tarball"))
	waitFor(t, waitBound, "a reload failure", func() bool { return e.Stats().ReloadFailures > 0 })
	if e.Revision() != "v2" {
		t.Fatalf("revision %q after a broken bundle", e.Revision())
	}
}

func TestBundleSignatures(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "bundle.pub.pem")
	writeFiles(t, filepath.Dir(pubFile), map[string]string{"bundle.pub.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))})
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	tests := []struct {
		name string
		body []byte
		ok   bool
		want string
	}{
		{"signed", buildBundle(t, "s1", []string{"partner.test"}, key, false), true, ""},
		{"tampered", buildBundle(t, "s1", []string{"partner.test"}, key, true), false, "rejected"},
		{"unsigned", buildBundle(t, "s1", []string{"partner.test"}, nil, false), false, "rejected"},
		{"other key", buildBundle(t, "s1", []string{"partner.test"}, otherKey, false), false, "rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBundleServer(t, tt.body)
			e, err := New(testContext(t), withTestTimeout(Config{Bundle: &BundleConfig{URL: srv.url(), PublicKey: pubFile}}))
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if !e.DecideSession(testContext(t), &SessionInput{RemoteDomain: "partner.test"}).Allow {
					t.Fatal("signed bundle's policy not applied")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

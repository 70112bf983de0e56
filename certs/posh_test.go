package certs

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// poshServer is one HTTPS server on 127.0.0.1 playing the web servers of
// several domains; its client dials it for every name.
type poshServer struct {
	client  *http.Client
	mu      sync.Mutex
	fetches map[string]int // host -> requests
}

func startPOSHServer(t *testing.T, files map[string]string) *poshServer {
	t.Helper()
	ca := newTestCA(t, "Web CA")
	var hosts []string
	for h := range files {
		hosts = append(hosts, strings.SplitN(h, "/", 2)[0])
	}
	certPEM, keyPEM, err := ca.Issue(certstest.LeafOptions{DNSNames: hosts})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := &poshServer{fetches: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.fetches[r.Host]++
		p.mu.Unlock()
		body, ok := files[r.Host+r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	addr := srv.Listener.Addr().String()
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(transport.CloseIdleConnections)
	p.client = &http.Client{Transport: transport, Timeout: 5 * time.Second}
	return p
}

func (p *poshServer) count(host string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches[host]
}

func poshJSON(expires int, fps ...string) string {
	return fmt.Sprintf(`{"fingerprints":[%s],"expires":%d}`, strings.Join(fps, ","), expires)
}

func fp256(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf(`{"sha-256":%q}`, base64.StdEncoding.EncodeToString(h[:]))
}

func fp512(c *x509.Certificate) string {
	h := sha512.Sum512(c.RawSubjectPublicKeyInfo)
	return fmt.Sprintf(`{"sha-512":%q}`, base64.StdEncoding.EncodeToString(h[:]))
}

func TestVerifyPOSH(t *testing.T) {
	hoster := newTestCA(t, "Hoster CA")
	// The provider's certificate names only the provider, not the hosted
	// domains: POSH is what makes it acceptable for them.
	leaf, _, _ := issueLeaf(t, hoster, certstest.LeafOptions{DNSNames: []string{"xmpp.provider.test"}})
	stranger, _, _ := issueLeaf(t, hoster, certstest.LeafOptions{DNSNames: []string{"xmpp.provider.test"}})
	expired, _, _ := issueLeaf(t, hoster, certstest.LeafOptions{DNSNames: []string{"xmpp.provider.test"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	path := POSHPath
	web := startPOSHServer(t, map[string]string{
		"partner.test" + path:                 poshJSON(3600, fp256(stranger), fp256(leaf)),
		"sha512.test" + path:                  poshJSON(3600, fp512(leaf)),
		"delegating.test" + path:              `{"url":"https://provider.test/posh/xmpp-server.json","expires":3600}`,
		"provider.test/posh/xmpp-server.json": poshJSON(600, fp256(leaf)),
		"wrong.test" + path:                   poshJSON(3600, fp256(stranger)),
		"garbage.test" + path:                 "this is not json",
		"noexpire.test" + path:                poshJSON(0, fp256(leaf)),
		"badurl.test" + path:                  `{"url":"http://provider.test/x.json","expires":60}`,
		"expired.test" + path:                 poshJSON(3600, fp256(expired)),
		"none.test/unrelated":                 "{}",
	})
	v, err := NewVerifier(nil, false, WithPOSHClient(web.client))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain     string
		chain      []*x509.Certificate
		wantStatus POSHStatus
		wantReason string
	}{
		{"partner.test", []*x509.Certificate{leaf}, POSHMatched, ""},
		{"Partner.Test.", []*x509.Certificate{leaf, hoster.Cert}, POSHMatched, ""},
		{"sha512.test", []*x509.Certificate{leaf}, POSHMatched, ""},
		{"delegating.test", []*x509.Certificate{leaf}, POSHMatched, ""},
		{"wrong.test", []*x509.Certificate{leaf}, POSHFailed, "matches none of the 1 fingerprints"},
		{"expired.test", []*x509.Certificate{expired}, POSHFailed, "not valid at this time"},
		{"partner.test", nil, POSHFailed, "no certificate presented"},
		{"none.test", []*x509.Certificate{leaf}, POSHNotApplicable, "publishes no POSH file"},
		{"garbage.test", []*x509.Certificate{leaf}, POSHError, "not a POSH JSON document"},
		{"badurl.test", []*x509.Certificate{leaf}, POSHError, "not an https URL"},
		{"unknown.test", []*x509.Certificate{leaf}, POSHError, "fetching https://unknown.test"}, // the web server's certificate does not name it
	}
	for _, tt := range tests {
		t.Run(tt.domain+" "+tt.wantStatus.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got := v.VerifyPOSH(ctx, tt.chain, tt.domain)
			if got.Status != tt.wantStatus || got.Verdict.Valid != (tt.wantStatus == POSHMatched) {
				t.Fatalf("VerifyPOSH = %+v, want %v", got, tt.wantStatus)
			}
			if got.Verdict.Valid && got.Verdict.Method != MethodPOSH {
				t.Errorf("method %q", got.Verdict.Method)
			}
			if !strings.Contains(got.Verdict.Reason, tt.wantReason) {
				t.Errorf("reason %q does not say %q", got.Verdict.Reason, tt.wantReason)
			}
		})
	}

	// Caching follows "expires".
	before := web.count("partner.test")
	if got := v.VerifyPOSH(context.Background(), []*x509.Certificate{leaf}, "partner.test"); !got.Cached || got.Status != POSHMatched {
		t.Errorf("second check of partner.test: %+v, want matched from the cache", got)
	}
	if web.count("partner.test") != before || before != 1 {
		t.Errorf("partner.test fetched %d then %d times, want once", before, web.count("partner.test"))
	}
	for range 2 {
		v.VerifyPOSH(context.Background(), []*x509.Certificate{leaf}, "noexpire.test")
	}
	if n := web.count("noexpire.test"); n != 2 {
		t.Errorf("noexpire.test (expires 0) fetched %d times, want 2 (not cached)", n)
	}
	// The cache is per Verifier: concurrent checks are safe.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.VerifyPOSH(context.Background(), []*x509.Certificate{leaf}, "delegating.test")
		}()
	}
	wg.Wait()
}

package certs

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/mholt/acmez/v3/acme"
)

// testLog is an io.Writer for the store's and certmagic's logs: to t.Log
// with CERTS_TEST_VERBOSE set; else kept, the last testLogKept lines, and
// written out only if the test fails, so that a failure in CI says what
// the ACME exchange did. CI shows only the head of a long failure, so the
// dump is a digest: the last testLogShown lines without the debug lines
// of HTTP requests, each cut to testLogLineMax bytes. It goes quiet when
// the test ends (certmagic and Pebble may log from goroutines that
// outlive a test).
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	kept []string // the last lines, oldest first
}

const (
	testLogKept    = 400 // lines kept
	testLogShown   = 30  // lines a failing test shows
	testLogLineMax = 300 // bytes shown of each
)

func newTestLog(t testing.TB) *testLog {
	w := &testLog{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.done = true
		if t.Failed() && len(w.kept) > 0 {
			t.Logf("the last log lines (of %d kept; debug HTTP requests left out; CERTS_TEST_VERBOSE=1 logs all):\n%s",
				len(w.kept), strings.Join(logDigest(w.kept, testLogShown, testLogLineMax), "\n"))
		}
	})
	return w
}

// logDigest returns the last n of lines that are not debug HTTP
// requests, each cut to max bytes.
func logDigest(lines []string, n, max int) []string {
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimRight(lines[i], "\n")
		if strings.Contains(l, "level=DEBUG") && strings.Contains(l, `msg="http request"`) {
			continue
		}
		if len(l) > max {
			l = l[:max] + "…"
		}
		out = append(out, l)
	}
	slices.Reverse(out)
	return out
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.done:
	case os.Getenv("CERTS_TEST_VERBOSE") != "":
		w.t.Log(string(p))
	default:
		if len(w.kept) == testLogKept {
			w.kept = append(w.kept[:0], w.kept[1:]...)
		}
		w.kept = append(w.kept, string(p))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// pebble is a Pebble ACME server running in the test process.
type pebble struct {
	DirURL     string         // ACME directory
	CARootFile string         // PEM of the root of Pebble's own HTTPS certificate
	IssuerRoot *x509.CertPool // Pebble's issuing root, fetched from its management API
	RootFile   string         // the same root as a PEM file
	orders     atomic.Int64   // new-order requests seen
}

// pebbleOptions configure startPebble.
type pebbleOptions struct {
	DNS      string // resolver Pebble's VA uses (TCP), e.g. resolvetest's address
	HTTPPort int    // where the VA connects for HTTP-01
	TLSPort  int    // where the VA connects for TLS-ALPN-01
	Validity time.Duration
}

// startPebble assembles Pebble's CA, VA and WFE as cmd/pebble does and
// serves the ACME API and the management API over HTTPS on loopback. Its
// servers are stopped when the test ends. (Pebble's VA keeps one idle
// goroutine that it offers no way to stop.)
func startPebble(t *testing.T, opts pebbleOptions) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0") // every order validates afresh
	logger := log.New(newTestLog(t), "pebble ", 0)
	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(opts.Validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, opts.DNS, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	p := &pebble{}
	api := front.Handler()
	acmeSrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		api.ServeHTTP(w, r)
	}))
	acmeSrv.Config.ErrorLog = logger
	acmeSrv.StartTLS()
	t.Cleanup(acmeSrv.Close)
	mgmt := httptest.NewUnstartedServer(front.ManagementHandler())
	mgmt.Config.ErrorLog = logger
	mgmt.StartTLS()
	t.Cleanup(mgmt.Close)

	dir := t.TempDir()
	p.DirURL = acmeSrv.URL + wfe.DirectoryPath
	p.CARootFile = filepath.Join(dir, "pebble-https-root.pem")
	if err := os.WriteFile(p.CARootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: acmeSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}

	// The issuing root, as an operator would fetch it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, mgmt.URL+wfe.RootCertPath+"0", nil)
	resp, err := mgmt.Client().Do(req)
	if err != nil {
		t.Fatalf("fetching Pebble's root: %v", err)
	}
	defer resp.Body.Close()
	rootPEM, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("fetching Pebble's root: status %d, %v", resp.StatusCode, err)
	}
	roots, err := parseCertificatesPEM(rootPEM)
	if err != nil {
		t.Fatalf("Pebble's root: %v", err)
	}
	p.IssuerRoot = x509.NewCertPool()
	for _, r := range roots {
		p.IssuerRoot.AddCert(r)
	}
	p.RootFile = filepath.Join(dir, "pebble-issuer-root.pem")
	if err := os.WriteFile(p.RootFile, rootPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func TestLogDigest(t *testing.T) {
	lines := []string{
		"time=1 level=INFO msg=\"obtaining certificate\"\n",
		"time=2 level=DEBUG msg=\"http request\" url=x\n",
		"time=3 level=DEBUG msg=\"created CSR\"\n",
		"time=4 level=ERROR msg=\"could not get certificate from issuer\" error=" + strings.Repeat("x", 20) + "\n",
	}
	tests := []struct {
		n, max int
		want   []string
	}{
		{10, 100, []string{`time=1 level=INFO msg="obtaining certificate"`, `time=3 level=DEBUG msg="created CSR"`, strings.TrimSuffix(lines[3], "\n")}},
		{2, 100, []string{`time=3 level=DEBUG msg="created CSR"`, strings.TrimSuffix(lines[3], "\n")}},
		{1, 20, []string{`time=4 level=ERROR m…`}},
	}
	for _, tt := range tests {
		if got := logDigest(lines, tt.n, tt.max); !slices.Equal(got, tt.want) {
			t.Errorf("logDigest(n=%d, max=%d) = %q, want %q", tt.n, tt.max, got, tt.want)
		}
	}
}

// TestPebbleFindsTheCertificateARIReplaces guards the test bed's Pebble:
// a renewal's order names the certificate it replaces (ACME ARI), and
// Pebble must find it by the serial it issued. Pebble before v2.10.3 took
// the serial's DER bytes as they came, so for a serial whose first byte
// has the high bit set (one certificate in 256: DER adds a zero byte)
// the order was refused, certmagic's retry a minute later named it again,
// only its third attempt (3 minutes in) left it out, and
// TestACMERenewalSwapsCertificate timed out.
func TestPebbleFindsTheCertificateARIReplaces(t *testing.T) {
	for _, serial := range []string{"0102", "80", "ff00", "7fffffffffffff", "80ffeeddccbbaa"} {
		n, _ := new(big.Int).SetString(serial, 16)
		leaf := &x509.Certificate{SerialNumber: n, AuthorityKeyId: []byte{1, 2, 3}}
		id, err := acme.ARIUniqueIdentifier(leaf)
		if err != nil {
			t.Fatal(err)
		}
		_, sent, _ := strings.Cut(id, ".")
		der, err := base64.RawURLEncoding.DecodeString(sent)
		if err != nil {
			t.Fatal(err)
		}
		certID, err := core.NewCertID(der, leaf.AuthorityKeyId)
		if err != nil {
			t.Fatal(err)
		}
		// Pebble's CA files an issued certificate under this key.
		if issued := hex.EncodeToString(n.Bytes()); certID.SerialHex() != issued {
			t.Errorf("serial %s: Pebble looks up %s for the certificate it filed as %s", serial, certID.SerialHex(), issued)
		}
	}
}

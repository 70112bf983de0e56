package main

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/certs/certstest"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/resolve/resolvetest"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// probeFakeServer is a minimal XMPP s2s server: STARTTLS (required), then
// dialback, where it checks keys itself with the secret (standing in for
// the originating domain's authoritative server).
type probeFakeServer struct {
	domain string
	secret string
	tlsCfg *tls.Config
	ln     net.Listener
	wg     sync.WaitGroup
}

func startProbeFake(t *testing.T, addr, domain, secret string, certPEM, keyPEM []byte) *probeFakeServer {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s for the fake XMPP server: %v", addr, err)
	}
	f := &probeFakeServer{domain: domain, secret: secret, ln: ln,
		tlsCfg: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

func (f *probeFakeServer) port() uint16 {
	return uint16(f.ln.Addr().(*net.TCPAddr).Port)
}

func (f *probeFakeServer) handle(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var c net.Conn = conn
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	open := func(features string) (xmlstream.Header, string, bool) {
		hdr, err := r.ReadHeader()
		if err != nil {
			return hdr, "", false
		}
		id := hex.EncodeToString(randBytes(8))
		fmt.Fprintf(c, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' id='%s' version='1.0'><stream:features>%s</stream:features>",
			f.domain, id, features)
		return hdr, id, true
	}
	if _, _, ok := open("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"); !ok {
		return
	}
	el, err := r.Next()
	if err != nil || el.Local != "starttls" {
		return
	}
	io.WriteString(c, "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	tc := tls.Server(conn, f.tlsCfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	c = tc
	r.Reset(c)
	hdr, id, ok := open("<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>")
	if !ok {
		return
	}
	for {
		el, err := r.Next()
		if err != nil {
			io.WriteString(c, "</stream:stream>")
			return
		}
		if el.Space != xmlstream.NSDialback || el.Local != "result" {
			continue
		}
		n, err := xmlstream.ParseNode(el.Raw, hdr.Namespaces)
		if err != nil {
			return
		}
		typ := "invalid"
		if dialback.Equal(n.Text, dialback.Key(f.secret, f.domain, n.Attr("from"), id)) {
			typ = "valid"
		}
		fmt.Fprintf(c, "<db:result from='%s' to='%s' type='%s'/>", f.domain, n.Attr("from"), typ)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// randomLoopback picks an address in 127.0.0.0/8 unlikely to be used by
// another test.
func randomLoopback() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(250*250))
	v := int(n.Int64())
	return fmt.Sprintf("127.%d.%d.%d", 100+v%100, v/250%250+1, v%250+1)
}

type probeBed struct {
	dns    *resolvetest.Server
	ca     *certstest.CA
	caFile string
	dir    string
}

func newProbeBed(t *testing.T) *probeBed {
	t.Helper()
	dnsSrv, err := resolvetest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsSrv.Close() })
	ca, err := certstest.NewCA("probe test CA")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return &probeBed{dns: dnsSrv, ca: ca, caFile: caFile, dir: dir}
}

func (b *probeBed) issue(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := b.ca.Issue(certstest.LeafOptions{DNSNames: names, NotAfter: time.Now().AddDate(0, 3, 0)})
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func runProbe(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- probeCommand(args, &out, &errOut) }()
	select {
	case code = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("probe did not finish within 60s")
	}
	return code, out.String(), errOut.String()
}

func TestProbe(t *testing.T) {
	const secret = "probe-test-secret"
	tests := []struct {
		name     string
		setup    func(t *testing.T, b *probeBed)
		extra    []string // flags
		wantCode int
		want     []string // lines (or parts of lines) the output must hold
		notWant  []string
	}{
		{
			name: "good",
			setup: func(t *testing.T, b *probeBed) {
				c, k := b.issue(t, "partner.test")
				f := startProbeFake(t, "127.0.0.1:0", "partner.test", secret, c, k)
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", f.port(), 10, 50)
				b.dns.AddA("xmpp.partner.test", "127.0.0.1")
			},
			wantCode: 0,
			want: []string{
				"INFO  dns: SRV _xmpps-server._tcp.partner.test: no records",
				"PASS  dns: SRV _xmpp-server._tcp.partner.test: 10 50 ",
				"PASS  addresses: xmpp.partner.test: 127.0.0.1",
				"PASS  connect: 127.0.0.1:",
				"PASS  starttls: offered (required)",
				"PASS  tls: TLS 1.3, TLS_",
				"INFO  certificate chain: [0] subject CN=partner.test, issuer CN=probe test CA, not after ",
				"PASS  certificate: valid for partner.test (issuer probe test CA)",
				"PASS  features: dialback",
				"SKIP  dialback: skipped (no -config)",
				"PASS  summary: partner.test can be federated with: xmpp.partner.test:",
			},
			notWant: []string{"FAIL", "WARN"},
		},
		{
			name: "no SRV",
			setup: func(t *testing.T, b *probeBed) {
				ip := randomLoopback()
				c, k := b.issue(t, "partner.test")
				startProbeFake(t, net.JoinHostPort(ip, "5269"), "partner.test", secret, c, k)
				b.dns.AddA("partner.test", ip)
			},
			wantCode: 0,
			want: []string{
				"WARN  dns: no SRV records for _xmpps-server._tcp.partner.test or _xmpp-server._tcp.partner.test: falling back to partner.test:5269",
				"target 1: partner.test:5269 (STARTTLS)",
				"PASS  certificate: valid for partner.test",
				"WARN  summary: partner.test can be federated with through partner.test:5269, but 0 failure(s), 1 warning(s); first: dns: no SRV records",
			},
		},
		{
			name: "down",
			setup: func(t *testing.T, b *probeBed) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				port := ln.Addr().(*net.TCPAddr).Port
				ln.Close() // nothing listens there now
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", uint16(port), 0, 0)
				b.dns.AddA("xmpp.partner.test", "127.0.0.1")
			},
			wantCode: 1,
			want: []string{
				"FAIL  connect: 127.0.0.1:",
				": connection refused (nothing listens there: is the server down?)",
				"FAIL  summary: partner.test cannot be federated with securely: 1 failure(s), 0 warning(s); first: connect: 127.0.0.1:",
			},
		},
		{
			name: "wrong certificate name",
			setup: func(t *testing.T, b *probeBed) {
				c, k := b.issue(t, "other.test")
				f := startProbeFake(t, "127.0.0.1:0", "partner.test", secret, c, k)
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", f.port(), 0, 0)
				b.dns.AddA("xmpp.partner.test", "127.0.0.1")
			},
			wantCode: 1,
			want: []string{
				"FAIL  certificate: certificate is not valid for partner.test (",
				"other.test",
				"FAIL  summary: partner.test cannot be federated with securely: 1 failure(s), 0 warning(s); first: certificate: certificate is not valid for partner.test",
			},
		},
		{
			name: "no service",
			setup: func(t *testing.T, b *probeBed) {
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", ".", 0, 0, 0)
			},
			wantCode: 1,
			want:     []string{"FAIL  dns: partner.test announces that it offers no XMPP server-to-server service"},
		},
		{
			name: "dialback with -config",
			setup: func(t *testing.T, b *probeBed) {
				c, k := b.issue(t, "partner.test")
				f := startProbeFake(t, "127.0.0.1:0", "partner.test", secret, c, k)
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", f.port(), 0, 0)
				b.dns.AddA("xmpp.partner.test", "127.0.0.1")
			},
			extra:    []string{"-config", "CONFIG"},
			wantCode: 0,
			want: []string{
				"probing partner.test (from company.test)",
				"PASS  dialback: partner.test accepted company.test's key",
				"PASS  summary:",
			},
		},
		{
			name: "dialback with the wrong secret",
			setup: func(t *testing.T, b *probeBed) {
				c, k := b.issue(t, "partner.test")
				f := startProbeFake(t, "127.0.0.1:0", "partner.test", "another secret", c, k)
				b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", f.port(), 0, 0)
				b.dns.AddA("xmpp.partner.test", "127.0.0.1")
			},
			extra:    []string{"-config", "CONFIG"},
			wantCode: 0,
			want:     []string{"FAIL  dialback: partner.test says company.test's key is invalid", "WARN  summary:"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newProbeBed(t)
			tt.setup(t, b)
			args := []string{"-dns", b.dns.Addr(), "-ca", b.caFile, "-timeout", "5s"}
			for _, a := range tt.extra {
				if a == "CONFIG" {
					a = writeProbeConfig(t, b, secret)
				}
				args = append(args, a)
			}
			args = append(args, "partner.test")
			code, out, errOut := runProbe(t, args...)
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output holds %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s\nstderr:\n%s", out, errOut)
			}
			// Every check is one line with a mark.
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				l := strings.TrimSpace(line)
				if strings.HasPrefix(l, "probing ") || strings.HasPrefix(l, "target ") {
					continue
				}
				if mark, _, _ := strings.Cut(l, " "); !strings.Contains("PASS WARN FAIL INFO SKIP", mark) || len(mark) != 4 {
					t.Errorf("line without a mark: %q", line)
				}
			}
		})
	}
}

// writeProbeConfig writes a gateway config for company.test whose DNS is
// the test bed's and whose dialback secret is secret.
func writeProbeConfig(t *testing.T, b *probeBed, secret string) string {
	t.Helper()
	c, k := b.issue(t, "company.test")
	if _, _, err := certstest.WriteFiles(b.dir, "company.test", c, k); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "dialback.secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := `domains: [company.test]
inside:
  listen: ["127.0.0.10:5269"]
  server: "127.0.0.2:5269"
outside:
  listen: ["127.0.0.11:5269"]
dns:
  servers: ["` + b.dns.Addr() + `"]
tls:
  certificates:
    - {cert_file: company.test.crt, key_file: company.test.key}
  ca_files: [ca.pem]
dialback:
  secret_file: dialback.secret
`
	path := filepath.Join(b.dir, "xmppedge.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProbeJSON(t *testing.T) {
	b := newProbeBed(t)
	c, k := b.issue(t, "partner.test")
	f := startProbeFake(t, "127.0.0.1:0", "partner.test", "s", c, k)
	b.dns.AddSRV("_xmpp-server._tcp.partner.test", "xmpp.partner.test", f.port(), 5, 0)
	b.dns.AddA("xmpp.partner.test", "127.0.0.1")

	code, out, errOut := runProbe(t, "-dns", b.dns.Addr(), "-ca", b.caFile, "partner.test", "-json")
	if code != 0 {
		t.Fatalf("exit code %d; stderr %s\n%s", code, errOut, out)
	}
	var rep struct {
		Domain  string
		Status  string
		Summary string
		SRV     []probeSRV
		Targets []probeTarget
		Checks  []probeCheck
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if rep.Domain != "partner.test" || rep.Status != "PASS" || rep.Summary == "" {
		t.Errorf("report %+v", rep)
	}
	if len(rep.SRV) != 1 || rep.SRV[0].Port != f.port() || rep.SRV[0].Target != "xmpp.partner.test." || rep.SRV[0].Service != "_xmpp-server._tcp" {
		t.Errorf("SRV %+v", rep.SRV)
	}
	if len(rep.Targets) != 1 {
		t.Fatalf("targets %+v", rep.Targets)
	}
	tg := rep.Targets[0]
	if !tg.OK || !tg.CertificateValid || tg.TLSVersion != "TLS 1.3" || len(tg.Chain) != 1 || tg.Chain[0].Names[0] != "partner.test" ||
		strings.Join(tg.FeaturesBeforeTLS, ",") != "starttls,dialback" || strings.Join(tg.Features, ",") != "dialback" ||
		tg.Dialback != "skipped (no -config)" || tg.StreamID == "" {
		t.Errorf("target %+v", tg)
	}
}

func TestProbeUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no domain", nil, "give exactly one domain"},
		{"two domains", []string{"a.test", "b.test"}, "give exactly one domain"},
		{"bad flag", []string{"-nope", "a.test"}, "flag provided but not defined"},
		{"bad timeout", []string{"-timeout", "0s", "a.test"}, "-timeout must be positive"},
		{"missing config", []string{"-config", "/nonexistent/xmppedge.yaml", "a.test"}, "reading -config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runProbe(t, tt.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if !strings.Contains(errOut, tt.want) {
				t.Errorf("stderr %q lacks %q", errOut, tt.want)
			}
		})
	}
}

func TestProbeNetErrorWording(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", errConnRefused())}, "connection refused"},
		{os.ErrDeadlineExceeded, "no answer within 3s"},
		{io.EOF, "the server closed the connection"},
		{errors.New("something else"), "something else"},
	}
	for _, tt := range tests {
		if got := probeNetError(tt.err, 3*time.Second); !strings.Contains(got, tt.want) {
			t.Errorf("probeNetError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// errConnRefused returns the error a refused connect(2) gives.
func errConnRefused() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = net.Dial("tcp", addr)
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}

// The probe's TLS server name is the domain probed in A-label form, with
// and without our certificates, on STARTTLS and direct TLS.
func TestProbeTLSServerName(t *testing.T) {
	store, err := certs.LoadStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []probeSettings{
		{domain: "bücher.test"},
		{domain: "bücher.test", from: "company.test", store: store},
	} {
		for _, direct := range []bool{false, true} {
			if got := probeTLSConfig(s, direct).ServerName; got != "xn--bcher-kva.test" {
				t.Errorf("store %v, direct TLS %v: ServerName %q, want xn--bcher-kva.test", s.store != nil, direct, got)
			}
		}
	}
}

package certs

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// handshakeResult is what one side of a TLS handshake saw.
type handshakeResult struct {
	state tls.ConnectionState
	err   error
}

// handshake runs a TLS handshake over loopback TCP between serverCfg and
// clientCfg and returns what each side saw.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (server, client handshakeResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	serverDone := make(chan handshakeResult, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverDone <- handshakeResult{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		tc := tls.Server(conn, serverCfg)
		err = tc.HandshakeContext(ctx)
		res := handshakeResult{state: tc.ConnectionState(), err: err}
		if err == nil {
			// Read the client's byte so that both sides finish.
			buf := make([]byte, 1)
			_, res.err = tc.Read(buf)
		}
		serverDone <- res
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, clientCfg)
	err = tc.HandshakeContext(ctx)
	client = handshakeResult{state: tc.ConnectionState(), err: err}
	if err == nil {
		_, client.err = tc.Write([]byte{'x'})
	}
	select {
	case server = <-serverDone:
	case <-ctx.Done():
		t.Fatal("server side of the handshake did not finish")
	}
	return server, client
}

func TestTLSHandshakeLoopback(t *testing.T) {
	ca := newTestCA(t, "Handshake Test CA")
	rogue := newTestCA(t, "Rogue CA")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	verifier, err := NewVerifier([]string{caFile}, false)
	if err != nil {
		t.Fatal(err)
	}
	loadStore := func(name string, issuer *certstest.CA, opts certstest.LeafOptions) *Store {
		s, err := LoadStore([]KeyPairFiles{writePair(t, issuer, dir, name, opts)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	company := loadStore("company", ca, certstest.LeafOptions{DNSNames: []string{"company.test"}, SRVNames: []string{"company.test"}})
	companyOther := loadStore("company-other", ca, certstest.LeafOptions{DNSNames: []string{"muc.company.test"}})
	// company serves two domains from two files.
	companyBoth, err := LoadStore([]KeyPairFiles{
		{CertFile: filepath.Join(dir, "company-other.crt"), KeyFile: filepath.Join(dir, "company-other.key")},
		{CertFile: filepath.Join(dir, "company.crt"), KeyFile: filepath.Join(dir, "company.key")},
	})
	if err != nil {
		t.Fatal(err)
	}
	partner := loadStore("partner", ca, certstest.LeafOptions{XmppAddrs: []string{"partner.test"}, ServerAuthOnly: true})
	impostor := loadStore("impostor", rogue, certstest.LeafOptions{DNSNames: []string{"partner.test"}})
	empty, err := LoadStore(nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name             string
		server           *Store
		streamTo         string // fallback domain of the server
		client           *Store
		clientDomain     string
		serverDomain     string
		alpn             bool
		noSNI            bool // like Prosody on STARTTLS
		maxVersion       uint16
		wantServerValid  bool   // server's verdict on the client
		wantServerReason string // when not valid
		wantClientValid  bool   // client's verdict on the server
		wantClientReason string
	}{
		{
			name: "mutual, SNI and ALPN (direct TLS)", server: companyBoth, streamTo: "muc.company.test",
			client: partner, clientDomain: "partner.test", serverDomain: "company.test", alpn: true,
			wantServerValid: true, wantClientValid: true,
		},
		{
			name: "mutual, no SNI, stream to chooses (Prosody STARTTLS)", server: companyBoth, streamTo: "company.test",
			client: partner, clientDomain: "partner.test", serverDomain: "company.test", noSNI: true,
			wantServerValid: true, wantClientValid: true,
		},
		{
			name: "mutual over TLS 1.2", server: company, streamTo: "company.test",
			client: partner, clientDomain: "partner.test", serverDomain: "company.test", maxVersion: tls.VersionTLS12,
			wantServerValid: true, wantClientValid: true,
		},
		{
			name: "client without certificate (dialback peer)", server: company, streamTo: "company.test",
			client: empty, clientDomain: "partner.test", serverDomain: "company.test",
			wantServerReason: "no certificate presented", wantClientValid: true,
		},
		{
			name: "untrusted client does not break the handshake", server: company, streamTo: "company.test",
			client: impostor, clientDomain: "partner.test", serverDomain: "company.test",
			wantServerReason: "certificate signed by unknown authority", wantClientValid: true,
		},
		{
			name: "server certificate for another domain does not break the handshake", server: companyOther, streamTo: "company.test",
			client: partner, clientDomain: "partner.test", serverDomain: "company.test", noSNI: true,
			wantServerValid: true, wantClientReason: "certificate is not valid for company.test (names: muc.company.test)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverCfg := tt.server.ServerConfig(tt.streamTo, tt.alpn)
			clientCfg := tt.client.ClientConfig(tt.clientDomain, tt.serverDomain, tt.alpn)
			if tt.noSNI {
				clientCfg.ServerName = ""
			}
			clientCfg.MaxVersion = tt.maxVersion
			var sawSNI string
			getCert := serverCfg.GetCertificate
			serverCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
				sawSNI = hello.ServerName
				return getCert(hello)
			}

			server, client := handshake(t, serverCfg, clientCfg)
			if server.err != nil || client.err != nil {
				t.Fatalf("handshake failed: server %v, client %v", server.err, client.err)
			}
			if tt.noSNI && sawSNI != "" || !tt.noSNI && sawSNI != tt.serverDomain {
				t.Errorf("server saw SNI %q", sawSNI)
			}
			if tt.alpn && (server.state.NegotiatedProtocol != "xmpp-server" || client.state.NegotiatedProtocol != "xmpp-server") {
				t.Errorf("ALPN: server %q, client %q, want xmpp-server", server.state.NegotiatedProtocol, client.state.NegotiatedProtocol)
			}
			if tt.maxVersion != 0 && server.state.Version != tt.maxVersion {
				t.Errorf("TLS version %x, want %x", server.state.Version, tt.maxVersion)
			}
			now := time.Now()
			sv := verifier.Verify(server.state.PeerCertificates, tt.clientDomain, now)
			if sv.Valid != tt.wantServerValid || (!sv.Valid && sv.Reason != tt.wantServerReason) {
				t.Errorf("server's verdict on the client = %+v, want valid %v reason %q", sv, tt.wantServerValid, tt.wantServerReason)
			}
			cv := verifier.Verify(client.state.PeerCertificates, tt.serverDomain, now)
			if cv.Valid != tt.wantClientValid || (!cv.Valid && cv.Reason != tt.wantClientReason) {
				t.Errorf("client's verdict on the server = %+v, want valid %v reason %q", cv, tt.wantClientValid, tt.wantClientReason)
			}
		})
	}
}

func TestTLSHandshakeRefusesOldVersions(t *testing.T) {
	ca := newTestCA(t, "Handshake Test CA")
	s, err := LoadStore([]KeyPairFiles{writePair(t, ca, t.TempDir(), "company", certstest.LeafOptions{DNSNames: []string{"company.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	clientCfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	server, client := handshake(t, s.ServerConfig("company.test", false), clientCfg)
	if server.err == nil || client.err == nil {
		t.Fatalf("a TLS 1.1 handshake succeeded (server %v, client %v)", server.err, client.err)
	}
}

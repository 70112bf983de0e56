package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/certs/certstest"
)

// cbcSHA1Suites are TLS 1.2 suites Go still implements (and, without
// Harden, accepts by default) that Mozilla's intermediate list excludes.
var cbcSHA1Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
}

// rsaKexSuites use static RSA key exchange (no forward secrecy).
var rsaKexSuites = []uint16{
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
}

// rsaStore is a Store whose certificate has an RSA key (certstest issues
// ECDSA only), so that the ECDHE-RSA and static-RSA suites are in play.
func rsaStore(t *testing.T, domain string) *Store {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: domain},
		DNSNames:     []string{domain},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cf, kf, err := certstest.WriteFiles(t.TempDir(), "rsa", certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadStore([]KeyPairFiles{{CertFile: cf, KeyFile: kf}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHardenSetsPosture(t *testing.T) {
	tests := []struct {
		name    string
		in      *tls.Config
		wantMin uint16
	}{
		{"nil config", nil, tls.VersionTLS12},
		{"zero config", &tls.Config{}, tls.VersionTLS12},
		{"TLS 1.0 minimum raised", &tls.Config{MinVersion: tls.VersionTLS10}, tls.VersionTLS12},
		{"TLS 1.3 minimum kept", &tls.Config{MinVersion: tls.VersionTLS13}, tls.VersionTLS13},
		{"weak suites replaced", &tls.Config{CipherSuites: cbcSHA1Suites, CurvePreferences: []tls.CurveID{tls.CurveP521}}, tls.VersionTLS12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Harden(tt.in)
			if got.MinVersion != tt.wantMin {
				t.Errorf("MinVersion %x, want %x", got.MinVersion, tt.wantMin)
			}
			if !slices.Equal(got.CipherSuites, TLS12CipherSuites) {
				t.Errorf("CipherSuites %v, want %v", got.CipherSuites, TLS12CipherSuites)
			}
			if !slices.Equal(got.CurvePreferences, CurvePreferences) || got.CurvePreferences[0] != tls.X25519MLKEM768 {
				t.Errorf("CurvePreferences %v, want %v", got.CurvePreferences, CurvePreferences)
			}
			got.CipherSuites[0] = tls.TLS_RSA_WITH_RC4_128_SHA
			if TLS12CipherSuites[0] == tls.TLS_RSA_WITH_RC4_128_SHA {
				t.Fatal("a config shares the package's cipher suite list")
			}
		})
	}
	// Every suite of the list is one of Mozilla's intermediate TLS 1.2
	// suites (ECDHE key exchange, AEAD cipher), and crypto/tls counts it
	// as secure.
	secure := map[uint16]bool{}
	for _, s := range tls.CipherSuites() {
		secure[s.ID] = true
	}
	for _, id := range TLS12CipherSuites {
		name := tls.CipherSuiteName(id)
		aead := strings.HasSuffix(name, "_GCM_SHA256") || strings.HasSuffix(name, "_GCM_SHA384") || strings.HasSuffix(name, "_CHACHA20_POLY1305_SHA256")
		if !secure[id] || !strings.HasPrefix(name, "TLS_ECDHE_") || !aead {
			t.Errorf("%s is not an ECDHE suite with an AEAD cipher that crypto/tls counts as secure", name)
		}
	}
}

// Every server config the package builds refuses TLS 1.1 and the
// excluded TLS 1.2 suites and curves, and accepts a modern client; an
// unhardened config (the control row) accepts what Harden refuses, so
// these rows can fail.
func TestServerConfigsRefuseWeakClients(t *testing.T) {
	ca := newTestCA(t, "Posture Test CA")
	dir := t.TempDir()
	ecStore, err := LoadStore([]KeyPairFiles{writePair(t, ca, dir, "company", certstest.LeafOptions{DNSNames: []string{"company.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	rsa := rsaStore(t, "company.test")
	internal, _, err := LoadOrCreateInternalCA(filepath.Join(dir, "inside-ca.crt"), filepath.Join(dir, "inside-ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	servers := []struct {
		name     string
		cfg      func() *tls.Config
		hardened bool
	}{
		{"Store.ServerConfig STARTTLS (ECDSA)", func() *tls.Config { return ecStore.ServerConfig("company.test", false) }, true},
		{"Store.ServerConfig direct TLS (ECDSA)", func() *tls.Config { return ecStore.ServerConfig("company.test", true) }, true},
		{"Store.ServerConfig STARTTLS (RSA)", func() *tls.Config { return rsa.ServerConfig("company.test", false) }, true},
		{"InternalCA.ServerConfig", func() *tls.Config { return internal.ServerConfig("partner.test") }, true},
		{"control: unhardened (RSA)", func() *tls.Config {
			c := rsa.ServerConfig("company.test", false).Clone() // shared: never modified
			c.CipherSuites, c.CurvePreferences, c.MinVersion = nil, nil, tls.VersionTLS10
			return c
		}, false},
	}
	clients := []struct {
		name   string
		cfg    *tls.Config
		modern bool
	}{
		{"modern client (Go defaults)", &tls.Config{}, true},
		{"modern client, TLS 1.2 only", &tls.Config{MaxVersion: tls.VersionTLS12}, true},
		{"TLS 1.1 client", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"CBC and SHA-1 suites only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbcSHA1Suites}, false},
		{"static RSA key exchange only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: rsaKexSuites}, false},
		{"P-521 only", &tls.Config{MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP521}}, false},
	}
	for _, srv := range servers {
		for _, cl := range clients {
			t.Run(srv.name+"/"+cl.name, func(t *testing.T) {
				clientCfg := cl.cfg.Clone()
				clientCfg.InsecureSkipVerify = true
				clientCfg.ServerName = "company.test"
				server, client := handshake(t, srv.cfg(), clientCfg)
				ok := server.err == nil && client.err == nil
				switch {
				case cl.modern && !ok:
					t.Fatalf("modern client refused: server %v, client %v", server.err, client.err)
				case !cl.modern && srv.hardened && ok:
					t.Fatalf("weak client accepted: %s, %s", tls.VersionName(server.state.Version), tls.CipherSuiteName(server.state.CipherSuite))
				case !cl.modern && !srv.hardened && !ok && cl.name != "static RSA key exchange only":
					// Go's own defaults still accept TLS 1.1 (with
					// MinVersion lowered) and CBC suites; the control
					// shows that the rows above test Harden.
					t.Fatalf("control: an unhardened server refused %s: server %v, client %v", cl.name, server.err, client.err)
				}
				if ok && srv.hardened && server.state.Version == tls.VersionTLS12 && !slices.Contains(TLS12CipherSuites, server.state.CipherSuite) {
					t.Errorf("negotiated %s, not in TLS12CipherSuites", tls.CipherSuiteName(server.state.CipherSuite))
				}
			})
		}
	}
}

// The client configs refuse servers that offer only TLS 1.1 or only the
// excluded suites.
func TestClientConfigsRefuseWeakServers(t *testing.T) {
	ca := newTestCA(t, "Posture Test CA")
	dir := t.TempDir()
	partner, err := LoadStore([]KeyPairFiles{writePair(t, ca, dir, "partner", certstest.LeafOptions{DNSNames: []string{"partner.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	company, err := LoadStore([]KeyPairFiles{writePair(t, ca, dir, "company", certstest.LeafOptions{DNSNames: []string{"company.test"}})})
	if err != nil {
		t.Fatal(err)
	}
	internal, _, err := LoadOrCreateInternalCA(filepath.Join(dir, "inside-ca.crt"), filepath.Join(dir, "inside-ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	partnerCert := partner.Certificate("partner.test")
	clients := []struct {
		name string
		cfg  func() *tls.Config
	}{
		{"Store.ClientConfig STARTTLS", func() *tls.Config { return company.ClientConfig("company.test", "partner.test", false) }},
		{"Store.ClientConfig direct TLS", func() *tls.Config { return company.ClientConfig("company.test", "partner.test", true) }},
		{"InternalCA.ClientConfig", func() *tls.Config { return internal.ClientConfig("partner.test", "company.test") }},
	}
	servers := []struct {
		name   string
		cfg    *tls.Config
		modern bool
	}{
		{"modern server", &tls.Config{}, true},
		{"TLS 1.1 server", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"CBC and SHA-1 suites only", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: cbcSHA1Suites}, false},
	}
	for _, cl := range clients {
		for _, srv := range servers {
			t.Run(cl.name+"/"+srv.name, func(t *testing.T) {
				serverCfg := srv.cfg.Clone()
				serverCfg.Certificates = []tls.Certificate{*partnerCert}
				server, client := handshake(t, serverCfg, cl.cfg())
				ok := server.err == nil && client.err == nil
				if ok != srv.modern {
					t.Fatalf("handshake ok=%v, want %v (server %v, client %v)", ok, srv.modern, server.err, client.err)
				}
			})
		}
	}
}

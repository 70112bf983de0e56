package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"sync"
	"time"
)

// DefaultLeafLifetime is the validity of the certificates an InternalCA
// mints.
const DefaultLeafLifetime = 24 * time.Hour

// InternalCA is the certificate authority of the inside leg. xmppedge
// stands in for every remote domain towards the internal server, so it
// mints, for each remote domain, a short-lived certificate carrying that
// domain's XMPP identities; the internal server trusts this CA (and only
// for that), and can then require certificate authentication
// (s2s_secure_auth) and use SASL EXTERNAL towards xmppedge.
//
// Minted certificates live in memory only and are reused until two
// thirds of their life has passed. An InternalCA is safe for concurrent
// use.
type InternalCA struct {
	cert     *x509.Certificate
	certPEM  []byte
	key      crypto.Signer
	lifetime time.Duration
	now      func() time.Time

	mu     sync.Mutex
	leaves map[string]*mintedLeaf // normalised domain
}

// mintedLeaf is one domain's cached certificate. Its own lock makes
// concurrent first requests for a domain mint once.
type mintedLeaf struct {
	mu      sync.Mutex
	cert    *tls.Certificate
	renewAt time.Time
}

// InternalCAOption changes a default of LoadOrCreateInternalCA.
type InternalCAOption func(*InternalCA)

// WithLeafLifetime sets the validity of minted certificates (default 24h).
func WithLeafLifetime(d time.Duration) InternalCAOption {
	return func(ca *InternalCA) {
		if d > 0 {
			ca.lifetime = d
		}
	}
}

// withClock makes the CA read the time from now (tests).
func withClock(now func() time.Time) InternalCAOption {
	return func(ca *InternalCA) { ca.now = now }
}

// internalCAName is the subject of a generated internal CA.
const internalCAName = "xmppedge internal CA"

// LoadOrCreateInternalCA reads the CA certificate and key PEM files, or,
// when neither exists, creates them: an ECDSA P-256 key (file mode 0600)
// and a self-signed certificate valid for ten years. created is true in
// that case: tell the operator to install CertPEM in the internal
// server's trust store. Exactly one of the two files existing is an
// error, as is a key that does not belong to the certificate or a
// certificate that is not a valid CA.
func LoadOrCreateInternalCA(certFile, keyFile string, opts ...InternalCAOption) (ca *InternalCA, created bool, err error) {
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		ca, err = createInternalCA(certFile, keyFile)
		created = true
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("internal CA: key file %s exists but certificate file %s does not (restore it, or remove both to create a new CA)", keyFile, certFile)
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("internal CA: certificate file %s exists but key file %s does not (restore it, or remove both to create a new CA)", certFile, keyFile)
	default:
		ca, err = loadInternalCA(certFile, keyFile)
	}
	if err != nil {
		return nil, false, err
	}
	ca.lifetime = DefaultLeafLifetime
	ca.now = time.Now
	ca.leaves = make(map[string]*mintedLeaf)
	for _, o := range opts {
		o(ca)
	}
	return ca, created, nil
}

func createInternalCA(certFile, keyFile string) (*InternalCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("internal CA: generating the key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: internalCAName, Organization: []string{"xmppedge"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: creating the certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: encoding the key: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("internal CA: parsing the new certificate: %w", err)
	}
	// The key first, exclusively: never overwrite a key.
	if err := writeNewFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return nil, fmt.Errorf("internal CA: writing the key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeNewFile(certFile, certPEM, 0o644); err != nil {
		os.Remove(keyFile)
		return nil, fmt.Errorf("internal CA: writing the certificate: %w", err)
	}
	return &InternalCA{cert: cert, certPEM: certPEM, key: key}, nil
}

// writeNewFile creates path with perm, failing if it exists.
func writeNewFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return os.Chmod(path, perm) // umask may have removed bits
}

func loadInternalCA(certFile, keyFile string) (*InternalCA, error) {
	certs, err := readCertificatesFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("internal CA certificate file %s: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("internal CA key file %s cannot be read: %w", keyFile, err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("internal CA certificate file %s cannot be read: %w", certFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("internal CA: key file %s does not fit certificate file %s: %w", keyFile, certFile, err)
	}
	cert := certs[0]
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("internal CA certificate file %s does not hold a CA certificate (basic constraints CA and key usage certSign are needed)", certFile)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, fmt.Errorf("internal CA certificate file %s expired on %s (remove both files to create a new CA, and install it in the internal server)", certFile, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("internal CA key file %s holds a key that cannot sign", keyFile)
	}
	return &InternalCA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:     signer,
	}, nil
}

// CertPEM returns the CA certificate in PEM, for the internal server's
// trust store.
func (ca *InternalCA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// Certificate returns a certificate for domain signed by the CA, valid
// for the leaf lifetime (default 24h), with the DNS-ID DOMAIN and the
// SRV-ID _xmpp-server.DOMAIN (no XmppAddr: see xmppSubjectAltName), usable
// for TLS server and client authentication. It is minted on first use and reused until two
// thirds of its life has passed.
func (ca *InternalCA) Certificate(domain string) (*tls.Certificate, error) {
	name, err := normalizeDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("internal CA: cannot mint a certificate: %w", err)
	}
	ca.mu.Lock()
	leaf := ca.leaves[name]
	if leaf == nil {
		leaf = &mintedLeaf{}
		ca.leaves[name] = leaf
	}
	ca.mu.Unlock()

	leaf.mu.Lock()
	defer leaf.mu.Unlock()
	now := ca.now()
	if leaf.cert != nil && now.Before(leaf.renewAt) {
		return leaf.cert, nil
	}
	cert, err := ca.mint(name, now)
	if err != nil {
		return nil, err
	}
	leaf.cert = cert
	leaf.renewAt = cert.Leaf.NotBefore.Add(ca.lifetimeOf(cert) * 2 / 3)
	ca.forgetExpired(now)
	return cert, nil
}

func (ca *InternalCA) lifetimeOf(c *tls.Certificate) time.Duration {
	return c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)
}

// forgetExpired drops cached certificates that have expired, so that the
// cache holds only domains in use.
func (ca *InternalCA) forgetExpired(now time.Time) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	for name, leaf := range ca.leaves {
		if !leaf.mu.TryLock() {
			continue // being minted or read
		}
		if leaf.cert != nil && now.After(leaf.cert.Leaf.NotAfter) {
			delete(ca.leaves, name)
		}
		leaf.mu.Unlock()
	}
}

func (ca *InternalCA) mint(domain string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("internal CA: generating a key for %s: %w", domain, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	san, err := xmppSubjectAltName(domain)
	if err != nil {
		return nil, err
	}
	notBefore := now
	notAfter := now.Add(ca.lifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain},
		NotBefore:             notBefore.Add(-time.Minute), // small clock skew
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{san},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("internal CA: signing a certificate for %s: %w", domain, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("internal CA: parsing the certificate for %s: %w", domain, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// xmppSubjectAltName builds a SubjectAltName with the DNS-ID and the
// SRV-ID _xmpp-server.DOMAIN of domain (in A-label form).
//
// No XmppAddr: RFC 6120 §13.7.1.2 keeps it in server certificates only for
// backward compatibility, and ejabberd (p1_xmpp's
// xmpp_stream_pkix:get_cert_domains, 23.01 and later) crashes the stream
// with badarg on a certificate that carries a domain XmppAddr, so an
// ejabberd internal server could not authenticate xmppedge by SASL
// EXTERNAL.
func xmppSubjectAltName(domain string) (pkix.Extension, error) {
	v, err := asn1.MarshalWithParams(srvXMPPServerPrefix+domain, "ia5")
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("internal CA: encoding the SRV-ID of %s: %w", domain, err)
	}
	oidDER, err := asn1.Marshal(oidOnDNSSRV)
	if err != nil {
		return pkix.Extension{}, err
	}
	explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: v})
	if err != nil {
		return pkix.Extension{}, err
	}
	names := []asn1.RawValue{
		{Class: asn1.ClassContextSpecific, Tag: tagDNSName, Bytes: []byte(domain)},
		{Class: asn1.ClassContextSpecific, Tag: tagOtherName, IsCompound: true, Bytes: append(oidDER, explicit...)},
	}
	value, err := asn1.Marshal(names)
	if err != nil {
		return pkix.Extension{}, fmt.Errorf("internal CA: encoding the subjectAltName of %s: %w", domain, err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: value}, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return serial, nil
}

// ServerConfig returns a TLS server config for the inside listener: it
// presents Certificate(domain) for the domain of the client's SNI, or
// fallbackDomain (the stream's `to`: the remote domain xmppedge stands in
// for) when there is no SNI. The internal server's certificate is
// requested but not verified (see the package comment).
func (ca *InternalCA) ServerConfig(fallbackDomain string) *tls.Config {
	return Harden(&tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			domain := fallbackDomain
			if hello.ServerName != "" {
				domain = hello.ServerName
			}
			return ca.Certificate(domain)
		},
	})
}

// ClientConfig returns a TLS client config to connect to the internal
// server (remoteDomain: a local domain of the company) as localDomain
// (the remote domain xmppedge stands in for), presenting
// Certificate(localDomain). ServerName (SNI) is remoteDomain in A-label
// form. The internal server's certificate is not verified by crypto/tls:
// verify PeerCertificates with a Verifier.
func (ca *InternalCA) ClientConfig(localDomain, remoteDomain string) *tls.Config {
	return Harden(&tls.Config{
		ServerName:         ServerName(remoteDomain),
		InsecureSkipVerify: true, // verified by the caller with a Verifier
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return ca.Certificate(localDomain)
		},
	})
}

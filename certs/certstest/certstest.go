package certstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority for tests.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // Cert in PEM, for CA files of servers and Verifiers
}

// NewCA creates a self-signed CA named commonName, valid from an hour ago
// for ten years.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"xmppedge test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("creating the CA certificate %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate %q: %w", commonName, err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}, nil
}

// LeafOptions describe a leaf certificate.
type LeafOptions struct {
	// CommonName is the subject CN. Empty: the first of DNSNames,
	// SRVNames, XmppAddrs. Identity matching never uses it; it is there
	// for logs and for testing that it is not used.
	CommonName string
	DNSNames   []string // dNSName SANs, e.g. "partner.test", "*.partner.test"
	SRVNames   []string // SRV-ID otherNames, given as the domain: "partner.test" -> "_xmpp-server.partner.test"
	XmppAddrs  []string // XmppAddr otherNames (bare domain JIDs)
	// EmptySubject leaves the subject empty (no CommonName); the
	// SubjectAltName extension is then critical, as RFC 5280 requires.
	EmptySubject bool
	// RawSRVNames are SRV-ID otherNames written exactly as given, e.g.
	// "_xmpp-client.partner.test", for testing other services.
	RawSRVNames []string
	// NotBefore and NotAfter bound the validity; zero means an hour ago
	// and 24 hours from now.
	NotBefore, NotAfter time.Time
	// ServerAuthOnly limits the extended key usage to TLS server
	// authentication, as public CAs issue since 2026. By default a leaf
	// allows both server and client authentication, which Prosody needs
	// for s2s.
	ServerAuthOnly bool
	// CRLDistributionPoints are CRL URLs written into the leaf, as a
	// public CA does (scanners such as testssl.sh flag a certificate
	// without any revocation information). Nothing serves them.
	CRLDistributionPoints []string
}

// Object identifiers of the SubjectAltName extension and the XMPP
// otherName forms.
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidOnDNSSRV       = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 7}
	oidOnXmppAddr     = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
)

// Issue creates a key and a leaf certificate signed by ca. It returns the
// certificate in PEM ("CERTIFICATE") and the key as PKCS#8 PEM
// ("PRIVATE KEY").
func (ca *CA) Issue(opts LeafOptions) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the leaf key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	notBefore, notAfter := opts.NotBefore, opts.NotAfter
	if notBefore.IsZero() {
		notBefore = now.Add(-time.Hour)
	}
	if notAfter.IsZero() {
		notAfter = now.Add(24 * time.Hour)
	}
	cn := opts.CommonName
	if cn == "" && !opts.EmptySubject {
		for _, list := range [][]string{opts.DNSNames, opts.SRVNames, opts.XmppAddrs} {
			if len(list) > 0 {
				cn = list[0]
				break
			}
		}
	}
	var subject pkix.Name
	if !opts.EmptySubject {
		subject.CommonName = cn
	}
	extKeyUsage := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if opts.ServerAuthOnly {
		extKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           extKeyUsage,
		BasicConstraintsValid: true,
		CRLDistributionPoints: opts.CRLDistributionPoints,
	}
	san, err := subjectAltNameExtension(opts, subject.CommonName == "")
	if err != nil {
		return nil, nil, err
	}
	if san != nil {
		// DNSNames stay empty: crypto/x509 refuses a second SAN extension.
		template.ExtraExtensions = []pkix.Extension{*san}
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the leaf certificate for %q: %w", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the leaf key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// subjectAltNameExtension builds the SubjectAltName extension holding the
// dNSNames and XMPP otherNames of opts, or nil when there are none. It is
// critical when the subject is empty (RFC 5280 §4.2.1.6).
func subjectAltNameExtension(opts LeafOptions, emptySubject bool) (*pkix.Extension, error) {
	var names []asn1.RawValue
	for _, n := range opts.DNSNames {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(n)})
	}
	addOther := func(oid asn1.ObjectIdentifier, value string, params string) error {
		v, err := asn1.MarshalWithParams(value, params)
		if err != nil {
			return fmt.Errorf("encoding otherName %q: %w", value, err)
		}
		oidDER, err := asn1.Marshal(oid)
		if err != nil {
			return fmt.Errorf("encoding otherName type %v: %w", oid, err)
		}
		explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: v})
		if err != nil {
			return fmt.Errorf("encoding otherName %q: %w", value, err)
		}
		names = append(names, asn1.RawValue{
			Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: append(oidDER, explicit...),
		})
		return nil
	}
	for _, d := range opts.SRVNames {
		if err := addOther(oidOnDNSSRV, "_xmpp-server."+d, "ia5"); err != nil {
			return nil, err
		}
	}
	for _, s := range opts.RawSRVNames {
		if err := addOther(oidOnDNSSRV, s, "ia5"); err != nil {
			return nil, err
		}
	}
	for _, a := range opts.XmppAddrs {
		if err := addOther(oidOnXmppAddr, a, "utf8"); err != nil {
			return nil, err
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	value, err := asn1.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("encoding subjectAltName: %w", err)
	}
	return &pkix.Extension{Id: oidSubjectAltName, Critical: emptySubject, Value: value}, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generating a serial number: %w", err)
	}
	return serial, nil
}

// WriteFiles writes certPEM to dir/name.crt (mode 0644) and keyPEM to
// dir/name.key (mode 0600) and returns their paths.
func WriteFiles(dir, name string, certPEM, keyPEM []byte) (certFile, keyFile string, err error) {
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := writeFile(certFile, certPEM, 0o644); err != nil {
		return "", "", err
	}
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// WriteFile keeps the mode of an existing file; umask may strip bits.
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", path, err)
	}
	return nil
}

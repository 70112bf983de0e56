package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// KeyPairFiles names a PEM certificate file (leaf first, then any
// intermediates) and the PEM file of its private key.
type KeyPairFiles struct{ CertFile, KeyFile string }

// Store holds the certificates xmppedge presents for its local domains.
// It is safe for concurrent use. The certificates from files are fixed
// after LoadStore; those managed by ACME (NewACMEStore) change when they
// are renewed, and every lookup returns the current one.
type Store struct {
	entries  []storeEntry
	problems []string
	acme     *acmeManager // nil without ACME

	// serverConfigs holds ServerConfig's results by fallback domain and
	// ALPN: every connection of a kind shares one (crypto/tls keeps a
	// connection's config for its life, ~0.5 KB each, and initialises
	// session ticket keys per config). At most maxSharedServerConfigs:
	// past that, a config is made per call.
	cfgMu         sync.Mutex
	serverConfigs map[serverConfigKey]*tls.Config
}

type serverConfigKey struct {
	fallback string
	alpn     bool
}

// maxSharedServerConfigs bounds Store.serverConfigs (the fallback is a
// local domain; the bound holds whatever callers pass).
const maxSharedServerConfigs = 64

type storeEntry struct {
	cert       *tls.Certificate
	identities identitySet
	notAfter   time.Time
	notBefore  time.Time
}

// validAt reports whether the leaf is within its validity period.
func (e storeEntry) validAt(now time.Time) bool {
	return !now.Before(e.notBefore) && !now.After(e.notAfter)
}

// LoadStore loads each certificate and key file pair. A file that is
// missing or unreadable, is not PEM, holds no certificate or no private
// key, or whose key does not match its certificate, is an error naming
// the file. A certificate that has expired, is not yet valid, or names no
// domain is still loaded and reported by Problems.
func LoadStore(pairs []KeyPairFiles) (*Store, error) {
	s := &Store{}
	now := time.Now()
	for _, pair := range pairs {
		entry, err := loadKeyPair(pair)
		if err != nil {
			return nil, err
		}
		switch {
		case now.After(entry.notAfter):
			s.problems = append(s.problems, fmt.Sprintf("certificate %s has expired (not after %s)",
				pair.CertFile, entry.notAfter.UTC().Format(time.RFC3339)))
		case now.Before(entry.notBefore):
			s.problems = append(s.problems, fmt.Sprintf("certificate %s is not yet valid (not before %s)",
				pair.CertFile, entry.notBefore.UTC().Format(time.RFC3339)))
		}
		if len(entry.identities.exact) == 0 && len(entry.identities.wildcards) == 0 {
			s.problems = append(s.problems, fmt.Sprintf("certificate %s names no domain in its subjectAltName (the common name is not used)", pair.CertFile))
		}
		s.entries = append(s.entries, entry)
	}
	return s, nil
}

func loadKeyPair(pair KeyPairFiles) (storeEntry, error) {
	certPEM, err := os.ReadFile(pair.CertFile)
	if err != nil {
		return storeEntry{}, fmt.Errorf("certificate file %s cannot be read: %w", pair.CertFile, err)
	}
	keyPEM, err := os.ReadFile(pair.KeyFile)
	if err != nil {
		return storeEntry{}, fmt.Errorf("key file %s cannot be read: %w", pair.KeyFile, err)
	}
	if _, err := parseCertificatesPEM(certPEM); err != nil {
		return storeEntry{}, fmt.Errorf("certificate file %s %w", pair.CertFile, err)
	}
	if err := checkKeyPEM(keyPEM); err != nil {
		return storeEntry{}, fmt.Errorf("key file %s %w", pair.KeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return storeEntry{}, fmt.Errorf("key file %s does not belong to certificate file %s: %w", pair.KeyFile, pair.CertFile, err)
		}
		return storeEntry{}, fmt.Errorf("certificate file %s with key file %s cannot be used: %w", pair.CertFile, pair.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return storeEntry{}, fmt.Errorf("certificate file %s cannot be parsed: %w", pair.CertFile, err)
		}
		cert.Leaf = leaf
	}
	names, err := certificateNames(leaf)
	if err != nil {
		return storeEntry{}, fmt.Errorf("certificate file %s: %w", pair.CertFile, err)
	}
	return storeEntry{
		cert:       &cert,
		identities: newIdentitySet(names),
		notBefore:  leaf.NotBefore,
		notAfter:   leaf.NotAfter,
	}, nil
}

// checkKeyPEM gives a clear reason when a key file is not a PEM key.
func checkKeyPEM(data []byte) error {
	blocks := pemBlocks(data)
	for _, block := range blocks {
		if block.Type == "PRIVATE KEY" || strings.HasSuffix(block.Type, " PRIVATE KEY") {
			return nil
		}
	}
	if len(blocks) == 0 {
		return errors.New("is not PEM (expected -----BEGIN PRIVATE KEY-----)")
	}
	return errors.New("holds no PRIVATE KEY block")
}

// Problems returns what is wrong with certificates that were loaded
// anyway (expired, not yet valid, naming no domain), one sentence each
// naming the file. It is empty when all is well.
func (s *Store) Problems() []string {
	return slices.Clone(s.problems)
}

// Certificate returns a certificate whose identity matches domain (see
// MatchIdentity), or nil. The comparison is case-insensitive and in
// A-label form. When several certificates match, a currently valid one
// from a file is preferred, then the current ACME certificate, then the
// file listed first.
func (s *Store) Certificate(domain string) *tls.Certificate {
	want, err := normalizeDomain(domain)
	if err != nil {
		return nil
	}
	now := time.Now()
	var fallback *tls.Certificate
	for _, e := range s.entries {
		if !e.identities.matches(want) {
			continue
		}
		if e.validAt(now) {
			return e.cert
		}
		if fallback == nil {
			fallback = e.cert
		}
	}
	if c := s.acme.current(want); c != nil {
		return c
	}
	return fallback
}

// staticCertificate is Certificate limited to the files, for a normalised
// domain.
func (s *Store) staticCertificate(domain string) *tls.Certificate {
	for _, e := range s.entries {
		if e.identities.matches(domain) {
			return e.cert
		}
	}
	return nil
}

// anyCertificate returns the first certificate the Store holds, or nil.
func (s *Store) anyCertificate() *tls.Certificate {
	if len(s.entries) > 0 {
		return s.entries[0].cert
	}
	if s.acme != nil {
		for _, d := range s.acme.domains {
			if c := s.acme.current(d); c != nil {
				return c
			}
		}
	}
	return nil
}

// Close stops the background work of an ACME Store (renewals, OCSP, the
// HTTP-01 server) and waits for it; certificates already obtained are
// still served. It does nothing for a Store from LoadStore, and may be
// called more than once.
func (s *Store) Close() {
	if s.acme != nil {
		s.acme.close()
	}
}

// Expiry returns, for each domain of Domains, the expiry (NotAfter) of
// the certificate served for it, e.g. for a metric.
func (s *Store) Expiry() map[string]time.Time {
	out := make(map[string]time.Time)
	for _, e := range s.entries {
		for _, name := range e.identities.covered() {
			if strings.HasPrefix(name, "*.") {
				// A wildcard is served from the files only; the latest wins.
				if e.notAfter.After(out[name]) {
					out[name] = e.notAfter
				}
				continue
			}
			if c := s.Certificate(name); c != nil && c.Leaf != nil {
				out[name] = c.Leaf.NotAfter
			}
		}
	}
	if s.acme != nil {
		for _, d := range s.acme.domains {
			if c := s.acme.current(d); c != nil {
				out[d] = c.Leaf.NotAfter
			}
		}
	}
	return out
}

// ExpiringSoon returns the domains, sorted, whose served certificate
// expires within the given duration from now (or has expired), for a
// metric and a log warning (see ExpiryWarning). An ACME Store also logs
// them itself at start and every few hours.
func (s *Store) ExpiringSoon(within time.Duration) []string {
	deadline := time.Now().Add(within)
	var names []string
	for d, notAfter := range s.Expiry() {
		if notAfter.Before(deadline) {
			names = append(names, d)
		}
	}
	slices.Sort(names)
	return names
}

// Domains returns the names the stored certificates cover, lowercase in
// A-label form, sorted, without duplicates; a wildcard appears as
// "*.example.org".
func (s *Store) Domains() []string {
	var names []string
	for _, e := range s.entries {
		names = append(names, e.identities.covered()...)
	}
	if s.acme != nil {
		names = append(names, s.acme.domains...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// alpnXMPPServer is the ALPN protocol id of XMPP s2s over direct TLS
// (XEP-0368).
const alpnXMPPServer = "xmpp-server"

// ServerConfig returns a TLS server config for one accepted connection.
//
// The certificate is chosen from the client's SNI when it names a domain
// a stored certificate matches, else by fallbackDomain (Prosody sends no
// SNI on s2s STARTTLS: pass the stream's `to`). When neither matches, the
// first stored certificate is presented anyway, so that the peer can
// still authenticate us with dialback over TLS; the handshake fails only
// if the Store is empty.
//
// The client's certificate is requested but not verified
// (tls.RequestClientCert): verify PeerCertificates with a Verifier after
// the handshake. Versions, cipher suites and curves are set by Harden;
// NextProtos is {"xmpp-server"} when alpn is true (the direct-TLS
// listener). An ACME Store with
// TLS-ALPN-01 then also offers "acme-tls/1" (ALPNACMETLS) and answers the
// CA's validation handshakes; the listener must close such connections.
// The config returned is shared: it must not be modified.
func (s *Store) ServerConfig(fallbackDomain string, alpn bool) *tls.Config {
	key := serverConfigKey{fallbackDomain, alpn}
	s.cfgMu.Lock()
	defer s.cfgMu.Unlock()
	if cfg := s.serverConfigs[key]; cfg != nil {
		return cfg
	}
	cfg := s.newServerConfig(fallbackDomain, alpn)
	if len(s.serverConfigs) < maxSharedServerConfigs {
		if s.serverConfigs == nil {
			s.serverConfigs = make(map[serverConfigKey]*tls.Config)
		}
		s.serverConfigs[key] = cfg
	}
	return cfg
}

// newServerConfig makes the config ServerConfig shares.
func (s *Store) newServerConfig(fallbackDomain string, alpn bool) *tls.Config {
	cfg := Harden(&tls.Config{
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok, err := s.acme.challengeCertificate(hello); ok {
				return c, err
			}
			if hello.ServerName != "" {
				if c := s.Certificate(hello.ServerName); c != nil {
					return c, nil
				}
			}
			if c := s.Certificate(fallbackDomain); c != nil {
				return c, nil
			}
			if c := s.anyCertificate(); c != nil {
				return c, nil
			}
			return nil, fmt.Errorf("no certificate is configured (asked for %q, stream to %q)", hello.ServerName, fallbackDomain)
		},
	})
	if alpn {
		cfg.NextProtos = []string{alpnXMPPServer}
		if s.acme != nil && s.acme.tlsALPN {
			cfg.NextProtos = append(cfg.NextProtos, ALPNACMETLS)
		}
	}
	return cfg
}

// ClientConfig returns a TLS client config to connect to remoteDomain as
// localDomain. ServerName (SNI) is remoteDomain in A-label form. The
// server's certificate is not verified by crypto/tls
// (InsecureSkipVerify): verify PeerCertificates with a Verifier after the
// handshake and record the verdict. The client certificate is
// Certificate(localDomain), presented whenever the server asks for one;
// none when the Store has no certificate for localDomain. For a domain
// managed by ACME it is looked up at the handshake, so a renewal is used
// at once. Versions, cipher suites and curves are set by Harden;
// NextProtos is {"xmpp-server"} when alpn is true.
func (s *Store) ClientConfig(localDomain, remoteDomain string, alpn bool) *tls.Config {
	cfg := Harden(&tls.Config{
		ServerName:         ServerName(remoteDomain),
		InsecureSkipVerify: true, // verified by the caller with a Verifier
	})
	if local, err := normalizeDomain(localDomain); err == nil && s.acme.manages(local) {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := s.Certificate(local); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none: the peer may still accept dialback
		}
	} else if c := s.Certificate(localDomain); c != nil {
		// GetClientCertificate, not Certificates: crypto/tls would
		// otherwise send nothing when the server's list of acceptable CAs
		// does not include our issuer, and the peer could not even try.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return c, nil
		}
	}
	if alpn {
		cfg.NextProtos = []string{alpnXMPPServer}
	}
	return cfg
}

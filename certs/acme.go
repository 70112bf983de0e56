package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// ALPNACMETLS is the ALPN protocol id of the ACME TLS-ALPN-01 challenge
// (RFC 8737). A direct-TLS listener using a ServerConfig of an ACME Store
// offers it; a connection that negotiated it is a CA validating a
// challenge and must be closed right after the handshake, never read as
// an XMPP stream.
const ALPNACMETLS = acmez.ACMETLS1Protocol

// ExpiryWarning is how long before expiry a served certificate is logged
// as expiring soon (and reported by ExpiringSoon(ExpiryWarning)).
const ExpiryWarning = 14 * 24 * time.Hour

// EAB is an ACME external account binding (RFC 8555 §7.3.4), as some CAs
// (ZeroSSL, Google, Sectigo, most private CAs) require.
type EAB struct {
	KeyID  string
	MACKey string // base64url, as the CA hands it out
}

// ACMEConfig says how certificates are obtained with ACME.
type ACMEConfig struct {
	// CA is the ACME directory URL, e.g.
	// https://acme-v02.api.letsencrypt.org/directory. Required.
	CA string
	// Email is the ACME account's contact. Required (certmagic would
	// otherwise prompt for one on standard input).
	Email string
	// CARoot is a PEM file of the root(s) that sign the ACME server's own
	// HTTPS certificate (a private CA, or Pebble's); "" = system roots.
	CARoot string
	// EAB is the external account binding, when the CA requires one.
	EAB *EAB
	// Storage is the folder of certmagic's file storage: certificates,
	// keys, the ACME account and locks. Nodes sharing it share
	// certificates and coordinate renewals (the cluster boundary).
	// Required unless SharedStorage is set.
	Storage string
	// SharedStorage, when set, replaces the folder: certmagic keeps the
	// certificates, keys, the ACME account and its locks there. A cluster
	// passes its JetStream key-value storage (certs/natsstore), so that
	// its nodes make one ACME order per domain and serve the same
	// certificate.
	SharedStorage certmagic.Storage
	// HTTPListen is the address ("host:port") of the HTTP-01 challenge
	// server that the Store runs while it is open, e.g. ":80" or
	// "127.0.0.11:80". The CA always connects to port 80 of the domain;
	// another port needs a forward. "" disables HTTP-01.
	HTTPListen string
	// TLSALPNListen is the address of the gateway's direct-TLS listener
	// (XEP-0368), which answers TLS-ALPN-01 through the Store's
	// ServerConfig(…, true). While that listener is not running (while
	// NewACMEStore runs), the Store answers on the address itself, the
	// challenges of another node sharing the storage too: the CA may
	// reach this node while it waits for the other's order. The CA
	// always connects to port 443 of the domain;
	// another port needs a forward. Its host must be the host of
	// HTTPListen when both are set. "" disables TLS-ALPN-01.
	TLSALPNListen string
	// RenewBefore, when set, renews a certificate once less than this is
	// left of its validity, in addition to certmagic's own schedule (ACME
	// Renewal Information, else the last third of the validity). It is
	// not applied to a certificate whose whole validity is not longer
	// (each check would order again, a CA's rate limit within the hour):
	// that is logged as a warning, once, and certmagic's schedule stays.
	RenewBefore time.Duration
	// CheckInterval is how often renewal and expiry are checked; 0 means
	// certmagic's default (10 minutes).
	CheckInterval time.Duration
}

// acmeManager is the ACME part of a Store.
type acmeManager struct {
	domains       []string // normalised, managed by ACME
	cache         *certmagic.Cache
	magic         *certmagic.Config
	tlsALPN       bool
	renewBefore   time.Duration
	checkInterval time.Duration
	log           *slog.Logger
	// renewBeforeWarned is set once the warning that a certificate's
	// validity is not longer than renewBefore was logged.
	renewBeforeWarned atomic.Bool

	httpServer *http.Server
	httpDone   chan struct{}
	ctx        context.Context // cancelled by Close
	cancel     context.CancelFunc
	started    bool          // maintain runs
	done       chan struct{} // closed when maintain returns
	closeOnce  sync.Once
}

// NewACMEStore returns a Store serving the certificates of static (see
// LoadStore) and, for every domain of domains that no static certificate
// covers, a certificate obtained and renewed with ACME.
//
// At start each managed domain's certificate is loaded from storage, or
// obtained from the CA when storage has none (or it needs renewal); this
// is bounded by ctx and any failure is an error. Afterwards certificates
// are renewed in the background and OCSP responses are stapled when the
// CA runs a responder. Certificate, ServerConfig and ClientConfig always
// serve the current certificate: a renewal is picked up by the next
// handshake, while established connections keep theirs. Call Close to
// stop the background work and the HTTP-01 server.
func NewACMEStore(ctx context.Context, domains []string, cfg ACMEConfig, static []KeyPairFiles, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("component", "acme"))
	s, err := LoadStore(static)
	if err != nil {
		return nil, err
	}
	var managed []string
	for _, d := range domains {
		n, err := normalizeDomain(d)
		if err != nil {
			return nil, fmt.Errorf("ACME domain %q: %w", d, err)
		}
		if s.staticCertificate(n) != nil {
			log.Info("domain has a certificate file; not managed by ACME", slog.String("domain", n))
			continue
		}
		if !slices.Contains(managed, n) {
			managed = append(managed, n)
		}
	}
	if len(managed) == 0 {
		return s, nil
	}
	m, err := startACME(ctx, managed, cfg, log)
	if err != nil {
		return nil, err
	}
	s.acme = m
	m.warnExpiring(s)
	m.started = true
	go m.maintain(s)
	return s, nil
}

func startACME(ctx context.Context, domains []string, cfg ACMEConfig, log *slog.Logger) (*acmeManager, error) {
	if err := checkACMEConfig(cfg); err != nil {
		return nil, err
	}
	roots, err := acmeCARoots(cfg.CARoot)
	if err != nil {
		return nil, err
	}
	listenHost, httpPort, tlsPort, err := challengeAddresses(cfg.HTTPListen, cfg.TLSALPNListen)
	if err != nil {
		return nil, err
	}

	m := &acmeManager{
		domains:       domains,
		tlsALPN:       cfg.TLSALPNListen != "",
		renewBefore:   cfg.RenewBefore,
		checkInterval: cfg.CheckInterval,
		log:           log,
		done:          make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if m.checkInterval <= 0 {
		m.checkInterval = certmagic.DefaultRenewCheckInterval
	}
	zlog := zapToSlog(log)
	var storage certmagic.Storage = &certmagic.FileStorage{Path: cfg.Storage}
	if cfg.SharedStorage != nil {
		storage = cfg.SharedStorage
	}
	m.magic = m.newCertmagicConfig(storage, zlog)
	template := certmagic.ACMEIssuer{
		CA:                      cfg.CA,
		Email:                   cfg.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    cfg.HTTPListen == "",
		DisableTLSALPNChallenge: cfg.TLSALPNListen == "",
		ListenHost:              listenHost,
		AltHTTPPort:             httpPort,
		AltTLSALPNPort:          tlsPort,
		Logger:                  zlog,
	}
	if cfg.EAB != nil {
		template.ExternalAccount = &acme.EAB{KeyID: cfg.EAB.KeyID, MACKey: cfg.EAB.MACKey}
	}
	issuer := certmagic.NewACMEIssuer(m.magic, template)
	m.magic.Issuers = []certmagic.Issuer{issuer}

	if cfg.HTTPListen != "" {
		if err := m.serveHTTPChallenges(cfg.HTTPListen, issuer); err != nil {
			m.cache.Stop()
			return nil, err
		}
	}

	if cfg.TLSALPNListen != "" {
		stop, err := m.answerTLSALPNAtStart(cfg.TLSALPNListen)
		if err != nil {
			m.close()
			return nil, err
		}
		defer stop()
	}

	if err := m.magic.ManageSync(ctx, domains); err != nil {
		m.close()
		return nil, fmt.Errorf("ACME: getting certificates for %s from %s failed (check that the CA reaches this gateway for the challenge: DNS of the domain, port 80 to %q, port 443 to %q): %w",
			strings.Join(domains, ", "), cfg.CA, cfg.HTTPListen, cfg.TLSALPNListen, err)
	}
	m.logServed()
	return m, nil
}

// checkACMEConfig says which required setting of cfg is missing.
func checkACMEConfig(cfg ACMEConfig) error {
	switch {
	case cfg.CA == "":
		return errors.New("ACME: no CA directory URL is configured (tls.acme.ca)")
	case cfg.Email == "":
		return errors.New("ACME: no account e-mail is configured (tls.acme.email)")
	case cfg.Storage == "" && cfg.SharedStorage == nil:
		return errors.New("ACME: no storage folder is configured (tls.acme.storage)")
	case cfg.HTTPListen == "" && cfg.TLSALPNListen == "":
		return errors.New("ACME: neither an HTTP-01 listener (tls.acme.http_listen) nor a direct-TLS listener for TLS-ALPN-01 is configured, so no challenge can be answered")
	}
	return nil
}

// acmeCARoots reads the roots that sign the ACME server's HTTPS
// certificate from file; "" gives nil (the system roots).
func acmeCARoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	certs, err := readCertificatesFile(file)
	if err != nil {
		return nil, fmt.Errorf("ACME CA root file %s: %w", file, err)
	}
	roots := x509.NewCertPool()
	for _, c := range certs {
		roots.AddCert(c)
	}
	return roots, nil
}

// newCertmagicConfig makes m's own certmagic cache (m.cache) and the
// config over storage, which it returns without issuers. Our own cache and config: certmagic's package-level Default
// and default cache are never used nor changed.
func (m *acmeManager) newCertmagicConfig(storage certmagic.Storage, zlog *zap.Logger) *certmagic.Config {
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: m.checkInterval,
		OCSPCheckInterval:  m.checkInterval,
		Logger:             zlog,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		Storage: storage,
		Logger:  zlog,
	})
	return magic
}

// serveHTTPChallenges listens on addr and answers the HTTP-01 challenges
// of issuer there until m is closed.
func (m *acmeManager) serveHTTPChallenges(addr string, issuer *certmagic.ACMEIssuer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ACME: cannot listen for HTTP-01 challenges on %s (tls.acme.http_listen; is another server on it?): %w", addr, err)
	}
	m.httpServer = &http.Server{
		Handler:           issuer.HTTPChallengeHandler(http.NotFoundHandler()),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.httpDone = make(chan struct{})
	go func() {
		defer close(m.httpDone)
		_ = m.httpServer.Serve(ln)
	}()
	m.log.Info("answering ACME HTTP-01 challenges", slog.String("listen", ln.Addr().String()))
	return nil
}

// answerTLSALPNAtStart answers TLS-ALPN-01 validations on addr, the
// direct-TLS listener's address, until stop (before the gateway listens
// there): the node ordering may be another one sharing the storage, whose
// challenge this node reads from it. Other handshakes fail.
func (m *acmeManager) answerTLSALPNAtStart(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ACME: cannot listen for TLS-ALPN-01 challenges on %s (the direct-TLS listener; is another server on it?): %w", addr, err)
	}
	tc := &tls.Config{
		NextProtos: []string{ALPNACMETLS},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			cert, ok, err := m.challengeCertificate(hello)
			if !ok {
				return nil, errors.New("only ACME TLS-ALPN-01 validations are answered until the gateway listens")
			}
			return cert, err
		},
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = tls.Server(c, tc).Handshake()
			}()
		}
	}()
	m.log.Info("answering ACME TLS-ALPN-01 challenges until the gateway listens", slog.String("listen", ln.Addr().String()))
	return func() { ln.Close(); wg.Wait() }, nil
}

// logServed logs the certificate served for each managed domain.
func (m *acmeManager) logServed() {
	for _, d := range m.domains {
		if c := m.current(d); c != nil {
			m.log.Info("serving ACME certificate", slog.String("domain", d),
				slog.String("issuer", issuerName(c.Leaf)), slog.Time("not_after", c.Leaf.NotAfter))
		}
	}
}

// challengeAddresses derives certmagic's single ListenHost and the two
// challenge ports from the configured addresses.
func challengeAddresses(httpListen, tlsListen string) (host string, httpPort, tlsPort int, err error) {
	split := func(what, addr string) (string, int, error) {
		h, p, err := net.SplitHostPort(addr)
		if err != nil {
			return "", 0, fmt.Errorf("ACME: %s %q is not host:port: %w", what, addr, err)
		}
		port, err := strconv.Atoi(p)
		if err != nil || port <= 0 || port > 65535 {
			return "", 0, fmt.Errorf("ACME: %s %q needs a port number between 1 and 65535", what, addr)
		}
		return h, port, nil
	}
	var httpHost, tlsHost string
	if httpListen != "" {
		if httpHost, httpPort, err = split("HTTP-01 listen address", httpListen); err != nil {
			return "", 0, 0, err
		}
	}
	if tlsListen != "" {
		if tlsHost, tlsPort, err = split("TLS-ALPN-01 listen address", tlsListen); err != nil {
			return "", 0, 0, err
		}
	}
	if httpListen != "" && tlsListen != "" && httpHost != tlsHost {
		return "", 0, 0, fmt.Errorf("ACME: the HTTP-01 listener %s and the direct-TLS listener %s must use the same host (certmagic has one listen host for both challenges)", httpListen, tlsListen)
	}
	host = httpHost
	if tlsListen != "" {
		host = tlsHost
	}
	return host, httpPort, tlsPort, nil
}

// manages reports whether domain (normalised) is managed by ACME.
func (m *acmeManager) manages(domain string) bool {
	return m != nil && slices.Contains(m.domains, domain)
}

// current returns the certificate to serve for domain (normalised): of
// those in certmagic's cache, a valid one with the latest expiry; nil
// when there is none.
func (m *acmeManager) current(domain string) *tls.Certificate {
	if !m.manages(domain) {
		return nil
	}
	now := time.Now()
	var best *certmagic.Certificate
	for _, c := range m.cache.AllMatchingCertificates(domain) {
		if c.Leaf == nil {
			continue
		}
		if best == nil {
			best = &c
			continue
		}
		valid, bestValid := leafValidAt(c.Leaf, now), leafValidAt(best.Leaf, now)
		if valid && !bestValid || valid == bestValid && c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
			best = &c
		}
	}
	if best == nil {
		return nil
	}
	cert := best.Certificate
	return &cert
}

func leafValidAt(leaf *x509.Certificate, now time.Time) bool {
	return !now.Before(leaf.NotBefore) && !now.After(leaf.NotAfter)
}

// challengeCertificate answers a TLS-ALPN-01 validation handshake, or
// returns ok=false when hello is not one.
func (m *acmeManager) challengeCertificate(hello *tls.ClientHelloInfo) (cert *tls.Certificate, ok bool, err error) {
	if m == nil || !m.tlsALPN || len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != ALPNACMETLS {
		return nil, false, nil
	}
	cert, err = m.magic.GetCertificate(hello)
	if err != nil {
		return nil, true, fmt.Errorf("answering the ACME TLS-ALPN-01 challenge for %q: %w", hello.ServerName, err)
	}
	return cert, true, nil
}

// warnInterval is how often expiring certificates are logged again.
const warnInterval = 6 * time.Hour

// maintain forces renewals when RenewBefore says so and logs certificates
// that expire soon, until Close.
func (m *acmeManager) maintain(s *Store) {
	defer close(m.done)
	ticker := time.NewTicker(m.checkInterval)
	defer ticker.Stop()
	lastWarn := time.Now()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-ticker.C:
		}
		if m.renewBefore > 0 {
			for _, d := range m.domains {
				m.renewIfDue(m.ctx, d)
			}
		}
		if time.Since(lastWarn) >= warnInterval {
			m.warnExpiring(s)
			lastWarn = time.Now()
		}
	}
}

// renewIfDue renews domain's certificate when less than RenewBefore is
// left, and serves the new one.
func (m *acmeManager) renewIfDue(ctx context.Context, domain string) {
	old := m.current(domain)
	if old == nil || time.Until(old.Leaf.NotAfter) >= m.renewBefore {
		return
	}
	log := m.log.With(slog.String("domain", domain))
	if validity := old.Leaf.NotAfter.Sub(old.Leaf.NotBefore); validity <= m.renewBefore {
		if !m.renewBeforeWarned.Swap(true) {
			log.Warn("tls.acme.renew_before is not applied: the CA's certificates are valid no longer than it, so every check would order again; certmagic renews at its own time (set renew_before below the validity)",
				slog.Duration("renew_before", m.renewBefore), slog.Duration("validity", validity))
		}
		return
	}
	oldCached := m.cachedByLeaf(domain, old.Leaf)
	log.Info("renewing certificate: less than renew_before is left",
		slog.Time("not_after", old.Leaf.NotAfter), slog.Duration("renew_before", m.renewBefore))
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// RenewCertAsync runs in the caller (non-interactively, retrying until
	// ctx ends); it only stores the new certificate.
	if err := m.magic.RenewCertAsync(ctx, domain, true); err != nil {
		log.Error("certificate renewal failed; the current certificate stays in use", slog.Any("error", err))
		return
	}
	fresh, err := m.magic.CacheManagedCertificate(ctx, domain)
	if err != nil {
		log.Error("renewed certificate cannot be loaded from storage", slog.Any("error", err))
		return
	}
	if oldCached != "" && oldCached != fresh.Hash() {
		m.cache.Remove([]string{oldCached})
	}
	log.Info("certificate renewed", slog.Time("not_after", fresh.Leaf.NotAfter))
}

// cachedByLeaf returns the certmagic cache hash of the cached certificate
// whose leaf is leaf.
func (m *acmeManager) cachedByLeaf(domain string, leaf *x509.Certificate) string {
	for _, c := range m.cache.AllMatchingCertificates(domain) {
		if c.Leaf != nil && c.Leaf.Equal(leaf) {
			return c.Hash()
		}
	}
	return ""
}

func (m *acmeManager) warnExpiring(s *Store) {
	for _, d := range s.ExpiringSoon(ExpiryWarning) {
		if c := s.Certificate(d); c != nil && c.Leaf != nil {
			m.log.Warn("certificate expires soon", slog.String("domain", d),
				slog.Time("not_after", c.Leaf.NotAfter), slog.Duration("left", time.Until(c.Leaf.NotAfter).Round(time.Minute)))
		}
	}
}

// close stops everything the manager started and waits for it.
func (m *acmeManager) close() {
	m.closeOnce.Do(func() {
		m.cancel()
		if m.started {
			<-m.done
		}
		if m.httpServer != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = m.httpServer.Shutdown(ctx)
			cancel()
			<-m.httpDone
		}
		m.cache.Stop()
	})
}

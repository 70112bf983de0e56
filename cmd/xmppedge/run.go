package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/edge"
	"github.com/xmppedge/xmppedge/internal/admin"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/cluster"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/dnsresponder"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/sessiondir"
	"github.com/xmppedge/xmppedge/policy"
)

// buildOptions turns a validated config into the gateway's options,
// loading what the config points at; prepare calls it. With obtain false
// nothing is contacted or created: ACME certificates are not ordered and
// the internal CA is checked (loaded when it exists), not generated. Its
// errors are FieldErrors where a field is to blame.
func buildOptions(ctx context.Context, cfg *config.Config, log *slog.Logger, obtain bool, node *cluster.Node) (edge.Options, error) {
	var fe config.FieldErrors
	store, certErrs := loadCertificates(ctx, cfg, log, obtain, node)
	fe = append(fe, certErrs...)
	var cas []string
	for _, f := range cfg.TLS.CAFiles {
		cas = append(cas, cfg.ResolvePath(f))
	}
	verifier, err := certs.NewVerifier(cas, cfg.TLS.SystemRootsTrusted())
	if err != nil {
		fe = append(fe, config.FieldError{Field: "tls.ca_files", Problem: err.Error()})
	}
	res, err := resolve.New(resolve.Config{Servers: cfg.DNS.Servers})
	if err != nil {
		fe = append(fe, config.FieldError{Field: "dns.servers", Problem: err.Error()})
	}
	ica, err := insideCA(cfg, log, obtain)
	if err != nil {
		fe = append(fe, config.FieldError{Field: "inside.ca", Problem: err.Error()})
	}
	if len(fe) > 0 {
		return edge.Options{}, fe
	}
	dane := ""
	if cfg.TLS.DANE {
		dane = cfg.DNS.Servers[0]
	}
	nodeName := ""
	if cfg.Cluster != nil {
		nodeName = cfg.Cluster.Node
	}
	return edge.Options{
		Domains: cfg.Domains,
		Node:    nodeName,
		Inside: edge.InsideOptions{
			Listen: cfg.Inside.Listen,
			Server: cfg.Inside.Server,
			Allow:  cfg.ParsedAllow(),
			TLS:    edge.TLSMode(cfg.Inside.TLS),
			CA:     ica,
			NoBidi: !config.BidiOn(cfg.Inside.Bidi),
		},
		Outside: edge.OutsideOptions{
			Listen:       cfg.Outside.Listen,
			ListenTLS:    cfg.Outside.ListenTLS,
			RequireTLS:   cfg.Outside.TLSRequired(),
			Resolver:     res,
			DANEResolver: dane,
			POSH:         cfg.TLS.POSH,
			NoBidi:       !config.BidiOn(cfg.Outside.Bidi),
			// XEP-0344: db:result settled by a certificate valid for its from.
			NoDialbackShortcut: !cfg.Outside.DialbackShortcutOn(),
		},
		Certificates: store,
		Verifier:     verifier,
		Limits:       gatewayLimits(cfg.Limits),
		Logger:       log,
	}, nil
}

// loadCertificates loads the certificate files of the local domains and,
// with obtain, has ACME obtain the domains no file covers (in a cluster,
// keeping ACME's state in the cluster: one order for every node).
func loadCertificates(ctx context.Context, cfg *config.Config, log *slog.Logger, obtain bool, node *cluster.Node) (*certs.Store, config.FieldErrors) {
	var fe config.FieldErrors
	pairs := certificatePairs(cfg)
	store, err := certs.LoadStore(pairs)
	if err != nil {
		return nil, append(fe, config.FieldError{Field: "tls.certificates", Problem: err.Error()})
	}
	// The local domains no certificate file covers are ACME's, if
	// configured.
	acmeDomains := uncoveredDomains(store, cfg.Domains)
	if cfg.TLS.ACME == nil {
		for _, d := range acmeDomains {
			fe = append(fe, config.FieldError{Field: "tls.certificates", Problem: "no certificate covers the local domain " + d + ": outside peers need one for STARTTLS; add a cert_file/key_file pair for it, or configure tls.acme"})
		}
	}
	if cfg.TLS.ACME == nil || !obtain || len(fe) > 0 || len(acmeDomains) == 0 {
		return store, fe
	}
	ac := acmeConfig(cfg)
	if node != nil {
		if ac.SharedStorage, err = sharedACMEStorage(ctx, node); err != nil {
			return store, append(fe, config.FieldError{Field: "tls.acme", Problem: err.Error()})
		}
	}
	store, err = certs.NewACMEStore(ctx, acmeDomains, ac, pairs, log)
	if err != nil {
		fe = append(fe, config.FieldError{Field: "tls.acme", Problem: err.Error()})
	}
	return store, fe
}

// acmeConfig is certmagic's part of tls.acme.
func acmeConfig(cfg *config.Config) certs.ACMEConfig {
	a := cfg.TLS.ACME
	ac := certs.ACMEConfig{
		CA: a.CA, Email: a.Email, Storage: cfg.ResolvePath(a.Storage),
		HTTPListen: a.HTTPListen, RenewBefore: time.Duration(a.RenewBefore),
		CheckInterval: time.Duration(a.CheckInterval),
	}
	if a.CARoot != "" {
		ac.CARoot = cfg.ResolvePath(a.CARoot)
	}
	if a.EAB != nil {
		ac.EAB = &certs.EAB{KeyID: a.EAB.KeyID, MACKey: a.EAB.MACKey}
	}
	if len(cfg.Outside.ListenTLS) > 0 {
		ac.TLSALPNListen = cfg.Outside.ListenTLS[0]
	}
	return ac
}

// insideCA is the internal CA of the inside leg (nil with inside TLS off).
// Without obtain it is only checked; with it, loaded or created.
func insideCA(cfg *config.Config, log *slog.Logger, obtain bool) (*certs.InternalCA, error) {
	if cfg.Inside.TLS == config.InsideTLSOff {
		return nil, nil
	}
	if !obtain {
		return nil, checkInternalCA(cfg)
	}
	ica, created, err := certs.LoadOrCreateInternalCA(cfg.ResolvePath(cfg.Inside.CA.CertFile), cfg.ResolvePath(cfg.Inside.CA.KeyFile))
	if err == nil && created {
		log.Warn("created the internal CA for the inside leg: install its certificate in the internal server's trust store",
			"cert_file", cfg.ResolvePath(cfg.Inside.CA.CertFile))
	}
	return ica, err
}

// gatewayLimits are the limits of the config, as the gateway takes them
// at start and at reload.
func gatewayLimits(l config.LimitsConfig) edge.Limits {
	return edge.Limits{
		MaxStanzaSize:       l.MaxStanzaSize,
		QueueSize:           l.QueueSize,
		ConnectTimeout:      time.Duration(l.ConnectTimeout),
		IdleTimeout:         time.Duration(l.IdleTimeout),
		ConnectionsPerIP:    l.ConnectionsPerIP,
		NewConnectionsPerIP: l.NewConnectionsPerIP,
		StanzaRate:          l.StanzaRate,
		StanzaBurst:         l.StanzaBurst,
	}
}

// certificatePairs lists the certificate files of tls.certificates, with
// their paths resolved.
func certificatePairs(cfg *config.Config) []certs.KeyPairFiles {
	var pairs []certs.KeyPairFiles
	for _, c := range cfg.TLS.Certificates {
		pairs = append(pairs, certs.KeyPairFiles{CertFile: cfg.ResolvePath(c.CertFile), KeyFile: cfg.ResolvePath(c.KeyFile)})
	}
	return pairs
}

// uncoveredDomains are the domains store has no certificate for.
func uncoveredDomains(store *certs.Store, domains []string) []string {
	var out []string
	for _, d := range domains {
		if store.Certificate(d) == nil {
			out = append(out, d)
		}
	}
	return out
}

// node is a running xmppedge: the gateway and what surrounds it.
type node struct {
	cfgPath   string
	cfg       *config.Config
	log       *slog.Logger
	level     *slog.LevelVar
	gw        *edge.Gateway
	eng       *policy.Engine
	alog      audit.Sink   // the audit log: the file, or the cluster's stream
	acme      *certs.Store // the ACME-managed store to stop at exit, or nil
	adminAuth *admin.Auth  // the admin API's authentication, or nil
	reloadMu  sync.Mutex   // one reload at a time (SIGHUP, POST /reload)
	m         *metrics.Metrics
	cluster   *cluster.Node         // this node's part of the cluster, or nil
	dir       *sessiondir.Directory // the cluster's sessions, or nil
	posture   *posture.Store        // the best postures seen per partner
}

// run runs the gateway until SIGTERM or SIGINT (or ctx ends) and returns
// the exit code. Whatever prepare finds wrong is reported at once, before
// anything listens.
func run(ctx context.Context, cfg *config.Config, path string, stdout, stderr io.Writer) int {
	log, level := newLogger(cfg, stderr)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	n := &node{cfgPath: path, cfg: cfg, log: log, level: level, m: metrics.New(version)}
	// A SIGHUP while the node starts (a cluster's first answers can take
	// seconds) must not end it, as its default action would: it is caught
	// from here on and served once the node runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fail := func(err error) int {
		printConfigError(stderr, path, err)
		return 1
	}

	st, err := prepare(ctx, cfg, log, true)
	if err != nil {
		return fail(err)
	}
	opt := st.opt
	if n.cluster = st.cluster; n.cluster != nil {
		defer n.cluster.Close()
	}
	if cfg.TLS.ACME != nil {
		n.acme = opt.Certificates
		defer n.acme.Close()
	}
	n.eng, n.adminAuth = st.eng, st.adminAuth
	retain := newRetentionRunner(cfg, log, n.m)
	if n.alog, err = openAudit(ctx, cfg, st.hmacKey, log, n.cluster, n.m, retain.rotated); err != nil {
		return fail(err)
	}
	defer n.alog.Close()
	if l, ok := n.alog.(*audit.Log); ok && cfg.Audit.Retention > 0 {
		rctx, stopRetention := context.WithCancel(ctx)
		go retain.run(rctx, l)
		defer func() { stopRetention(); <-retain.done }()
	}
	opt.DialbackSecret = st.secret
	opt.Policy = n.eng
	opt.Audit = n.alog
	opt.Metrics = n.m
	n.posture, opt.Posture = st.posture, st.posture
	if n.posture.Path() == "" {
		log.Warn("partner postures are kept in memory only with audit.backend jetstream: each start forgets the best posture seen (the audit stream keeps the posture.raised records)")
	}
	if n.gw, err = edge.New(opt); err != nil {
		return fail(err)
	}
	if err := n.gw.Start(); err != nil {
		return fail(err)
	}
	if n.cluster != nil {
		n.watchClusterMetrics()
		log.Debug("starting the cluster's session directory")
		if err := n.startSessionDirectory(ctx); err != nil {
			n.gw.Close()
			return fail(err)
		}
		defer n.dir.Close()
	}
	n.m.PolicyRevision(n.eng.Revision())

	closeSide, err := n.startSideServices(ctx, st.metricsTLS)
	if err != nil {
		n.gw.Close()
		return fail(err)
	}
	defer closeSide()
	go n.watchCertificates(ctx)

	// A new policy (file change, bundle, SIGHUP) re-decides every session,
	// and may bring other agreements.
	agreementsChanged := make(chan struct{}, 1)
	n.eng.OnReload(func(rev string) {
		n.m.PolicyRevision(rev)
		n.gw.Recheck()
		saveSamples(n.eng, log)
		select {
		case agreementsChanged <- struct{}{}:
		default:
		}
	})
	go n.watchAgreements(ctx, agreementsChanged)
	go n.eng.Watch(ctx)
	go returnMemoryWhenQuiet(ctx, log)
	go saveSamplesEvery(ctx, n.eng, samplesEvery, log)
	n.printSummary(stdout)

	why := n.waitForSignals(ctx, hup)
	log.Info("shutting down", "signal", why)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownBound)
	defer cancel()
	if err := n.gw.Shutdown(sctx); err != nil {
		log.Warn("shutdown did not finish in time: connections dropped", "err", err)
		n.gw.Close()
	}
	saveSamples(n.eng, log)
	log.Info("stopped")
	return 0
}

// startSideServices starts the metrics/health/admin listener and the
// inside DNS responder when configured; closeAll stops them.
func (n *node) startSideServices(ctx context.Context, metricsTLS *tls.Config) (closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
	}
	cfg, log := n.cfg, n.log
	if cfg.Metrics.Listen != "" {
		srv, addr, err := n.serveHTTP(metricsTLS)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		closers = append(closers, func() { srv.Close() })
		log.Info("metrics and health listening", "addr", addr, "https", metricsTLS != nil, "admin", cfg.Metrics.Admin)
		if cfg.Metrics.Admin && cfg.Metrics.AdminTokenFile != "" && metricsTLS == nil && !isLoopback(addr) {
			log.Warn("the admin API's bearer token travels in clear text beyond loopback: serve metrics.listen over HTTPS (metrics.tls_cert_file, metrics.tls_key_file) or keep it on 127.0.0.1", "addr", addr)
		}
	}
	if cfg.Inside.DNSListen != "" {
		dnsSrv, err := n.startDNSResponder(ctx)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("inside.dns_listen: %w", err)
		}
		closers = append(closers, func() { dnsSrv.Close() })
	}
	return closeAll, nil
}

// waitForSignals reloads on SIGHUP (hup, caught since the start) until
// SIGTERM, SIGINT or the end of ctx, and says which ended it.
func (n *node) waitForSignals(ctx context.Context, hup <-chan os.Signal) string {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			return s.String()
		case <-hup:
			n.log.Info("SIGHUP: reloading")
			err := n.reloadAnnounced(ctx)
			if err != nil {
				n.log.Error("reload rejected: the running configuration stays active", "err", err)
			}
			n.auditReload(ctx, "signal SIGHUP", err)
		case <-ctx.Done():
			return "context ended"
		}
	}
}

// reloadAnnounced reloads this node and, in a cluster, has the other
// nodes reload theirs (sessiondir.AnnounceReload): a partner the new
// policy removes is cut on every node.
func (n *node) reloadAnnounced(ctx context.Context) error {
	err := n.reload(ctx)
	if err == nil && n.dir != nil {
		if aerr := n.dir.AnnounceReload(); aerr != nil {
			n.log.Warn("the other nodes were not told to reload: reload them yourself", "err", aerr)
		}
	}
	return err
}

// auditReload puts a reload the admin API did not make (a SIGHUP, another
// node's announcement) on record, like the admin API's POST /reload.
func (n *node) auditReload(ctx context.Context, actor string, reloadErr error) {
	r := &audit.Record{Event: audit.EventAdmin, Actor: actor, Action: admin.ActionReload, Decision: audit.DecisionAllow}
	if reloadErr != nil {
		r.Decision = "error"
		r.Reason = "rejected, the running configuration is kept: " + strings.Join(strings.Fields(strings.ReplaceAll(reloadErr.Error(), "\n", "; ")), " ")
	}
	seq, err := n.alog.Append(r)
	if err == nil {
		err = n.alog.WaitDurable(ctx, seq)
	}
	if err != nil {
		n.log.Error("the reload could not be audited", "actor", actor, "err", err)
	}
}

// printSummary prints the start-up summary an operator reads first.
func (n *node) printSummary(w io.Writer) {
	cfg := n.cfg
	fmt.Fprintf(w, "xmppedge %s running\n", version)
	fmt.Fprintf(w, "  local domains: %s\n", strings.Join(cfg.Domains, ", "))
	for _, a := range n.gw.Addrs() {
		fmt.Fprintf(w, "  listening: %s\n", a)
	}
	fmt.Fprintf(w, "  inside server: %s (inside TLS: %s)\n", cfg.Inside.Server, cfg.Inside.TLS)
	src := cfg.Policy.Rules
	if cfg.Policy.Bundle != nil {
		src = cfg.Policy.Bundle.URL
	}
	fmt.Fprintf(w, "  policy: %s, revision %s, mode %s\n", src, n.eng.Revision(), cfg.Policy.Mode)
	exp := n.gw.Certificates().Expiry()
	for _, d := range cfg.Domains {
		if t, ok := exp[d]; ok {
			fmt.Fprintf(w, "  certificate %s: valid until %s\n", d, t.UTC().Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "  certificate %s: MISSING\n", d)
		}
	}
	if cfg.Audit.Backend == config.AuditBackendJetStream {
		fmt.Fprintf(w, "  audit: the cluster's JetStream stream (%s)\n", cfg.Audit.Durability)
	} else {
		fmt.Fprintf(w, "  audit: %s (%s)\n", cfg.ResolvePath(cfg.Audit.Path), cfg.Audit.Durability)
	}
	n.printClusterSummary(w)
	if cfg.Metrics.Listen != "" {
		scheme := "http"
		if cfg.Metrics.TLS() {
			scheme = "https"
		}
		fmt.Fprintf(w, "  metrics: %s://%s/metrics\n", scheme, cfg.Metrics.Listen)
		if cfg.Metrics.Admin {
			var how []string
			if cfg.Metrics.AdminTokenFile != "" {
				how = append(how, "bearer token")
			}
			if cfg.Metrics.ClientCA != "" {
				how = append(how, "client certificate")
			}
			fmt.Fprintf(w, "  admin API: %s://%s/admin/sessions (%s)\n", scheme, cfg.Metrics.Listen, strings.Join(how, " or "))
		}
	}
}

// reload re-reads the configuration file, all or nothing: a file with
// errors, certificate files that do not load, a policy that does not
// compile, or changed settings that only a restart can apply reject the
// whole reload and the running configuration stays. Otherwise the
// certificate files, the log level, the limits and the policy (its rules
// and data files, re-read) take effect; established sessions stay (those
// the new policy refuses are cut). Listeners, domains, the inside server,
// the policy and audit settings themselves take effect at the next start.
func (n *node) reload(ctx context.Context) (err error) {
	n.reloadMu.Lock()
	defer n.reloadMu.Unlock()
	defer func() { n.m.Reload(err) }()
	cfg, err := config.Load(n.cfgPath)
	if err != nil {
		return err
	}
	if !reflect.DeepEqual(cfg.Policy, n.cfg.Policy) {
		return config.FieldErrors{{Field: "policy", Problem: "the policy settings changed: they take effect at the next start (edit the rules and data files themselves to reload them)"}}
	}
	// Certificate files are re-read (ACME-managed ones renew by
	// themselves): a renewed file takes effect without a restart.
	var store *certs.Store
	if n.cfg.TLS.ACME == nil {
		if store, err = certs.LoadStore(certificatePairs(cfg)); err != nil {
			return config.FieldErrors{{Field: "tls.certificates", Problem: err.Error()}}
		}
		if missing := uncoveredDomains(store, n.cfg.Domains); len(missing) > 0 {
			return config.FieldErrors{{Field: "tls.certificates", Problem: "no certificate covers the local domain " + missing[0]}}
		}
	}
	// The admin token file is re-read (rotation without a restart); the
	// rest of metrics.* takes effect at the next start.
	token := ""
	if n.adminAuth != nil && cfg.Metrics.Admin && cfg.Metrics.AdminTokenFile != "" && n.cfg.Metrics.AdminTokenFile != "" {
		if token, err = admin.LoadToken(cfg.ResolvePath(cfg.Metrics.AdminTokenFile)); err != nil {
			return config.FieldErrors{{Field: "metrics.admin_token_file", Problem: err.Error()}}
		}
	}
	// The policy last of the checks: it applies itself when it compiles.
	if err := n.eng.Reload(ctx); err != nil {
		return err
	}
	if store != nil {
		n.gw.SetCertificates(store)
	}
	if token != "" {
		if err := n.adminAuth.SetToken(token); err != nil {
			n.log.Error("reload: the admin token was not replaced", "err", err)
		}
	}
	n.level.Set(logLevel(cfg.Log.Level))
	n.gw.SetLimits(gatewayLimits(cfg.Limits))
	n.log.Info("reloaded", "policy_revision", n.eng.Revision())
	return nil
}

// ready lists what keeps the node from serving: nothing when ready.
func (n *node) ready() []string {
	var problems []string
	if n.eng.Revision() == "" {
		problems = append(problems, "policy: not loaded")
	}
	if err := n.alog.Healthy(); err != nil {
		problems = append(problems, "audit: "+err.Error())
	}
	// Healthy only knows of failed writes; a folder that became
	// unwritable is found by trying.
	if n.cfg.Audit.Backend != config.AuditBackendJetStream {
		dir := filepath.Dir(n.cfg.ResolvePath(n.cfg.Audit.Path))
		if f, err := os.CreateTemp(dir, ".readyz-*"); err != nil {
			problems = append(problems, "audit: the folder "+dir+" is not writable: "+err.Error())
		} else {
			f.Close()
			os.Remove(f.Name())
		}
	}
	if n.cluster != nil {
		if err := n.cluster.Healthy(); err != nil {
			problems = append(problems, "cluster: "+err.Error())
		}
	}
	for _, d := range n.cfg.Domains {
		if n.gw.Certificates().Certificate(d) == nil {
			problems = append(problems, "certificate: none for "+d)
		}
	}
	if len(n.gw.Addrs()) == 0 {
		problems = append(problems, "listeners: none bound")
	}
	return problems
}

// serveHTTP serves /metrics, /healthz, /readyz and, when enabled, the
// admin API (authenticated, audited); over HTTPS when tc is set.
func (n *node) serveHTTP(tc *tls.Config) (*http.Server, string, error) {
	mux := n.m.Mux(n.ready)
	if n.cfg.Metrics.Admin {
		err := admin.Register(mux, n.adminSource(), admin.Options{Auth: n.adminAuth, Audit: n.alog, Logger: n.log})
		if err != nil {
			return nil, "", err
		}
	}
	ln, err := net.Listen("tcp", n.cfg.Metrics.Listen)
	if err != nil {
		return nil, "", err
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		// A client that fails the TLS handshake is no server error.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("metrics listener stopped", "err", err)
		}
	}()
	return srv, ln.Addr().String(), nil
}

func adminSessions(in []edge.SessionInfo) []admin.Session {
	out := make([]admin.Session, 0, len(in))
	for _, s := range in {
		a := admin.Session{
			ID: s.ID, Leg: s.Leg, Direction: s.Role, Local: s.Local, Remote: s.Remote,
			RemoteAddr: s.RemoteAddr, TLSVersion: s.TLSVersion, Auth: s.Auth, PeerCert: s.PeerCert,
			Started: s.Started, AgeSeconds: time.Since(s.Started).Seconds(),
			Bidi: s.Bidi, Over: s.Over,
		}
		if s.Role == "incoming" {
			a.StanzasIn = s.Stanzas
		} else {
			a.StanzasOut = s.Stanzas
		}
		out = append(out, a)
	}
	return out
}

// startDNSResponder answers the internal server's SRV queries for remote
// domains with the inside listener.
func (n *node) startDNSResponder(ctx context.Context) (*dnsresponder.Server, error) {
	var inside []netip.AddrPort
	for i, a := range n.gw.Addrs() {
		if i >= len(n.cfg.Inside.Listen) {
			break
		}
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return nil, err
		}
		inside = append(inside, ap)
	}
	srv, err := dnsresponder.Start(ctx, dnsresponder.Config{
		Listen: n.cfg.Inside.DNSListen, Local: n.cfg.Domains, InsideAddrs: inside, Logger: n.log,
		// Other names (and the local domains) go to xmppedge's own
		// resolvers; with none configured they are refused.
		Forward: n.cfg.DNS.Servers,
		// Only the internal server's networks are answered.
		Allow: n.cfg.ParsedDNSAllow(),
	})
	if err != nil {
		return nil, err
	}
	err = n.m.Registry().Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "xmppedge_dns_responder_refused_total",
		Help: "Queries the internal DNS responder refused because their source is outside inside.dns_allow.",
	}, func() float64 { return float64(srv.Refused()) }))
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("registering the refusal counter: %w", err)
	}
	return srv, nil
}

// watchCertificates keeps the certificate expiry metric current and warns
// about certificates that expire within 14 days.
func (n *node) watchCertificates(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		store := n.gw.Certificates()
		for d, exp := range store.Expiry() {
			n.m.CertificateExpiry(d, exp)
		}
		// An ACME store warns by itself.
		if n.cfg.TLS.ACME == nil {
			for _, d := range store.ExpiringSoon(certs.ExpiryWarning) {
				n.log.Warn("certificate expires soon", "domain", d, "not_after", store.Expiry()[d])
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// isLoopback reports whether a listener address is on loopback.
func isLoopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().IsLoopback()
}

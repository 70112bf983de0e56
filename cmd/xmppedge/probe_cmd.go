package main

// xmppedge probe: a federation diagnosis of one remote domain, the way a
// federating server sees it. For each step a server takes to reach the
// domain (SRV records, addresses, TCP, STARTTLS or direct TLS, the
// certificate, the stream features, dialback) it prints one line marked
// PASS, WARN or FAIL (INFO and SKIP for facts and steps not taken), then a
// one-line summary. -json prints the same as a JSON document. The exit code
// is 0 when the domain can be federated with (PASS or WARN), 1 when not,
// 2 on a usage error.
//
// Without -config the probe is anonymous: its stream header carries no
// from (unless -from is given), it presents no certificate and cannot try
// dialback. With -config it uses the gateway's DNS servers, CA files,
// certificates and dialback secret: it presents the certificate of its
// domain (the first local domain, or -from) and sends a real db:result. The
// remote then verifies the key by connecting back to that domain's
// authoritative server, so the dialback check passes only while the gateway
// (any node sharing the secret) is running and reachable from the remote.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/s2s"
	"github.com/xmppedge/xmppedge/internal/stream"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
	"github.com/xmppedge/xmppedge/policy"
)

// Check marks.
const (
	probePass = "PASS"
	probeWarn = "WARN"
	probeFail = "FAIL"
	probeInfo = "INFO"
	probeSkip = "SKIP"
)

const (
	probeDefaultTimeout = 10 * time.Second
	probeMaxTargets     = 6
	// probeExpiryWarning: a certificate expiring sooner than this is a
	// warning.
	probeExpiryWarning = 14 * 24 * time.Hour
)

// probeCheck is one line of the diagnosis.
type probeCheck struct {
	Status string `json:"status"`
	Check  string `json:"check"`
	Target string `json:"target,omitempty"` // host:port the check is about
	Detail string `json:"detail"`
}

type probeSRV struct {
	Service  string `json:"service"`
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
	Port     uint16 `json:"port"`
	Target   string `json:"target"`
	DNSSEC   bool   `json:"dnssec"` // the answer was DNSSEC-authenticated (AD)
}

type probeCert struct {
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	NotAfter time.Time `json:"not_after"`
	Names    []string  `json:"names,omitempty"`
}

// probeTarget is what was found out about one SRV target.
type probeTarget struct {
	Host              string      `json:"host"`
	Port              uint16      `json:"port"`
	DirectTLS         bool        `json:"direct_tls"`
	Addresses         []string    `json:"addresses,omitempty"`
	Connected         string      `json:"connected,omitempty"`
	StreamID          string      `json:"stream_id,omitempty"`
	FeaturesBeforeTLS []string    `json:"features_before_tls,omitempty"`
	TLSVersion        string      `json:"tls_version,omitempty"`
	CipherSuite       string      `json:"cipher_suite,omitempty"`
	ALPN              string      `json:"alpn,omitempty"`
	Chain             []probeCert `json:"certificate_chain,omitempty"`
	CertificateValid  bool        `json:"certificate_valid"`
	CertificateReason string      `json:"certificate_reason,omitempty"`
	Features          []string    `json:"features,omitempty"`
	Dialback          string      `json:"dialback,omitempty"`
	// OK: connected, TLS established and the certificate valid for the
	// domain.
	OK bool `json:"ok"`
}

func (t *probeTarget) hostPort() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

type probeReport struct {
	Domain     string         `json:"domain"`
	From       string         `json:"from,omitempty"`
	Time       time.Time      `json:"time"`
	DNSServers []string       `json:"dns_servers,omitempty"`
	SRV        []probeSRV     `json:"srv"`
	Targets    []*probeTarget `json:"targets"`
	Checks     []probeCheck   `json:"checks"`
	Status     string         `json:"status"`
	Summary    string         `json:"summary"`

	out io.Writer // human-readable lines as they happen; nil with -json
}

func (r *probeReport) add(status, check, target, format string, args ...any) {
	c := probeCheck{Status: status, Check: check, Target: target, Detail: probeOneLine(fmt.Sprintf(format, args...))}
	r.Checks = append(r.Checks, c)
	if r.out != nil {
		indent := ""
		if target != "" {
			indent = "  "
		}
		fmt.Fprintf(r.out, "%s%-4s  %s: %s\n", indent, c.Status, c.Check, c.Detail)
	}
}

func (r *probeReport) println(format string, args ...any) {
	if r.out != nil {
		fmt.Fprintf(r.out, format+"\n", args...)
	}
}

// probeSettings is what the flags and -config decide.
type probeSettings struct {
	domain      string
	from        string
	dnsServers  []string
	caFiles     []string
	systemRoots bool
	store       *certs.Store // our certificates (-config); nil: present none
	secret      string       // dialback secret (-config); "": no dialback
	noDialback  string       // why dialback is skipped
	timeout     time.Duration
	now         func() time.Time
	cfg         *config.Config // -config: also ask its policy what it would decide
}

func probeUsage(w io.Writer) {
	fmt.Fprint(w, `usage: xmppedge probe [-dns IP:PORT] [-ca FILE] [-from DOMAIN] [-config FILE] [-timeout 10s] [-json] DOMAIN

Diagnoses federation with DOMAIN: SRV records, addresses, TCP, STARTTLS or
direct TLS, the certificate, the stream features and, with -config, a real
dialback exchange (which needs the gateway running). Exit code 0 when DOMAIN
can be federated with, 1 when not.
`)
}

func probeCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { probeUsage(stderr); fs.PrintDefaults() }
	dnsFlag := fs.String("dns", "", "DNS server(s) to ask, IP[:PORT], comma-separated (default: -config's dns.servers, else /etc/resolv.conf)")
	var caFlags probeList
	fs.Var(&caFlags, "ca", "extra trusted CA file (PEM); repeatable")
	from := fs.String("from", "", "our domain, sent as the stream's from (default with -config: the first local domain)")
	configPath := fs.String("config", "", "the gateway's configuration: use its DNS servers, CA files, certificates and dialback secret")
	timeout := fs.Duration("timeout", probeDefaultTimeout, "bound for each network step")
	asJSON := fs.Bool("json", false, "print a JSON document instead of lines")
	// Accept flags after the domain too: xmppedge probe partner.org -json.
	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(positional) != 1 || positional[0] == "" {
		fmt.Fprintln(stderr, "xmppedge probe: give exactly one domain to probe")
		probeUsage(stderr)
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintln(stderr, "xmppedge probe: -timeout must be positive")
		return 2
	}

	s := probeSettings{
		domain:      strings.TrimSuffix(strings.ToLower(strings.TrimSpace(positional[0])), "."),
		from:        strings.TrimSuffix(strings.ToLower(strings.TrimSpace(*from)), "."),
		caFiles:     caFlags,
		systemRoots: true,
		timeout:     *timeout,
		now:         time.Now,
		noDialback:  "skipped (no -config)",
	}
	if *dnsFlag != "" {
		for _, d := range strings.Split(*dnsFlag, ",") {
			if d = strings.TrimSpace(d); d != "" {
				s.dnsServers = append(s.dnsServers, d)
			}
		}
	}
	if *configPath != "" {
		if err := probeLoadConfig(&s, *configPath, *dnsFlag != "", stderr); err != nil {
			fmt.Fprintf(stderr, "xmppedge probe: %v\n", err)
			return 2
		}
	}

	ctx := context.Background()
	rep := &probeReport{Domain: s.domain, From: s.from, Time: s.now().UTC(), DNSServers: s.dnsServers}
	if !*asJSON {
		rep.out = stdout
	}
	probeRun(ctx, s, rep)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "xmppedge probe: encoding the report: %v\n", err)
			return 1
		}
	}
	if rep.Status == probeFail {
		return 1
	}
	return 0
}

// probeList is a repeatable string flag.
type probeList []string

func (l *probeList) String() string     { return strings.Join(*l, ",") }
func (l *probeList) Set(v string) error { *l = append(*l, v); return nil }

// probeLoadConfig takes DNS servers (unless -dns was given), CA files,
// certificates and the dialback secret from the gateway's configuration.
func probeLoadConfig(s *probeSettings, path string, dnsGiven bool, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		var fe config.FieldErrors
		if !errors.As(err, &fe) || cfg == nil {
			return fmt.Errorf("reading -config %s: %w", path, err)
		}
		// A config with problems elsewhere (policy, audit) is still
		// useful for probing; say so and go on.
		fmt.Fprintf(stderr, "xmppedge probe: %s has %d problem(s); probing anyway:\n", path, len(fe))
		for _, e := range fe {
			fmt.Fprintf(stderr, "  %s: %s\n", e.Field, e.Problem)
		}
	}
	s.cfg = cfg
	if !dnsGiven {
		s.dnsServers = cfg.DNS.Servers
	}
	for _, f := range cfg.TLS.CAFiles {
		s.caFiles = append(s.caFiles, cfg.ResolvePath(f))
	}
	s.systemRoots = cfg.TLS.SystemRootsTrusted()
	if pairs := certificatePairs(cfg); len(pairs) > 0 {
		store, err := certs.LoadStore(pairs)
		if err != nil {
			return fmt.Errorf("loading the certificates of -config %s (tls.certificates): %w", path, err)
		}
		s.store = store
	}
	if s.from == "" && len(cfg.Domains) > 0 {
		s.from = cfg.Domains[0]
	}
	switch {
	case cfg.Dialback.SecretFile == "":
		s.noDialback = "skipped (-config names no dialback.secret_file)"
	default:
		// Read, never create: a probe must not invent the deployment's
		// secret.
		data, err := os.ReadFile(cfg.ResolvePath(cfg.Dialback.SecretFile))
		secret := strings.TrimSpace(string(data))
		switch {
		case err != nil:
			s.noDialback = fmt.Sprintf("skipped (the dialback secret cannot be read: %v)", err)
		case secret == "":
			s.noDialback = "skipped (the dialback secret file is empty)"
		default:
			s.secret = secret
			s.noDialback = ""
		}
	}
	return nil
}

// probeRun fills rep.
func probeRun(ctx context.Context, s probeSettings, rep *probeReport) {
	from := s.from
	if from == "" {
		from = "-"
	}
	rep.println("probing %s (from %s) at %s", s.domain, from, rep.Time.Format(time.RFC3339))
	defer probeSummarise(rep)

	if s.domain == "" || strings.ContainsAny(s.domain, " /:@") {
		rep.add(probeFail, "domain", "", "%q is not a domain name", s.domain)
		return
	}
	verifier, err := certs.NewVerifier(s.caFiles, s.systemRoots)
	if err != nil {
		rep.add(probeFail, "ca", "", "cannot load the trusted CAs: %v", err)
		return
	}
	res, err := resolve.New(resolve.Config{Servers: s.dnsServers, Timeout: min(s.timeout, resolve.DefaultTimeout), MaxCacheEntries: -1})
	if err != nil {
		rep.add(probeFail, "dns", "", "no usable DNS server: %v", err)
		return
	}

	srvCount, srvOK := probeSRVRecords(ctx, s, res, rep)

	targets, err := res.LookupS2S(ctx, s.domain)
	switch {
	case errors.Is(err, resolve.ErrNoService):
		rep.add(probeFail, "dns", "", "%s announces that it offers no XMPP server-to-server service (SRV target \".\")", s.domain)
		return
	case err != nil:
		rep.add(probeFail, "dns", "", "looking up where to connect for %s failed: %v", s.domain, err)
		return
	}
	if srvOK && srvCount == 0 {
		rep.add(probeWarn, "dns", "", "no SRV records for _xmpps-server._tcp.%[1]s or _xmpp-server._tcp.%[1]s: falling back to %[1]s:%[2]d (publish _xmpp-server._tcp.%[1]s SRV records)", s.domain, resolve.DefaultS2SPort)
	}
	if len(targets) > probeMaxTargets {
		rep.add(probeInfo, "dns", "", "%d targets; probing the first %d", len(targets), probeMaxTargets)
		targets = targets[:probeMaxTargets]
	}
	for i, t := range targets {
		pt := &probeTarget{Host: t.Host, Port: t.Port, DirectTLS: t.DirectTLS}
		rep.Targets = append(rep.Targets, pt)
		kind := "STARTTLS"
		if t.DirectTLS {
			kind = "direct TLS"
		}
		rep.println("target %d: %s (%s)", i+1, pt.hostPort(), kind)
		probeOneTarget(ctx, s, res, verifier, pt, rep)
	}
	probePolicy(ctx, s, rep)
}

// probeDANEPOSH reports DANE (TLSA records, trusted only with the
// resolver's AD bit) and POSH (RFC 7711) where the domain publishes them.
func probeDANEPOSH(ctx context.Context, s probeSettings, verifier *certs.Verifier, chain []*x509.Certificate, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	if len(s.dnsServers) > 0 {
		dctx, cancel := context.WithTimeout(ctx, s.timeout)
		r := verifier.VerifyDANE(dctx, chain, pt.Host, pt.Port, s.dnsServers[0])
		cancel()
		switch r.Status {
		case certs.DANEMatched:
			rep.add(probePass, "dane", hp, "TLSA _%d._tcp.%s matches (%s)", pt.Port, pt.Host, r.Verdict.Method)
		case certs.DANEFailed:
			rep.add(probeFail, "dane", hp, "TLSA _%d._tcp.%s is authenticated and matches no certificate: %s", pt.Port, pt.Host, r.Verdict.Reason)
		case certs.DANELookupFailed:
			rep.add(probeWarn, "dane", hp, "TLSA lookup failed: %s", r.Verdict.Reason)
		default:
			rep.add(probeInfo, "dane", hp, "no DNSSEC-authenticated TLSA records for _%d._tcp.%s", pt.Port, pt.Host)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, s.timeout)
	r := verifier.VerifyPOSH(pctx, chain, s.domain)
	cancel()
	switch r.Status {
	case certs.POSHMatched:
		rep.add(probePass, "posh", hp, "https://%s%s vouches for this certificate", s.domain, certs.POSHPath)
	case certs.POSHFailed:
		rep.add(probeWarn, "posh", hp, "https://%s%s lists other keys: %s", s.domain, certs.POSHPath, r.Verdict.Reason)
	case certs.POSHError:
		rep.add(probeInfo, "posh", hp, "no usable POSH file: %s", r.Verdict.Reason)
	default:
		rep.add(probeInfo, "posh", hp, "no POSH file at https://%s%s", s.domain, certs.POSHPath)
	}
}

// probePolicy asks the gateway's policy (-config) what it would decide for
// sessions with the domain, both ways, with the TLS facts the probe saw.
func probePolicy(ctx context.Context, s probeSettings, rep *probeReport) {
	if s.cfg == nil || (s.cfg.Policy.Rules == "" && s.cfg.Policy.Bundle == nil) {
		rep.add(probeSkip, "policy", "", "skipped (no -config with a policy)")
		return
	}
	eng, err := newPolicyEngine(ctx, s.cfg, slog.New(slog.DiscardHandler), false)
	if err != nil {
		rep.add(probeFail, "policy", "", "the policy of -config does not load: %v", err)
		return
	}
	local := s.from
	var tlsFacts policy.TLSInfo
	auth := "dialback"
	for _, pt := range rep.Targets {
		if pt.TLSVersion != "" {
			tlsFacts = policy.TLSInfo{Version: pt.TLSVersion, Cipher: pt.CipherSuite, PeerCertValid: pt.CertificateValid, PeerCertError: pt.CertificateReason}
			if pt.CertificateValid {
				auth = "sasl_external"
			}
			break
		}
	}
	for _, in := range []*policy.SessionInput{
		{Direction: "outbound", LocalDomain: local, RemoteDomain: s.domain},
		{Direction: "inbound", LocalDomain: local, RemoteDomain: s.domain, TLS: tlsFacts, Auth: auth},
	} {
		d := eng.DecideSession(ctx, in)
		status, verdict := probePass, "allowed"
		if !d.Allow {
			status, verdict = probeFail, "refused"
		}
		req := ""
		if len(d.Require) > 0 {
			req = " (requires " + strings.Join(d.Require, ", ") + ")"
		}
		rep.add(status, "policy", "", "%s sessions with %s %s%s by policy revision %s: %s", in.Direction, s.domain, verdict, req, d.Revision, probeOr(d.Reason, "no reason given"))
	}
}

// probeSRVRecords asks for both SRV names, to show the records as
// published and whether DNSSEC authenticates them. It returns how many
// records there are and whether both questions were answered.
func probeSRVRecords(ctx context.Context, s probeSettings, res *resolve.Resolver, rep *probeReport) (int, bool) {
	count, ok := 0, true
	for _, service := range []string{"_xmpps-server._tcp.", "_xmpp-server._tcp."} {
		name := service + s.domain
		qctx, cancel := context.WithTimeout(ctx, s.timeout)
		a, err := res.LookupSRV(qctx, s.domain, service == "_xmpps-server._tcp.")
		cancel()
		if err != nil {
			rep.add(probeFail, "dns", "", "SRV %s: %v", name, err)
			ok = false
			continue
		}
		var recs []string
		for _, srv := range a.Records {
			rec := probeSRV{Service: strings.TrimSuffix(service, "."), Priority: srv.Priority, Weight: srv.Weight, Port: srv.Port, Target: srv.Target, DNSSEC: a.Secure}
			rep.SRV = append(rep.SRV, rec)
			recs = append(recs, fmt.Sprintf("%d %d %d %s", srv.Priority, srv.Weight, srv.Port, srv.Target))
			count++
		}
		signed := ""
		if a.Secure {
			signed = " (DNSSEC-authenticated)"
		}
		switch {
		case len(recs) > 0:
			rep.add(probePass, "dns", "", "SRV %s: %s%s", name, strings.Join(recs, "; "), signed)
		case a.NXDomain:
			rep.add(probeInfo, "dns", "", "SRV %s: no records (NXDOMAIN)%s", name, signed)
		default:
			rep.add(probeInfo, "dns", "", "SRV %s: no records%s", name, signed)
		}
	}
	return count, ok
}

func probeOneTarget(ctx context.Context, s probeSettings, res *resolve.Resolver, verifier *certs.Verifier, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	lctx, cancel := context.WithTimeout(ctx, s.timeout)
	addrs, err := res.LookupHost(lctx, pt.Host)
	cancel()
	if err != nil {
		if errors.Is(err, resolve.ErrNotFound) {
			rep.add(probeFail, "addresses", hp, "%s has no A or AAAA record", pt.Host)
		} else {
			rep.add(probeFail, "addresses", hp, "looking up %s failed: %v", pt.Host, err)
		}
		return
	}
	for _, a := range addrs {
		pt.Addresses = append(pt.Addresses, a.String())
	}
	rep.add(probePass, "addresses", hp, "%s: %s", pt.Host, strings.Join(pt.Addresses, ", "))

	var conn net.Conn
	for _, a := range addrs {
		addr := net.JoinHostPort(a.String(), strconv.Itoa(int(pt.Port)))
		d := net.Dialer{Timeout: s.timeout}
		start := time.Now()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			rep.add(probeFail, "connect", hp, "%s: %s", addr, probeNetError(err, s.timeout))
			continue
		}
		rep.add(probePass, "connect", hp, "%s connected in %s", addr, time.Since(start).Round(100*time.Microsecond))
		pt.Connected = addr
		conn = c
		break
	}
	if conn == nil {
		return
	}
	defer conn.Close()
	probeStream(ctx, s, verifier, conn, pt, rep)
}

// probeStream negotiates a stream on conn as an initiating server would,
// with the initiating side of internal/s2s.
func probeStream(ctx context.Context, s probeSettings, verifier *certs.Verifier, conn net.Conn, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	// Every step is bounded by its own deadline; cancelling ctx ends them
	// all.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var c net.Conn = conn
	if pt.DirectTLS {
		tc, ok := probeTLS(ctx, s, conn, pt, rep)
		if !ok {
			return
		}
		c = tc
	}
	sc := stream.NewConn(c, stream.Options{})
	defer sc.Abort()
	ph := &probeHost{s: s, pt: pt, rep: rep}
	st := s2s.NewInitiating(sc, ph, s.from, s.domain)
	probeStep(sc, s.timeout)
	if err := st.OpenStream(); err != nil {
		rep.add(probeFail, "stream", hp, "%s", probeStreamError(err, s.timeout))
		return
	}
	hdr := sc.Peer()
	pt.StreamID = hdr.ID
	rep.add(probePass, "stream", hp, "stream opened (id %s, version %s)", probeOr(hdr.ID, "none"), probeOr(hdr.Version, "none"))
	if !pt.DirectTLS && !probeStartTLS(ctx, s, st, ph, rep) {
		return
	}
	state := sc.TLS()
	if state == nil {
		return
	}
	probeCertificate(s, verifier, state.PeerCertificates, pt, rep)
	probeDANEPOSH(ctx, s, verifier, state.PeerCertificates, pt, rep)
	probeFeatures(st, pt, rep)

	// Dialback.
	switch {
	case s.secret == "":
		pt.Dialback = s.noDialback
		rep.add(probeSkip, "dialback", hp, "%s", s.noDialback)
	case s.from == "":
		pt.Dialback = "skipped (no -from domain)"
		rep.add(probeSkip, "dialback", hp, "%s", pt.Dialback)
	case sc.StreamID() == "":
		pt.Dialback = "failed: the server gave the stream no id"
		rep.add(probeFail, "dialback", hp, "the server gave the stream no id, so no dialback key can be computed")
	default:
		probeDialback(ctx, st, s, pt, rep)
	}
	_ = sc.NetConn().SetDeadline(time.Now().Add(time.Second))
	_ = sc.Close()
}

// probeStep bounds the next step.
func probeStep(sc *stream.Conn, timeout time.Duration) {
	_ = sc.NetConn().SetDeadline(time.Now().Add(timeout))
}

// probeStartTLS reports the features offered before TLS and runs STARTTLS
// (s2s.StartTLS), then opens the stream again over TLS. It reports whether
// the probe may go on.
func probeStartTLS(ctx context.Context, s probeSettings, st *s2s.Stream, ph *probeHost, rep *probeReport) bool {
	pt := ph.pt
	hp := pt.hostPort()
	pt.FeaturesBeforeTLS = probeFeatureNames(st.PeerFeatures())
	offer := st.PeerFeatures().Child(xmlstream.NSTLS, "starttls")
	switch {
	case offer == nil:
		rep.add(probeFail, "starttls", hp, "not offered (features: %s): the server cannot be reached with TLS on this port", probeOr(strings.Join(pt.FeaturesBeforeTLS, ", "), "none"))
		return false
	case offer.Child(xmlstream.NSTLS, "required") != nil:
		rep.add(probePass, "starttls", hp, "offered (required)")
	default:
		rep.add(probePass, "starttls", hp, "offered (not required: the server would also talk without TLS)")
	}
	probeStep(st.Conn, s.timeout)
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	_, err := s2s.StartTLS{}.Initiate(hctx, st)
	cancel()
	var (
		refused *s2s.RefusedError
		se      *stream.Error
	)
	switch {
	case err == nil:
	case errors.As(err, &refused):
		rep.add(probeFail, "starttls", hp, "the server answered <starttls/> with <%s/> instead of <proceed/>", refused.Element)
		return false
	case errors.As(err, &se):
		rep.add(probeFail, "starttls", hp, "the server sent %d bytes after <proceed/> before the TLS handshake (STARTTLS injection risk)", st.Conn.Buffered())
		return false
	case !ph.handshook:
		rep.add(probeFail, "starttls", hp, "no answer to <starttls/>: %s", probeStreamError(err, s.timeout))
		return false
	default:
		return false // the handshake failure is reported (probeHost.TLSDone)
	}
	probeStep(st.Conn, s.timeout)
	if err := st.OpenStream(); err != nil {
		rep.add(probeFail, "stream", hp, "after TLS: %s", probeStreamError(err, s.timeout))
		return false
	}
	pt.StreamID = st.Conn.StreamID()
	return true
}

// probeCertificate reports the chain and checks it for the domain.
func probeCertificate(s probeSettings, verifier *certs.Verifier, chain []*x509.Certificate, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	for i, cert := range chain {
		pc := probeCert{Subject: probeName(cert.Subject.CommonName, cert.Subject.String()), Issuer: probeName(cert.Issuer.CommonName, cert.Issuer.String()), NotAfter: cert.NotAfter.UTC()}
		pt.Chain = append(pt.Chain, pc)
		rep.add(probeInfo, "certificate chain", hp, "[%d] subject %s, issuer %s, not after %s", i, pc.Subject, pc.Issuer, pc.NotAfter.Format(time.RFC3339))
	}
	now := s.now()
	verdict := verifier.Verify(chain, s.domain, now)
	pt.CertificateValid, pt.CertificateReason = verdict.Valid, verdict.Reason
	if len(pt.Chain) > 0 {
		pt.Chain[0].Names = verdict.Names
	}
	if !verdict.Valid {
		rep.add(probeFail, "certificate", hp, "%s", verdict.Reason)
		return
	}
	rep.add(probePass, "certificate", hp, "valid for %s (issuer %s)", s.domain, verdict.Issuer)
	pt.OK = true
	if left := chain[0].NotAfter.Sub(now); left < probeExpiryWarning {
		rep.add(probeWarn, "certificate", hp, "expires in %s (%s)", left.Round(time.Hour), chain[0].NotAfter.UTC().Format(time.RFC3339))
	}
}

// probeFeatures reports the authentication features offered over TLS.
func probeFeatures(st *s2s.Stream, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	features := st.PeerFeatures()
	pt.Features = probeFeatureNames(features)
	_, hasDialback := st.Conn.Peer().Namespaces["db"]
	var auth []string
	if features.Child(xmlstream.NSDialbackFeature, "dialback") != nil {
		auth = append(auth, "dialback")
	}
	if m := features.Child(xmlstream.NSSASL, "mechanisms"); m != nil {
		for _, mech := range m.Children {
			if mech.Local == "mechanism" {
				auth = append(auth, "SASL "+strings.TrimSpace(mech.Text))
			}
		}
	}
	all := probeOr(strings.Join(pt.Features, ", "), "none")
	switch {
	case len(auth) > 0:
		rep.add(probePass, "features", hp, "%s (all: %s)", strings.Join(auth, ", "), strings.Join(pt.Features, ", "))
	case hasDialback:
		rep.add(probeWarn, "features", hp, "no authentication feature offered (features: %s), but the stream declares the dialback namespace: old-style dialback may work", all)
	default:
		rep.add(probeWarn, "features", hp, "neither dialback nor SASL EXTERNAL offered (features: %s)", all)
	}
}

// probeHost is the probe's side of the initiating negotiation: its TLS
// configuration and report, and its dialback secret.
type probeHost struct {
	s         probeSettings
	pt        *probeTarget
	rep       *probeReport
	handshook bool // a TLS handshake was tried (and reported)
}

func (h *probeHost) UseTLS() (bool, bool) { return true, true }
func (h *probeHost) ClientTLS(string, string) *tls.Config {
	return probeTLSConfig(h.s, false)
}
func (h *probeHost) TLSDone(_ context.Context, st *s2s.Stream, err error) {
	h.handshook = true
	var state *tls.ConnectionState
	if err == nil {
		state = st.Conn.TLS()
	}
	probeTLSReport(h.s, state, err, h.pt, h.rep, false)
}
func (h *probeHost) HaveClientCert(string) bool     { return false }
func (h *probeHost) SASLRefused(string) bool        { return true } // never asked: no certificate
func (h *probeHost) DialbackSecret() string         { return h.s.secret }
func (h *probeHost) DialbackTimeout() time.Duration { return 2 * h.s.timeout }
func (h *probeHost) DialbackResult(string)          {}

// probeTLSConfig is the client configuration of the probe: our
// certificate with -config, else none (the chain is verified afterwards
// with certs.Verifier).
func probeTLSConfig(s probeSettings, direct bool) *tls.Config {
	if s.store != nil && s.from != "" {
		return s.store.ClientConfig(s.from, s.domain, direct)
	}
	cfg := certs.Harden(&tls.Config{ServerName: certs.ServerName(s.domain), InsecureSkipVerify: true}) // what the gateway would negotiate; verified below with certs.Verifier
	if direct {
		cfg.NextProtos = []string{"xmpp-server"}
	}
	return cfg
}

// probeTLS runs the direct TLS handshake on conn (ALPN xmpp-server) and
// reports it.
func probeTLS(ctx context.Context, s probeSettings, conn net.Conn, pt *probeTarget, rep *probeReport) (*tls.Conn, bool) {
	tc := tls.Client(conn, probeTLSConfig(s, true))
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		probeTLSReport(s, nil, err, pt, rep, true)
		return nil, false
	}
	st := tc.ConnectionState()
	probeTLSReport(s, &st, nil, pt, rep, true)
	return tc, true
}

// probeTLSReport reports a handshake: the version and cipher, or why it
// failed.
func probeTLSReport(s probeSettings, st *tls.ConnectionState, err error, pt *probeTarget, rep *probeReport, direct bool) {
	hp := pt.hostPort()
	if err != nil {
		rep.add(probeFail, "tls", hp, "handshake failed: %s", probeNetError(err, s.timeout))
		return
	}
	pt.TLSVersion, pt.CipherSuite, pt.ALPN = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.NegotiatedProtocol
	detail := pt.TLSVersion + ", " + pt.CipherSuite
	if direct {
		if st.NegotiatedProtocol == "xmpp-server" {
			detail += ", ALPN xmpp-server"
		} else {
			rep.add(probeWarn, "tls", hp, "the server did not select ALPN xmpp-server (XEP-0368); some clients of this port may refuse it")
		}
	}
	rep.add(probePass, "tls", hp, "%s", detail)
}

// probeDialback sends db:result for (from → domain) with s2s.Dialback and
// reports the verdict, which the remote reaches by asking our
// authoritative server.
func probeDialback(ctx context.Context, st *s2s.Stream, s probeSettings, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	// The remote connects back to our authoritative server: allow it two
	// steps' time.
	_ = st.Conn.NetConn().SetDeadline(time.Now().Add(2 * s.timeout))
	_, err := s2s.Dialback{}.Initiate(ctx, st)
	var de *s2s.DialbackError
	switch {
	case err == nil:
		pt.Dialback = "valid"
		rep.add(probePass, "dialback", hp, "%s accepted %s's key (verified with %s's authoritative server)", s.domain, s.from, s.from)
	case errors.As(err, &de) && de.Type == dialback.Invalid:
		pt.Dialback = "invalid"
		rep.add(probeFail, "dialback", hp, "%s says %s's key is invalid: its check against %s's authoritative server failed (is the gateway running with the same dialback secret, and reachable from %s?)", s.domain, s.from, s.from, s.domain)
	case errors.As(err, &de):
		pt.Dialback = "error: " + de.Condition
		rep.add(probeFail, "dialback", hp, "%s answered with a dialback error (%s) for %s", s.domain, de.Condition, s.from)
	default:
		pt.Dialback = "failed"
		rep.add(probeFail, "dialback", hp, "no verdict on %s's key: %s", s.from, probeStreamError(err, 2*s.timeout))
	}
}

func probeFeatureNames(features *xmlstream.Node) []string {
	var names []string
	for _, ch := range features.Children {
		switch {
		case ch.Space == xmlstream.NSSASL && ch.Local == "mechanisms":
			names = append(names, "sasl")
		case ch.Space == xmlstream.NSDialbackFeature:
			names = append(names, "dialback")
		default:
			names = append(names, ch.Local)
		}
	}
	return names
}

// probeSummarise sets the report's status and one-line summary and prints
// it.
func probeSummarise(rep *probeReport) {
	fails, warns := 0, 0
	var firstFail, firstWarn *probeCheck
	for i := range rep.Checks {
		switch rep.Checks[i].Status {
		case probeFail:
			fails++
			if firstFail == nil {
				firstFail = &rep.Checks[i]
			}
		case probeWarn:
			warns++
			if firstWarn == nil {
				firstWarn = &rep.Checks[i]
			}
		}
	}
	var good *probeTarget
	for _, t := range rep.Targets {
		if t.OK {
			good = t
			break
		}
	}
	counts := fmt.Sprintf("%d failure(s), %d warning(s)", fails, warns)
	switch {
	case good != nil && fails == 0 && warns == 0:
		rep.Status = probePass
		rep.Summary = fmt.Sprintf("%s can be federated with: %s, %s, certificate valid", rep.Domain, good.hostPort(), good.TLSVersion)
	case good != nil:
		rep.Status = probeWarn
		first := firstFail
		if first == nil {
			first = firstWarn
		}
		rep.Summary = fmt.Sprintf("%s can be federated with through %s, but %s; first: %s: %s", rep.Domain, good.hostPort(), counts, first.Check, first.Detail)
	case firstFail != nil:
		rep.Status = probeFail
		rep.Summary = fmt.Sprintf("%s cannot be federated with securely: %s; first: %s: %s", rep.Domain, counts, firstFail.Check, firstFail.Detail)
	default:
		rep.Status = probeFail
		rep.Summary = fmt.Sprintf("%s cannot be federated with: no target was reached", rep.Domain)
	}
	if rep.out != nil {
		fmt.Fprintf(rep.out, "%s  summary: %s\n", rep.Status, rep.Summary)
	}
}

// probeNetError describes a network error in the words an operator needs.
func probeNetError(err error, timeout time.Duration) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (nothing listens there: is the server down?)"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %s (a firewall dropping packets, or the server is overloaded)", timeout)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host or network unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return "the server closed the connection"
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return "the server refused the handshake with the TLS alert: " + alert.Error()
	}
	return err.Error()
}

func probeStreamError(err error, timeout time.Duration) string {
	var se *xmlstream.StreamError
	if errors.As(err, &se) {
		return "the server's XML is not acceptable: " + se.Error()
	}
	if errors.Is(err, xmlstream.ErrStreamEnd) {
		return "the server closed the stream"
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return probeNetError(err, timeout)
	}
	return err.Error()
}

func probeName(cn, dn string) string {
	if cn != "" {
		return "CN=" + cn
	}
	return dn
}

func probeOr(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func probeOneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(s), " ")
}

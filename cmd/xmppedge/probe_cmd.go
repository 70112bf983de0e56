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

	"github.com/miekg/dns"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/config"
	"github.com/xmppedge/xmppedge/internal/resolve"
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

	srvCount, srvOK := probeSRVRecords(ctx, s, rep)

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
	eng, err := newPolicyEngine(ctx, s.cfg, slog.New(slog.DiscardHandler))
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

// probeSRVRecords asks for both SRV names itself, to show the records as
// published. It returns how many records there are and whether both
// questions were answered.
func probeSRVRecords(ctx context.Context, s probeSettings, rep *probeReport) (int, bool) {
	servers := s.dnsServers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			rep.add(probeWarn, "dns", "", "cannot read /etc/resolv.conf to show the raw SRV records: %v", err)
			return 0, false
		}
		for _, sv := range cc.Servers {
			servers = append(servers, net.JoinHostPort(sv, cc.Port))
		}
	}
	count, ok := 0, true
	for _, service := range []string{"_xmpps-server._tcp.", "_xmpp-server._tcp."} {
		name := service + s.domain
		resp, err := probeQuery(ctx, servers, dns.Fqdn(name), dns.TypeSRV, s.timeout)
		if err != nil {
			rep.add(probeFail, "dns", "", "SRV %s: %v", name, err)
			ok = false
			continue
		}
		var recs []string
		for _, rr := range resp.Answer {
			srv, isSRV := rr.(*dns.SRV)
			if !isSRV {
				continue
			}
			rec := probeSRV{Service: strings.TrimSuffix(service, "."), Priority: srv.Priority, Weight: srv.Weight, Port: srv.Port, Target: srv.Target}
			rep.SRV = append(rep.SRV, rec)
			recs = append(recs, fmt.Sprintf("%d %d %d %s", srv.Priority, srv.Weight, srv.Port, srv.Target))
			count++
		}
		switch {
		case len(recs) > 0:
			rep.add(probePass, "dns", "", "SRV %s: %s", name, strings.Join(recs, "; "))
		case resp.Rcode == dns.RcodeNameError:
			rep.add(probeInfo, "dns", "", "SRV %s: no records (NXDOMAIN)", name)
		default:
			rep.add(probeInfo, "dns", "", "SRV %s: no records", name)
		}
	}
	return count, ok
}

// probeQuery asks the servers in order (UDP, TCP when truncated) and returns
// the first answer that is NOERROR or NXDOMAIN.
func probeQuery(ctx context.Context, servers []string, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	req := new(dns.Msg).SetQuestion(name, qtype)
	req.SetEdns0(1232, false)
	var errs []string
	for _, server := range servers {
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(server, "53")
		}
		for _, network := range []string{"udp", "tcp"} {
			c := &dns.Client{Net: network, Timeout: min(timeout, resolve.DefaultTimeout)}
			qctx, cancel := context.WithTimeout(ctx, c.Timeout)
			resp, _, err := c.ExchangeContext(qctx, req, server)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", server, err))
				break
			}
			if resp.Truncated && network == "udp" {
				continue
			}
			if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
				errs = append(errs, fmt.Sprintf("%s answered %s", server, dns.RcodeToString[resp.Rcode]))
				break
			}
			return resp, nil
		}
	}
	return nil, fmt.Errorf("no DNS server answered (%s)", strings.Join(errs, "; "))
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

// probeStream negotiates a stream on conn as an initiating server would.
func probeStream(ctx context.Context, s probeSettings, verifier *certs.Verifier, conn net.Conn, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	// Every step is bounded by its own deadline; cancelling ctx ends them
	// all.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	step := func(c net.Conn) { _ = c.SetDeadline(time.Now().Add(s.timeout)) }

	var c net.Conn = conn
	if pt.DirectTLS {
		tc, ok := probeTLS(ctx, s, conn, pt, rep, true)
		if !ok {
			return
		}
		c = tc
	}
	step(c)
	r := xmlstream.NewReader(c, xmlstream.Limits{})
	hdr, features, err := probeOpen(c, r, s)
	if err != nil {
		rep.add(probeFail, "stream", hp, "%s", probeStreamError(err, s.timeout))
		return
	}
	pt.StreamID = hdr.ID
	rep.add(probePass, "stream", hp, "stream opened (id %s, version %s)", probeOr(hdr.ID, "none"), probeOr(hdr.Version, "none"))
	featureNames := probeFeatureNames(features)

	if !pt.DirectTLS {
		pt.FeaturesBeforeTLS = featureNames
		st := features.Child(xmlstream.NSTLS, "starttls")
		if st == nil {
			rep.add(probeFail, "starttls", hp, "not offered (features: %s): the server cannot be reached with TLS on this port", probeOr(strings.Join(featureNames, ", "), "none"))
			return
		}
		if st.Child(xmlstream.NSTLS, "required") != nil {
			rep.add(probePass, "starttls", hp, "offered (required)")
		} else {
			rep.add(probePass, "starttls", hp, "offered (not required: the server would also talk without TLS)")
		}
		step(c)
		if _, err := io.WriteString(c, "<starttls xmlns='"+xmlstream.NSTLS+"'/>"); err != nil {
			rep.add(probeFail, "starttls", hp, "sending <starttls/>: %s", probeNetError(err, s.timeout))
			return
		}
		el, err := r.Next()
		if err != nil {
			rep.add(probeFail, "starttls", hp, "no answer to <starttls/>: %s", probeStreamError(err, s.timeout))
			return
		}
		if el.Space != xmlstream.NSTLS || el.Local != "proceed" {
			rep.add(probeFail, "starttls", hp, "the server answered <starttls/> with <%s/> instead of <proceed/>", el.Local)
			return
		}
		if r.Buffered() != 0 {
			rep.add(probeFail, "starttls", hp, "the server sent %d bytes after <proceed/> before the TLS handshake (STARTTLS injection risk)", r.Buffered())
			return
		}
		tc, ok := probeTLS(ctx, s, conn, pt, rep, false)
		if !ok {
			return
		}
		c = tc
		r.Reset(c)
		step(c)
		hdr, features, err = probeOpen(c, r, s)
		if err != nil {
			rep.add(probeFail, "stream", hp, "after TLS: %s", probeStreamError(err, s.timeout))
			return
		}
		pt.StreamID = hdr.ID
		featureNames = probeFeatureNames(features)
	}

	// Certificate.
	state := c.(*tls.Conn).ConnectionState()
	for i, cert := range state.PeerCertificates {
		pc := probeCert{Subject: probeName(cert.Subject.CommonName, cert.Subject.String()), Issuer: probeName(cert.Issuer.CommonName, cert.Issuer.String()), NotAfter: cert.NotAfter.UTC()}
		pt.Chain = append(pt.Chain, pc)
		rep.add(probeInfo, "certificate chain", hp, "[%d] subject %s, issuer %s, not after %s", i, pc.Subject, pc.Issuer, pc.NotAfter.Format(time.RFC3339))
	}
	now := s.now()
	verdict := verifier.Verify(state.PeerCertificates, s.domain, now)
	pt.CertificateValid, pt.CertificateReason = verdict.Valid, verdict.Reason
	if len(pt.Chain) > 0 {
		pt.Chain[0].Names = verdict.Names
	}
	if verdict.Valid {
		rep.add(probePass, "certificate", hp, "valid for %s (issuer %s)", s.domain, verdict.Issuer)
		pt.OK = true
		if left := state.PeerCertificates[0].NotAfter.Sub(now); left < probeExpiryWarning {
			rep.add(probeWarn, "certificate", hp, "expires in %s (%s)", left.Round(time.Hour), state.PeerCertificates[0].NotAfter.UTC().Format(time.RFC3339))
		}
	} else {
		rep.add(probeFail, "certificate", hp, "%s", verdict.Reason)
	}
	probeDANEPOSH(ctx, s, verifier, state.PeerCertificates, pt, rep)

	// Stream features after TLS.
	pt.Features = featureNames
	_, hasDialback := hdr.Namespaces["db"]
	offersDialback := features.Child(xmlstream.NSDialbackFeature, "dialback") != nil
	var auth []string
	if offersDialback {
		auth = append(auth, "dialback")
	}
	if m := features.Child(xmlstream.NSSASL, "mechanisms"); m != nil {
		for _, mech := range m.Children {
			if mech.Local == "mechanism" {
				auth = append(auth, "SASL "+strings.TrimSpace(mech.Text))
			}
		}
	}
	switch {
	case len(auth) > 0:
		rep.add(probePass, "features", hp, "%s (all: %s)", strings.Join(auth, ", "), strings.Join(featureNames, ", "))
	case hasDialback:
		rep.add(probeWarn, "features", hp, "no authentication feature offered (features: %s), but the stream declares the dialback namespace: old-style dialback may work", probeOr(strings.Join(featureNames, ", "), "none"))
	default:
		rep.add(probeWarn, "features", hp, "neither dialback nor SASL EXTERNAL offered (features: %s)", probeOr(strings.Join(featureNames, ", "), "none"))
	}

	// Dialback.
	switch {
	case s.secret == "":
		pt.Dialback = s.noDialback
		rep.add(probeSkip, "dialback", hp, "%s", s.noDialback)
	case s.from == "":
		pt.Dialback = "skipped (no -from domain)"
		rep.add(probeSkip, "dialback", hp, "%s", pt.Dialback)
	case hdr.ID == "":
		pt.Dialback = "failed: the server gave the stream no id"
		rep.add(probeFail, "dialback", hp, "the server gave the stream no id, so no dialback key can be computed")
	default:
		probeDialback(c, r, hdr, s, pt, rep)
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c, "</stream:stream>")
}

// probeOpen sends our stream header and reads the server's header and
// features.
func probeOpen(c net.Conn, r *xmlstream.Reader, s probeSettings) (xmlstream.Header, *xmlstream.Node, error) {
	var b []byte
	b = append(b, "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'"...)
	if s.from != "" {
		b = append(b, " from='"...)
		b = xmlstream.AppendEscapedAttr(b, s.from)
		b = append(b, '\'')
	}
	b = append(b, " to='"...)
	b = xmlstream.AppendEscapedAttr(b, s.domain)
	b = append(b, "' version='1.0'>"...)
	if _, err := c.Write(b); err != nil {
		return xmlstream.Header{}, nil, fmt.Errorf("sending the stream header: %w", err)
	}
	hdr, err := r.ReadHeader()
	if err != nil {
		return hdr, nil, fmt.Errorf("reading the server's stream header: %w", err)
	}
	if hdr.Space != xmlstream.NSStream || hdr.Local != "stream" {
		return hdr, nil, fmt.Errorf("the server's answer is <%s xmlns='%s'>, not an XMPP stream header", hdr.Local, hdr.Space)
	}
	if hdr.Version == "" {
		// A pre-1.0 stream has no features: dialback straight away.
		return hdr, &xmlstream.Node{Space: xmlstream.NSStream, Local: "features"}, nil
	}
	features, err := probeNext(r, hdr)
	if err != nil {
		return hdr, nil, fmt.Errorf("reading the stream features: %w", err)
	}
	if features.Space != xmlstream.NSStream || features.Local != "features" {
		return hdr, nil, fmt.Errorf("the server sent <%s/> where stream features were expected", features.Local)
	}
	return hdr, features, nil
}

// probeNext reads the next element as a node; a stream error becomes an
// error naming its condition and text.
func probeNext(r *xmlstream.Reader, hdr xmlstream.Header) (*xmlstream.Node, error) {
	el, err := r.Next()
	if err != nil {
		return nil, err
	}
	n, err := xmlstream.ParseNode(el.Raw, hdr.Namespaces)
	if err != nil {
		return nil, err
	}
	if n.Space == xmlstream.NSStream && n.Local == "error" {
		cond, text := "undefined-condition", ""
		for _, ch := range n.Children {
			switch {
			case ch.Space == xmlstream.NSStreams && ch.Local == "text":
				text = ch.Text
			case ch.Space == xmlstream.NSStreams:
				cond = ch.Local
			}
		}
		if text != "" {
			return nil, fmt.Errorf("the server sent the stream error <%s/>: %s", cond, text)
		}
		return nil, fmt.Errorf("the server sent the stream error <%s/>", cond)
	}
	return n, nil
}

// probeTLS runs the TLS handshake on conn (ALPN xmpp-server for direct
// TLS) and reports the version and cipher.
func probeTLS(ctx context.Context, s probeSettings, conn net.Conn, pt *probeTarget, rep *probeReport, direct bool) (*tls.Conn, bool) {
	hp := pt.hostPort()
	var cfg *tls.Config
	if s.store != nil && s.from != "" {
		cfg = s.store.ClientConfig(s.from, s.domain, direct)
	} else {
		cfg = certs.Harden(&tls.Config{ServerName: s.domain, InsecureSkipVerify: true}) // what the gateway would negotiate; verified below with certs.Verifier
		if direct {
			cfg.NextProtos = []string{"xmpp-server"}
		}
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		rep.add(probeFail, "tls", hp, "handshake failed: %s", probeNetError(err, s.timeout))
		return nil, false
	}
	st := tc.ConnectionState()
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
	return tc, true
}

// probeDialback sends db:result for (from → domain) and waits for the
// verdict, which the remote reaches by asking our authoritative server.
func probeDialback(c net.Conn, r *xmlstream.Reader, hdr xmlstream.Header, s probeSettings, pt *probeTarget, rep *probeReport) {
	hp := pt.hostPort()
	key := dialback.Key(s.secret, s.domain, s.from, hdr.ID)
	var b []byte
	b = append(b, "<db:result from='"...)
	b = xmlstream.AppendEscapedAttr(b, s.from)
	b = append(b, "' to='"...)
	b = xmlstream.AppendEscapedAttr(b, s.domain)
	b = append(b, "'>"...)
	b = append(b, key...)
	b = append(b, "</db:result>"...)
	// The remote connects back to our authoritative server: allow it two
	// steps' time.
	_ = c.SetDeadline(time.Now().Add(2 * s.timeout))
	if _, err := c.Write(b); err != nil {
		pt.Dialback = "failed"
		rep.add(probeFail, "dialback", hp, "sending db:result: %s", probeNetError(err, s.timeout))
		return
	}
	for {
		n, err := probeNext(r, hdr)
		if err != nil {
			pt.Dialback = "failed"
			rep.add(probeFail, "dialback", hp, "no verdict on %s's key: %s", s.from, probeStreamError(err, 2*s.timeout))
			return
		}
		if n.Space != xmlstream.NSDialback || n.Local != "result" {
			continue // e.g. a db:verify or stanza we do not care about
		}
		switch typ := n.Attr("type"); typ {
		case "valid":
			pt.Dialback = "valid"
			rep.add(probePass, "dialback", hp, "%s accepted %s's key (verified with %s's authoritative server)", s.domain, s.from, s.from)
		case "invalid":
			pt.Dialback = "invalid"
			rep.add(probeFail, "dialback", hp, "%s says %s's key is invalid: its check against %s's authoritative server failed (is the gateway running with the same dialback secret, and reachable from %s?)", s.domain, s.from, s.from, s.domain)
		default:
			cond := "unknown"
			if e := n.Child(xmlstream.NSDialback, "error"); e != nil && len(e.Children) > 0 {
				cond = e.Children[0].Local
			} else if e := n.Child(xmlstream.NSServer, "error"); e != nil && len(e.Children) > 0 {
				cond = e.Children[0].Local
			}
			pt.Dialback = "error: " + cond
			rep.add(probeFail, "dialback", hp, "%s answered with a dialback error (%s) for %s", s.domain, cond, s.from)
		}
		return
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

package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/limit"
	"github.com/xmppedge/xmppedge/internal/metrics"
	"github.com/xmppedge/xmppedge/internal/posture"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Leg names the side of the gateway a stream is on.
type Leg uint8

const (
	// LegInside is the company's internal server.
	LegInside Leg = iota
	// LegOutside is the Internet.
	LegOutside
)

func (l Leg) String() string {
	if l == LegInside {
		return "inside"
	}
	return "outside"
}

// other returns the opposite leg.
func (l Leg) other() Leg { return 1 - l }

// Resolver finds the servers of a remote domain. *resolve.Resolver
// implements it.
type Resolver interface {
	LookupS2S(ctx context.Context, domain string) ([]resolve.Target, error)
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
}

// maxIncoming bounds the incoming connections of a node, authenticated or
// not (DESIGN §5: 10,000 sessions per node, with room to spare).
const maxIncoming = 20000

// maxLimitKeys bounds the entries of the per-source and per-domain limit
// tables (each entry a few hundred bytes; least recently used first out).
const maxLimitKeys = 65536

// refusedLogInterval spaces the warnings about refused connections: an
// attacker must not be able to flood the log.
const refusedLogInterval = 10 * time.Second

// Options configures a Gateway. The zero value of every optional field
// takes the default documented on it; New refuses options that would let
// traffic pass unchecked (no policy, no audit sink, no certificates).
type Options struct {
	// Domains are the local domains: they live on the internal server.
	Domains []string
	// Node is this node's name in a cluster: session ids start with it
	// ("edge1-in-3"), so they are unique in the cluster. "" outside one.
	Node string

	Inside  InsideOptions  // the leg to the company's internal server
	Outside OutsideOptions // the leg to the Internet

	Certificates *certs.Store    // certificates of the local domains; required
	Verifier     *certs.Verifier // peer certificate verification; required

	DialbackSecret string // shared by every node of a deployment; required

	Policy Policy     // decides every session and stanza; required
	Audit  audit.Sink // records every session and stanza; required

	// Metrics receives the gateway's counters; nil records nothing.
	Metrics *metrics.Metrics
	// Posture keeps the best posture seen per partner (posture.go):
	// every authenticated outside session is compared with it, a weaker
	// one audited as posture.downgrade. nil: postures are not watched.
	Posture *posture.Store
	// Limits are the bounds a reload may change; zero fields take the
	// defaults documented on Limits.
	Limits Limits
	Logger *slog.Logger // nil: discard
}

// InsideOptions configures the inside leg: where the internal server
// connects to xmppedge, and where xmppedge delivers to it.
type InsideOptions struct {
	Listen []string       // where the internal server connects to us
	Server string         // host:port of the internal server's s2s listener
	Allow  []netip.Prefix // source networks allowed on the inside listeners
	// TLS is the inside leg's TLS (default TLSOff). CA mints the
	// certificates xmppedge presents there for the remote domains it
	// stands in for; required unless TLS is off.
	TLS TLSMode
	CA  *certs.InternalCA
	// NoBidi stops offering XEP-0288 bidirectional streams to the
	// internal server (config inside.bidi: false).
	NoBidi bool
}

// OutsideOptions configures the outside leg: the listeners partners
// connect to, and how xmppedge finds and checks the partners' servers.
type OutsideOptions struct {
	Listen     []string // s2s listeners with STARTTLS
	ListenTLS  []string // s2s listeners with direct TLS (XEP-0368)
	RequireTLS bool     // refuse outside streams that do not use TLS
	Resolver   Resolver // SRV/A/AAAA lookups; required
	// DANEResolver, when set ("IP:PORT" of a validating resolver), makes
	// authenticated TLSA records (RFC 7673) decide the certificates of the
	// servers xmppedge connects to.
	DANEResolver string
	// POSH accepts a certificate that fails PKIX when the domain delegates
	// to it with POSH (RFC 7711).
	POSH bool
	// NoBidi stops offering XEP-0288 bidirectional streams to partners
	// (config outside.bidi: false).
	NoBidi bool
	// NoDialbackShortcut turns XEP-0344's "dialback without dialback" off:
	// a db:result is then verified with the authoritative server even
	// when the peer's certificate is valid for its from, or (with
	// DANEResolver) matches the DNSSEC-authenticated TLSA records of its
	// from's servers (default: answered without db:verify).
	NoDialbackShortcut bool
}

// TLSMode is the TLS requirement of the inside leg.
type TLSMode string

// The inside leg's TLS modes.
const (
	TLSOff      TLSMode = "off"      // no STARTTLS offered or used
	TLSOptional TLSMode = "optional" // offered and used when the peer offers it
	TLSRequired TLSMode = "required" // streams without TLS are refused
)

// defaultLimits are the limits of a gateway whose options set none.
func defaultLimits() Limits {
	return Limits{
		MaxStanzaSize: 512 << 10, QueueSize: 10000,
		ConnectTimeout: 10 * time.Second, IdleTimeout: 10 * time.Minute,
		ConnectionsPerIP: 64, NewConnectionsPerIP: 16, StanzaRate: 200, StanzaBurst: 400,
	}
}

// check returns what is missing or wrong in the options, naming the field.
func (o *Options) check() error {
	switch {
	case len(o.Domains) == 0:
		return errors.New("edge: Options.Domains is empty: a gateway needs at least one local domain")
	case o.DialbackSecret == "":
		return errors.New("edge: Options.DialbackSecret is empty")
	case o.Outside.Resolver == nil:
		return errors.New("edge: Options.Outside.Resolver is nil")
	case o.Certificates == nil || o.Verifier == nil:
		return errors.New("edge: Options.Certificates and Options.Verifier are required")
	case o.Inside.TLS != TLSOff && o.Inside.TLS != TLSOptional && o.Inside.TLS != TLSRequired:
		return fmt.Errorf("edge: Options.Inside.TLS is %q: use off, optional or required", o.Inside.TLS)
	case o.Inside.TLS != TLSOff && o.Inside.CA == nil:
		return errors.New("edge: Options.Inside.TLS is on but Options.Inside.CA is nil: inside TLS needs the internal CA")
	case o.Policy == nil || o.Audit == nil:
		return errors.New("edge: Options.Policy and Options.Audit are required (xmppedge fails closed without them)")
	}
	return nil
}

// Gateway is one xmppedge node: its listeners, sessions and router.
type Gateway struct {
	opt         Options
	log         *slog.Logger
	m           *metrics.Metrics // nil-safe
	local       map[string]bool
	router      *Router
	dialer      *Dialer                // outgoing streams and dialback verifications
	path        stanzaHandler          // the stanza path (chain.go)
	in          *inDeps                // what every incoming session shares (incoming.go)
	sessionPath sessionHandler         // the session path (session_path.go)
	rec         recorder               // audit records, through Options.Audit
	posture     *postureWatch          // the partners' postures (posture.go)
	lim         atomic.Pointer[Limits] // swapped by SetLimits

	ctx    context.Context // cancelled by Shutdown
	cancel context.CancelFunc

	mu        sync.Mutex // guards listeners
	listeners []net.Listener
	incoming  *registry[*inSession, *inSession]
	wg        sync.WaitGroup // accept loops and incoming sessions
	bg        sync.WaitGroup // outgoing sessions and dialback verifications

	verifications chan struct{} // a slot per dialback verification under way (maxVerifications)
	conns         chan struct{} // a slot per incoming connection (maxIncoming)
	perIP         *limit.Conns  // outside connections per source address (limits.connections_per_ip, new_connections_per_ip)
	rates         *limit.Rates  // stanza token buckets per remote domain, for stanzas from the outside (limits.stanza_rate)
	refusedLog    atomic.Int64  // unix seconds of the last logged limit refusal (one warning per interval)
	preAuth       atomic.Int64  // how long an incoming stream may go without authenticating a pair (ns; preAuthLimit)

	nextID atomic.Uint64

	store atomic.Pointer[certs.Store] // the local domains' certificates; swapped by SetCertificates
}

// New checks the options and returns a gateway that is not yet listening.
func New(opt Options) (*Gateway, error) {
	if opt.Inside.TLS == "" {
		opt.Inside.TLS = TLSOff
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if err := opt.check(); err != nil {
		return nil, err
	}
	g := &Gateway{
		opt:      opt,
		log:      opt.Logger,
		m:        opt.Metrics,
		local:    make(map[string]bool),
		incoming: newRegistry[*inSession, *inSession](),

		verifications: make(chan struct{}, maxVerifications),
		conns:         make(chan struct{}, maxIncoming),
		perIP:         limit.NewConns(maxLimitKeys),
		rates:         limit.NewRates(maxLimitKeys),
	}
	for _, d := range opt.Domains {
		if c := canonicalDomain(d); c != "" {
			g.local[c] = true
		} else {
			return nil, fmt.Errorf("edge: local domain %q is not a valid domain name", d)
		}
	}
	g.preAuth.Store(int64(2 * time.Minute))
	g.store.Store(opt.Certificates)
	defaults := defaultLimits()
	g.lim.Store(&defaults)
	g.SetLimits(opt.Limits)
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.rec = recorder{sink: opt.Audit, m: opt.Metrics}
	g.posture = g.newPostureWatch()
	g.sessionPath = g.newSessionPath()
	g.dialer = g.newDialer()
	g.router = newRouter(routerDeps{
		ctx: g.ctx, bg: &g.bg, log: g.log, m: g.m, rec: g.rec, limits: g.limits,
		sessionPath: g.sessionPath, dialer: g.dialer, newID: g.newSessionID,
		bidi: g.bidiStream, reverse: g.reverseSession, posture: g.posture,
	})
	g.path = g.newStanzaPath()
	g.in = g.inDeps()
	return g, nil
}

// Limits are the bounds that a reload may change. They apply to streams
// and stanzas from then on; established streams keep their stanza size
// limit.
type Limits struct {
	MaxStanzaSize  int           // bytes of one stanza (default 512 KiB)
	QueueSize      int           // stanzas waiting per outgoing stream (default 10000)
	ConnectTimeout time.Duration // connect + negotiate + authenticate one stream (default 10s)
	IdleTimeout    time.Duration // close outgoing streams idle this long (default 10m)

	// ConnectionsPerIP bounds the concurrent connections one source
	// address may hold on the outside listeners (default 64), and
	// NewConnectionsPerIP how many it may open per second (burst
	// included: the same number; default 16).
	ConnectionsPerIP    int
	NewConnectionsPerIP float64
	// StanzaRate is the default rate of the stanzas a remote domain sends
	// us (stanzas per second, token bucket of StanzaBurst); default 200/s
	// with a burst of 400. A partner's own rate comes from the session
	// decision (rate: {per_second, burst}). What the internal server sends
	// is not rate-limited.
	StanzaRate  float64
	StanzaBurst int
}

// SetLimits changes the limits; zero fields keep their current value.
func (g *Gateway) SetLimits(l Limits) {
	cur := *g.limits()
	setPositive(&cur.MaxStanzaSize, l.MaxStanzaSize)
	setPositive(&cur.QueueSize, l.QueueSize)
	setPositive(&cur.ConnectTimeout, l.ConnectTimeout)
	setPositive(&cur.IdleTimeout, l.IdleTimeout)
	setPositive(&cur.ConnectionsPerIP, l.ConnectionsPerIP)
	setPositive(&cur.NewConnectionsPerIP, l.NewConnectionsPerIP)
	setPositive(&cur.StanzaRate, l.StanzaRate)
	setPositive(&cur.StanzaBurst, l.StanzaBurst)
	g.lim.Store(&cur)
}

// setPositive sets *dst to v when v is positive (a zero limit keeps the
// current one).
func setPositive[T int | float64 | time.Duration](dst *T, v T) {
	if v > 0 {
		*dst = v
	}
}

func (g *Gateway) limits() *Limits { return g.lim.Load() }

// streamLimits are the scanner's limits for a new stream.
func (g *Gateway) streamLimits() xmlstream.Limits {
	return xmlstream.Limits{MaxElementSize: g.limits().MaxStanzaSize}
}

// certs returns the current certificate store.
func (g *Gateway) certs() *certs.Store { return g.store.Load() }

// Certificates returns the certificates currently presented for the local
// domains.
func (g *Gateway) Certificates() *certs.Store { return g.store.Load() }

// SetCertificates swaps the certificates of the local domains: new
// handshakes use them at once; established streams keep theirs.
func (g *Gateway) SetCertificates(s *certs.Store) {
	if s != nil {
		g.store.Store(s)
	}
}

// preAuthLimit is how long an incoming stream may go without
// authenticating a pair; setPreAuthLimit changes it (tests).
func (g *Gateway) preAuthLimit() time.Duration { return time.Duration(g.preAuth.Load()) }

func (g *Gateway) setPreAuthLimit(d time.Duration) { g.preAuth.Store(int64(d)) }

// isLocal reports whether domain is one of ours.
func (g *Gateway) isLocal(domain string) bool {
	return g.local[strings.ToLower(domain)]
}

// Start binds every listener and starts accepting. If any listener cannot
// be bound, the ones already bound are closed and the error names it.
func (g *Gateway) Start() error {
	type spec struct {
		addr      string
		leg       Leg
		directTLS bool
	}
	var specs []spec
	for _, a := range g.opt.Inside.Listen {
		specs = append(specs, spec{a, LegInside, false})
	}
	for _, a := range g.opt.Outside.Listen {
		specs = append(specs, spec{a, LegOutside, false})
	}
	for _, a := range g.opt.Outside.ListenTLS {
		specs = append(specs, spec{a, LegOutside, true})
	}
	var lc net.ListenConfig
	for _, s := range specs {
		ln, err := lc.Listen(g.ctx, "tcp", s.addr)
		if err != nil {
			g.closeListeners()
			return fmt.Errorf("edge: listen on %s (%s leg): %w", s.addr, s.leg, err)
		}
		g.mu.Lock()
		g.listeners = append(g.listeners, ln)
		g.mu.Unlock()
		g.log.Info("listening", "leg", s.leg.String(), "addr", ln.Addr().String(), "direct_tls", s.directTLS)
		g.wg.Add(1)
		go g.acceptLoop(ln, s.leg, s.directTLS)
	}
	return nil
}

// Addrs returns the bound listener addresses, in the order of Start.
func (g *Gateway) Addrs() []net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []net.Addr
	for _, ln := range g.listeners {
		out = append(out, ln.Addr())
	}
	return out
}

func (g *Gateway) closeListeners() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ln := range g.listeners {
		ln.Close()
	}
}

func (g *Gateway) acceptLoop(ln net.Listener, leg Leg, directTLS bool) {
	defer g.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if g.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			g.log.Warn("accept failed", "leg", leg.String(), "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		select {
		case g.conns <- struct{}{}:
		default:
			g.log.Warn("too many incoming connections: refusing one", "limit", maxIncoming, "leg", leg.String(), "remote_addr", c.RemoteAddr().String())
			c.Close()
			continue
		}
		if leg == LegInside && !g.insideAllowed(c.RemoteAddr()) {
			<-g.conns
			g.log.Warn("refused inside connection from a source not in inside.allow", "remote_addr", c.RemoteAddr().String())
			c.Close()
			continue
		}
		release := func() {}
		if leg == LegOutside {
			var err error
			if release, err = g.acquireSource(c.RemoteAddr()); err != nil {
				<-g.conns
				c.Close()
				continue
			}
		}
		s := g.newInSession(c, leg, directTLS)
		// Admitted only while the gateway runs; wg counts it before
		// Shutdown or Close can take their snapshot.
		if !g.incoming.add(s, s, func() bool {
			if g.ctx.Err() != nil {
				return false
			}
			g.wg.Add(1)
			return true
		}) {
			s.cancel()
			c.Close()
			<-g.conns
			release()
			return
		}
		go func() {
			defer g.wg.Done()
			defer func() { <-g.conns }()
			defer release()
			s.serve()
			g.incoming.remove(s, s)
		}()
	}
}

// acquireSource applies the per-source limits of the outside listeners to
// a new connection; release is called when it closes.
func (g *Gateway) acquireSource(a net.Addr) (release func(), err error) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return func() {}, nil
	}
	ip, _ := netip.AddrFromSlice(ta.IP)
	lim := g.limits()
	release, err = g.perIP.Acquire(ip, lim.ConnectionsPerIP, lim.NewConnectionsPerIP, time.Now())
	if err == nil {
		return release, nil
	}
	which := metrics.LimitConnectionsPerIP
	var ce *limit.ConnError
	if errors.As(err, &ce) && ce.Limit == limit.LimitRate {
		which = metrics.LimitNewConnectionsPerIP
	}
	g.m.LimitRefused(which)
	if now := time.Now().Unix(); now-g.refusedLog.Load() >= int64(refusedLogInterval/time.Second) {
		g.refusedLog.Store(now)
		g.log.Warn("refused connections over a per-source limit (logged once per interval; see xmppedge_limit_refusals_total)", "remote_addr", a.String(), "limit", which, "err", err)
	}
	return nil, err
}

func (g *Gateway) insideAllowed(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	return slices.ContainsFunc(g.opt.Inside.Allow, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// Shutdown stops accepting, closes every incoming stream (</stream:stream>,
// reading until the peer closes or a short bound), then drains and closes
// every outgoing stream. It returns when all is closed or ctx ends.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.closeListeners()
	for _, s := range g.incoming.snapshot(nil) {
		s.beginClose()
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Incoming streams are closed: nothing new reaches the router. Drain
	// the outgoing queues, then close.
	err := g.router.shutdown(ctx)
	g.cancel()
	bgDone := make(chan struct{})
	go func() { g.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
	}
	return err
}

// Close stops everything at once, without draining.
func (g *Gateway) Close() {
	g.cancel()
	g.closeListeners()
	for _, s := range g.incoming.close() {
		s.sc.Abort()
	}
	g.router.closeAll()
	g.wg.Wait()
	g.bg.Wait()
}

func (g *Gateway) newSessionID(prefix string) string {
	if g.opt.Node != "" {
		return fmt.Sprintf("%s-%s%d", g.opt.Node, prefix, g.nextID.Add(1))
	}
	return fmt.Sprintf("%s%d", prefix, g.nextID.Add(1))
}

// serverTLS returns the TLS config for an accepted connection on leg whose
// stream names toDomain (used when the client sends no SNI, as Prosody does
// on STARTTLS). On the inside leg xmppedge presents a certificate of its
// internal CA for the remote domain it stands in for.
func (g *Gateway) serverTLS(leg Leg, toDomain string, alpn bool) *tls.Config {
	if leg == LegInside {
		return g.opt.Inside.CA.ServerConfig(toDomain)
	}
	fallback := toDomain
	if fallback == "" || !g.isLocal(fallback) {
		fallback = g.opt.Domains[0]
	}
	return g.certs().ServerConfig(fallback, alpn)
}

// Recheck asks the policy again about every established session, after a
// policy reload: a domain pair the new policy refuses is cut at once with
// a policy-violation stream error. It returns how many streams it closed.
func (g *Gateway) Recheck() int { return g.RecheckBecause("policy reload") }

// RecheckBecause is Recheck for a cause other than a reload, named in
// the records of the streams it cuts: e.g. "partner agreement expiry",
// when the time passes an agreement's expires (sessions are decided at
// the time of asking, so an established one must be asked again).
func (g *Gateway) RecheckBecause(cause string) int {
	closed := 0
	for _, s := range g.incoming.snapshot(nil) {
		if s.recheck(cause) {
			closed++
		}
	}
	closed += g.router.recheck(cause)
	g.m.ReloadClosedSessions(closed)
	if closed > 0 {
		g.log.Warn("closed sessions the policy no longer allows", "cause", cause, "closed", closed)
	}
	return closed
}

// CloseSession closes the stream with id at once (policy-violation stream
// error, "closed by an administrator"). It reports whether it existed.
func (g *Gateway) CloseSession(id string) bool {
	for _, s := range g.incoming.snapshot(func(s, _ *inSession) bool { return s.id == id }) {
		s.cut("closed by an administrator", "closed by an administrator")
		return true
	}
	return g.router.closeByID(id)
}

// bidiOn reports whether XEP-0288 is used on leg.
func (g *Gateway) bidiOn(leg Leg) bool {
	if leg == LegInside {
		return !g.opt.Inside.NoBidi
	}
	return !g.opt.Outside.NoBidi
}

// bidiStream finds an incoming stream that may carry key's stanzas: the
// peer asked for it both ways (XEP-0288) and authenticated key's
// reverse pair on it. nil: none (the router dials).
func (g *Gateway) bidiStream(key routeKey) *bidiStream {
	for _, s := range g.incoming.snapshot(func(s, _ *inSession) bool { return s.leg == key.leg && s.bidi.Load() }) {
		if b := s.reverse(key.from, key.to); b != nil {
			return b
		}
	}
	return nil
}

// SessionInfo describes one stream, for operators and tests.
type SessionInfo struct {
	ID         string
	Leg        string   // inside | outside
	Role       string   // incoming (peer connected to us) | outgoing (we connected)
	Local      []string // our domain(s) on the stream
	Remote     []string // the authenticated peer domain(s)
	RemoteAddr string
	TLSVersion string // "" when the stream is not encrypted
	Auth       string // sasl_external | dialback | "" (incoming streams: per pair, joined)
	PeerCert   string // verdict on the peer certificate: "valid" or the reason
	Stanzas    uint64 // stanzas relayed on this stream
	Started    time.Time
	// Bidi: an incoming stream the peer asked to use both ways (XEP-0288).
	Bidi bool
	// Over is, for an outgoing direction that writes on such a stream
	// instead of a connection of its own, the incoming session's ID.
	Over string
}

// Sessions lists the current incoming and outgoing streams.
func (g *Gateway) Sessions() []SessionInfo {
	var out []SessionInfo
	for _, s := range g.incoming.snapshot(nil) {
		out = append(out, s.info())
	}
	out = append(out, g.router.infos()...)
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

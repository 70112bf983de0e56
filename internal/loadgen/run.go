package loadgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmppedge/xmppedge/dialback"
	"github.com/xmppedge/xmppedge/internal/resolve"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Receiving modes.
const (
	ReceiveC2S = "c2s" // the tool logs in as users of the receiving domain
	ReceiveS2S = "s2s" // the tool's listener is the receiving domain's server
)

// Config is one run.
type Config struct {
	// Target is the host:port the sending streams connect to; empty: the
	// SRV targets of ToDomain, asked of DNS (empty: the system's).
	Target string
	DNS    []string
	// ToDomain receives; FromDomains originate (the streams take them in
	// turn).
	ToDomain    string
	FromDomains []string
	Streams     int
	// Auth is AuthDialback or AuthExternal (ClientCert is then presented).
	Auth       string
	ClientCert *tls.Certificate
	// TLS: use STARTTLS where offered (required with AuthExternal).
	TLS bool
	// RootCAs verify the target's certificate (and the c2s server's); nil:
	// not verified.
	RootCAs *x509.CertPool
	// Secret computes our dialback keys; empty: a random one.
	Secret string

	// Listen is the address of the tool's s2s listener: the fake domains'
	// authoritative server (needed for dialback) and, with ReceiveS2S, the
	// receiving server. ListenCert is its certificate (nil: a self-signed
	// one for its domains).
	Listen     string
	ListenCert *tls.Certificate

	// Receive is ReceiveC2S or ReceiveS2S.
	Receive string
	// C2S is the receiving server's client address (ReceiveC2S); the
	// users are UserPrefix0 … UserPrefix(Users-1) with Password, bound
	// to Resource. With ReceiveS2S the stanzas go to Users bare JIDs.
	C2S                            string
	Users                          int
	UserPrefix, Password, Resource string

	// What to send: Count stanzas (0: no bound) within Duration, at Rate
	// stanzas/s over all streams (0: as fast as the target takes them),
	// in writes of at most Batch stanzas, each of about Size bytes, of
	// the kinds in Mix.
	Count    uint64
	Duration time.Duration
	Rate     float64
	Batch    int
	Size     int
	Mix      Mix
	// Senders is how many distinct users of each fake domain send
	// (load0 … load(Senders-1); 0: one, load): Senders × Users distinct
	// pairs of JIDs, each a new key of the policy's decision cache.
	Senders int

	// Hold keeps the streams open and idle this long after the warm-up,
	// then measures how much the resident memory of PIDs grew since
	// before the streams opened (Summary.Memory). With neither Count nor
	// Duration, the run ends there: nothing more is sent.
	Hold time.Duration

	// Drain is how long to wait for the last stanzas after sending ends;
	// Timeout bounds each connection, login and the warm-up.
	Drain, Timeout time.Duration
	// PIDs are processes whose CPU time is reported.
	PIDs []int
	// Progress gets a line per second (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
}

// Summary is a run's outcome, the tool's JSON output.
type Summary struct {
	Run         string   `json:"run"`
	Started     string   `json:"started"`
	Target      string   `json:"target"`
	ToDomain    string   `json:"to_domain"`
	FromDomains []string `json:"from_domains"`
	Streams     int      `json:"streams"`
	Auth        []string `json:"auth"` // how each stream authenticated
	Receive     string   `json:"receive"`
	Users       int      `json:"users"`
	Rate        float64  `json:"rate"` // asked, stanzas/s; 0: as fast as possible
	Size        int      `json:"size"`
	Mix         string   `json:"mix"`
	Senders     int      `json:"senders,omitempty"` // distinct sending users per domain

	Sent       uint64            `json:"sent"`
	SentByKind map[string]uint64 `json:"sent_by_kind"`
	Received   uint64            `json:"received"`
	Lost       int64             `json:"lost"`    // sent − received after the drain
	Bounced    uint64            `json:"bounced"` // of the lost: came back as error stanzas
	Duplicates uint64            `json:"duplicates"`
	Unstamped  uint64            `json:"unstamped"` // other stanzas received (not counted)

	SetupSeconds float64 `json:"setup_s"`   // listener, logins, streams, warm-up
	SendSeconds  float64 `json:"send_s"`    // first send to last send
	Seconds      float64 `json:"elapsed_s"` // first send to last receive
	SendRate     float64 `json:"send_rate"` // stanzas/s sent
	Throughput   float64 `json:"throughput"`
	Latency      Latency `json:"latency"`

	CPU []ProcessCPU `json:"cpu,omitempty"`
	// Memory: with Hold, the growth of each PIDs' resident memory per
	// stream, the streams open and idle.
	Memory      []ProcessMemory `json:"memory,omitempty"`
	ToolCPU     float64         `json:"tool_cpu_s"`
	DialbackOK  int64           `json:"dialback_verified"` // db:verify answered valid by the listener
	StreamsLost []string        `json:"stream_errors,omitempty"`
}

// ProcessCPU is the CPU time a process used during the measured phase.
type ProcessCPU struct {
	PID         int     `json:"pid"`
	Name        string  `json:"name"`
	Seconds     float64 `json:"cpu_s"`
	PerStanzaUS float64 `json:"us_per_stanza"` // per received stanza
}

// check validates c and fills in defaults.
func (c *Config) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.ToDomain == "" {
		bad("no receiving domain (-to-domain)")
	}
	if len(c.FromDomains) == 0 {
		bad("no sending domain (-from-domains)")
	}
	if c.Streams < 1 {
		bad("-streams %d: want at least 1", c.Streams)
	}
	switch c.Auth {
	case AuthDialback:
		if c.Listen == "" {
			bad("dialback needs -listen: the target verifies our keys there")
		}
	case AuthExternal:
		if c.ClientCert == nil {
			bad("-auth external needs -cert and -key")
		}
		c.TLS = true
	default:
		bad("-auth %q: want dialback or external", c.Auth)
	}
	switch c.Receive {
	case ReceiveC2S:
		if c.C2S == "" {
			bad("-receive c2s needs -c2s (the receiving server's client address)")
		}
	case ReceiveS2S:
		if c.Listen == "" {
			bad("-receive s2s needs -listen")
		}
	default:
		bad("-receive %q: want c2s or s2s", c.Receive)
	}
	if c.Users < 1 {
		bad("-users %d: want at least 1", c.Users)
	}
	if c.Count == 0 && c.Duration <= 0 && c.Hold <= 0 {
		bad("give -count, -duration or -hold")
	}
	if c.Hold > 0 && len(c.PIDs) == 0 {
		bad("-hold measures the memory of processes: give their -pid")
	}
	if c.Duration <= 0 {
		c.Duration = 24 * time.Hour
	}
	if c.Senders < 0 {
		bad("-senders %d: want a number of sending users, 0 for one", c.Senders)
	}
	if c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate) {
		bad("-rate %v: want stanzas per second, 0 for as fast as possible", c.Rate)
	}
	if c.Mix == (Mix{}) {
		c.Mix = Mix{1, 0, 0}
	}
	c.Batch = max(c.Batch, 1)
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 10 * time.Second
	}
	if c.Resource == "" {
		c.Resource = "load"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return errors.Join(errs...)
}

// Run runs one load test: it sets everything up, sends, drains, and
// summarises. ctx ends it early (the summary covers what was done).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	holdOnly := cfg.Count == 0 && cfg.Duration <= 0 && cfg.Hold > 0
	if err := cfg.check(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	var rb [8]byte
	rand.Read(rb[:])
	run, warmRun := hex.EncodeToString(rb[:4]), hex.EncodeToString(rb[4:])
	if cfg.Secret == "" {
		cfg.Secret = dialback.NewStreamID()
	}
	base := time.Now()
	rec := newRecorder(base, run, warmRun)
	onStanza := func(el *xmlstream.Element) { rec.stanza(el.ID, el.Type) }
	sum := &Summary{Run: run, Started: base.UTC().Format(time.RFC3339), Target: cfg.Target, ToDomain: cfg.ToDomain,
		FromDomains: cfg.FromDomains, Streams: cfg.Streams, Receive: cfg.Receive, Users: cfg.Users,
		Rate: cfg.Rate, Size: cfg.Size, Mix: cfg.Mix.String(), Senders: cfg.Senders}
	if sum.Target == "" {
		sum.Target = "SRV of " + cfg.ToDomain
	}

	clientTLS := cfg.clientTLS()
	lis, err := startListener(ctx, cfg, onStanza)
	if err != nil {
		return nil, err
	}
	if lis != nil {
		defer lis.close()
	}

	// The receivers.
	clients, recipients, err := startReceivers(ctx, cfg, clientTLS, onStanza)
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()
	if err != nil {
		return nil, err
	}

	// The sending streams.
	var rssBefore []int64
	if cfg.Hold > 0 {
		var err error
		if rssBefore, err = memorySample(cfg.PIDs); err != nil {
			return nil, err
		}
	}
	streams, err := startStreams(ctx, cfg, clientTLS, onStanza)
	defer func() {
		for _, s := range streams {
			s.close()
		}
	}()
	if err != nil {
		return nil, err
	}
	for _, s := range streams {
		sum.Auth = append(sum.Auth, s.auth)
	}

	// Warm-up: one stanza per stream, which also makes the target set up
	// what it relays through.
	if err := warmUp(ctx, cfg, streams, rec, warmRun, recipients); err != nil {
		return nil, err
	}
	sum.SetupSeconds = round3(rec.now().Seconds())
	log.Info("set up", "streams", len(streams), "recipients", len(recipients), "setup", rec.now().Round(time.Millisecond))
	if cfg.Hold > 0 {
		m, err := holdIdle(ctx, cfg, rssBefore, len(streams))
		if err != nil {
			return nil, err
		}
		sum.Memory = m
		if holdOnly {
			return sum, nil
		}
	}

	if err := measure(ctx, cfg, streams, rec, run, recipients, sum); err != nil {
		return nil, err
	}
	if lis != nil {
		sum.DialbackOK = lis.verified.Load()
	}
	return sum, nil
}

// clientTLS is the TLS of the tool's connections (nil: no TLS):
// verified with RootCAs (none: not verified), with ClientCert.
func (c *Config) clientTLS() *tls.Config {
	if !c.TLS {
		return nil
	}
	t := &tls.Config{RootCAs: c.RootCAs, InsecureSkipVerify: c.RootCAs == nil, MinVersion: tls.VersionTLS12}
	if c.ClientCert != nil {
		t.Certificates = []tls.Certificate{*c.ClientCert}
	}
	return t
}

// startReceivers logs the c2s users in (ReceiveC2S) and returns them
// and the JIDs the stanzas go to.
func startReceivers(ctx context.Context, cfg Config, clientTLS *tls.Config, onStanza func(*xmlstream.Element)) ([]*c2sClient, []string, error) {
	var recipients []string
	if cfg.Receive != ReceiveC2S {
		for i := 0; i < cfg.Users; i++ {
			recipients = append(recipients, cfg.UserPrefix+strconv.Itoa(i)+"@"+cfg.ToDomain)
		}
		return nil, recipients, nil
	}
	clients, err := loginAll(ctx, cfg, clientTLS, onStanza)
	for _, c := range clients {
		recipients = append(recipients, c.jid)
	}
	return clients, recipients, err
}

// startStreams opens the sending streams (to cfg.Target, else the SRV
// targets of cfg.ToDomain) and starts their readers.
func startStreams(ctx context.Context, cfg Config, clientTLS *tls.Config, onStanza func(*xmlstream.Element)) ([]*sendStream, error) {
	var res *resolve.Resolver
	if cfg.Target == "" {
		r, err := resolve.New(resolve.Config{Servers: cfg.DNS})
		if err != nil {
			return nil, err
		}
		res = r
	}
	host := &initHost{tls: clientTLS, external: cfg.Auth == AuthExternal, secret: cfg.Secret, timeout: cfg.Timeout}
	streams, err := openAll(ctx, cfg, res, host, clientTLS)
	for _, s := range streams {
		go s.read(onStanza)
	}
	return streams, err
}

// startListener starts the tool's s2s listener when cfg.Listen is set
// (nil otherwise): the fake domains' authoritative server and, with
// ReceiveS2S, the receiving server.
func startListener(ctx context.Context, cfg Config, onStanza func(*xmlstream.Element)) (*listener, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	domains := map[string]bool{}
	issuers := map[string]bool{}
	for _, d := range cfg.FromDomains {
		domains[d], issuers[d] = true, true
	}
	if cfg.Receive == ReceiveS2S {
		domains[cfg.ToDomain] = true
	}
	cert := cfg.ListenCert
	if cert == nil {
		var err error
		if cert, err = selfSigned(mapKeys(domains)); err != nil {
			return nil, err
		}
	}
	l, err := listen(cfg.Listen, &listener{domains: domains, issuers: issuers, secret: cfg.Secret, onStanza: onStanza, log: cfg.Logger,
		tls: &tls.Config{Certificates: []tls.Certificate{*cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	go l.serve(ctx)
	return l, nil
}

// measure runs the measured phase: every stream sends its share of the
// plan while progress reports, then the drain; it fills sum.
func measure(ctx context.Context, cfg Config, streams []*sendStream, rec *recorder, run string, recipients []string, sum *Summary) error {
	// The measured phase.
	cpu0 := make([]time.Duration, len(cfg.PIDs))
	names := make([]string, len(cfg.PIDs))
	for i, pid := range cfg.PIDs {
		c, name, err := ProcCPU(pid)
		if err != nil {
			return err
		}
		cpu0[i], names[i] = c, name
	}
	self0 := selfCPU()
	var sent atomic.Uint64
	results := make([]sendResult, len(streams))
	var wg sync.WaitGroup
	sendStart := time.Now()
	end := sendStart.Add(cfg.Duration)
	for i, s := range streams {
		p := plan{first: uint64(i), step: uint64(len(streams)), count: cfg.Count, end: end, rate: cfg.Rate / float64(len(streams)),
			batch: cfg.Batch, size: cfg.Size, mix: cfg.Mix, run: run, recipients: recipients, senders: uint64(max(cfg.Senders, 0))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.send(ctx, p, rec, &sent)
		}()
	}
	sendDone := make(chan struct{})
	go func() { wg.Wait(); close(sendDone) }()
	progress(ctx, cfg, rec, &sent, sendStart, sendDone)

	summarize(sum, rec, results, streams)
	return cpuSummary(cfg, rec, cpu0, names, self0, sum)
}

// summarize fills sum with what was sent and received.
func summarize(sum *Summary, rec *recorder, results []sendResult, streams []*sendStream) {
	c := rec.counts()
	first, last := time.Duration(math.MaxInt64), time.Duration(0)
	sum.SentByKind = map[string]uint64{}
	for i, r := range results {
		for k, n := range r.sent {
			sum.Sent += n
			if n > 0 {
				sum.SentByKind[Kind(k).String()] += n
			}
		}
		if r.last > 0 {
			first, last = min(first, r.first), max(last, r.last)
		}
		if r.err != nil {
			sum.StreamsLost = append(sum.StreamsLost, r.err.Error())
		} else if f := streams[i].failure(); f != nil {
			sum.StreamsLost = append(sum.StreamsLost, f.Error())
		}
	}
	sum.Received, sum.Bounced, sum.Duplicates, sum.Unstamped = c.received, c.bounced, c.dups, c.unstamped
	sum.Lost = int64(sum.Sent) - int64(c.received)
	if sum.Sent > 0 {
		sum.SendSeconds = round3((last - first).Seconds())
		if sum.SendSeconds > 0 {
			sum.SendRate = math.Round(float64(sum.Sent) / (last - first).Seconds())
		}
		if c.received > 0 && c.last > first {
			sum.Seconds = round3((c.last - first).Seconds())
			sum.Throughput = math.Round(float64(c.received) / (c.last - first).Seconds())
		}
	}
	sum.Latency = Summarize(rec.latencies())
}

// cpuSummary fills sum with the CPU time of cfg.PIDs (from cpu0) and of
// the tool (from self0) per received stanza.
func cpuSummary(cfg Config, rec *recorder, cpu0 []time.Duration, names []string, self0 time.Duration, sum *Summary) error {
	c := rec.counts()
	for i, pid := range cfg.PIDs {
		c1, _, err := ProcCPU(pid)
		if err != nil {
			return err
		}
		pc := ProcessCPU{PID: pid, Name: names[i], Seconds: round3((c1 - cpu0[i]).Seconds())}
		if c.received > 0 {
			pc.PerStanzaUS = math.Round(float64(c1-cpu0[i])/float64(time.Microsecond)/float64(c.received)*10) / 10
		}
		sum.CPU = append(sum.CPU, pc)
	}
	sum.ToolCPU = round3((selfCPU() - self0).Seconds())
	return nil
}

// holdIdle waits cfg.Hold with the streams open and idle, then reports
// the memory growth of cfg.PIDs since before.
func holdIdle(ctx context.Context, cfg Config, before []int64, streams int) ([]ProcessMemory, error) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "holding %d streams idle for %v\n", streams, cfg.Hold)
	}
	t := time.NewTimer(cfg.Hold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	after, err := memorySample(cfg.PIDs)
	if err != nil {
		return nil, err
	}
	return memoryGrowth(cfg.PIDs, before, after, streams), nil
}

// loginAll logs the users in, a few at a time, and starts their readers.
func loginAll(ctx context.Context, cfg Config, tlsConf *tls.Config, onStanza func(*xmlstream.Element)) ([]*c2sClient, error) {
	clients := make([]*c2sClient, cfg.Users)
	errs := make([]error, cfg.Users)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], errs[i] = dialC2S(ctx, c2sOptions{addr: cfg.C2S, domain: cfg.ToDomain, user: cfg.UserPrefix + strconv.Itoa(i),
				password: cfg.Password, resource: cfg.Resource, tls: tlsConf, timeout: cfg.Timeout})
		}()
	}
	wg.Wait()
	var ok []*c2sClient
	for _, c := range clients {
		if c != nil {
			ok = append(ok, c)
			go c.read(onStanza)
		}
	}
	return ok, errors.Join(errs...)
}

// openAll opens the sending streams, a few at a time.
func openAll(ctx context.Context, cfg Config, res *resolve.Resolver, host *initHost, tlsConf *tls.Config) ([]*sendStream, error) {
	streams := make([]*sendStream, cfg.Streams)
	errs := make([]error, cfg.Streams)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			defer cancel()
			from := cfg.FromDomains[i%len(cfg.FromDomains)]
			conn, err := dialTarget(cctx, cfg.Target, cfg.ToDomain, res, tlsConf)
			if err != nil {
				errs[i] = fmt.Errorf("stream %d: %w", i, err)
				return
			}
			streams[i], errs[i] = openStream(cctx, conn, host, i, from, cfg.ToDomain)
		}()
	}
	wg.Wait()
	var ok []*sendStream
	for _, s := range streams {
		if s != nil {
			ok = append(ok, s)
		}
	}
	return ok, errors.Join(errs...)
}

// warmUp sends one message per stream and waits for them all.
func warmUp(ctx context.Context, cfg Config, streams []*sendStream, rec *recorder, warmRun string, recipients []string) error {
	for i, s := range streams {
		id := AppendID(nil, Stamp{Run: warmRun, Seq: uint64(i), Sent: rec.now()})
		b := AppendStanza(nil, Message, "load@"+s.from+"/"+strconv.Itoa(i), recipients[i%len(recipients)], string(id), cfg.Size)
		if err := s.conn.SendWait(cfg.Timeout, b); err != nil {
			return fmt.Errorf("warm-up, stream %d: %w", i, err)
		}
	}
	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	for {
		c := rec.counts()
		if c.warm >= len(streams) {
			return nil
		}
		select {
		case <-rec.changed:
		case <-deadline.C:
			return fmt.Errorf("warm-up: %d of %d stanzas arrived within %v (%d error stanzas and %d others came back)",
				c.warm, len(streams), cfg.Timeout, c.bounced, c.unstamped)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// progress prints a line per second until sending is done and then the
// drain is over: every stanza accounted for, or Drain passed.
func progress(ctx context.Context, cfg Config, rec *recorder, sent *atomic.Uint64, start time.Time, sendDone <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var drain <-chan time.Time
	var changed <-chan struct{} // arrivals, watched during the drain only
	var prevSent, prevRecv uint64
	prev := start
	line := func() {
		s, c, now := sent.Load(), rec.counts(), time.Now()
		l := Summarize(rec.takeWindow())
		if cfg.Progress != nil {
			secs := max(now.Sub(prev).Seconds(), 1e-3)
			fmt.Fprintf(cfg.Progress, "[%5.1fs] sent %d (%.0f/s)  received %d (%.0f/s)  in flight %d  bounced %d  since the last line: p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
				now.Sub(start).Seconds(), s, float64(s-prevSent)/secs, c.received, float64(c.received-prevRecv)/secs,
				int64(s)-int64(c.received)-int64(c.bounced), c.bounced, l.P50, l.P99, l.Max)
		}
		prevSent, prevRecv, prev = s, c.received, now
	}
	for {
		if drain != nil {
			c := rec.counts()
			if c.received+c.bounced >= sent.Load() {
				line()
				return
			}
		}
		select {
		case <-tick.C:
			line()
		case <-sendDone:
			sendDone = nil
			t := time.NewTimer(cfg.Drain)
			defer t.Stop()
			drain, changed = t.C, rec.changed
		case <-changed:
		case <-drain:
			line()
			return
		case <-ctx.Done():
			line()
			return
		}
	}
}

// selfSigned makes a certificate for the listener's domains.
func selfSigned(domains []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: domains[0]},
		DNSNames:     domains,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

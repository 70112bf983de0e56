package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"github.com/xmppedge/xmppedge/internal/stream"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/xmppedge/xmppedge/certs"
	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// The relay benchmarks measure DESIGN §5's first figure: stanzas through
// xmppedge with TLS on both legs, the shipped allowlist policy and a sync
// audit log, against a raw TLS byte relay measured in the same run. Read
// them as a ratio: these machines are noisy.
//
//	go test -run XXX -bench Relay -benchtime 50000x ./edge/

// benchStanza is a ~400-byte outbound message.
func benchStanza(i int) string {
	return fmt.Sprintf("<message from='alice@company.test/desk' to='bob@partner.test' id='m%08d' type='chat' xml:lang='en'><body>%s</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>",
		i, strings.Repeat("lorem ipsum dolor sit amet ", 10))
}

// sinkServer is a partner server that accepts TLS streams, answers
// dialback with valid, and counts the stanzas it reads.
type sinkServer struct {
	ln    net.Listener
	conf  *tls.Config
	count chan int // the number of stanzas, each time want is reached

	mu   sync.Mutex // the fields below: set by the test while the sink reads
	want int
	seen func(id string)             // called for every message, when set
	got  func(el *xmlstream.Element) // likewise, with the element (valid during the call)
}

// expect sets the number of messages after which count is sent.
func (s *sinkServer) expect(n int) {
	s.mu.Lock()
	s.want = n
	s.mu.Unlock()
}

func startSink(b testing.TB, conf *tls.Config) *sinkServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &sinkServer{ln: ln, conf: conf, count: make(chan int, 1)}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *sinkServer) serve(c net.Conn) {
	defer c.Close()
	tc := tls.Server(c, s.conf)
	r := xmlstream.NewReader(tc, xmlstream.Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		return
	}
	fmt.Fprintf(tc, "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' from='%s' to='%s' id='sink' version='1.0'><stream:features><dialback xmlns='urn:xmpp:features:dialback'/></stream:features>", h.To, h.From)
	n := 0
	for {
		el, err := r.Next()
		if err != nil {
			return
		}
		switch el.Local {
		case "result":
			fmt.Fprintf(tc, "<db:result from='%s' to='%s' type='valid'/>", el.To, el.From)
		case "message":
			s.mu.Lock()
			seen, got, want := s.seen, s.got, s.want
			s.mu.Unlock()
			if seen != nil {
				seen(el.ID)
			}
			if got != nil {
				got(&el)
			}
			n++
			if n == want {
				s.count <- n
				n = 0
			}
		}
	}
}

// BenchmarkRelayGateway: internal server → (TLS) xmppedge → (TLS) partner,
// with the shipped rules and audit durability sync.
func BenchmarkRelayGateway(b *testing.B) {
	benchmarkRelayGateway(b, "sync")
}

// BenchmarkRelayGatewayAsyncAudit is the same with durability async.
func BenchmarkRelayGatewayAsyncAudit(b *testing.B) {
	benchmarkRelayGateway(b, "async")
}

// relayEnv is a gateway with the shipped rules, an audit log, inside TLS,
// and a partner sink; p is an authenticated inside stream (the internal
// server's side), already warmed up.
type relayEnv struct {
	env  *testEnv
	sink *sinkServer
	p    *peer
}

// BenchmarkRelayGatewayJetStream is BenchmarkRelayGateway (sync audit)
// with the cluster's audit backend: the records in a JetStream stream with
// three replicas on three in-process NATS servers on loopback. Read its
// stanzas/s against BenchmarkRelayGateway's in the same run.
func BenchmarkRelayGatewayJetStream(b *testing.B) {
	benchmarkRelay(b, newRelayEnvWith(b, func(dir string) audit.Sink { return jetStreamSink(b) }))
}

func benchmarkRelayGateway(b *testing.B, durability string) {
	benchmarkRelay(b, newRelayEnv(b, durability))
}

func benchmarkRelay(b *testing.B, r *relayEnv) {
	p, sink := r.p, r.sink
	payload := make([]byte, 0, 1<<20)
	for i := 0; i < 2000; i++ {
		payload = append(payload, benchStanza(i)...)
	}
	per := len(payload) / 2000
	sink.expect(b.N)
	b.SetBytes(int64(per))
	b.ResetTimer()
	go sendEach(p.conn, payload, per, b.N)
	select {
	case <-sink.count:
	case <-time.After(5 * time.Minute):
		b.Fatal("the sink did not receive every stanza")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stanzas/s")
}

func newRelayEnv(b testing.TB, durability string) *relayEnv {
	return newRelayEnvWith(b, func(dir string) audit.Sink {
		alog, err := audit.Open(audit.Config{Path: filepath.Join(dir, "audit.jsonl"), Durability: durability, Node: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		return alog
	})
}

func newRelayEnvWith(b testing.TB, openSink func(dir string) audit.Sink) *relayEnv {
	dir := b.TempDir()
	eng := shippedRules(b, "partners:\n  - domain: partner.test\n    direction: both\nconfidential:\n  keywords: [CONFIDENTIAL]\n")
	alog := openSink(dir)
	b.Cleanup(func() { alog.Close() })
	ica, _, err := certs.LoadOrCreateInternalCA(filepath.Join(dir, "ica.crt"), filepath.Join(dir, "ica.key"))
	if err != nil {
		b.Fatal(err)
	}
	env := newTestEnv(b, func(o *Options) {
		o.Policy, o.Audit = eng, alog
		o.Inside.TLS, o.Inside.CA = TLSOptional, ica
		o.Logger = slog.New(slog.DiscardHandler)
	})
	sink := startSink(b, env.tlsConfig(b, "partner.test"))
	env.res.set("partner.test", sink.ln.Addr().String(), true)
	env.internal.setVerify(func(from, to, id, key string) bool { return true })

	p := dialPeer(b, env.inside)
	p.conn.SetDeadline(time.Time{})
	p.open("company.test", "partner.test")
	p.startTLS("company.test", "partner.test")
	p.conn.SetDeadline(time.Time{})
	p.send("<db:result from='company.test' to='partner.test'>k</db:result>")
	if got := p.next(); !strings.Contains(got, "type='valid'") {
		b.Fatalf("dialback: %q", got)
	}
	// Warm up: the outgoing stream is set up by the first stanza.
	sink.expect(1)
	p.send(benchStanza(0))
	<-sink.count
	return &relayEnv{env: env, sink: sink, p: p}
}

// BenchmarkRelayLatency sends stanzas through the gateway (TLS both legs,
// shipped rules, audit sync or async) and through the raw TLS relay of
// BenchmarkRelayRawTLS ("raw", the baseline: what the gateway adds is the
// difference), and reports the p50 and p99 time from the internal
// server's write to the partner's read: 10,000 stanzas/s ("busy"), and
// 500/s ("one-at-a-time": each stanza alone in flight, the added latency
// of a quiet gateway). The sender's sleeps are only as fine as the
// machine's timers: where they are coarse (1 ms on the machine of
// BENCHMARKS.md), "busy" sends bursts at the same average rate.
func BenchmarkRelayLatency(b *testing.B) {
	for _, load := range []struct {
		name string
		gap  time.Duration
		min  int
	}{{"busy", 100 * time.Microsecond, 2000}, {"one-at-a-time", 2 * time.Millisecond, 500}} {
		for _, durability := range []string{"sync", "async"} {
			b.Run(load.name+"/audit="+durability, func(b *testing.B) {
				r := newRelayEnv(b, durability)
				benchmarkRelayLatency(b, r.sink, r.p.conn, load.gap, load.min)
			})
		}
		b.Run(load.name+"/raw", func(b *testing.B) {
			env := newTestEnv(b)
			sink := startSink(b, env.tlsConfig(b, "partner.test"))
			src := startRawRelay(b, env.tlsConfig(b, "partner.test"), sink.ln.Addr().String())
			benchmarkRelayLatency(b, sink, src, load.gap, load.min)
		})
	}
}

// benchmarkRelayLatency writes stanzas to w, one every gap (at least
// minN), and reports the p50 and p99 time until sink reads each.
func benchmarkRelayLatency(b *testing.B, sink *sinkServer, w io.Writer, gap time.Duration, minN int) {
	n := max(b.N, minN)
	sent := make([]time.Time, n)
	got := make([]time.Duration, 0, n)
	var mu sync.Mutex
	done := make(chan struct{})
	seen := func(id string) {
		var i int
		if _, err := fmt.Sscanf(id, "m%08d", &i); err != nil || i >= n {
			return
		}
		mu.Lock()
		got = append(got, time.Since(sent[i]))
		if len(got) == n {
			close(done)
		}
		mu.Unlock()
	}
	sink.mu.Lock()
	sink.seen = seen
	sink.mu.Unlock()
	sink.expect(1 << 62)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * gap)))
		mu.Lock()
		sent[i] = time.Now()
		mu.Unlock()
		if _, err := io.WriteString(w, benchStanza(i)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		b.Fatalf("only %d of %d stanzas arrived", len(got), n)
	}
	b.StopTimer()
	slices.Sort(got)
	b.ReportMetric(float64(got[len(got)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(got[len(got)*99/100].Microseconds()), "p99-µs")
}

// sendEach writes n stanzas of per bytes, one Write (so one TLS record)
// each, as XMPP servers do.
func sendEach(w io.Writer, payload []byte, per, n int) {
	for i := 0; i < n; i++ {
		j := i % (len(payload) / per)
		if _, err := w.Write(payload[j*per : (j+1)*per]); err != nil {
			return
		}
	}
}

// BenchmarkRelayRawTLS is the baseline: the same stanzas, one TLS record
// each, through a plain TLS-to-TLS io.Copy relay.
func BenchmarkRelayRawTLS(b *testing.B) {
	// sink=xml is the baseline of the ratio: the same partner sink as
	// BenchmarkRelayGateway's, which parses every stanza, so that only
	// the relay differs. sink=discard only decrypts what it receives (the
	// baseline before 2026-12: its sink left the two cores more room).
	b.Run("sink=xml", func(b *testing.B) { benchmarkRelayRawTLS(b, true) })
	b.Run("sink=discard", func(b *testing.B) { benchmarkRelayRawTLS(b, false) })
}

// benchmarkRelayRawTLS relays the stanzas of benchmarkRelay (after a
// stream header) through a TLS → TLS io.Copy into the partner sink (xml)
// or into io.Discard.
func benchmarkRelayRawTLS(b *testing.B, xmlSink bool) {
	env := newTestEnv(b)
	serverConf := env.tlsConfig(b, "partner.test")
	per := len(benchStanza(0))
	want := int64(b.N) * int64(per)
	if !xmlSink {
		want += int64(len(rawRelayHeader))
	}
	done := make(chan struct{})
	total := int64(0)
	var sinkAddr string
	if xmlSink {
		sink := startSink(b, serverConf)
		sink.expect(b.N)
		sinkAddr = sink.ln.Addr().String()
		go func() {
			<-sink.count
			total = want
			close(done)
		}()
	} else {
		sinkLn, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
		if err != nil {
			b.Fatal(err)
		}
		defer sinkLn.Close()
		sinkAddr = sinkLn.Addr().String()
		go func() {
			c, err := sinkLn.Accept()
			if err != nil {
				return
			}
			total, _ = io.CopyN(io.Discard, c, want)
			close(done)
		}()
	}
	src := startRawRelay(b, serverConf, sinkAddr)
	payload := make([]byte, 0, 1<<20)
	for i := 0; i < 2000; i++ {
		payload = append(payload, benchStanza(i)...)
	}
	b.SetBytes(int64(per))
	b.ResetTimer()
	go sendEach(src, payload, per, b.N)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("the sink did not receive every stanza")
	}
	b.StopTimer()
	if total != want {
		b.Fatalf("relayed %d bytes, want %d", total, want)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stanzas/s")
}

// rawRelayHeader is the stream header startRawRelay's source writes.
const rawRelayHeader = "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='company.test' to='partner.test' version='1.0'>"

// startRawRelay starts a plain TLS → TLS io.Copy relay (serverConf on its
// listener) to sinkAddr and returns its source: a TLS connection to it on
// which the stream header is written. All of it stops with the benchmark.
func startRawRelay(b *testing.B, serverConf *tls.Config, sinkAddr string) *tls.Conn {
	relayLn, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { relayLn.Close() })
	go func() {
		in, err := relayLn.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := tls.Dial("tcp", sinkAddr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer out.Close()
		io.Copy(out, in)
	}()
	src, err := tls.Dial("tcp", relayLn.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	if _, err := io.WriteString(src, rawRelayHeader); err != nil {
		b.Fatal(err)
	}
	return src
}

// BenchmarkIdleSessionMemory measures the heap and the goroutine stacks
// an established, idle incoming outside session costs (TLS,
// dialback-authenticated, quiet for longer than stream.IdleAfter):
// DESIGN §5 asks for at most 16 KiB. It reports
// heap-bytes/session and stack-bytes/session; b.N is ignored beyond
// choosing the session count. (xmppedge-load -hold measures the resident
// memory of a real gateway: make bench-e2e's TestBenchIdle.)
func BenchmarkIdleSessionMemory(b *testing.B) {
	const sessions = 300
	// One source address opens every session: the per-source limits
	// (64 connections, 16 new per second) would refuse most of them.
	env := newTestEnv(b, hostileLimits, func(o *Options) { o.Logger = slog.New(slog.DiscardHandler) })
	authority := startFakeServerTLS(b, "partner.test", env.tlsConfig(b, "partner.test"))
	authority.setVerify(func(from, to, id, key string) bool { return true })
	env.res.set("partner.test", authority.addr(), true)
	var peers []*peer
	open := func(n int) {
		for i := 0; i < n; i++ {
			p := dialPeer(b, env.outside)
			p.open("partner.test", "company.test")
			p.startTLS("partner.test", "company.test")
			p.send("<db:result from='partner.test' to='company.test'>k</db:result>")
			if got := p.next(); !strings.Contains(got, "type='valid'") {
				b.Fatalf("dialback: %q", got)
			}
			p.conn.SetDeadline(time.Time{})
			peers = append(peers, p)
		}
	}
	open(10) // warm up caches and pools
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	open(sessions)
	b.StopTimer()
	// Idle: past the time after which a stream's scanner drops its read
	// buffer (stream.IdleAfter).
	time.Sleep(stream.IdleAfter + 500*time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/sessions, "stack-bytes/session")
	// Both ends live in this process: the peers' side (their TLS and
	// reader) is counted too, so the figure is an upper bound.
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/sessions, "heap-bytes/session")
	b.ReportMetric(float64(len(env.gw.Sessions())), "sessions")
	// XMPPEDGE_HEAP_PROFILE=file writes the heap profile of this moment
	// (with -memprofilerate 1, every object: go tool pprof
	// -sample_index=inuse_space file), what -memprofile cannot: it is
	// written after the sessions close.
	if path := os.Getenv("XMPPEDGE_HEAP_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// jetStreamSink starts three clustered NATS servers with JetStream on
// 127.0.0.65-67 and opens the replicated audit sink (three replicas, sync)
// on them.
func jetStreamSink(b *testing.B) audit.Sink {
	hosts := []string{"127.0.0.65", "127.0.0.66", "127.0.0.67"}
	var routes []string
	for _, h := range hosts {
		routes = append(routes, "nats://"+h+":16222")
	}
	var servers []*server.Server
	for i, h := range hosts {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("bench%d", i+1), Host: h, Port: 14222, JetStream: true,
			StoreDir: b.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "bench", Host: h, Port: 16222},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		})
		if err != nil {
			b.Fatal(err)
		}
		srv.Start()
		servers = append(servers, srv)
	}
	b.Cleanup(func() {
		for _, srv := range servers {
			srv.Shutdown()
			srv.WaitForShutdown()
		}
	})
	for _, srv := range servers {
		if !srv.ReadyForConnections(30 * time.Second) {
			b.Fatal("NATS server not ready")
		}
	}
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sink, err := jsaudit.Open(ctx, jsaudit.Config{JetStream: js, Node: "bench", Replicas: 3, Durability: audit.DurabilitySync, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return sink
}

package jsaudit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// testTimeout bounds every blocking wait in the tests; generous, since CI
// runs -race on a loaded machine and a JetStream cluster needs seconds to
// elect leaders.
const testTimeout = 60 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// natsServer is one embedded nats-server with JetStream; restartable with
// the same addresses and store.
type natsServer struct {
	t    testing.TB
	opts *server.Options
	srv  *server.Server
}

// startServers starts len(hosts) embedded servers, one per loopback
// address (127.0.0.91–99 only), with JetStream storing in temporary
// folders; with more than one host they form a cluster over fixed route
// ports. Cleanup shuts them down.
func startServers(t testing.TB, hosts ...string) []*natsServer {
	t.Helper()
	const clientPort, routePort = 14222, 16222
	var routes []string
	if len(hosts) > 1 {
		for _, h := range hosts {
			routes = append(routes, fmt.Sprintf("nats://%s:%d", h, routePort))
		}
	}
	servers := make([]*natsServer, len(hosts))
	for i, h := range hosts {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       h,
			Port:       clientPort,
			JetStream:  true,
			StoreDir:   filepath.Join(t.TempDir(), "js"),
			NoLog:      true,
			NoSigs:     true,
		}
		if len(hosts) > 1 {
			opts.Cluster = server.ClusterOpts{Name: "audit-test", Host: h, Port: routePort}
			opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		}
		servers[i] = &natsServer{t: t, opts: opts}
		servers[i].start()
	}
	t.Cleanup(func() {
		for _, s := range servers {
			s.stop()
		}
	})
	return servers
}

func (s *natsServer) start() {
	s.t.Helper()
	srv, err := server.NewServer(s.opts)
	if err != nil {
		s.t.Fatalf("nats server %s: %v", s.opts.Host, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(testTimeout) {
		srv.Shutdown()
		s.t.Fatalf("nats server %s did not start", s.opts.Host)
	}
	s.srv = srv
}

func (s *natsServer) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port) }

// connect opens a client to the given servers (reconnecting forever) and
// closes it at cleanup.
func connect(t testing.TB, servers ...*natsServer) jetstream.JetStream {
	t.Helper()
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.url()
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// logBuffer collects what the sink reports through slog.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testConfig(js jetstream.JetStream, node string, logs *logBuffer) Config {
	var h slog.Handler = slog.DiscardHandler
	if logs != nil {
		h = slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	return Config{
		JetStream:          js,
		Node:               node,
		CheckpointInterval: -1,
		PublishTimeout:     2 * time.Second,
		RetryInterval:      100 * time.Millisecond,
		Logger:             slog.New(h),
	}
}

func openSink(t testing.TB, cfg Config) *Sink {
	t.Helper()
	s, err := Open(testContext(t), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func stanzaRecord(i int) *audit.Record {
	return &audit.Record{
		Event:          audit.EventStanza,
		Session:        fmt.Sprintf("s%d", i%7),
		Leg:            "outside",
		Direction:      "outbound",
		LocalDomain:    "company.test",
		RemoteDomain:   "partner.test",
		From:           fmt.Sprintf("alice@company.test/res%d", i%3),
		To:             "bob@partner.test/phone",
		Kind:           "message",
		Type:           "chat",
		ID:             fmt.Sprintf("m%d", i),
		Size:           300 + i%50,
		Decision:       "allow",
		Reason:         "partner allowlist",
		PolicyRevision: "rev-7",
		BodySHA256:     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
	}
}

// appendDurable appends n records and waits for each to be stored.
func appendDurable(t testing.TB, s *Sink, from, n int) []*audit.Record {
	t.Helper()
	ctx := testContext(t)
	recs := make([]*audit.Record, 0, n)
	seqs := make([]uint64, 0, n)
	for i := from; i < from+n; i++ {
		r := stanzaRecord(i)
		seq, err := s.Append(r)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		recs = append(recs, r)
		seqs = append(seqs, seq)
	}
	for _, seq := range seqs {
		if err := s.WaitDurable(ctx, seq); err != nil {
			t.Fatalf("WaitDurable %d: %v", seq, err)
		}
	}
	return recs
}

// exportVerify exports the stream and verifies every node's file with
// the file verifier; it returns the results by node.
func exportVerify(t testing.TB, js jetstream.JetStream, key []byte) map[string]audit.VerifyResult {
	t.Helper()
	files, err := Export(testContext(t), js, DefaultStream, t.TempDir())
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	out := map[string]audit.VerifyResult{}
	for _, f := range files {
		res, err := audit.Verify([]string{f}, key)
		if err != nil {
			t.Fatalf("Verify %s: %v", f, err)
		}
		if !res.OK {
			t.Fatalf("Verify %s: chain broken at line %d (seq %d): %s", f, res.Line, res.Seq, res.Reason)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".jsonl")] = res
	}
	return out
}

// eventually polls cond until it holds or the test timeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

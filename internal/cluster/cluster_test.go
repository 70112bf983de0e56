package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Addresses this package's tests may use (other packages' tests run in
// parallel on other loopback addresses).
var testIPs = []string{"127.0.0.81", "127.0.0.82", "127.0.0.83"}

// testLogger logs to t until the test ends (the NATS server logs from its
// own goroutines; a late line must not reach a finished test) or fails:
// after a failure the servers' shutdown lines would bury the failure's
// message, and CI shows only the output's tail.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	w := &testWriter{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && !w.t.Failed() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// freePort returns a port free on ip right now.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// checkGoroutines fails the test when the goroutine count does not fall
// back to before within a generous bound.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Fatalf("%d goroutines left behind (before: %d):\n%s", runtime.NumGoroutine()-before, before, buf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventually retries f until it succeeds or the bound passes.
func eventually(t *testing.T, bound time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, bound, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestConfigCheck(t *testing.T) {
	emb := &EmbeddedConfig{StoreDir: "/nonexistent"}
	tests := []struct {
		name string
		cfg  Config
		want string // "" means valid
	}{
		{"embedded", Config{Node: "edge1", Embedded: emb}, ""},
		{"url", Config{Node: "edge-1", URL: "nats://127.0.0.81:4222"}, ""},
		{"no node", Config{Embedded: emb}, "node"},
		{"node with capitals", Config{Node: "Edge1", Embedded: emb}, "node"},
		{"node with dot", Config{Node: "edge.1", Embedded: emb}, "node"},
		{"node ends with hyphen", Config{Node: "edge-", Embedded: emb}, "node"},
		{"neither", Config{Node: "edge1"}, "neither nats.embedded nor nats.url"},
		{"both", Config{Node: "edge1", Embedded: emb, URL: "nats://127.0.0.81:4222"}, "both"},
		{"replicas 6", Config{Node: "edge1", URL: "nats://x:4222", Replicas: 6}, "replicas"},
		{"replicas negative", Config{Node: "edge1", URL: "nats://x:4222", Replicas: -1}, "replicas"},
		{"no store dir", Config{Node: "edge1", Embedded: &EmbeddedConfig{}}, "store_dir"},
		{"routes without cluster_listen", Config{Node: "edge1", Embedded: &EmbeddedConfig{StoreDir: "x", Routes: []string{"nats://127.0.0.82:6222"}}}, "cluster_listen"},
		{"cert without key", Config{Node: "edge1", URL: "nats://x:4222", TLS: TLSFiles{CertFile: "c"}}, "key_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.check()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func TestReplicasDefault(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"single embedded", Config{Embedded: &EmbeddedConfig{}}, 1},
		{"embedded with routes", Config{Embedded: &EmbeddedConfig{Routes: []string{"a", "b"}}}, 3},
		{"external", Config{URL: "nats://x"}, 3},
		{"explicit", Config{URL: "nats://x", Replicas: 2}, 2},
	}
	for _, tt := range tests {
		if got := tt.cfg.effectiveReplicas(); got != tt.want {
			t.Errorf("%s: replicas %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestSingleNode(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	n, err := Start(ctx, Config{
		Node:     "solo",
		Embedded: &EmbeddedConfig{Listen: testIPs[0] + ":0", StoreDir: t.TempDir()},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Name() != "solo" || n.Replicas() != 1 {
		t.Fatalf("name %q replicas %d", n.Name(), n.Replicas())
	}
	if err := n.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if p := n.Peers(); len(p) != 0 {
		t.Fatalf("peers of a single node: %v", p)
	}

	js := n.JetStream()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: n.Replicas(), Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t.one", []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(ctx, ack.Sequence)
	if err != nil || string(msg.Data) != "hello" || msg.Subject != "t.one" {
		t.Fatalf("read back %v %v", msg, err)
	}

	// The client port is bound to the configured address only, and serves
	// other clients (the CLI).
	addr := n.srv.Addr().(*net.TCPAddr)
	if addr.IP.String() != testIPs[0] {
		t.Fatalf("client listener on %s, want %s", addr, testIPs[0])
	}
	other, err := nats.Connect("nats://"+addr.String(), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.Request("$JS.API.INFO", nil, 10*time.Second)
	other.Close()
	if err != nil || !bytes.Contains(got.Data, []byte(`"streams":1`)) {
		t.Fatalf("account info over TCP: %v %s", err, got.Data)
	}

	n.Close()
	n.Close() // idempotent
	if err := n.Healthy(); err == nil {
		// The cache may hold the last good answer for a second.
		time.Sleep(healthCacheFor + 100*time.Millisecond)
		if err := n.Healthy(); err == nil {
			t.Fatal("Healthy after Close: nil")
		}
	}
	checkGoroutines(t, before)
}

func TestStartFailsOnBusyAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", testIPs[0]+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	n, err := Start(ctx, Config{
		Node:         "busy",
		Embedded:     &EmbeddedConfig{Listen: l.Addr().String(), StoreDir: t.TempDir()},
		StartTimeout: 3 * time.Second,
	}, testLogger(t))
	if err == nil {
		n.Close()
		t.Fatal("Start on a busy address succeeded")
	}
	if !strings.Contains(err.Error(), "nats.embedded") {
		t.Fatalf("error does not name the setting: %v", err)
	}
}

func TestThreeNodeCluster(t *testing.T) {
	before, start := runtime.NumGoroutine(), time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	log := testLogger(t)

	routes := make([]string, len(testIPs))
	clusterListen := make([]string, len(testIPs))
	for i, ip := range testIPs {
		clusterListen[i] = net.JoinHostPort(ip, fmt.Sprint(freePort(t, ip)))
		routes[i] = "nats://" + clusterListen[i]
	}
	nodes := make([]*Node, len(testIPs))
	errs := make([]error, len(testIPs))
	var wg sync.WaitGroup
	for i, ip := range testIPs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var others []string
			for j, r := range routes {
				if j != i {
					others = append(others, r)
				}
			}
			nodes[i], errs[i] = Start(ctx, Config{
				Node: fmt.Sprintf("edge%d", i+1),
				Embedded: &EmbeddedConfig{
					Listen:        ip + ":0",
					ClusterListen: clusterListen[i],
					Routes:        others,
					StoreDir:      t.TempDir(),
				},
			}, log)
		}()
	}
	wg.Wait()
	closed := make([]bool, len(nodes))
	defer func() {
		for i, n := range nodes {
			if n != nil && !closed[i] {
				n.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Replicas() != 3 {
			t.Fatalf("%s: replicas %d, want 3", n.Name(), n.Replicas())
		}
		if err := n.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "every node sees two peers", func() error {
		for _, n := range nodes {
			if p := n.Peers(); len(p) != 2 {
				return fmt.Errorf("%s peers %v", n.Name(), p)
			}
		}
		return nil
	})
	// Addr is the route connection's far end: the peer's route port when
	// this node dialled, its source address when the peer did.
	if p := nodes[0].Peers(); p[0].Name != "edge2" || p[1].Name != "edge3" || p[0].Addr == "" {
		t.Fatalf("peers of edge1: %+v", p)
	}

	js := nodes[0].JetStream()
	var stream jetstream.Stream
	eventually(t, 30*time.Second, "create an R3 stream", func() error {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		var err error
		stream, err = js.CreateOrUpdateStream(actx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3, Storage: jetstream.FileStorage})
		return err
	})
	publish := func(n *Node, timeout time.Duration) error {
		actx, acancel := context.WithTimeout(ctx, timeout)
		defer acancel()
		_, err := n.JetStream().Publish(actx, "t.x", []byte("x"))
		return err
	}
	eventually(t, 30*time.Second, "publish with 3 nodes", func() error { return publish(nodes[0], 5*time.Second) })
	// Right after the first publish the stream's leader may still change
	// (on a slow machine an election can follow the creation), and an
	// info request sent meanwhile fails: ask again until the leader
	// answers, then it must report the two other replicas.
	eventually(t, 30*time.Second, "stream info with two replicas", func() error {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		info, err := stream.Info(actx)
		switch {
		case err != nil:
			return err
		case info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2:
			return fmt.Errorf("replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
		}
		return nil
	})

	t.Logf("three nodes: stream created and published after %s", time.Since(start))
	// One node down: a quorum remains.
	nodes[2].Close()
	closed[2] = true
	eventually(t, 45*time.Second, "publish with one node down", func() error { return publish(nodes[0], 3*time.Second) })
	eventually(t, 45*time.Second, "healthy with one node down", nodes[1].Healthy)

	t.Logf("one node down: published after %s", time.Since(start))
	// Two nodes down: no quorum, no leader.
	nodes[1].Close()
	closed[1] = true
	eventually(t, 45*time.Second, "unhealthy with two nodes down", func() error {
		if err := nodes[0].Healthy(); err == nil {
			return errors.New("Healthy: nil")
		}
		return nil
	})
	t.Logf("two nodes down: unhealthy after %s", time.Since(start))
	if err := publish(nodes[0], 2*time.Second); err == nil {
		t.Fatal("publish succeeded without a quorum")
	}

	nodes[0].Close()
	closed[0] = true
	checkGoroutines(t, before)
	t.Logf("all closed, no goroutine left, after %s", time.Since(start))
}

// Connect reaches a running node's embedded server over its client address
// (as the CLI does) or through a URL, and never starts a server.
func TestConnect(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := freePort(t, testIPs[0])
	cfg := Config{
		Node:     "solo",
		Embedded: &EmbeddedConfig{Listen: fmt.Sprintf("%s:%d", testIPs[0], port), StoreDir: t.TempDir()},
	}
	n, err := Start(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := n.JetStream().CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string]Config{
		"embedded": cfg, // the same file as the node's
		"url":      {Node: "solo", URL: fmt.Sprintf("nats://%s:%d", testIPs[0], port)},
	} {
		t.Run(name, func(t *testing.T) {
			cl, err := Connect(ctx, c, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if cl.srv != nil {
				t.Fatal("Connect started a server")
			}
			if err := cl.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.JetStream().Stream(ctx, "T"); err != nil {
				t.Fatalf("the node's stream through the client: %v", err)
			}
		})
	}

	// No client address, or one with any port: nothing to connect to.
	for _, listen := range []string{"", testIPs[0] + ":0"} {
		c := cfg
		c.Embedded = &EmbeddedConfig{Listen: listen, StoreDir: cfg.Embedded.StoreDir}
		if cl, err := Connect(ctx, c, nil); err == nil {
			cl.Close()
			t.Fatalf("Connect with listen %q succeeded", listen)
		} else if !strings.Contains(err.Error(), "nats.embedded.listen") {
			t.Fatalf("listen %q: error does not name the setting: %v", listen, err)
		}
	}
	// Nobody listening: an error, soon.
	dead := Config{Node: "solo", URL: fmt.Sprintf("nats://%s:%d", testIPs[1], freePort(t, testIPs[1])), StartTimeout: 2 * time.Second}
	if cl, err := Connect(ctx, dead, nil); err == nil {
		cl.Close()
		t.Fatal("Connect to nobody succeeded")
	}
	n.Close()
	checkGoroutines(t, before)
}

func TestEmbeddedClientURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.5:4222": "nats://127.0.0.5:4222",
		"0.0.0.0:4222":   "nats://127.0.0.1:4222",
		":4222":          "nats://127.0.0.1:4222",
		"[::]:4222":      "nats://[::1]:4222",
		"node1:4222":     "nats://node1:4222",
	} {
		got, err := embeddedClientURL(listen)
		if err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", listen, got, err, want)
		}
	}
}

package sessiondir

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/admin"
)

// fakeLocal is a node's own sessions.
type fakeLocal struct {
	mu       sync.Mutex
	ids      []string
	closed   []string
	reloaded []string // the origins of the reloads it was asked for
}

func (f *fakeLocal) Reload(origin string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloaded = append(f.reloaded, origin)
}

func (f *fakeLocal) reloads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reloaded)
}

func (f *fakeLocal) Sessions() []admin.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []admin.Session
	for _, id := range f.ids {
		out = append(out, admin.Session{ID: id, Leg: "outside", Direction: "incoming", Remote: []string{"partner.test"}})
	}
	return out
}

func (f *fakeLocal) CloseSession(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.Index(f.ids, id)
	if i < 0 {
		return false
	}
	f.ids = slices.Delete(f.ids, i, i+1)
	f.closed = append(f.closed, id)
	return true
}

// startNATS runs an in-process NATS server with JetStream on 127.0.0.77
// and returns a connection factory.
func startNATS(t *testing.T) func() (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.77", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	return func() (*nats.Conn, jetstream.JetStream) {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
}

func startNode(t *testing.T, conn func() (*nats.Conn, jetstream.JetStream), node string, local Local, refresh time.Duration) *Directory {
	t.Helper()
	nc, js := conn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := Start(ctx, nc, js, Config{Node: node, Refresh: refresh, TTL: 2 * time.Second}, local, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(entries []Entry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.Node+"/"+e.ID)
	}
	return out
}

// waitFor polls the directory until it lists want (bounded).
func waitFor(t *testing.T, d *Directory, want []string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := d.Sessions(ctx)
		cancel()
		if err == nil && slices.Equal(ids(got), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("directory lists %v (%v), want %v", ids(got), err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Node 2 lists node 1's sessions and closes one of them on node 1; an
// ended session leaves the directory at the next refresh; a node that
// dies without a word drops out when its keys expire.
func TestDirectoryAcrossNodes(t *testing.T) {
	conn := startNATS(t)
	one := &fakeLocal{ids: []string{"edge1-in-1", "edge1-out-2"}}
	two := &fakeLocal{ids: []string{"edge2-in-1"}}
	d1 := startNode(t, conn, "edge1", one, 200*time.Millisecond)
	d2 := startNode(t, conn, "edge2", two, 200*time.Millisecond)
	defer d2.Close()

	waitFor(t, d2, []string{"edge1/edge1-in-1", "edge1/edge1-out-2", "edge2/edge2-in-1"})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	closed, err := d2.CloseSession(ctx, "edge1-out-2")
	if err != nil || !closed {
		t.Fatalf("closing node 1's session from node 2: %v %v", closed, err)
	}
	one.mu.Lock()
	gotClosed := slices.Clone(one.closed)
	one.mu.Unlock()
	if !slices.Equal(gotClosed, []string{"edge1-out-2"}) {
		t.Fatalf("node 1 closed %v", gotClosed)
	}
	if closed, err := d2.CloseSession(ctx, "edge9-in-1"); err != nil || closed {
		t.Fatalf("closing an unknown session: %v %v", closed, err)
	}
	waitFor(t, d2, []string{"edge1/edge1-in-1", "edge2/edge2-in-1"})

	// Node 1 dies: it stops refreshing and deletes nothing.
	d1.cancel()
	<-d1.done
	d1.sub.Unsubscribe()
	waitFor(t, d2, []string{"edge2/edge2-in-1"})
}

// A reload announced by one node makes every other node reload, once;
// the announcing node does not reload again.
func TestReloadAnnounced(t *testing.T) {
	conn := startNATS(t)
	one, two, three := &fakeLocal{}, &fakeLocal{}, &fakeLocal{}
	d1 := startNode(t, conn, "edge1", one, time.Second)
	defer d1.Close()
	for _, n := range []struct {
		name  string
		local *fakeLocal
	}{{"edge2", two}, {"edge3", three}} {
		d := startNode(t, conn, n.name, n.local, time.Second)
		defer d.Close()
	}
	if err := d1.AnnounceReload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(two.reloads(), []string{"edge1"}) || !slices.Equal(three.reloads(), []string{"edge1"}) {
		if time.Now().After(deadline) {
			t.Fatalf("reloads: edge2 %v, edge3 %v; want [edge1] each", two.reloads(), three.reloads())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// edge1 got its own announcement too (one connection here): it was
	// delivered before the others' and ignored.
	if got := one.reloads(); len(got) != 0 {
		t.Fatalf("the announcing node reloaded on its own announcement: %v", got)
	}
}

func TestNodeName(t *testing.T) {
	conn := startNATS(t)
	nc, js := conn()
	for _, name := range []string{"", "Edge1", "edge.1", "-edge", "edge 1"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := Start(ctx, nc, js, Config{Node: name}, &fakeLocal{}, slog.New(slog.DiscardHandler)); err == nil {
			t.Errorf("node name %q accepted", name)
		}
		cancel()
	}
}

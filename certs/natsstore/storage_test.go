package natsstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startJetStream runs an in-process NATS server with JetStream on
// 127.0.0.75 (a port of its own) and returns a client's JetStream.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.75", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// New waits for JetStream: a server that enables it only later (as a
// cluster's bucket cannot be created until its servers agree) gets the
// bucket created; one that never does fails New when ctx ends.
func TestNewWaitsForJetStream(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.75", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := New(short, js, Config{Bucket: "late"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New without JetStream: %v, want the deadline", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s, err := New(ctx, js, Config{Bucket: "late"})
		if err == nil {
			err = s.Store(ctx, "k", []byte("v"))
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("New returned before JetStream was enabled: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("New once JetStream is enabled: %v", err)
	}
}

// Reads go to the bucket's stream leader, not to jetstream's KeyValue.Get
// (a direct get, which a replica that has not applied an acknowledged
// write yet answers with what it has): what was stored is loaded, stated,
// found and deleted even when every direct get is stale. certmagic reads
// right after its own writes (the storage check at start failed: found by
// the cluster ACME e2e) and after another node's, behind a lock.
func TestReadsFromTheLeader(t *testing.T) {
	js := &staleJS{JetStream: startJetStream(t)}
	s := newStorage(t, js, Config{Bucket: "stale"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const key = "certificates/ca.example/company.test/company.test.crt"
	if err := s.Store(ctx, key, []byte("cert")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, key); err != nil || string(got) != "cert" {
		t.Fatalf("Load right after Store = %q, %v", got, err)
	}
	if info, err := s.Stat(ctx, key); err != nil || !info.IsTerminal || info.Size != 4 || info.Modified.IsZero() {
		t.Fatalf("Stat right after Store = %+v, %v", info, err)
	}
	if !s.Exists(ctx, key) {
		t.Fatal("Exists right after Store: false")
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("Delete right after Store: %v", err)
	}
	if _, err := s.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load after Delete: %v, want fs.ErrNotExist", err)
	}
}

// staleJS opens buckets whose direct gets (KeyValue.Get) answer as a
// replica that has applied no write yet.
type staleJS struct{ jetstream.JetStream }

func (j *staleJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return staleKV{kv}, nil
}

type staleKV struct{ jetstream.KeyValue }

func (staleKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// A contender that loses the race for a released lock gets a bare "wrong
// last sequence" from jetstream's Create (code 10164 on a replicated
// bucket), not ErrKeyExists: Lock goes on waiting, as for a held lock (it
// failed certmagic's obtain on one node of three: found by the cluster
// ACME e2e).
func TestLockRaceLost(t *testing.T) {
	js := &racingJS{JetStream: startJetStream(t), losses: 2}
	s := newStorage(t, js, Config{Bucket: "race", LockPoll: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Lock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatalf("Lock after lost races: %v", err)
	}
	if js.losses != 0 {
		t.Fatalf("Lock returned with %d races still to lose", js.losses)
	}
	if err := s.Unlock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatal(err)
	}
}

// racingJS opens buckets whose first Creates (losses of them) lose a race
// for a key, as on a replicated bucket.
type racingJS struct {
	jetstream.JetStream
	losses int
}

func (j *racingJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return racingKV{KeyValue: kv, js: j}, nil
}

type racingKV struct {
	jetstream.KeyValue
	js *racingJS
}

func (k racingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if k.js.losses > 0 {
		k.js.losses--
		return 0, &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant, Description: "wrong last sequence"}
	}
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func newStorage(t *testing.T, js jetstream.JetStream, cfg Config) *Storage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestKeyEscaping(t *testing.T) {
	tests := []struct{ path, key string }{
		{"certificates/acme-v02.api.letsencrypt.org-directory/example.com/example.com.crt",
			"data.certificates.acme-v02=2Eapi=2Eletsencrypt=2Eorg-directory.example=2Ecom.example=2Ecom=2Ecrt"},
		{"acme/ca/users/a@b.c/a.json", "data.acme.ca.users.a=40b=2Ec.a=2Ejson"},
		{"weird/ *>=", "data.weird.=20=2A=3E=3D"},
		{"/leading/and//double/", "data.leading.and.double"},
		{"wildcard_*.example.com", "data.wildcard_=2A=2Eexample=2Ecom"},
	}
	for _, tt := range tests {
		k, err := keyOf("data", tt.path)
		if err != nil || k != tt.key {
			t.Errorf("keyOf(%q) = %q, %v; want %q", tt.path, k, err, tt.key)
			continue
		}
		back, err := pathOf("data", k)
		want := tt.path
		if tt.path == "/leading/and//double/" {
			want = "leading/and/double"
		}
		if err != nil || back != want {
			t.Errorf("pathOf(%q) = %q, %v; want %q", k, back, err, want)
		}
	}
	if _, err := keyOf("data", "//"); err == nil {
		t.Error("an empty path was accepted")
	}
	if _, err := pathOf("data", "data.bad=4"); err == nil {
		t.Error("a truncated escape was accepted")
	}
}

func FuzzKeyRoundTrip(f *testing.F) {
	f.Add("certificates/x/y.crt")
	f.Add("a=b/c.d/\x00\xff")
	f.Fuzz(func(t *testing.T, path string) {
		k, err := keyOf("data", path)
		if err != nil {
			return
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '=') {
				t.Fatalf("key %q of %q has a byte outside NATS's alphabet", k, path)
			}
		}
		back, err := pathOf("data", k)
		if err != nil {
			t.Fatalf("pathOf(%q): %v", k, err)
		}
		segs := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
		if want := strings.Join(segs, "/"); back != want {
			t.Fatalf("round trip of %q: %q, want %q", path, back, want)
		}
	})
}

// The certmagic Storage contract: store, load, exists, stat, list (direct
// children and recursive), delete of an item and of a "directory", and
// fs.ErrNotExist for what is not there.
func TestStorage(t *testing.T) {
	js := startJetStream(t)
	s := newStorage(t, js, Config{Bucket: "certs_test"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	items := map[string]string{
		"certificates/ca.example/company.test/company.test.crt":  "cert",
		"certificates/ca.example/company.test/company.test.key":  "key",
		"certificates/ca.example/company.test/company.test.json": "meta",
		"certificates/ca.example/other.test/other.test.crt":      "cert2",
		"acme/ca.example/users/ops@company.test/ops.json":        "user",
	}
	for k, v := range items {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range items {
		got, err := s.Load(ctx, k)
		if err != nil || string(got) != v {
			t.Fatalf("Load(%s) = %q, %v", k, got, err)
		}
	}
	if _, err := s.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "certificates/ca.example") || s.Exists(ctx, "certificates/none") {
		t.Fatal("Exists wrong for a directory or a missing key")
	}
	info, err := s.Stat(ctx, "certificates/ca.example/company.test/company.test.crt")
	if err != nil || !info.IsTerminal || info.Size != 4 {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "certificates/ca.example"); err != nil || info.IsTerminal {
		t.Fatalf("Stat of a directory = %+v, %v", info, err)
	}
	children, err := s.List(ctx, "certificates/ca.example", false)
	slices.Sort(children)
	if err != nil || !slices.Equal(children, []string{"certificates/ca.example/company.test", "certificates/ca.example/other.test"}) {
		t.Fatalf("List non-recursive = %q, %v", children, err)
	}
	all, err := s.List(ctx, "certificates", true)
	if err != nil || len(all) != 4 {
		t.Fatalf("List recursive = %q, %v", all, err)
	}
	if err := s.Delete(ctx, "certificates/ca.example/company.test"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca.example/company.test/company.test.key") || !s.Exists(ctx, "certificates/ca.example/other.test/other.test.crt") {
		t.Fatal("Delete of a directory removed the wrong keys")
	}
	if err := s.Delete(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Delete of a missing key: %v", err)
	}
	// A second Storage (another node) sees the same items.
	other := newStorage(t, js, Config{Bucket: "certs_test"})
	if got, err := other.Load(ctx, "acme/ca.example/users/ops@company.test/ops.json"); err != nil || string(got) != "user" {
		t.Fatalf("another node's Load = %q, %v", got, err)
	}
}

// Two nodes contend for one lock: only one holds it at a time; the other
// gets it once it is released; a lock whose holder died expires (TTL), and
// the dead holder can then neither renew nor release the new holder's lock.
func TestLocks(t *testing.T) {
	js := startJetStream(t)
	a := newStorage(t, js, Config{Bucket: "locks_test", LockTTL: 2 * time.Second, LockPoll: 50 * time.Millisecond})
	b := newStorage(t, js, Config{Bucket: "locks_test", LockTTL: 2 * time.Second, LockPoll: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if err := a.Lock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	if err := b.Lock(short, "issue_cert_company.test"); err == nil {
		t.Fatal("two holders of one lock")
	}
	cancelShort()
	var wg sync.WaitGroup
	got := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); got <- b.Lock(ctx, "issue_cert_company.test") }()
	if err := a.Unlock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("b did not get the released lock: %v", err)
	}
	wg.Wait()
	if err := b.RenewLockLease(ctx, "issue_cert_company.test", 2*time.Second); err != nil {
		t.Fatalf("renewing our own lock: %v", err)
	}

	// b "dies" holding the lock: it expires, a takes it over.
	if err := a.Lock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatalf("the expired lock was not taken over: %v", err)
	}
	if err := b.RenewLockLease(ctx, "issue_cert_company.test", 2*time.Second); err == nil {
		t.Fatal("the dead holder renewed the new holder's lock")
	}
	if err := b.Unlock(ctx, "issue_cert_company.test"); err == nil {
		t.Fatal("the dead holder released the new holder's lock")
	}
	short, cancelShort = context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if err := b.Lock(short, "issue_cert_company.test"); err == nil {
		t.Fatal("the lock was free after the dead holder's Unlock")
	}
	if err := a.Unlock(ctx, "issue_cert_company.test"); err != nil {
		t.Fatal(err)
	}
}

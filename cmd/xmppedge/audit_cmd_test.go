package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/jsaudit"
)

// auditNATSIP is the address of this package's in-process NATS server
// (other packages' tests use other loopback addresses).
const auditNATSIP = "127.0.0.72"

// startAuditNATS runs an in-process nats-server with JetStream on
// auditNATSIP and returns it and a client's JetStream.
func startAuditNATS(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: auditNATSIP, Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, js
}

// appendRecords writes records to node's chain in the stream through a
// jsaudit sink (the chain resumes if it exists), each stored before it
// returns, then a checkpoint if checkpoint is set.
func appendRecords(t *testing.T, ctx context.Context, js jetstream.JetStream, node string, key []byte, checkpoint bool, recs ...*audit.Record) {
	t.Helper()
	s, err := jsaudit.Open(ctx, jsaudit.Config{JetStream: js, Node: node, HMACKey: key, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var last uint64
	for _, r := range recs {
		if last, err = s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if checkpoint {
		if last, err = s.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.WaitDurable(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// runAudit runs `xmppedge audit ARGS...`, bounded by ctx.
func runAudit(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = auditCommandContext(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// lockedBuffer is a bytes.Buffer written by one goroutine and read by
// another.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func jsonLines(s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// The audit commands read the cluster's stream with a config whose
// audit.backend is jetstream: every node's chain, the checkpoints; export
// writes files that verify offline; a forged record breaks verify.
func TestAuditStreamCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	srv, js := startAuditNATS(t)
	key := []byte(strings.Repeat("k", 32))

	appendRecords(t, ctx, js, "edge1", key, false,
		&audit.Record{Event: audit.EventSessionOpen, RemoteDomain: "partner.test"},
		&audit.Record{Event: audit.EventStanza, LocalDomain: "company.test", RemoteDomain: "other.test", Decision: audit.DecisionDeny, From: "a@company.test/r", To: "b@other.test"})
	appendRecords(t, ctx, js, "edge2", key, false,
		&audit.Record{Event: audit.EventStanza, LocalDomain: "company.test", RemoteDomain: "partner.test", Decision: audit.DecisionAllow, From: "c@company.test/r", To: "d@partner.test"})
	appendRecords(t, ctx, js, "edge1", key, true)
	appendRecords(t, ctx, js, "edge2", key, true)

	dir := t.TempDir()
	writeFiles(t, dir, map[string]file{"audit.key": {content: key}, "dialback.secret": {content: []byte("shared secret")}, "other.key": {content: []byte(strings.Repeat("o", 32))}})
	cfgPath := writeConfigIn(t, dir, func(s string) string {
		s = insert("audit:", "  backend: jetstream\n  hmac_key_file: audit.key\n")(s)
		return s + "cluster:\n  node: cli\n  nats:\n    url: " + srv.ClientURL() + "\n"
	})

	t.Run("verify", func(t *testing.T) {
		code, out, errOut := runAudit(ctx, "verify", "-config", cfgPath)
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("verify -config:\n%s", out)
		for _, want := range []string{"node edge1: 3 records, chain intact", "node edge2: 2 records, chain intact",
			"checkpoints: 2, naming 4 head(s): 4 match", "5 records in 2 node chain(s), all intact"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		// Another key: every chain fails.
		code, out, _ = runAudit(ctx, "verify", "-config", cfgPath, "-hmac-key-file", filepath.Join(dir, "other.key"))
		if code != 1 || !strings.Contains(out, "node edge1: chain broken") || !strings.Contains(out, "FAILED: 2 of 2") {
			t.Fatalf("verify with another key: exit %d\n%s", code, out)
		}
		// Files named with a jetstream config: a usage error.
		if code, _, errOut := runAudit(ctx, "verify", "-config", cfgPath, "x.jsonl"); code != 2 || !strings.Contains(errOut, "name no files") {
			t.Fatalf("verify -config with a file: exit %d %s", code, errOut)
		}
	})

	t.Run("embedded listen", func(t *testing.T) {
		// A node's own config: the CLI connects to cluster.nats.embedded.listen.
		edir := t.TempDir()
		writeFiles(t, edir, map[string]file{"audit.key": {content: key}, "dialback.secret": {content: []byte("shared secret")}})
		p := writeConfigIn(t, edir, func(s string) string {
			s = insert("audit:", "  backend: jetstream\n  hmac_key_file: audit.key\n")(s)
			return s + "cluster:\n  node: edge1\n  nats:\n    embedded:\n      listen: \"" + srv.Addr().String() + "\"\n      store_dir: nats\n"
		})
		if code, out, errOut := runAudit(ctx, "verify", "-config", p); code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("query", func(t *testing.T) {
		code, out, errOut := runAudit(ctx, "query", "-config", cfgPath, "-domain", "other.test", "-format", "jsonl")
		lines := jsonLines(out)
		if code != 0 || len(lines) != 1 || !strings.Contains(lines[0], `"decision":"deny"`) || !strings.Contains(lines[0], `"node":"edge1"`) {
			t.Fatalf("query -domain: exit %d\n%s%s", code, out, errOut)
		}
		code, out, _ = runAudit(ctx, "query", "-config", cfgPath, "-node", "edge2", "-format", "jsonl")
		lines = jsonLines(out)
		if code != 0 || len(lines) != 2 || strings.Contains(out, `"node":"edge1"`) {
			t.Fatalf("query -node edge2: exit %d\n%s", code, out)
		}
		code, out, _ = runAudit(ctx, "query", "-config", cfgPath, "-event", "session")
		if code != 0 || !strings.Contains(out, "partner.test") || strings.Contains(out, "other.test") {
			t.Fatalf("query -event session (table): exit %d\n%s", code, out)
		}
		code, out, errOut = runAudit(ctx, "query", "-config", cfgPath, "-domain", "nowhere.test")
		if code != 0 || out != "" || !strings.Contains(errOut, "no records match") {
			t.Fatalf("query matching nothing: exit %d %q %q", code, out, errOut)
		}
	})

	t.Run("tail", func(t *testing.T) {
		code, out, errOut := runAudit(ctx, "tail", "-config", cfgPath, "-n", "2", "-format", "jsonl")
		lines := jsonLines(out)
		// The last two by time: edge1's checkpoint, then edge2's.
		if code != 0 || len(lines) != 2 || !strings.Contains(lines[0], `"node":"edge1","event":"audit.checkpoint"`) ||
			!strings.Contains(lines[1], `"node":"edge2","event":"audit.checkpoint"`) {
			t.Fatalf("tail -n 2: exit %d\n%s%s", code, out, errOut)
		}
		code, out, _ = runAudit(ctx, "tail", "-config", cfgPath, "-node", "edge1", "-n", "5", "-format", "jsonl")
		if lines := jsonLines(out); code != 0 || len(lines) != 3 || strings.Contains(out, `"node":"edge2"`) {
			t.Fatalf("tail -node edge1: exit %d\n%s", code, out)
		}
	})

	t.Run("tail -f", func(t *testing.T) {
		fctx, fcancel := context.WithTimeout(ctx, 20*time.Second)
		defer fcancel()
		var out, errOut lockedBuffer
		done := make(chan int, 1)
		go func() {
			done <- auditCommandContext(fctx, []string{"tail", "-config", cfgPath, "-n", "1", "-f", "-format", "jsonl"}, &out, &errOut)
		}()
		waitFor := func(what string) {
			t.Helper()
			deadline := time.Now().Add(15 * time.Second)
			for !strings.Contains(out.String(), what) {
				if time.Now().After(deadline) {
					t.Fatalf("tail -f did not print %q within 15s:\n%s%s", what, out.String(), errOut.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitFor(`"node":"edge2","event":"audit.checkpoint"`)
		appendRecords(t, ctx, js, "edge2", key, false, &audit.Record{Event: audit.EventSessionOpen, RemoteDomain: "followed.test"})
		waitFor("followed.test")
		fcancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("tail -f: exit %d\n%s", code, errOut.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("tail -f did not stop when its context ended")
		}
		if n := len(jsonLines(out.String())); n != 2 {
			t.Fatalf("tail -f printed %d lines, want 2:\n%s", n, out.String())
		}
	})

	t.Run("export", func(t *testing.T) {
		outDir := filepath.Join(t.TempDir(), "export")
		code, out, errOut := runAudit(ctx, "export", "-config", cfgPath, "-o", outDir)
		if code != 0 || !strings.Contains(out, "exported 2 node chain(s)") || !strings.Contains(out, "all intact") {
			t.Fatalf("export: exit %d\n%s%s", code, out, errOut)
		}
		files := []string{filepath.Join(outDir, "edge1.jsonl"), filepath.Join(outDir, "edge2.jsonl")}
		for _, f := range files {
			res, err := audit.Verify([]string{f}, key)
			if err != nil || !res.OK || res.FirstPrev != "" {
				t.Fatalf("%s: %+v %v", f, res, err)
			}
			// Offline, as today.
			if code, out, errOut := runAudit(ctx, "verify", "-hmac-key-file", filepath.Join(dir, "audit.key"), f); code != 0 {
				t.Fatalf("verify %s: exit %d\n%s%s", f, code, out, errOut)
			}
		}
		if code, _, errOut := runAudit(ctx, "export", "-config", cfgPath); code != 2 || !strings.Contains(errOut, "-o DIR") {
			t.Fatalf("export without -o: exit %d %s", code, errOut)
		}
	})

	t.Run("export -format", func(t *testing.T) {
		outDir := filepath.Join(t.TempDir(), "export")
		code, out, errOut := runAudit(ctx, "export", "-format", "jsonl", "-domain", "partner.test", "-config", cfgPath, "-o", outDir)
		if code != 0 || !strings.Contains(out, "0 message(s) and 2 record line(s)") {
			t.Fatalf("export -format jsonl: exit %d\n%s%s", code, out, errOut)
		}
		m := readManifest(t, outDir)
		if len(m.Chains) != 2 || !m.Chains[0].Intact || !m.Chains[1].Intact || m.Chains[0].Records != 3 || m.Chains[1].Records != 3 ||
			m.Chains[0].Source[0] != "stream "+jsaudit.DefaultStream+", node edge1" {
			t.Fatalf("manifest chains: %+v", m.Chains)
		}
	})

	t.Run("checkpoint naming no record", func(t *testing.T) {
		appendRecords(t, ctx, js, "edge2", key, false, &audit.Record{Event: audit.EventCheckpoint,
			Heads: audit.StringsOf("edge1 2 " + strings.Repeat("0", 64))})
		code, out, _ := runAudit(ctx, "verify", "-config", cfgPath)
		if code != 1 || !strings.Contains(out, "names node edge1 seq 2 with hash 0000") || !strings.Contains(out, "node edge2: 4 records, chain intact") {
			t.Fatalf("verify: exit %d\n%s", code, out)
		}
	})

	// Last: the stream stays forged.
	t.Run("forged record", func(t *testing.T) {
		st, err := js.Stream(ctx, jsaudit.DefaultStream)
		if err != nil {
			t.Fatal(err)
		}
		first, err := st.GetMsg(ctx, 1)
		if err != nil || first.Subject != jsaudit.SubjectPrefix+"edge1" {
			t.Fatalf("first message: %v %v", first, err)
		}
		forged := bytes.Replace(first.Data, []byte("partner.test"), []byte("evil.test"), 1)
		if bytes.Equal(forged, first.Data) {
			t.Fatalf("nothing to forge in %s", first.Data)
		}
		if _, err := js.Publish(ctx, jsaudit.SubjectPrefix+"edge1", forged); err != nil {
			t.Fatalf("the stream refused a raw publish: %v", err)
		}
		code, out, errOut := runAudit(ctx, "verify", "-config", cfgPath)
		if code != 1 || !strings.Contains(out, "node edge1: chain broken at its record 4 (seq 1): hash mismatch") || !strings.Contains(out, "FAILED") {
			t.Fatalf("verify after a forged record: exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("verify -config, forged:\n%s", out)
		code, out, _ = runAudit(ctx, "export", "-config", cfgPath, "-o", t.TempDir())
		if code != 1 || !strings.Contains(out, "node edge1: chain broken") {
			t.Fatalf("export after a forged record: exit %d\n%s", code, out)
		}
	})
}

// With a config whose audit.backend is file, the commands read the
// configured file (and key) as they read files named on the command line.
func TestAuditFileConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()
	key := []byte(strings.Repeat("k", 32))
	writeFiles(t, dir, map[string]file{"audit.key": {content: key}})
	cfgPath := writeConfigIn(t, dir, insert("audit:", "  hmac_key_file: audit.key\n"))
	path := filepath.Join(dir, "audit.jsonl")
	auditChain(t, path, key)

	if code, out, errOut := runAudit(ctx, "verify", "-config", cfgPath); code != 0 || !strings.Contains(out, "1 records, chain intact") {
		t.Fatalf("verify -config: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := runAudit(ctx, "verify", path); code != 1 || !strings.Contains(out, "HMAC-keyed and no key was given") {
		t.Fatalf("verify FILE without the key: exit %d\n%s", code, out)
	}
	if code, out, _ := runAudit(ctx, "verify", "-hmac-key-file", filepath.Join(dir, "audit.key"), path); code != 0 {
		t.Fatalf("verify FILE: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{
		{"query", "-config", cfgPath, "-domain", "partner.test"},
		{"query", "-domain", "partner.test", path},
		{"tail", "-config", cfgPath},
		{"tail", path},
	} {
		code, out, errOut := runAudit(ctx, args...)
		if code != 0 || !strings.Contains(out, "partner.test") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if code, _, errOut := runAudit(ctx, "export", "-config", cfgPath, "-o", t.TempDir()); code != 2 || !strings.Contains(errOut, "audit.backend file") {
		t.Fatalf("export with the file backend: exit %d %s", code, errOut)
	}
	if code, _, errOut := runAudit(ctx, "verify"); code != 2 || !strings.Contains(errOut, "-config FILE") {
		t.Fatalf("verify without arguments: exit %d %s", code, errOut)
	}
}

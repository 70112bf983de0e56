package audit

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every blocking wait in the tests.
const testTimeout = 20 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// logBuffer collects what the Log reports through slog.
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

func testConfig(t testing.TB) (Config, *logBuffer) {
	logs := &logBuffer{}
	return Config{
		Path:   filepath.Join(t.TempDir(), "audit.jsonl"),
		Node:   "edge-1",
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func stanzaRecord(i int) *Record {
	return &Record{
		Event:          EventStanza,
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

func appendN(t testing.TB, l *Log, from, n int) []uint64 {
	t.Helper()
	seqs := make([]uint64, 0, n)
	for i := from; i < from+n; i++ {
		seq, err := l.Append(stanzaRecord(i))
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func closeLog(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustVerify(t testing.TB, files []string, key []byte) VerifyResult {
	t.Helper()
	res, err := Verify(files, key)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !res.OK {
		t.Fatalf("Verify: chain broken at %s line %d (seq %d): %s", res.File, res.Line, res.Seq, res.Reason)
	}
	return res
}

func readFileLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(data), "\n")
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or the test timeout passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

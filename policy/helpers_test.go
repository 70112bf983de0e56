package policy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeFiles writes name → content under dir (creating directories).
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// testTimeout bounds one evaluation in tests instead of DefaultTimeout
// (50ms). The timeout is wall-clock: on a busy machine, under -race, an
// evaluation that takes 2µs alone can take longer than 50ms, and a test
// would then see a fail-closed deny that has nothing to do with what it
// checks. Tests decide with this generous bound; TestTimeout checks the
// mechanism itself with a policy that cannot finish.
const testTimeout = 2 * time.Minute

// withTestTimeout returns cfg with Timeout and WarmBudget set to
// testTimeout unless the test chose them.
func withTestTimeout(cfg Config) Config {
	if cfg.Timeout == 0 {
		cfg.Timeout = testTimeout
	}
	if cfg.WarmBudget == 0 {
		cfg.WarmBudget = testTimeout // every sample warmed, however slow the machine (-race: 171 of 224 in 3 s once)
	}
	return cfg
}

// newTestEngine writes a policy (rego files and an optional data.yaml)
// to a temporary directory and loads it.
func newTestEngine(t testing.TB, files map[string]string, cfg Config) (*Engine, string) {
	t.Helper()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	writeFiles(t, rules, files)
	cfg.Rules = rules
	if _, ok := files["../data.yaml"]; ok {
		cfg.Data = []string{filepath.Join(dir, "data.yaml")}
	}
	e, err := New(testContext(t), withTestTimeout(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.waitBackground)
	return e, rules
}

// waitBackground waits for the partial evaluations the engine runs in the
// background (content programs, key narrowing), so that none outlives
// its test: OPA's partial evaluation writes into interned terms that
// another test's evaluations read (see Engine.partialMu).
func (e *Engine) waitBackground() {
	l := e.current.Load()
	l.stanza.buildWG.Wait()
	for _, n := range []*narrowing{l.session.narrow, l.stanza.narrow} {
		if n != nil {
			n.buildWG.Wait()
		}
	}
}

// testContext bounds a test's blocking calls.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// shippedEngine loads ../rules with the given data (YAML) instead of
// partners.yaml.
func shippedEngine(t testing.TB, dataYAML string, cfg Config) *Engine {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data.yaml")
	writeFiles(t, dir, map[string]string{"data.yaml": dataYAML})
	cfg.Rules = "../rules"
	cfg.Data = []string{data}
	e, err := New(testContext(t), withTestTimeout(cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.waitBackground)
	return e
}

func jid(s string) JID {
	full := s
	bare, _, _ := cutLast(s, "/")
	domain := bare
	if i := indexByte(bare, '@'); i >= 0 {
		domain = bare[i+1:]
	}
	return JID{Full: full, Bare: bare, Domain: domain}
}

func cutLast(s, sep string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i:i+1] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return -1
}

// waitBound bounds the wait for something running in the background (a
// reload by Watch): generous, so that only a change that never happens
// fails, not a slow machine.
const waitBound = 30 * time.Second

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", bound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/config"
)

// The warm-up samples are the running gateway's: run reads them at start
// (and saves them), the commands that only ask the policy (check,
// partners, probe) leave them alone.
func TestPolicySamplesOnlyWhenServing(t *testing.T) {
	dir := t.TempDir()
	const samples = `{"version": 1, "stanzas": [{"direction": "inbound", "kind": "presence",
		"from": {"full": "bob@partner.test/b", "bare": "bob@partner.test", "domain": "partner.test"},
		"to": {"full": "alice@company.test/a", "bare": "alice@company.test", "domain": "company.test"}}]}`
	path := filepath.Join(dir, "policy-samples.json")
	if err := os.WriteFile(path, []byte(samples), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Dir: dir, Policy: config.PolicyConfig{Rules: rulesDir(t),
		Data: []string{filepath.Join(rulesDir(t), "partners.yaml")}, Timeout: config.Duration(time.Minute), WarmSamples: "policy-samples.json"}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, serving := range []bool{false, true} {
		eng, err := newPolicyEngine(ctx, cfg, discardLogger(), serving)
		if err != nil {
			t.Fatal(err)
		}
		if warmed := eng.Stats().WarmedClasses; (warmed > 0) != serving {
			t.Errorf("serving %v: %d classes warmed from the samples file", serving, warmed)
		}
	}
}

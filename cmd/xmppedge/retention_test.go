package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// rotatedSeries writes one record per domain into its own rotated file of
// the log at path (node "test"), and closes the log.
func rotatedSeries(t *testing.T, path string, key []byte, domains ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := audit.Open(audit.Config{Path: path, HMACKey: key, Node: "test", RotateSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i, d := range domains {
		seq, err := l.Append(&audit.Record{Event: audit.EventStanza, RemoteDomain: d, To: "bob@" + d + "/phone", Decision: audit.DecisionAllow})
		if err == nil {
			err = l.WaitDurable(ctx, seq)
		}
		if err != nil {
			t.Fatal(err)
		}
		for {
			files, _ := audit.RotatedFiles(path)
			if len(files) == i+1 {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("no rotation")
			}
			time.Sleep(time.Millisecond)
		}
	}
}

func rotatedCount(t *testing.T, path string) int {
	t.Helper()
	files, err := audit.RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

// audit retain: the dry run changes nothing, a running gateway's log is
// left to the gateway, the run deletes the expired unheld files, and verify
// then passes and says where the chain starts; a held file removed by hand
// is caught.
func TestAuditRetain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	key := []byte(strings.Repeat("k", 32))
	writeFiles(t, dir, map[string]file{"audit.key": {content: key}})
	cfgPath := writeConfigIn(t, dir, insert("audit:", `  hmac_key_file: audit.key
  node: test
  retention: 1s
  legal_holds:
    - reference: CASE-B
      domains: [partner-b.test]
`))
	path := filepath.Join(dir, "audit.jsonl")
	rotatedSeries(t, path, key, "partner-a.test", "partner-a.test", "partner-b.test", "partner-a.test")
	time.Sleep(1100 * time.Millisecond) // every record is now older than the 1s retention

	code, out, errOut := runAudit(ctx, "retain", "-config", cfgPath, "-dry-run")
	if code != 0 || strings.Count(out, "would delete audit.jsonl.") != 2 || !strings.Contains(out, `held by legal hold "CASE-B"`) ||
		!strings.Contains(out, "an older file is kept") {
		t.Fatalf("retain -dry-run: exit %d\n%s%s", code, out, errOut)
	}
	if n := rotatedCount(t, path); n != 4 {
		t.Fatalf("the dry run deleted files: %d left", n)
	}

	running, err := audit.Open(audit.Config{Path: path, HMACKey: key, Node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runAudit(ctx, "retain", "-config", cfgPath)
	running.Close()
	if code != 1 || !strings.Contains(errOut, "a running gateway applies audit.retention itself") || rotatedCount(t, path) != 4 {
		t.Fatalf("retain while the log is open: exit %d %s", code, errOut)
	}

	code, out, errOut = runAudit(ctx, "retain", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "deleted 2 file(s); the chain goes on at seq 3") || rotatedCount(t, path) != 2 {
		t.Fatalf("retain: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runAudit(ctx, "verify", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "chain starts at seq 3, anchored by record 5 (audit.anchor): 2 file(s) deleted by retention") {
		t.Fatalf("verify after retain: exit %d\n%s%s", code, out, errOut)
	}

	// An attacker removes the held file: verify of the series fails.
	files, _ := audit.RotatedFiles(path)
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runAudit(ctx, "verify", "-config", cfgPath)
	if code != 1 || !strings.Contains(out, "starts mid-chain") || !strings.Contains(out, "-series=false") {
		t.Fatalf("verify with the held file removed: exit %d\n%s", code, out)
	}
	if code, out, _ = runAudit(ctx, "verify", "-series=false", "-hmac-key-file", filepath.Join(dir, "audit.key"), files[1], path); code != 0 {
		t.Fatalf("verify of files named one by one: exit %d\n%s", code, out)
	}
}

func TestAuditRetainUsage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bad := writeConfig(t, insert("audit:", "  retention: -1h\n"))
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"retain"}, 2, "give -config FILE"},
		{[]string{"retain", "-config", bad, "extra"}, 2, "give -config FILE"},
		{[]string{"retain", "-config", bad}, 1, "audit.retention"},
	}
	for _, tt := range tests {
		code, out, errOut := runAudit(ctx, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.out) {
			t.Errorf("%v: exit %d %s%s; want %d and %q", tt.args, code, out, errOut, tt.code, tt.out)
		}
	}
}

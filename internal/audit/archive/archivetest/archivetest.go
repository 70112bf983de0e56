// Package archivetest reads exported .eml files with Python's standard
// email package, as an archiver would, for the tests of the export
// (internal/audit/archive, cmd/xmppedge, edge/e2e).
package archivetest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

//go:embed read_eml.py
var readEMLScript []byte

// Mailbox is an address header as Python reads it.
type Mailbox struct {
	Name string // the display name, decoded
	Addr string // the addr-spec
}

// Parsed is what Python's email package reads from one .eml.
type Parsed struct {
	File      string
	Headers   []string // the header names, in order
	From, To  *Mailbox
	Date      string // ISO 8601, e.g. 2026-03-15T10:20:30+00:00
	Subject   *string
	MessageID string `json:"message_id"`
	Thread    *string
	ID        *string
	XMPPFrom  string `json:"xmpp_from"`
	XMPPTo    string `json:"xmpp_to"`
	Decision  string
	Direction string
	Chain     string
	Body      string // line breaks as \n
	Charset   string
	Defects   []string // what the parser complained of
}

// ReadEML reads files with python3's email package (policy.default). It
// skips the test, saying so, when python3 is not installed.
func ReadEML(t testing.TB, files ...string) []Parsed {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not installed: the export is not checked with Python's email package")
	}
	script := filepath.Join(t.TempDir(), "read_eml.py")
	if err := os.WriteFile(script, readEMLScript, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{script}, files...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 read_eml.py: %v\n%s", err, stderr.String())
	}
	var got []Parsed
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(files) {
		t.Fatalf("python3 read_eml.py printed %d results for %d files (%v):\n%s", len(got), len(files), err, out)
	}
	return got
}

package archive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// Add sends each record where it belongs: an .eml for a message kept in
// full with a body, records.jsonl for everything else, counted by why.
func TestExportRoutes(t *testing.T) {
	msg := func(stanza string) *audit.Record {
		return &audit.Record{Event: audit.EventStanza, Kind: "message", From: "a@x.test", To: "b@y.test", Stanza: stanza}
	}
	for _, tc := range []struct {
		name   string
		rec    *audit.Record
		format string
		want   Counts
	}{
		{"message with a body", msg(`<message><body>hi</body></message>`), FormatEML, Counts{Read: 1, Matched: 1, Messages: 1}},
		{"the same as jsonl", msg(`<message><body>hi</body></message>`), FormatJSONL, Counts{Read: 1, Matched: 1, Lines: 1}},
		{"no body", msg(`<message><gone xmlns='urn:xmpp:chat-markers:0'/></message>`), FormatEML, Counts{Read: 1, Matched: 1, Lines: 1, NoBody: 1}},
		{"not XML", msg(`<message><body>`), FormatEML, Counts{Read: 1, Matched: 1, Lines: 1, Unparsed: 1}},
		{"kind says message, the stanza is not", msg(`<iq type='get'/>`), FormatEML, Counts{Read: 1, Matched: 1, Lines: 1, Unparsed: 1}},
		{"metadata only", &audit.Record{Event: audit.EventStanza, Kind: "message", To: "b@y.test", BodySHA256: "00"}, FormatEML, Counts{Read: 1, Matched: 1, Lines: 1}},
		{"presence kept in full", &audit.Record{Event: audit.EventStanza, Kind: "presence", To: "b@y.test", Stanza: `<presence/>`}, FormatEML, Counts{Read: 1, Matched: 1, Lines: 1}},
		{"a session", &audit.Record{Event: audit.EventSessionOpen, RemoteDomain: "y.test"}, FormatEML, Counts{Read: 1, Matched: 1, Lines: 1}},
		{"filtered out", &audit.Record{Event: audit.EventSessionOpen, RemoteDomain: "z.test"}, FormatEML, Counts{Read: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			e, err := Start(Options{Dir: dir, Format: tc.format, Filter: audit.Filter{Domain: "y.test"}, Verified: true})
			if err != nil {
				t.Fatal(err)
			}
			e.BeginChain([]string{"audit.jsonl"})
			tc.rec.Seq, tc.rec.Node, tc.rec.Hash = 7, "n1", strings.Repeat("a", 64)
			if err := e.Add(tc.rec, []byte(`{"seq":7}`)); err != nil {
				t.Fatal(err)
			}
			e.EndChain(audit.VerifyResult{OK: true, Records: 1, FirstSeq: 7, LastSeq: 7})
			m, err := e.Finish()
			if err != nil {
				t.Fatal(err)
			}
			if m.Counts != tc.want {
				t.Fatalf("counts %+v, want %+v", m.Counts, tc.want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(m.Files)+1 {
				t.Fatalf("%d files for %d in the manifest", len(entries), len(m.Files))
			}
			if tc.want.Messages == 1 && m.Files[0].Name != "n1-00000000000000000007.eml" {
				t.Fatalf("the message file is %s", m.Files[0].Name)
			}
		})
	}
}

// Abort leaves nothing behind; a folder with files is refused; Finish
// renames the staging folder onto an empty one.
func TestExportFolder(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	e, err := Start(Options{Dir: dir, Format: FormatJSONL})
	if err != nil {
		t.Fatal(err)
	}
	e.BeginChain([]string{"x"})
	if err := e.Add(&audit.Record{Seq: 1}, []byte(`{"seq":1}`)); err != nil {
		t.Fatal(err)
	}
	e.Abort()
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Fatalf("Abort left %v", entries)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	e, err = Start(Options{Dir: dir, Format: FormatJSONL})
	if err != nil {
		t.Fatalf("an empty folder: %v", err)
	}
	if _, err := e.Finish(); err != nil {
		t.Fatalf("Finish onto an empty folder: %v", err)
	}
	if _, err := Start(Options{Dir: dir, Format: FormatJSONL}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a folder holding an export: %v", err)
	}
	if _, err := Start(Options{Dir: filepath.Join(parent, "x"), Format: "mbox"}); err == nil {
		t.Fatal("format mbox accepted")
	}
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/archive"
	"github.com/xmppedge/xmppedge/internal/audit/archive/archivetest"
)

// archiveLog writes an audit log with message stanzas kept in full, one
// kept as metadata, one without a body, and a session, and returns the
// records as written (seq, time, hash set) and the log's lines.
func archiveLog(t *testing.T, path string, key []byte) ([]audit.Record, []string) {
	t.Helper()
	full := func(dir, from, to, decision, stanza string) *audit.Record {
		local, remote := "company.test", "partner.test"
		if strings.Contains(from+to, "other.test") {
			remote = "other.test"
		}
		return &audit.Record{Event: audit.EventStanza, Direction: dir, LocalDomain: local, RemoteDomain: remote,
			From: from, To: to, Kind: "message", Type: "chat", Decision: decision, Stanza: stanza}
	}
	recs := []*audit.Record{
		{Event: audit.EventSessionAuth, Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test", Decision: audit.DecisionAllow},
		full("outbound", "alice@company.test/desk", "bob@partner.test", audit.DecisionAllow,
			`<message from='alice@company.test/desk' to='bob@partner.test' type='chat' id='m1'><thread>t1</thread><body>Hello Bob</body></message>`),
		full("inbound", "bob@partner.test/phone", "alice@company.test", audit.DecisionAllow,
			`<message xmlns='jabber:server' from='bob@partner.test/phone' to='alice@company.test' type='chat' id='m2'><subject>Re: Q3</subject><body>Hi Alice,
numbers attached &amp; more</body></message>`),
		full("outbound", "alice@company.test/desk", "bob@partner.test", audit.DecisionDeny,
			`<message to='bob@partner.test' type='chat' id='m3&#13;&#10;Bcc: x@attacker.test'><body>CONFIDENTIAL plan</body></message>`),
		{Event: audit.EventStanza, Direction: "outbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "alice@company.test/desk", To: "bob@partner.test", Kind: "message", Decision: audit.DecisionAllow, BodySHA256: strings.Repeat("0", 64)},
		full("outbound", "alice@company.test/desk", "bob@partner.test", audit.DecisionAllow,
			`<message to='bob@partner.test' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`),
		full("outbound", "alice@company.test/desk", "dave@other.test", audit.DecisionAllow,
			`<message to='dave@other.test'><body>elsewhere</body></message>`),
	}
	l, err := audit.Open(audit.Config{Path: path, HMACKey: key, Node: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, r := range recs {
		if last, err = l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.WaitDurable(context.Background(), last); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var written []audit.Record
	var lines []string
	err = audit.ReadRecords([]string{path}, func(r *audit.Record, line []byte) error {
		written = append(written, *r)
		lines = append(lines, string(line))
		return nil
	})
	if err != nil || len(written) != len(recs) {
		t.Fatalf("read back %d records: %v", len(written), err)
	}
	return written, lines
}

// readManifest reads DIR/manifest.json and checks every file's SHA-256
// and size, and that the folder holds nothing else.
func readManifest(t *testing.T, dir string) archive.Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, archive.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var m archive.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != len(m.Files)+1 {
		t.Fatalf("the folder holds %d entries, the manifest names %d files (+ itself): %v", len(entries), len(m.Files), err)
	}
	for _, f := range m.Files {
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(data)) != f.Bytes {
			t.Fatalf("%s: sha256 %x (%d bytes), manifest %s (%d)", f.Name, sum, len(data), f.SHA256, f.Bytes)
		}
	}
	return m
}

// An export for an archiver, read back by Python's email package: sender,
// recipient, time and body of each message kept in full, the other
// matching records as the log's own lines, a manifest tying every file to
// the verified chain.
func TestAuditExportEML(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.jsonl")
	recs, lines := archiveLog(t, log, nil)
	out := filepath.Join(dir, "export")

	code, stdout, stderr := runAudit(ctx, "export", "-format", "eml", "-domain", "partner.test", "-o", out, log)
	if code != 0 || !strings.Contains(stdout, "exported 3 message(s) and 3 record line(s)") || !strings.Contains(stdout, "intact") {
		t.Fatalf("export: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Logf("export:\n%s", stdout)
	m := readManifest(t, out)
	want := []audit.Record{recs[1], recs[2], recs[3]} // allowed both ways, and the denied attempt
	if len(m.Files) != 4 || m.Counts != (archive.Counts{Read: 7, Matched: 6, Messages: 3, Lines: 3, NoBody: 1}) || !m.Verified ||
		len(m.Chains) != 1 || !m.Chains[0].Intact || m.Chains[0].LastHash != recs[6].Hash || m.Filter.Domain != "partner.test" {
		t.Fatalf("manifest: %+v", m)
	}
	var emls []string
	for i, r := range want {
		f := m.Files[i]
		if f.Record == nil || f.Record.Seq != r.Seq || f.Record.Hash != r.Hash || f.Name != fmt.Sprintf("edge-1-%020d.eml", r.Seq) {
			t.Fatalf("manifest file %d: %+v, want the record seq %d hash %s", i, f, r.Seq, r.Hash)
		}
		emls = append(emls, filepath.Join(out, f.Name))
	}
	jl := m.Files[3]
	if jl.Name != archive.RecordsName || jl.Records != 3 || jl.First.Seq != 1 || jl.Last.Seq != 6 {
		t.Fatalf("records.jsonl in the manifest: %+v", jl)
	}
	got, err := os.ReadFile(filepath.Join(out, archive.RecordsName))
	if wantLines := lines[0] + "\n" + lines[4] + "\n" + lines[5] + "\n"; err != nil || string(got) != wantLines {
		t.Fatalf("records.jsonl:\n%s\nwant the log's lines of seq 1, 5, 6:\n%s", got, wantLines)
	}
	bodies := []string{"Hello Bob\n", "Hi Alice,\nnumbers attached & more\n", "CONFIDENTIAL plan\n"}
	for i, p := range archivetest.ReadEML(t, emls...) {
		r := want[i]
		bare := func(j string) string { b, _, _ := strings.Cut(j, "/"); return b }
		if p.From == nil || p.To == nil || p.From.Addr != bare(r.From) || p.XMPPFrom != r.From || p.To.Addr != bare(r.To) || p.XMPPTo != r.To {
			t.Errorf("%s: from %+v (%s) to %+v (%s), want %s to %s", p.File, p.From, p.XMPPFrom, p.To, p.XMPPTo, r.From, r.To)
		}
		if d, err := time.Parse(time.RFC3339, p.Date); err != nil || !d.Equal(r.Time.Truncate(time.Second)) {
			t.Errorf("%s: date %s, want %s", p.File, p.Date, r.Time)
		}
		if p.Body != bodies[i] || p.Decision != r.Decision || p.Direction != r.Direction || len(p.Defects) > 0 {
			t.Errorf("%s: body %q decision %s direction %s defects %v; want %q %s %s", p.File, p.Body, p.Decision, p.Direction, p.Defects, bodies[i], r.Decision, r.Direction)
		}
		if p.Chain != fmt.Sprintf("edge-1 %d %s", r.Seq, r.Hash) {
			t.Errorf("%s: X-Xmppedge-Chain %q", p.File, p.Chain)
		}
	}
	if p := archivetest.ReadEML(t, emls[2])[0]; p.ID == nil || *p.ID != "m3\r\nBcc: x@attacker.test" || strings.Contains(strings.Join(p.Headers, ","), "Bcc") {
		t.Fatalf("the hostile id: %v, headers %v", p.ID, p.Headers)
	}
}

// -format jsonl: the matching records as the log's lines; the whole chain
// exported verifies again as a log. Time bounds select by record time.
func TestAuditExportJSONL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.jsonl")
	recs, lines := archiveLog(t, log, nil)
	since := recs[2].Time.Format(time.RFC3339Nano)
	until := recs[4].Time.Format(time.RFC3339Nano)
	var between []string // since <= time < until (records may share a time)
	for i, r := range recs {
		if !r.Time.Before(recs[2].Time) && r.Time.Before(recs[4].Time) {
			between = append(between, lines[i])
		}
	}
	for _, tc := range []struct {
		name  string
		args  []string
		lines []string
	}{
		{"all", nil, lines},
		{"since and until", []string{"-since", since, "-until", until}, between},
		{"jid", []string{"-jid", "dave@other.test"}, lines[6:]},
		{"nothing", []string{"-domain", "nowhere.test"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "export")
			args := append(append([]string{"export", "-format", "jsonl", "-o", out}, tc.args...), log)
			code, stdout, stderr := runAudit(ctx, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
			}
			m := readManifest(t, out)
			if m.Counts.Matched != uint64(len(tc.lines)) || m.Counts.Lines != uint64(len(tc.lines)) || m.Counts.Messages != 0 {
				t.Fatalf("counts %+v, want %d lines", m.Counts, len(tc.lines))
			}
			if len(tc.lines) == 0 {
				if len(m.Files) != 0 || m.Chains[0].ExportedFirst != nil {
					t.Fatalf("nothing matched, yet: %+v", m)
				}
				return
			}
			got, err := os.ReadFile(filepath.Join(out, archive.RecordsName))
			if err != nil || string(got) != strings.Join(tc.lines, "\n")+"\n" {
				t.Fatalf("records.jsonl:\n%s\nwant:\n%s", got, strings.Join(tc.lines, "\n"))
			}
			if c := m.Chains[0]; c.ExportedFirst.Hash != lineHash(t, tc.lines[0]) || c.ExportedLast.Hash != lineHash(t, tc.lines[len(tc.lines)-1]) {
				t.Fatalf("exported first/last %+v %+v", c.ExportedFirst, c.ExportedLast)
			}
			if tc.args == nil {
				if res, err := audit.Verify([]string{filepath.Join(out, archive.RecordsName)}, nil); err != nil || !res.OK || res.Records != 7 {
					t.Fatalf("the exported chain does not verify: %+v %v", res, err)
				}
			}
		})
	}
}

func lineHash(t *testing.T, line string) string {
	t.Helper()
	var r audit.Record
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	return r.Hash
}

// A broken chain exports nothing (and leaves nothing behind) unless
// -no-verify, whose manifest says where the chain broke; an export never
// goes into a folder that holds files; a keyed log needs its key.
func TestAuditExportRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	key := []byte(strings.Repeat("k", 32))
	writeFiles(t, dir, map[string]file{"audit.key": {content: key}})
	log := filepath.Join(dir, "audit.jsonl")
	_, lines := archiveLog(t, log, key)
	cfgPath := writeConfigIn(t, dir, insert("audit:", "  hmac_key_file: audit.key\n"))

	tampered := filepath.Join(dir, "tampered.jsonl")
	lines[2] = strings.Replace(lines[2], "Hi Alice", "Hi Mallory", 1)
	if err := os.WriteFile(tampered, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFlag := []string{"-hmac-key-file", filepath.Join(dir, "audit.key")}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "old.eml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"tampered", append(keyFlag, tampered), 1, "chain broken at tampered.jsonl line 3 (seq 3): hash mismatch"},
		{"keyed log without its key", []string{log}, 1, "no key was given"},
		{"folder not empty", append(keyFlag, "-o", full, log), 1, "is not empty"},
		{"unknown format", []string{"-format", "xml", log}, 2, "use eml or jsonl"},
		{"bad time", []string{"-since", "yesterday", log}, 2, "is not a time"},
		{"no input", nil, 2, "-config FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "export")
			args := append([]string{"export", "-format", "eml", "-o", out}, tc.args...)
			code, stdout, stderr := runAudit(ctx, args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d with %q\n%s%s", code, tc.code, tc.stderr, stdout, stderr)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 0 {
				t.Fatalf("a refused export left %v behind", entries)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(full, archive.ManifestName)); err == nil {
		t.Fatal("an export went into a folder that held a file")
	}

	out := filepath.Join(t.TempDir(), "export")
	code, stdout, stderr := runAudit(ctx, append([]string{"export", "-format", "eml", "-no-verify", "-o", out}, append(keyFlag, tampered)...)...)
	if code != 0 || !strings.Contains(stderr, "exporting anyway") || !strings.Contains(stdout, "BROKEN") {
		t.Fatalf("-no-verify: exit %d\n%s%s", code, stdout, stderr)
	}
	m := readManifest(t, out)
	if m.Verified || m.Chains[0].Intact || !strings.Contains(m.Chains[0].Break, "line 3 (seq 3)") || m.Counts.Messages != 4 {
		t.Fatalf("-no-verify manifest: %+v", m)
	}

	// The configured log and key.
	out = filepath.Join(t.TempDir(), "export")
	if code, stdout, stderr := runAudit(ctx, "export", "-format", "eml", "-config", cfgPath, "-o", out); code != 0 || !strings.Contains(stdout, "exported 4 message(s)") {
		t.Fatalf("-config: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runAudit(ctx, "export", "-domain", "partner.test", "-config", cfgPath, "-o", t.TempDir()); code != 2 || !strings.Contains(stderr, "need -format") {
		t.Fatalf("a filter without -format: exit %d %s", code, stderr)
	}
}

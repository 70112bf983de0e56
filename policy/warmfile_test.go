package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSamplesSurviveARestart: an engine decides traffic and saves its
// samples; an engine started on the same file (a restart) decides the
// first new pair of JIDs of every known class from its cache, and every
// decision as a full evaluation does. The file keeps no message text.
func TestSamplesSurviveARestart(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "samples.json")
	writeFiles(t, dir, map[string]string{"data.yaml": narrowData})
	engine := func(cfg Config) *Engine { // every engine on the same files: one revision
		cfg.Rules, cfg.Data = "../rules", []string{filepath.Join(dir, "data.yaml")}
		e, err := New(ctx, withTestTimeout(cfg))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.waitBackground)
		return e
	}
	stanzas, sessions := narrowInputs(400)
	known := []StanzaInput{
		{Direction: "inbound", Kind: "presence", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a")},
		{Direction: "inbound", Kind: "message", Type: "chat", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a"),
			Body: "the launch code is 0000", Subject: "codes", Children: []Child{{"body", "jabber:client"}, {"subject", "jabber:client"}}},
		{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("bob@partner.test/b"),
			Body: "see you at noon", Children: []Child{{"body", "jabber:client"}}},
	}

	first := engine(Config{SampleFile: file})
	first.syncPrograms = true
	for _, in := range append(append([]StanzaInput{}, known...), stanzas...) {
		first.DecideStanza(ctx, &in)
	}
	for i := range sessions {
		first.DecideSession(ctx, &sessions[i])
	}
	if err := first.SaveSamples(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"launch code", "codes", "see you at noon"} {
		if bytes.Contains(raw, []byte(text)) {
			t.Fatalf("the samples file holds the text %q", text)
		}
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("samples file mode: %v %v", info.Mode(), err)
	}
	var doc sampleFile
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Version != sampleFileVersion || doc.Revision != first.Revision() {
		t.Fatalf("samples file: %v %+v", err, doc)
	}
	if len(doc.Sessions) == 0 || len(doc.Stanzas) < len(known) {
		t.Fatalf("samples file: %d sessions, %d stanzas", len(doc.Sessions), len(doc.Stanzas))
	}

	restarted := engine(Config{SampleFile: file})
	cold := engine(Config{})
	ref := engine(Config{CacheSize: -1})
	if s := restarted.Stats(); s.WarmedClasses != uint64(len(doc.Sessions)+len(doc.Stanzas)) || s.Decisions != 0 || s.Failures != 0 {
		t.Fatalf("after the restart: %+v, want %d warmed classes and nothing counted", s, len(doc.Sessions)+len(doc.Stanzas))
	}
	if s := cold.Stats(); s.WarmedClasses != 0 {
		t.Fatalf("warmed without a samples file: %+v", s)
	}
	for i, in := range known {
		in.From, in.To = jid(fmt.Sprintf("carol%d@partner.test/c", i)), jid("bob@company.test/e")
		if in.Direction == "outbound" {
			in.From, in.To = in.To, in.From
		}
		got, want := restarted.DecideStanza(ctx, &in), ref.DecideStanza(ctx, &in)
		if !sameDecision(got, want) {
			t.Fatalf("new pair %+v:\nrestarted %+v\nfull %+v", in, got, want)
		}
		if !got.Cached {
			t.Errorf("the first new pair of the known class %d was evaluated after the restart", i)
		}
		if c := cold.DecideStanza(ctx, &in); c.Cached {
			t.Errorf("a cold engine answered the new pair %d from its cache", i)
		}
	}
	for i := range stanzas {
		if got, want := restarted.DecideStanza(ctx, &stanzas[i]), ref.DecideStanza(ctx, &stanzas[i]); !sameDecision(got, want) {
			t.Fatalf("stanza %d %+v:\nrestarted %+v\nfull %+v", i, stanzas[i], got, want)
		}
	}
	for i := range sessions {
		got, want := restarted.DecideSession(ctx, &sessions[i]), ref.DecideSession(ctx, &sessions[i])
		got.Cached = false
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("session %d %+v:\nrestarted %+v\nfull %+v", i, sessions[i], got, want)
		}
	}
	if s := restarted.Stats(); s.Failures != 0 {
		t.Fatalf("%d failures", s.Failures)
	}
}

// TestSampleFileDamaged: a samples file that is missing, damaged, of
// another version or too big leaves the engine cold, with a log line
// naming the file; one that carries text (no file xmppedge wrote does)
// is read without it; one with more samples than a load keeps is cut to
// the newest.
func TestSampleFileDamaged(t *testing.T) {
	hostile := sampleFile{Version: sampleFileVersion}
	for i := range maxWarmSamples + 40 {
		hostile.Stanzas = append(hostile.Stanzas, StanzaInput{Direction: "inbound", Kind: "message", Type: "chat",
			ID: fmt.Sprintf("x%d", i), Body: "SECRET plans", Thread: "t",
			From: jid("bob@partner.test/b"), To: jid("alice@company.test/a"), Children: []Child{{fmt.Sprintf("c%d", i), "urn:x"}}})
	}
	hostileJSON, err := json.Marshal(&hostile)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte // nil: no file
		log     string // a line the log must have
		warmed  bool
	}{
		{"missing", nil, "no samples yet", false},
		{"not JSON", []byte("PK\x03\x04 not a samples file"), "starting cold", false},
		{"another version", []byte(`{"version": 2, "stanzas": [{"kind": "message"}]}`), "starting cold", false},
		{"too big", append([]byte(`{"version": 1, "sessions": [], "x": "`), bytes.Repeat([]byte("a"), maxSampleFileSize)...), "starting cold", false},
		{"text and too many samples", hostileJSON, "warmed up from the last run's samples", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "samples.json")
			if tt.content != nil {
				if err := os.WriteFile(file, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var logs bytes.Buffer
			e := shippedEngine(t, narrowData, Config{SampleFile: file, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if !strings.Contains(logs.String(), tt.log) || (tt.content != nil && !strings.Contains(logs.String(), file)) {
				t.Fatalf("log lacks %q and the file's name:\n%s", tt.log, logs.String())
			}
			s := e.Stats()
			if (s.WarmedClasses != 0) != tt.warmed || s.Decisions != 0 || s.Failures != 0 {
				t.Fatalf("stats %+v, want warmed %v", s, tt.warmed)
			}
			if tt.warmed {
				_, read, err := readSampleFile(file)
				if err != nil || len(read) != maxWarmSamples {
					t.Fatalf("read %d samples (%v), want the newest %d", len(read), err, maxWarmSamples)
				}
				for _, in := range read {
					if in.Body != warmText || in.Thread != warmText {
						t.Fatalf("a sample read from the file kept its text: %+v", in)
					}
				}
			}
			_, kept := e.current.Load().warm.snapshot()
			if tt.warmed && (len(kept) == 0 || len(kept) > maxInherited) {
				t.Fatalf("the load keeps %d samples, want 1..%d", len(kept), maxInherited)
			}
			for _, in := range kept {
				if in.Body != warmText || in.Thread != warmText {
					t.Fatalf("a sample the load kept has text: %+v", in)
				}
			}
			// The newest (the file's last) are the ones kept.
			if tt.warmed && kept[len(kept)-1].ID != hostile.Stanzas[len(hostile.Stanzas)-1].ID {
				t.Fatalf("the newest sample is %q, want %q", kept[len(kept)-1].ID, hostile.Stanzas[len(hostile.Stanzas)-1].ID)
			}
		})
	}
}

// TestSaveSamplesErrors: without a file nothing is written; a file in a
// folder that does not exist is an error that says what to fix.
func TestSaveSamplesErrors(t *testing.T) {
	if err := shippedEngine(t, narrowData, Config{}).SaveSamples(); err != nil {
		t.Fatalf("no SampleFile: %v", err)
	}
	e := shippedEngine(t, narrowData, Config{SampleFile: filepath.Join(t.TempDir(), "missing", "samples.json")})
	err := e.SaveSamples()
	if err == nil || !strings.Contains(err.Error(), "policy.warm_samples") {
		t.Fatalf("err = %v, want one naming policy.warm_samples", err)
	}
}

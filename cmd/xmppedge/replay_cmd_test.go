package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// replayLog writes a keyed audit log of partner.test's inbound session
// and one stanza, both allowed, and returns its path and key file.
func replayLog(t *testing.T, dir string) (path, keyFile string) {
	t.Helper()
	key := bytes.Repeat([]byte("k"), 32)
	keyFile = filepath.Join(dir, "audit.key")
	writeFiles(t, dir, map[string]file{"audit.key": {content: key}})
	path = filepath.Join(dir, "audit.jsonl")
	l, err := audit.Open(audit.Config{Path: path, HMACKey: key, Node: "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*audit.Record{
		{Event: audit.EventSessionAuth, Session: "s1", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			RemoteAddr: "192.0.2.7:5269", TLSVersion: "TLS 1.3", Auth: "sasl_external", PeerCert: "valid", Decision: audit.DecisionAllow, PolicyRevision: "r1"},
		{Event: audit.EventStanza, Session: "s1", Leg: "outside", Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "partner.test",
			From: "alice@partner.test/phone", To: "bob@company.test", Kind: "message", Type: "chat", Decision: audit.DecisionAllow, PolicyRevision: "r1"},
	} {
		if _, err := l.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path, keyFile
}

func TestPolicyReplayCommand(t *testing.T) {
	dir := t.TempDir()
	path, keyFile := replayLog(t, dir)
	writeFiles(t, dir, map[string]file{
		"with.yaml":    {content: []byte("partners: [{domain: partner.test, direction: both}]\n")},
		"without.yaml": {content: []byte("partners: [{domain: other.test, direction: both}]\n")},
	})
	rules := rulesDir(t)
	with, without := filepath.Join(dir, "with.yaml"), filepath.Join(dir, "without.yaml")
	candidate := func(data string, more ...string) []string {
		return append([]string{"replay", "-rules", rules, "-data", data, "-hmac-key-file", keyFile}, more...)
	}
	tests := []struct {
		name        string
		args        []string
		code        int
		out, errOut string // substrings
	}{
		{"no files", []string{"replay", "-rules", rules}, 2, "", "name the audit file(s)"},
		{"unknown flag", []string{"replay", "-nope", path}, 2, "", "flag provided but not defined"},
		{"bad format", candidate(with, "-format", "xml", path), 2, "", `-format "xml"`},
		{"missing file", candidate(with, filepath.Join(dir, "none.jsonl")), 2, "", "none.jsonl"},
		{"keyed log without its key", []string{"replay", "-rules", rules, "-data", with, path}, 2, "", "-hmac-key-file"},
		{"rules that do not load", []string{"replay", "-rules", filepath.Join(dir, "nothing"), "-data", with, "-hmac-key-file", keyFile, path}, 2, "", "candidate policy"},
		{"same policy", candidate(with, path), 0, "0 decisions would change", ""},
		{"partner removed", candidate(without, path), 1, "newly denied, partner.test inbound:", ""},
		{"unverified, with a warning", []string{"replay", "-rules", rules, "-data", without, "-verify=false", path}, 1,
			"2 decisions would change", "replaying it anyway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := policyCommand(tc.args, &out, &errOut)
			if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.errOut) {
				t.Fatalf("exit %d, want %d (stdout should hold %q, stderr %q)\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.out, tc.errOut, out.String(), errOut.String())
			}
		})
	}
}

// -format json: the report for machines, with the counts and examples.
func TestPolicyReplayJSON(t *testing.T) {
	dir := t.TempDir()
	path, keyFile := replayLog(t, dir)
	writeFiles(t, dir, map[string]file{"without.yaml": {content: []byte("partners: []\n")}})
	var out, errOut bytes.Buffer
	code := policyCommand([]string{"replay", "-rules", rulesDir(t), "-data", filepath.Join(dir, "without.yaml"),
		"-hmac-key-file", keyFile, "-format", "json", "-examples", "1", path}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out.String(), errOut.String())
	}
	var rep struct {
		Sessions, Stanzas int
		Groups            []struct {
			Partner, Direction string
			NewlyDenied        int `json:"newly_denied"`
			Examples           map[string][]struct {
				Seq      uint64
				Old, New string
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if rep.Sessions != 1 || rep.Stanzas != 1 || len(rep.Groups) != 1 {
		t.Fatalf("report %+v, want 1 session, 1 stanza, one group", rep)
	}
	g := rep.Groups[0]
	exs := g.Examples["newly_denied"]
	if g.Partner != "partner.test" || g.Direction != "inbound" || g.NewlyDenied != 2 || len(exs) != 1 || exs[0].Seq != 1 || exs[0].Old != "allow" || exs[0].New != "deny" {
		t.Fatalf("group %+v, want partner.test inbound, 2 newly denied, one example (seq 1, allow → deny)", g)
	}
}

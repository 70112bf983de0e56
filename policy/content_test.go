package policy

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Content programs (content.go) must decide exactly as the full
// evaluation: each test here runs stanzas through an engine with the fast
// path and through a cache-disabled engine (every decision evaluated by
// OPA) loaded from the same files, and compares every field.

const diffDataBig = `
partners:
  - {domain: partner.test, direction: both}
  - {domain: "*.example.org", direction: both}
  - {domain: news.test, direction: inbound}
  - {domain: out.test, direction: outbound}
  - {domain: secure.test, direction: both, require_cert: true}
  - {domain: bücher.example}
  - {domain: conference.partner.test, strip_presence_status: true}
  - {domain: "*.example.org", allow_e2ee: true, allow_files: [oob, socks5], upload_hosts: ["*.example.org"]}
upload_hosts: [upload.company.test]
strip_presence: [{name: x, namespace: "vcard-temp:x:update"}]
rate: {per_second: 100, burst: 200}
confidential:
  keywords: [CONFIDENTIAL, "INTERNAL ONLY", "secret-word-07", "geheim", "Größe", "ünter"]
  patterns: ['\b(?:\d[ -]?){13,16}\b', 'project-\d\s+[a-z]+\d{3}', '(?i)codename\s+\w+', '^START', 'END$']
  markings: [CONFIDENTIAL, SECRET, "Eyes Only"]
muc:
  services: [conference.partner.test]
  allowed_rooms: [lobby@conference.partner.test]
blocked_users: [mallory@company.test]
audit_full: [news.test]
`

// diffPolicies are policies written against the stanza input in ways the
// content programs compile (or deliberately do not).
var diffPolicies = map[string]string{
	"atoms": `package xmppedge.stanza

default decision := {"allow": true, "audit": "meta"}

decision := {"allow": false, "reason": concat(", ", sort(deny))} if count(deny) > 0

deny contains "tagged subject" if startswith(input.subject, "[secret]")

deny contains "thread t1" if {
	input.direction == "outbound"
	input.thread == "t1"
}

deny contains "digits only" if regex.match(` + "`^\\d+$`" + `, input.body)

deny contains "x and not y" if {
	input.kind == "message"
	contains(input.body, "x")
	not xmppedge.contains_any(input.body, ["yy", "zz"])
}

deny contains "ends with !" if endswith(input.body, "!")

deny contains "exact" if input.body == "exact"

deny contains "not hello" if {
	input.type == "chat"
	input.body != "hello"
	input.body != ""
}

deny contains sprintf("keywords for %s", [input.to.domain]) if {
	input.direction == "outbound"
	some set in [["alpha", "beta"], ["gamma"], ["CONFIDENTIAL"]]
	xmppedge.contains_any(input.body, set)
}

deny contains "label" if input.security_label.marking == "Secret"

deny contains "oob" if {
	some c in input.children
	c.namespace == "jabber:x:oob"
	xmppedge.matches_any(input.body, ["https?://"])
}
`,
	// Payload facts (known in the program key) next to text tests.
	"payload facts": `package xmppedge.stanza

default decision := {"allow": true}

decision := {"allow": false, "reason": concat(", ", sort(deny))} if count(deny) > 0

decision := {"allow": true, "strip": [{"name": "x", "namespace": "jabber:x:oob"}]} if {
	count(deny) == 0
	some f in input.file_transfer
	f.method == "oob"
}

deny contains sprintf("encrypted (%s)", [input.encryption]) if {
	input.encryption != ""
	not input.body_is_fallback
}

deny contains "keyword beside a fallback" if {
	input.body_is_fallback
	xmppedge.contains_any(input.body, ["CONFIDENTIAL"])
}

deny contains sprintf("link to %s", [f.host]) if {
	some f in input.file_transfer
	f.method == "oob"
	not endswith(f.host, ".company.test")
	startswith(input.body, "https://")
}

deny contains "bytestream" if {
	some f in input.file_transfer
	f.method in {"ibb", "socks5"}
}
`,
	// Content read in ways not compiled: every message is evaluated in full.
	"fallback": `package xmppedge.stanza

default decision := {"allow": true}

decision := {"allow": false, "reason": sprintf("too long: %d", [count(input.body)])} if count(input.body) > 20

decision := {"allow": false, "reason": sprintf("shouting: %s", [input.subject])} if {
	count(input.body) <= 20
	upper(input.subject) == input.subject
	input.subject != ""
}
`,
	// Conflicting values for some contents: failures, never memoised.
	"conflict": `package xmppedge.stanza

default decision := {"allow": true, "reason": "default"}

decision := {"allow": true, "reason": "a"} if xmppedge.contains_any(input.body, ["a"])

decision := {"allow": false, "reason": "b"} if xmppedge.contains_any(input.body, ["b"])
`,
	// An invalid pattern: the built-in fails, the decision fails closed.
	"bad pattern": `package xmppedge.stanza

default decision := {"allow": true}

decision := {"allow": false} if {
	input.direction == "outbound"
	xmppedge.matches_any(input.body, ["("])
}
`,
	// A function that reads the content in its body, called with ground
	// arguments: the residual must not hide that read.
	"hidden read": `package xmppedge.stanza

f(x) := x if xmppedge.contains_any(input.body, ["CONFIDENTIAL"])

default decision := {"allow": true}

decision := {"allow": false, "reason": "hidden"} if f(1) == 1
`,
	"hidden else": `package xmppedge.stanza

g(_) := "a" if xmppedge.contains_any(input.body, ["CONFIDENTIAL"])

else := "b"

decision := {"allow": g(1) == "b"}
`,
	// else chains and functions over content (not compiled: the value
	// of the function, built from the content, is the reason).
	"else": `package xmppedge.stanza

verdict(text) := "keyword" if xmppedge.contains_any(text, ["CONFIDENTIAL"])

else := "pattern" if xmppedge.matches_any(text, ["\\d{4}"])

else := "clean"

decision := {"allow": v == "clean", "reason": v} if v := verdict(input.body)
`,
}

// diffStanzas returns n stanzas mixing directions, kinds, types, users,
// domains, bodies, subjects, threads, labels and children.
func diffStanzas(n int) []StanzaInput {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	locals := []string{"alice@company.test/phone", "bob@company.test/pc", "carol@company.test/x", "mallory@company.test/m", "company.test"}
	remotes := []string{"pete@partner.test/home", "x@evil.test", "secret@conference.partner.test/nick", "lobby@conference.partner.test/alice",
		"a@chat.example.org", "ed@news.test", "o@out.test/r", "s@secure.test", "u@xn--bcher-kva.example", "room@muc.partner.test", "partner.test"}
	texts := []string{"", "", "hello", "hello there", "this is CONFIDENTIAL", "Internal Only: plans", "card 4111 1111 1111 1111",
		"card 4111-1111-1111-1111 ok", "room 1234", "die GRÖßE zählt", "ÜNTER uns", "streng GEHEIM", "secret-word-07", "Secret-Word-07!",
		"project-3  abc123", "project-3 abc12", "codename Falcon", "CODENAME falcon", "START here", "the END", "12345", "exact", "x marks",
		"x and yy", "alpha", "Gamma ray", "beta!", "[secret] plans", "see https://example.org", "ab", "a", "b", "9999",
		strings.Repeat("An ordinary chat message about lunch plans. ", 9), "tab\tx", "\xff\xfe invalid utf8 4111111111111111"}
	labels := []*SecurityLabel{nil, nil, {Marking: "Secret", FgColor: "red"}, {Marking: "UNCLASSIFIED"}, {Marking: "confidential"}, {Marking: "eyes only"}}
	children := [][]Child{nil, {{"body", "jabber:client"}}, {{"body", "jabber:client"}, {"x", "jabber:x:oob"}}}
	kinds := []string{"message", "message", "message", "presence", "iq"}
	encryptions := []string{"", "", "", EncryptionOMEMO, EncryptionOMEMO2, EncryptionOpenPGP, EncryptionOTR, "xep0380:urn:example:crypt"}
	transfers := [][]FileTransfer{nil, nil, nil, {{TransferOOB, "upload.company.test"}}, {{TransferOOB, "files.example.net"}},
		{{TransferOOB, "cdn.example.org"}}, {{TransferOOB, ""}}, {{TransferJingle, ""}}, {{TransferJingle, ""}, {TransferSOCKS5, ""}},
		{{TransferIBB, ""}}, {{TransferOOB, "upload.company.test"}, {TransferIBB, ""}}}
	types := []string{"chat", "groupchat", "normal", "", "get", "error"}
	// Headers are drawn from a pool smaller than n, so that most stanzas
	// share their program key with others of different content: a memo
	// filled by one stanza answers others.
	headers := make([]StanzaInput, max(n/20, 1))
	for i := range headers {
		local, remote := jid(pick(locals)), jid(pick(remotes))
		in := StanzaInput{Kind: pick(kinds), Type: pick(types), SecurityLabel: labels[r.IntN(len(labels))], Children: children[r.IntN(len(children))]}
		if r.IntN(2) == 0 {
			in.Direction, in.From, in.To = "outbound", local, remote
		} else {
			in.Direction, in.From, in.To = "inbound", remote, local
		}
		if r.IntN(4) == 0 {
			in.Session = &SessionInput{Direction: in.Direction, LocalDomain: "company.test", RemoteDomain: remote.Domain, TLS: tls13, Auth: "dialback"}
		}
		in.Encryption = pick(encryptions)
		in.FileTransfer = transfers[r.IntN(len(transfers))]
		headers[i] = in
	}
	out := make([]StanzaInput, n)
	for i := range out {
		in := headers[r.IntN(len(headers))]
		in.ID = fmt.Sprint(i)
		in.Body = pick(texts)
		in.Thread = pick([]string{"", "", "t1", "t2"})
		if r.IntN(3) == 0 {
			in.Subject = pick(texts)
		}
		in.BodyIsFallback = (in.Encryption != "" || len(in.FileTransfer) > 0) && r.IntN(4) != 0
		out[i] = in
	}
	return out
}

// diffEngines loads the same rules and data twice: with content programs,
// and with the cache disabled (the reference: every decision in full).
func diffEngines(t *testing.T, rules string, data string, mode string) (fast, ref *Engine) {
	t.Helper()
	dir := t.TempDir()
	cfg := withTestTimeout(Config{Rules: rules, Mode: mode})
	if data != "" {
		writeFiles(t, dir, map[string]string{"data.yaml": data})
		cfg.Data = []string{filepath.Join(dir, "data.yaml")}
	}
	var err error
	if fast, err = New(testContext(t), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.CacheSize = -1
	if ref, err = New(testContext(t), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fast.waitBackground)
	t.Cleanup(ref.waitBackground)
	fast.syncPrograms = true // deterministic: a key's program exists from its first stanza
	if fast.Revision() != ref.Revision() {
		t.Fatalf("revisions differ: %s %s", fast.Revision(), ref.Revision())
	}
	return fast, ref
}

func sameDecision(a, b StanzaDecision) bool {
	a.Cached, b.Cached = false, false
	return reflect.DeepEqual(a, b)
}

// runDiff decides every stanza on the fast engine and on the reference,
// and compares; then all again (every program built by then).
func runDiff(t *testing.T, fast, ref *Engine, stanzas []StanzaInput) {
	t.Helper()
	ctx := testContext(t)
	want := make([]StanzaDecision, len(stanzas))
	for i := range stanzas {
		want[i] = ref.DecideStanza(ctx, &stanzas[i])
	}
	for round := range 2 {
		fast.current.Load().stanza.buildWG.Wait() // background builds (async mode)
		for i := range stanzas {
			in := &stanzas[i]
			if got := fast.DecideStanza(ctx, in); !sameDecision(got, want[i]) {
				t.Fatalf("stanza %d round %d %+v (label %+v, session %v):\nfast %+v\nfull %+v", i, round, *in, in.SecurityLabel, in.Session != nil, got, want[i])
			}
		}
	}
	fs, rs := fast.Stats(), ref.Stats()
	if fs.Failures != 2*rs.Failures {
		t.Errorf("failures: fast %d, reference %d (×2)", fs.Failures, rs.Failures)
	}
	t.Logf("%d stanzas ×2: %d cache/memo hits, %d programs built, %d failures (reference %d)",
		len(stanzas), fs.CacheHits, fs.ContentPrograms, fs.Failures, rs.Failures)
}

func TestContentProgramsMatchFullEvaluation(t *testing.T) {
	stanzas := diffStanzas(3000)
	for _, data := range []struct{ name, yaml string }{{"testData", testData}, {"bigData", diffDataBig}} {
		for _, mode := range []string{ModeEnforce, ModeDryRun} {
			t.Run("shipped/"+data.name+"/"+mode, func(t *testing.T) {
				fast, ref := diffEngines(t, "../rules", data.yaml, mode)
				runDiff(t, fast, ref, stanzas)
				if fast.Stats().CacheHits < uint64(len(stanzas)*3/2) {
					t.Errorf("only %d hits: the fast path is not used", fast.Stats().CacheHits)
				}
				// The shipped rules compile: no program falls back.
				for _, p := range programs(fast) {
					if p.fallback {
						t.Fatalf("shipped rules not compiled: %s", p.why)
					}
				}
			})
		}
	}
	// Programs built in the background, as in production: decisions
	// while a key has no program yet, or one being built, are the same.
	t.Run("shipped/async", func(t *testing.T) {
		fast, ref := diffEngines(t, "../rules", diffDataBig, ModeEnforce)
		fast.syncPrograms = false
		runDiff(t, fast, ref, stanzas)
		runDiff(t, fast, ref, stanzas)
		if fast.Stats().ContentPrograms == 0 || fast.Stats().CacheHits == 0 {
			t.Errorf("no program built in the background: %+v", fast.Stats())
		}
	})
	for name, pol := range diffPolicies {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"stanza.rego": pol})
			fast, ref := diffEngines(t, dir, "", ModeEnforce)
			runDiff(t, fast, ref, stanzas)
			compiled, fellBack := 0, 0
			for _, p := range programs(fast) {
				if p.fallback {
					fellBack++
				} else {
					compiled++
				}
			}
			switch name {
			case "fallback", "bad pattern", "else", "hidden else":
				if compiled != 0 && name == "fallback" {
					t.Errorf("%d programs compiled for a policy that reads count(input.body)", compiled)
				}
				if fellBack == 0 {
					t.Error("no program fell back")
				}
			default:
				if fellBack != 0 || compiled == 0 {
					t.Errorf("%d programs compiled, %d fell back", compiled, fellBack)
				}
			}
		})
	}
}

// programs lists the content programs of an engine's stanza decision.
func programs(e *Engine) []*contentProgram {
	c := e.current.Load().stanza.progs
	if c == nil {
		return nil
	}
	var out []*contentProgram
	for i := range c.shards {
		c.shards[i].mu.RLock()
		for _, m := range []map[string]*contentProgram{c.shards[i].cur, c.shards[i].old} {
			for _, p := range m {
				out = append(out, p)
			}
		}
		c.shards[i].mu.RUnlock()
	}
	return out
}

// TestShippedContentProgram: an outbound message to a partner compiles to
// the keyword and pattern tests of body and subject (and the subject's
// emptiness); an inbound message to nothing (its content does not matter).
func TestShippedContentProgram(t *testing.T) {
	e := shippedEngine(t, testData, Config{})
	e.syncPrograms = true
	ctx := testContext(t)
	out := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("pete@partner.test"), Body: "hello"}
	e.DecideStanza(ctx, &out)
	ps := programs(e)
	if len(ps) != 1 || ps[0].fallback {
		t.Fatalf("programs %+v", ps)
	}
	var srcs []string
	for _, a := range ps[0].shape.atoms {
		srcs = append(srcs, a.src)
	}
	all := strings.Join(srcs, "\n")
	for _, want := range []string{`xmppedge.contains_any(input.body, ["CONFIDENTIAL", "INTERNAL ONLY"])`, `xmppedge.matches_any(input.subject,`, `neq(input.subject, "")`} {
		if !strings.Contains(all, want) {
			t.Errorf("atoms %q lack %s", srcs, want)
		}
	}
	if len(srcs) != 5 {
		t.Errorf("%d atoms: %q", len(srcs), srcs)
	}
	if d := e.DecideStanza(ctx, &out); !d.Allow || !d.Cached {
		t.Fatalf("second clean message: %+v", d)
	}
	out.Body = "so CONFIDENTIAL"
	if d := e.DecideStanza(ctx, &out); d.Allow || d.Cached {
		t.Fatalf("first keyword message is evaluated in full: %+v", d)
	}
	out.Body = "also confidential, other words"
	if d := e.DecideStanza(ctx, &out); d.Allow || !d.Cached || d.Reason != "message contains a confidential keyword" {
		t.Fatalf("second keyword message from the memo: %+v", d)
	}
	in := StanzaInput{Direction: "inbound", Kind: "message", Type: "chat", From: jid("pete@partner.test/x"), To: jid("alice@company.test"), Body: "CONFIDENTIAL"}
	e.DecideStanza(ctx, &in)
	in.Body = "anything"
	if d := e.DecideStanza(ctx, &in); !d.Allow || !d.Cached {
		t.Fatalf("inbound: %+v", d)
	}
	for _, p := range programs(e) {
		if len(p.shape.atoms) == 0 && len(p.memo) != 1 {
			t.Errorf("a content-independent program memoised %d decisions", len(p.memo))
		}
	}
}

// TestContentProgramsConcurrent: decisions from many goroutines (run with
// -race) agree with the full evaluation.
func TestContentProgramsConcurrent(t *testing.T) {
	// Both engines decide with testTimeout (diffEngines): 8 goroutines on
	// 2 cores under -race can take more than 50ms for one evaluation.
	fast, ref := diffEngines(t, "../rules", diffDataBig, ModeEnforce)
	stanzas := diffStanzas(500)
	ctx := testContext(t)
	want := make([]StanzaDecision, len(stanzas))
	for i := range stanzas {
		want[i] = ref.DecideStanza(ctx, &stanzas[i])
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 3 * len(stanzas) {
				i := (k*7 + g*131) % len(stanzas)
				if got := fast.DecideStanza(ctx, &stanzas[i]); !sameDecision(got, want[i]) {
					errs <- fmt.Sprintf("stanza %d: %+v, want %+v", i, got, want[i])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestContentProgramsReload: programs belong to one loaded policy.
func TestContentProgramsReload(t *testing.T) {
	pol := `package xmppedge.stanza
default decision := {"allow": true}
decision := {"allow": false, "reason": "kw"} if xmppedge.contains_any(input.body, ["%s"])
`
	e, rules := newTestEngine(t, map[string]string{"stanza.rego": fmt.Sprintf(pol, "alpha")}, Config{})
	e.syncPrograms = true
	ctx := testContext(t)
	in := StanzaInput{Direction: "outbound", Kind: "message", Body: "alpha beta"}
	e.DecideStanza(ctx, &in)
	if d := e.DecideStanza(ctx, &in); d.Allow || !d.Cached {
		t.Fatalf("%+v", d)
	}
	writeFiles(t, rules, map[string]string{"stanza.rego": fmt.Sprintf(pol, "gamma")})
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if d := e.DecideStanza(ctx, &in); !d.Allow || d.Cached {
		t.Fatalf("after reload: %+v", d)
	}
}

// TestPatternMatcherAgainstNaive: the prefiltered, separate and joined
// matching of a pattern set agrees with matching each pattern alone.
func TestPatternMatcherAgainstNaive(t *testing.T) {
	patterns := []string{`\b(?:\d[ -]?){13,16}\b`, `project-\d\s+[a-z]+\d{3}`, `(?i)codename\s+\w+`, `^START`, `END$`,
		`\bk\b`, `(?i)kelvin`, `ü+x`, `[[:upper:]]{3}\d`, `(?m)^--$`, `a*`, `\Bq`, `(?i)straße`, `x|y?z`, `[^a-z]{2}\b`}
	var texts []string
	r := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"a", "k", "K", "\u212a", "1", "2", " ", "-", "ü", "x", "z", "q", "E", "N", "D", "S", "\n", "\xff", "é", "project-4 ", "abc123", "START", "ß", "ẞ"}
	for range 5000 {
		var b strings.Builder
		for range r.IntN(30) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	texts = append(texts, "4111 1111 1111 1111", "x4111 1111 1111 1111", "é4111111111111111", "\xff4111111111111111", "codename  X", "a\n--\nb", "THE END")
	for n := 1; n <= len(patterns); n++ {
		for start := 0; start+n <= len(patterns); start += n {
			set := patterns[start : start+n]
			m, err := newPatternMatcher(set)
			if err != nil {
				t.Fatal(err)
			}
			res := make([]*regexp.Regexp, len(set))
			for i, p := range set {
				res[i] = regexp.MustCompile(p)
			}
			for _, text := range texts {
				want := false
				for _, re := range res {
					want = want || re.MatchString(text)
				}
				if got := m.match(text); got != want {
					t.Fatalf("patterns %q, text %q: match %v, want %v", set, text, got, want)
				}
			}
		}
	}
}

// TestKeywordSetsAgainstSingle: one pass over many keyword sets reports
// exactly the sets whose own matcher matches.
func TestKeywordSetsAgainstSingle(t *testing.T) {
	sets := [][]string{{"aab", "ab"}, {"bab"}, {}, {"bba", "ZZ"}, {"Größe"}, {"ünter", "b a"}, {""}, {"a"}}
	m, err := newKeywordSets(sets)
	if err != nil {
		t.Fatal(err)
	}
	singles := make([]*keywordMatcher, len(sets))
	for i, s := range sets {
		if singles[i], err = newKeywordMatcher(s); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	alphabet := []string{"a", "b", "A", "B", " ", "z", "Z", "GRÖ", "ße", "ÜNTER", "\xff"}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		text := b.String()
		var want, single uint64
		for i, set := range sets {
			for _, k := range set {
				if strings.Contains(strings.ToLower(text), strings.ToLower(k)) {
					want |= 1 << i
				}
			}
			if singles[i].match(text) {
				single |= 1 << i
			}
		}
		if got := m.scan(text); got != want || single != want {
			t.Fatalf("%q: sets %b, one by one %b, want %b", text, got, single, want)
		}
	}
}

// TestContentProgramBuiltInBackground: the first programAfter-1 stanzas
// of a key are evaluated in full and build nothing (a pair that exchanges
// a message or two costs no build); the next starts its build in the
// background; later ones use the program.
func TestContentProgramBuiltInBackground(t *testing.T) {
	e := shippedEngine(t, testData, Config{})
	ctx := testContext(t)
	// Content programs alone: a class narrowed in the background would
	// change the program key between two stanzas (narrow_test.go tests
	// the two together).
	e.noNarrowing = true
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/a"), To: jid("pete@partner.test"), Body: "hello"}
	for i := 1; i < programAfter; i++ {
		if d := e.DecideStanza(ctx, &in); !d.Allow || d.Cached {
			t.Fatalf("stanza %d: %+v", i, d)
		}
		e.current.Load().stanza.buildWG.Wait()
		if n := e.Stats().ContentPrograms; n != 0 {
			t.Fatalf("after stanza %d of the key: %d programs built, want none before stanza %d", i, n, programAfter)
		}
	}
	// Another pair's stanzas do not count for this one.
	other := in
	other.From = jid("bob@company.test/b")
	e.DecideStanza(ctx, &other)
	if d := e.DecideStanza(ctx, &in); !d.Allow || d.Cached {
		t.Fatalf("stanza %d: %+v", programAfter, d)
	}
	e.current.Load().stanza.buildWG.Wait()
	if n := e.Stats().ContentPrograms; n != 1 {
		t.Fatalf("after stanza %d of the key: %d programs built, want 1", programAfter, n)
	}
	e.DecideStanza(ctx, &in) // fills the memo
	in.Body = "hello again"
	if d := e.DecideStanza(ctx, &in); !d.Allow || !d.Cached {
		t.Fatalf("with the program: %+v", d)
	}
}

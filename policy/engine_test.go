package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const headerPolicy = `package xmppedge.session

default decision := {"allow": false, "reason": "not listed"}

decision := {"allow": true, "reason": "listed"} if input.remote_domain in {"partner.test"}
`

const perUserStanzaPolicy = `package xmppedge.stanza

default decision := {"allow": false, "reason": "user not allowed"}

decision := {"allow": true} if input.from.bare == "alice@company.test"
`

func TestDryRun(t *testing.T) {
	e := shippedEngine(t, testData, Config{Mode: ModeDryRun})
	in := SessionInput{Direction: "inbound", LocalDomain: "company.test", RemoteDomain: "evil.test", TLS: tls13, Auth: "dialback"}
	d := e.DecideSession(testContext(t), &in)
	if !d.Allow || !d.WouldDeny || !strings.Contains(d.Reason, "not a federation partner") {
		t.Fatalf("dry-run deny: %+v", d)
	}
	in.RemoteDomain = "partner.test"
	if d := e.DecideSession(testContext(t), &in); !d.Allow || d.WouldDeny {
		t.Fatalf("dry-run allow: %+v", d)
	}
	sd := e.DecideStanza(testContext(t), &StanzaInput{Direction: "outbound", Kind: "message", From: jid("alice@company.test"), To: jid("p@partner.test"), Body: "CONFIDENTIAL"})
	if !sd.Allow || !sd.WouldDeny || sd.Reason == "" {
		t.Fatalf("dry-run stanza: %+v", sd)
	}
	if _, err := New(testContext(t), Config{Rules: "../rules", Mode: "audit"}); err == nil {
		t.Fatal("an unknown mode must be rejected")
	}
}

func TestFailClosed(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		reason string
	}{
		{"division by zero", `package xmppedge.stanza
decision := {"allow": x > 0} if x := 1 / (count(input.body) - 1)`, "divide by zero"},
		{"conflicting values", `package xmppedge.stanza
decision := {"allow": true} if input.kind == "message"
decision := {"allow": false} if input.type == "chat"`, "conflicting values"},
		{"undefined decision", `package xmppedge.stanza
decision := {"allow": true} if input.kind == "iq"`, "decision undefined"},
		{"allow not a boolean", `package xmppedge.stanza
decision := {"allow": "yes"}`, "want a boolean"},
		{"decision not an object", `package xmppedge.stanza
decision := true`, "want an object"},
		{"unknown audit level", `package xmppedge.stanza
decision := {"allow": true, "audit": "everything"}`, "audit"},
		{"built-in error", `package xmppedge.stanza
decision := {"allow": xmppedge.matches_any(input.body, ["("]) == false}`, "matches_any"},
	}
	for _, tt := range tests {
		for _, mode := range []string{ModeEnforce, ModeDryRun} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				e, _ := newTestEngine(t, map[string]string{"p.rego": tt.policy}, Config{Mode: mode})
				in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", Body: "x"}
				d := e.DecideStanza(testContext(t), &in)
				if mode == ModeEnforce && d.Allow {
					t.Fatalf("allowed on failure: %+v", d)
				}
				if mode == ModeDryRun && (!d.Allow || !d.WouldDeny) {
					t.Fatalf("dry-run failure must pass, marked would-deny: %+v", d)
				}
				if !strings.Contains(d.Reason, "fail") || !strings.Contains(d.Reason, tt.reason) {
					t.Errorf("reason %q does not say it failed (%q)", d.Reason, tt.reason)
				}
				if d.Error != DefaultStanzaError {
					t.Errorf("error = %q", d.Error)
				}
				// A failure is not cached: the second call fails again.
				d2 := e.DecideStanza(testContext(t), &in)
				if d2.Cached {
					t.Error("a failure was cached")
				}
				if f := e.Stats().Failures; f != 2 {
					t.Errorf("failures = %d, want 2", f)
				}
			})
		}
	}
}

func TestUndefinedSessionDecisionDenies(t *testing.T) {
	e, _ := newTestEngine(t, map[string]string{"p.rego": "package xmppedge.other\nx := 1\n"}, Config{})
	d := e.DecideSession(testContext(t), &SessionInput{Direction: "inbound", RemoteDomain: "partner.test"})
	if d.Allow || !strings.Contains(d.Reason, "undefined") {
		t.Fatalf("%+v", d)
	}
}

// TestTimeout checks the timeout mechanism with a policy that cannot
// finish (10^15 steps): whatever the machine's speed, the only way to a
// decision is the timeout, so the test asserts no durations. Were the
// timeout broken, the test context's deadline would end the evaluation
// with another reason, and the test would fail.
func TestTimeout(t *testing.T) {
	policy := `package xmppedge.stanza

default decision := {"allow": true}

r := numbers.range(1, 100000)

decision := {"allow": false} if {
	some i in r
	some j in r
	some k in r
	i + j + k < 0
}`
	const timeout = 10 * time.Millisecond
	e, _ := newTestEngine(t, map[string]string{"p.rego": policy}, Config{Timeout: timeout})
	d := e.DecideStanza(testContext(t), &StanzaInput{Kind: "message"})
	if d.Allow || !strings.Contains(d.Reason, "timed out after "+timeout.String()) {
		t.Fatalf("%+v", d)
	}
	if d.Cached || d.Error != DefaultStanzaError {
		t.Errorf("a timeout is a failure: %+v", d)
	}
	if e.Stats().Failures != 1 {
		t.Errorf("stats %+v", e.Stats())
	}
	// A cancelled caller context fails closed too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d := e.DecideStanza(ctx, &StanzaInput{Kind: "message"}); d.Allow {
		t.Fatalf("cancelled context: %+v", d)
	}
}

func TestReloadBrokenPolicyKeepsOld(t *testing.T) {
	e, rules := newTestEngine(t, map[string]string{"session.rego": headerPolicy}, Config{})
	var fired atomic.Int32
	e.OnReload(func(string) { fired.Add(1) })
	rev := e.Revision()
	in := &SessionInput{RemoteDomain: "partner.test"}
	if !e.DecideSession(testContext(t), in).Allow {
		t.Fatal("partner denied")
	}
	writeFiles(t, rules, map[string]string{"session.rego": "package xmppedge.session\n\ndecision := {\"allow\": true} if {\n\tinput.x ==\n}\n"})
	err := e.Reload(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "session.rego:5") {
		t.Fatalf("reload error %v, want the file and line", err)
	}
	writeFiles(t, rules, map[string]string{"session.rego": "package xmppedge.session\n\ndecision := {\"allow\": undefined_fn(1)}\n"})
	err = e.Reload(testContext(t))
	if err == nil || !strings.Contains(err.Error(), "session.rego:3") {
		t.Fatalf("compile error %v, want the file and line", err)
	}
	if e.Revision() != rev || !e.DecideSession(testContext(t), in).Allow {
		t.Fatal("the old policy is no longer active")
	}
	if s := e.Stats(); s.ReloadFailures != 2 || s.Reloads != 0 || fired.Load() != 0 {
		t.Fatalf("stats %+v, hooks %d", s, fired.Load())
	}
	// A good policy is taken, the hook fires, the revision changes.
	writeFiles(t, rules, map[string]string{"session.rego": strings.Replace(headerPolicy, `{"partner.test"}`, `{"other.test"}`, 1)})
	if err := e.Reload(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if e.Revision() == rev || fired.Load() != 1 || e.Stats().Reloads != 1 {
		t.Fatalf("revision %s (was %s), hooks %d", e.Revision(), rev, fired.Load())
	}
	if d := e.DecideSession(testContext(t), in); d.Allow || d.Revision != e.Revision() {
		t.Fatalf("new policy not applied: %+v", d)
	}
}

func TestWatchPicksUpChange(t *testing.T) {
	e, rules := newTestEngine(t, map[string]string{"session.rego": headerPolicy}, Config{})
	e.watchInterval = 20 * time.Millisecond
	revs := make(chan string, 4)
	e.OnReload(func(r string) { revs <- r })
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan struct{})
	go func() { e.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond)
	writeFiles(t, rules, map[string]string{"extra/more.rego": "package xmppedge.extra\ny := 2\n"})
	select {
	case r := <-revs:
		if r != e.Revision() {
			t.Errorf("hook revision %s, engine %s", r, e.Revision())
		}
	case <-time.After(waitBound):
		t.Fatalf("Watch did not reload within %v of a new file", waitBound)
	}
	// A broken file: counted, old policy kept, no hook.
	writeFiles(t, rules, map[string]string{"extra/more.rego": "package xmppedge.extra\ny := \n"})
	waitFor(t, waitBound, "reload failure counted", func() bool { return e.Stats().ReloadFailures >= 1 })
	if !e.DecideSession(testContext(t), &SessionInput{RemoteDomain: "partner.test"}).Allow {
		t.Fatal("old policy lost")
	}
}

func TestCachePerUser(t *testing.T) {
	e, _ := newTestEngine(t, map[string]string{"stanza.rego": perUserStanzaPolicy}, Config{})
	alice := StanzaInput{Direction: "outbound", Kind: "message", From: jid("alice@company.test/a"), To: jid("p@partner.test")}
	bob := alice
	bob.From = jid("bob@company.test/a")
	aliceOtherResource := alice
	aliceOtherResource.From = jid("alice@company.test/b")
	ctx := testContext(t)
	steps := []struct {
		in           StanzaInput
		allow, cache bool
	}{
		{alice, true, false},
		{bob, false, false},
		{alice, true, true},
		{bob, false, true},
		{aliceOtherResource, true, true}, // the policy reads from.bare only
	}
	for i, s := range steps {
		d := e.DecideStanza(ctx, &s.in)
		if d.Allow != s.allow || d.Cached != s.cache {
			t.Fatalf("step %d (%s): allow %v cached %v, want %v %v", i, s.in.From.Full, d.Allow, d.Cached, s.allow, s.cache)
		}
	}
	if s := e.Stats(); s.CacheHits != 3 || s.Decisions != 5 {
		t.Fatalf("stats %+v", s)
	}
}

// TestCacheClearedOnReload: a reload answers with the new policy; with
// the warm-up (warm.go) the new policy has decided the class already.
func TestCacheClearedOnReload(t *testing.T) {
	for _, warm := range []bool{false, true} {
		e, rules := newTestEngine(t, map[string]string{"session.rego": headerPolicy}, Config{})
		e.noWarmUp = !warm
		ctx := testContext(t)
		in := &SessionInput{RemoteDomain: "partner.test"}
		e.DecideSession(ctx, in)
		if d := e.DecideSession(ctx, in); !d.Allow || !d.Cached {
			t.Fatalf("%+v", d)
		}
		e.waitBackground()
		writeFiles(t, rules, map[string]string{"session.rego": strings.Replace(headerPolicy, `{"partner.test"}`, `{"other.test"}`, 1)})
		if err := e.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		if d := e.DecideSession(ctx, in); d.Allow || d.Cached != warm || d.Revision != e.Revision() {
			t.Fatalf("warm-up %v: stale decision after reload: %+v", warm, d)
		}
	}
}

func TestCacheability(t *testing.T) {
	tests := []struct {
		name           string
		policy         string
		needsContent   bool
		cacheable      bool
		keyedOnBody    bool
		stanzaWithBody bool // a stanza with a body is answered from the cache
	}{
		{"header only", `package xmppedge.stanza
decision := {"allow": input.kind != "iq"}`, false, true, false, true},
		{"reads body", `package xmppedge.stanza
decision := {"allow": contains(input.body, "x") == false}`, true, true, true, false},
		// Children are part of a content program's key (exactly): the
		// same children again is answered from the program's memo.
		{"reads children", `package xmppedge.stanza
decision := {"allow": count(input.children) < 3}`, true, true, true, true},
		{"whole input", `package xmppedge.stanza
x := input
decision := {"allow": x.kind != "iq"}`, true, false, false, false},
		{"variable key", `package xmppedge.stanza
decision := {"allow": true} if { some k; input[k] == "x" }
default decision := {"allow": false}`, true, false, false, false},
		{"non-deterministic", `package xmppedge.stanza
decision := {"allow": time.now_ns() > 0}`, false, false, false, false},
		{"via a function", `package xmppedge.stanza
f(x) := contains(x, "secret")
decision := {"allow": f(input.subject) == false}`, true, true, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := newTestEngine(t, map[string]string{"stanza.rego": tt.policy}, Config{})
			e.syncPrograms = true
			if e.NeedsContent() != tt.needsContent {
				t.Errorf("NeedsContent = %v, want %v", e.NeedsContent(), tt.needsContent)
			}
			l := e.current.Load()
			if l.stanza.cacheable != tt.cacheable {
				t.Errorf("cacheable = %v, want %v (use %+v)", l.stanza.cacheable, tt.cacheable, l.stanza.use)
			}
			ctx := testContext(t)
			in := StanzaInput{Direction: "outbound", Kind: "message", Body: "hello", Subject: "s", Children: []Child{{"body", "jabber:server"}}}
			e.DecideStanza(ctx, &in)
			if d := e.DecideStanza(ctx, &in); d.Cached != tt.stanzaWithBody {
				t.Errorf("second identical stanza with content: cached = %v, want %v", d.Cached, tt.stanzaWithBody)
			}
			empty := StanzaInput{Direction: "outbound", Kind: "presence"}
			e.DecideStanza(ctx, &empty)
			if d := e.DecideStanza(ctx, &empty); d.Cached != tt.cacheable {
				t.Errorf("second stanza without content: cached = %v, want %v", d.Cached, tt.cacheable)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no source", Config{}, "no source"},
		{"both sources", Config{Rules: dir, Bundle: &BundleConfig{URL: "http://127.0.0.1:1/b.tar.gz"}}, "exclusive"},
		{"empty rules dir", Config{Rules: dir}, "no .rego files"},
		{"missing rules dir", Config{Rules: filepath.Join(dir, "nope")}, "rules directory"},
		{"missing data", Config{Rules: "../rules", Data: []string{filepath.Join(dir, "nope.yaml")}}, "nope.yaml"},
		{"bad bundle url", Config{Bundle: &BundleConfig{URL: "ftp://x/y"}}, "http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(testContext(t), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	_ = os.Remove
}

package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// warmData is narrowData after an edit: old.test is gone, the wildcard
// partners may now be written to, and "hello" became a confidential
// keyword (so the warmed content programs must be the new policy's).
var warmData = strings.NewReplacer(
	"  - {domain: old.test, agreement: {owner: legal@company.test, reference: NDA-0, expires: \"2020-01-01\"}}\n", "",
	`{domain: "*.wild.test", direction: inbound}`, `{domain: "*.wild.test", direction: both}`,
	"keywords: [SECRET]", "keywords: [SECRET, hello]",
).Replace(narrowData)

// TestReloadWarmUpMatchesFullEvaluation: an engine decides traffic, its
// data is edited and reloaded, and then every decision — new pairs of
// JIDs in the classes it knew, and the same stanzas again — equals a full
// evaluation of the new policy. With the warm-up, the first new pair of a
// known class is a cache hit; without, it is evaluated.
func TestReloadWarmUpMatchesFullEvaluation(t *testing.T) {
	if warmData == narrowData || !strings.Contains(warmData, "[SECRET, hello]") || strings.Contains(warmData, "old.test") {
		t.Fatal("warmData is not the edit it says")
	}
	stanzas, sessions := narrowInputs(800)
	known := []StanzaInput{ // classes the checks below rely on
		{Direction: "inbound", Kind: "presence", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a")},
		{Direction: "inbound", Kind: "message", Type: "chat", From: jid("bob@partner.test/b"), To: jid("alice@company.test/a"),
			Body: "see you at noon", Children: []Child{{"body", "jabber:client"}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // -race on a loaded machine
	defer cancel()
	hits := map[bool]uint64{}
	for _, warm := range []bool{true, false} {
		t.Run(fmt.Sprintf("warm-up=%v", warm), func(t *testing.T) {
			dir := t.TempDir()
			data := filepath.Join(dir, "data.yaml")
			writeFiles(t, dir, map[string]string{"data.yaml": narrowData})
			fast, err := New(ctx, withTestTimeout(Config{Rules: "../rules", Data: []string{data}}))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(fast.waitBackground)
			fast.noWarmUp = !warm
			// Classes narrowed and programs built at once, before and
			// after the reload: the hits then depend on the warm-up only.
			fast.syncPrograms = true
			for _, in := range append(known, stanzas[:400]...) {
				fast.DecideStanza(ctx, &in)
			}
			for i := range sessions[:100] {
				fast.DecideSession(ctx, &sessions[i])
			}

			writeFiles(t, dir, map[string]string{"data.yaml": warmData})
			before := fast.Stats()
			if err := fast.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			s := fast.Stats()
			switch {
			case warm && s.WarmedClasses == 0:
				t.Fatalf("nothing warmed: %+v", s)
			case !warm && s.WarmedClasses != 0:
				t.Fatalf("warmed with the warm-up off: %+v", s)
			case s.Decisions != before.Decisions || s.Failures != 0 || s.CacheHits != before.CacheHits:
				t.Fatalf("the warm-up counted as decisions, failures or hits: before %+v, after %+v", before, s)
			}
			t.Logf("warmed %d classes", s.WarmedClasses)

			ref, err := New(ctx, withTestTimeout(Config{Rules: "../rules", Data: []string{data}, CacheSize: -1}))
			if err != nil {
				t.Fatal(err)
			}
			if ref.Revision() != fast.Revision() {
				t.Fatalf("revisions differ: %s %s", ref.Revision(), fast.Revision())
			}

			// New pairs in known classes, first.
			for i, in := range known {
				in.From = jid(fmt.Sprintf("carol%d@partner.test/c", i))
				in.To = jid("bob@company.test/e") // in eng, an external user as alice
				got, want := fast.DecideStanza(ctx, &in), ref.DecideStanza(ctx, &in)
				if !sameDecision(got, want) || !want.Allow {
					t.Fatalf("new pair %+v:\nfast %+v\nfull %+v", in, got, want)
				}
				if got.Cached != warm {
					t.Errorf("new pair in a known class %+v: cached %v with the warm-up %v", in, got.Cached, warm)
				}
			}
			before = fast.Stats()
			for round, part := range [][]StanzaInput{stanzas[400:], stanzas[:400]} {
				for i := range part {
					if got, want := fast.DecideStanza(ctx, &part[i]), ref.DecideStanza(ctx, &part[i]); !sameDecision(got, want) {
						t.Fatalf("stanza %d of part %d %+v:\nfast %+v\nfull %+v", i, round, part[i], got, want)
					}
				}
			}
			for i := range sessions {
				got, want := fast.DecideSession(ctx, &sessions[i]), ref.DecideSession(ctx, &sessions[i])
				got.Cached = false
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("session %d %+v:\nfast %+v\nfull %+v", i, sessions[i], got, want)
				}
			}
			s = fast.Stats()
			if s.Failures != 0 {
				t.Fatalf("%d failures", s.Failures)
			}
			hits[warm] = s.CacheHits - before.CacheHits
			t.Logf("after the reload: %d decisions, %d hits", s.Decisions-before.Decisions, hits[warm])
		})
	}
	if hits[true] <= hits[false] {
		t.Errorf("the warm-up added no hits: %d with it, %d without", hits[true], hits[false])
	}
}

// TestWarmSamplesKeepNoText: a sample keeps a stanza's facts and
// addresses, never its text, and is a copy the caller's reuse of its
// input does not reach.
func TestWarmSamplesKeepNoText(t *testing.T) {
	e := shippedEngine(t, narrowData, Config{})
	e.syncPrograms = true
	ctx := testContext(t)
	label := &SecurityLabel{Marking: "RESTRICTED"}
	in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", ID: "m1",
		From: jid("alice@company.test/a"), To: jid("bob@partner.test"),
		Body: "the launch code is 0000", Subject: "codes", SecurityLabel: label,
		Children: []Child{{"body", "jabber:client"}, {"subject", "jabber:client"}}}
	e.DecideStanza(ctx, &in)
	in.Children[0].Name, label.Marking = "reused", "reused" // the caller reuses its input
	_, samples := e.current.Load().warm.snapshot()
	if len(samples) != 1 {
		t.Fatalf("%d samples, want 1", len(samples))
	}
	got := samples[0]
	switch {
	case got.Body != warmText || got.Subject != warmText || got.Thread != "":
		t.Errorf("text kept: body %q subject %q thread %q", got.Body, got.Subject, got.Thread)
	case got.Children[0].Name != "body" || got.SecurityLabel.Marking != "RESTRICTED":
		t.Errorf("the sample shares the caller's input: %+v %+v", got.Children, got.SecurityLabel)
	case got.From != in.From || got.To != in.To || got.ID != "m1":
		t.Errorf("addresses not kept: %+v", got)
	}
}

// TestWarmSamplesBound: one sample per class and decision, at most
// maxWarmSamples each.
func TestWarmSamplesBound(t *testing.T) {
	var w warmSamples
	s := SessionInput{RemoteDomain: "a.test"}
	m := StanzaInput{Kind: "message", Body: "x"}
	tests := []struct {
		name             string
		add              func()
		sessions, stanza int
	}{
		{"first session class", func() { w.addSession([]byte("c1"), &s) }, 1, 0},
		{"same class again", func() { w.addSession([]byte("c1"), &s) }, 1, 0},
		{"a stanza class of the same bytes", func() { w.addStanza([]byte("c1"), &m) }, 1, 1},
		{"many more classes", func() {
			for i := range 2 * maxWarmSamples {
				w.addSession(fmt.Appendf(nil, "s%d", i), &s)
				w.addStanza(fmt.Appendf(nil, "m%d", i), &m)
			}
		}, maxWarmSamples, maxWarmSamples},
	}
	for _, tc := range tests {
		tc.add()
		sessions, stanzas := w.snapshot()
		if len(sessions) != tc.sessions || len(stanzas) != tc.stanza {
			t.Fatalf("%s: %d sessions and %d stanzas, want %d and %d", tc.name, len(sessions), len(stanzas), tc.sessions, tc.stanza)
		}
	}
}

// TestWarmUpBudgetAndFailures: the warm-up stops at its budget; a policy
// that fails on the samples is reloaded without a failure counted (it
// denied nothing), and its first real decision fails closed and counts.
func TestWarmUpBudgetAndFailures(t *testing.T) {
	e, rules := newTestEngine(t, map[string]string{"session.rego": headerPolicy}, Config{})
	ctx := testContext(t)
	for _, d := range []string{"a.test", "b.test"} {
		in := &SessionInput{RemoteDomain: d, Direction: "inbound"}
		e.DecideSession(ctx, in)
		e.DecideSession(ctx, in) // the class's narrowing starts: a sample
	}
	e.waitBackground()
	old := e.current.Load()
	if s, _ := old.warm.snapshot(); len(s) == 0 {
		t.Fatal("no session sample")
	}
	src, err := e.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		budget time.Duration
		want   int
	}{{0, 0}, {time.Minute, 1}} {
		l, err := e.prepare(ctx, src)
		if err != nil {
			t.Fatal(err)
		}
		if n := e.warmUp(ctx, old, l, tc.budget); n != tc.want {
			t.Errorf("budget %s: %d warmed, want %d", tc.budget, n, tc.want)
		}
	}

	const failing = `package xmppedge.session

zero := 0

default decision := {"allow": false, "reason": "not listed"}

decision := {"allow": 1/zero == 1, "reason": "listed"} if input.remote_domain != ""
`
	writeFiles(t, rules, map[string]string{"session.rego": failing})
	if err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s.Failures != 0 || s.WarmedClasses == 0 {
		t.Fatalf("after the reload: %+v", s)
	}
	if d := e.DecideSession(ctx, &SessionInput{RemoteDomain: "a.test", Direction: "inbound"}); d.Allow || !strings.Contains(d.Reason, "failing closed") {
		t.Fatalf("%+v", d)
	}
	if s := e.Stats(); s.Failures != 1 {
		t.Fatalf("failures %d, want 1", s.Failures)
	}
}

// TestWarmUpKeepsTheNewest: a reload warms up the newest maxInherited
// samples of the old load, newest first, and the new load keeps them in
// their order, leaving room for new classes.
func TestWarmUpKeepsTheNewest(t *testing.T) {
	const perDomain = `package xmppedge.session

default decision := {"allow": false, "reason": "not listed"}

decision := {"allow": true, "reason": "listed"} if {
	endswith(input.local_domain, ".test")
	input.remote_domain != "evil.test"
}
`
	e, _ := newTestEngine(t, map[string]string{"session.rego": perDomain}, Config{})
	ctx := testContext(t)
	old := &loaded{}
	const n = maxInherited + 100
	for i := range n { // a class per local domain (not a narrowable leaf)
		old.warm.addSession(fmt.Appendf(nil, "class%d", i), &SessionInput{LocalDomain: fmt.Sprintf("d%d.test", i), RemoteDomain: "r.test"})
	}
	src, err := e.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.prepare(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.warmUp(ctx, old, l, time.Minute); got != maxInherited {
		t.Fatalf("%d warmed, want %d", got, maxInherited)
	}
	kept, _ := l.warm.snapshot()
	if len(kept) != maxInherited {
		t.Fatalf("the new load keeps %d samples, want %d", len(kept), maxInherited)
	}
	for i, s := range kept {
		if want := fmt.Sprintf("d%d.test", n-maxInherited+i); s.LocalDomain != want {
			t.Fatalf("sample %d is %s, want %s (the newest, oldest first)", i, s.LocalDomain, want)
		}
	}
	l.warm.addSession([]byte("new class"), &SessionInput{LocalDomain: "new.test"})
	if kept, _ = l.warm.snapshot(); len(kept) != maxInherited+1 {
		t.Fatalf("no room for a new class: %d samples", len(kept))
	}
}

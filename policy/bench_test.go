package policy

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchData is a data file with 10,000 partner domains (plus 100
// wildcards), and a confidential section of 40 keywords and 10 patterns
// (50 content rules).
func benchData() string {
	var b strings.Builder
	b.WriteString("partners:\n")
	for i := range 10_000 {
		fmt.Fprintf(&b, "  - {domain: partner%05d.test, direction: both}\n", i)
	}
	for i := range 100 {
		fmt.Fprintf(&b, "  - {domain: \"*.wild%03d.test\", direction: both}\n", i)
	}
	b.WriteString("confidential:\n  keywords:\n")
	for i := range 40 {
		fmt.Fprintf(&b, "    - \"secret-word-%02d\"\n", i)
	}
	b.WriteString("  patterns:\n")
	b.WriteString("    - '\\b(?:\\d[ -]?){13,16}\\b'\n")
	for i := range 9 {
		fmt.Fprintf(&b, "    - 'project-%d\\s+[a-z]+\\d{3}'\n", i)
	}
	return b.String()
}

// measure runs fn b.N times, recording each call's duration, and reports
// p50/p99/p999 (ns) next to ns/op.
func measure(b *testing.B, fn func(i int)) {
	durations := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		fn(i)
		durations = append(durations, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(durations)
	pct := func(p float64) float64 { return float64(durations[int(float64(len(durations)-1)*p)].Nanoseconds()) }
	b.ReportMetric(pct(0.50), "p50-ns")
	b.ReportMetric(pct(0.99), "p99-ns")
	b.ReportMetric(pct(0.999), "p99.9-ns")
}

func reportHitRate(b *testing.B, e *Engine, before Stats) {
	s := e.Stats()
	if d := s.Decisions - before.Decisions; d > 0 {
		b.ReportMetric(float64(s.CacheHits-before.CacheHits)/float64(d), "hit-rate")
	}
	if s.Failures != 0 {
		b.Fatalf("%d failures", s.Failures)
	}
}

func benchEngine(b *testing.B, cacheSize int) *Engine {
	return shippedEngine(b, benchData(), Config{CacheSize: cacheSize})
}

// BenchmarkSessionDecision10kDomains: the shipped session rules, 10,000
// partners. "hit": 1,000 distinct domains, cache warm. "miss": cache off,
// every decision evaluated. "next-minute": the cache warm (and the
// domains' key classes narrowed) at one minute, each decision at a later
// one from another address: input.now and remote_ip are new values for
// every decision, which key narrowing drops for partners without an
// agreement.
func BenchmarkSessionDecision10kDomains(b *testing.B) {
	inputs := make([]SessionInput, 1000)
	for i := range inputs {
		inputs[i] = SessionInput{Direction: "inbound", LocalDomain: "company.test",
			RemoteDomain: fmt.Sprintf("partner%05d.test", i*7), RemoteIP: "192.0.2.1", TLS: tls13, Auth: "dialback",
			Now: "2026-12-01T12:00:00Z"}
	}
	for _, tc := range []struct {
		name  string
		cache int
	}{{"hit", 0}, {"miss", -1}, {"next-minute", 0}} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEngine(b, tc.cache)
			e.syncPrograms = true // key classes narrowed at once
			ctx := testContext(b)
			for i := range inputs {
				if !e.DecideSession(ctx, &inputs[i]).Allow {
					b.Fatalf("denied: %+v", inputs[i])
				}
			}
			measured := inputs
			if tc.name == "next-minute" {
				measured = make([]SessionInput, b.N)
				for i := range measured {
					measured[i] = inputs[i%len(inputs)]
					t := time.Date(2026, 12, 1, 12, 1, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
					measured[i].Now = t.Format(time.RFC3339)
					measured[i].RemoteIP = fmt.Sprintf("198.51.100.%d", i%256)
				}
			}
			before := e.Stats()
			measure(b, func(i int) { e.DecideSession(ctx, &measured[i%len(measured)]) })
			reportHitRate(b, e, before)
		})
	}
}

// BenchmarkStanzaHeaderOnly10kDomains: stanzas without content (presence,
// iq) through the shipped stanza rules and 10,000 partners; users ×
// domains give 5,000 distinct keys.
func BenchmarkStanzaHeaderOnly10kDomains(b *testing.B) {
	inputs := make([]StanzaInput, 5000)
	for i := range inputs {
		inputs[i] = StanzaInput{Direction: "outbound", Kind: "presence", ID: fmt.Sprint(i),
			From: jid(fmt.Sprintf("user%d@company.test/res", i%50)), To: jid(fmt.Sprintf("peer@partner%05d.test/x", i%100*13))}
	}
	for _, tc := range []struct {
		name  string
		cache int
	}{{"hit", 0}, {"miss", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEngine(b, tc.cache)
			e.syncPrograms = true // warm-up: key classes narrowed at once
			ctx := testContext(b)
			for i := range inputs {
				if d := e.DecideStanza(ctx, &inputs[i]); !d.Allow {
					b.Fatalf("denied: %+v", d)
				}
			}
			e.syncPrograms = false
			before := e.Stats()
			measure(b, func(i int) { e.DecideStanza(ctx, &inputs[i%len(inputs)]) })
			reportHitRate(b, e, before)
		})
	}
}

// BenchmarkStanzaContent50Rules: outbound messages with a ~400-byte body,
// never in the header cache, through the shipped rules with 40 keywords
// and 10 patterns and 10,000 partners. "clean": nothing matches (every
// rule runs over the whole body); "match": a keyword matches (bounced).
// "program": the content programs (content.go), warm; "full": every
// message evaluated by OPA (content programs off: the path before them).
func BenchmarkStanzaContent50Rules(b *testing.B) {
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
	for _, tc := range []struct {
		name  string
		body  string
		allow bool
	}{{"clean", body, true}, {"match", body + " SECRET-WORD-33", false}} {
		for _, path := range []string{"program", "full"} {
			b.Run(tc.name+"/"+path, func(b *testing.B) {
				e := benchEngine(b, 0)
				ctx := testContext(b)
				if path == "full" {
					e.noPrograms = true
					if err := e.Reload(ctx); err != nil {
						b.Fatal(err)
					}
				}
				e.syncPrograms = true // warm-up: programs built at once
				inputs := make([]StanzaInput, 100)
				for i := range inputs {
					inputs[i] = StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", ID: fmt.Sprint(i),
						From: jid("alice@company.test/phone"), To: jid(fmt.Sprintf("bob@partner%05d.test", i*31)),
						Body: fmt.Sprintf("%s %d", tc.body, i), Children: []Child{{"body", "jabber:client"}}}
					if d := e.DecideStanza(ctx, &inputs[i]); d.Allow != tc.allow {
						b.Fatalf("%+v", d)
					}
				}
				before := e.Stats()
				measure(b, func(i int) { e.DecideStanza(ctx, &inputs[i%len(inputs)]) })
				reportHitRate(b, e, before)
			})
		}
	}
}

// BenchmarkStanzaContent50RegoRules: the other reading of "50 content
// rules": 50 separate Rego rules, each with its own keyword set, on a
// body that none matches ("program" and "full" as above).
func BenchmarkStanzaContent50RegoRules(b *testing.B) {
	var rules strings.Builder
	rules.WriteString("package xmppedge.stanza\n\ndefault decision := {\"allow\": false}\n\ndecision := {\"allow\": count(deny) == 0}\n\n")
	for i := range 50 {
		fmt.Fprintf(&rules, "deny contains \"rule %d\" if xmppedge.contains_any(input.body, [\"secret-%d-a\", \"secret-%d-b\"])\n", i, i, i)
	}
	dir := b.TempDir()
	writeFiles(b, dir, map[string]string{"stanza.rego": rules.String()})
	for _, path := range []string{"program", "full"} {
		b.Run(path, func(b *testing.B) {
			e, err := New(testContext(b), withTestTimeout(Config{Rules: dir}))
			if err != nil {
				b.Fatal(err)
			}
			ctx := testContext(b)
			if path == "full" {
				e.noPrograms = true
				if err := e.Reload(ctx); err != nil {
					b.Fatal(err)
				}
			}
			e.syncPrograms = true // warm-up: programs built at once
			body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
			in := StanzaInput{Direction: "outbound", Kind: "message", Body: body}
			if d := e.DecideStanza(ctx, &in); !d.Allow {
				b.Fatalf("%+v", d)
			}
			measure(b, func(int) { e.DecideStanza(ctx, &in) })
		})
	}
}

// BenchmarkContentProgramBuild: the cost of the first message of a program
// key: one partial evaluation of the shipped rules (10,000 partners, 50
// content rules) and the compilation of its residual.
func BenchmarkContentProgramBuild(b *testing.B) {
	e := benchEngine(b, 0)
	ctx := testContext(b)
	l := e.current.Load()
	in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/phone"),
		To: jid("bob@partner00031.test"), Body: "hello"}
	measure(b, func(int) {
		if p, err := e.buildProgram(ctx, l, &in); err != nil || p.fallback {
			b.Fatalf("%v %+v", err, p)
		}
	})
}

// BenchmarkNewPair10kDomains: inbound messages (a ~400-byte body) from
// senders never seen before — each a new pair of JIDs — from 100 of
// 10,000 partner domains to 4 local users, through the shipped rules with
// 50 content rules. "narrowed": key narrowing on (the classes of the 100
// domains narrowed and their content programs built beforehand, as after
// a pair from each has talked): a new pair's key is its domain and
// recipient's. "full-key": narrowing off, every new pair a new key,
// evaluated in full (the path before narrowing).
func BenchmarkNewPair10kDomains(b *testing.B) {
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
	in := func(i int) StanzaInput {
		return StanzaInput{Direction: "inbound", Kind: "message", Type: "chat", ID: fmt.Sprint(i),
			From: jid(fmt.Sprintf("sender%d@partner%05d.test/r", i, i%100*97)), To: jid(fmt.Sprintf("user%d@company.test", i%4)),
			Body: body, Children: []Child{{"body", "jabber:client"}}}
	}
	for _, mode := range []string{"narrowed", "full-key"} {
		b.Run(mode, func(b *testing.B) {
			e := benchEngine(b, 0)
			ctx := testContext(b)
			if mode == "full-key" {
				reloadWith(b, ctx, e, func(e *Engine) { e.noNarrowing = true })
			}
			measureNewKeys(b, ctx, e, 400, func(i int) StanzaInput { // every (domain, user) of the inputs below
				warm := in(i)
				warm.From = jid("warm-up@" + warm.From.Domain)
				return warm
			}, in)
		})
	}
}

// BenchmarkNewPartnerDomain10kDomains: the first stanza from or to a
// partner domain never seen before — messages with a ~400-byte body,
// inbound and outbound in turn, each domain under one of the 100 wildcard
// partners of benchData (alike: {direction: both}, as the 10,000 exact
// ones) —, through the shipped rules with 50 content rules, after stanzas
// of 100 other partner domains (classes narrowed, programs built).
// "facts": the engine gives the rules input.remote, and the domain is no
// part of the key (facet.go): a known class's decision. "lookup": without
// input.remote (the path before it), every new domain is a new class,
// evaluated in full.
func BenchmarkNewPartnerDomain10kDomains(b *testing.B) {
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
	in := func(domain string, i int) StanzaInput {
		local, remote := jid(fmt.Sprintf("user%d@company.test/r", i%4)), jid(fmt.Sprintf("peer%d@%s/r", i, domain))
		s := StanzaInput{Direction: "inbound", Kind: "message", Type: "chat", ID: fmt.Sprint(i), From: remote, To: local,
			Body: body, Children: []Child{{"body", "jabber:client"}}}
		if i%2 == 1 {
			s.Direction, s.From, s.To = "outbound", local, remote
		}
		return s
	}
	for _, mode := range []string{"facts", "lookup"} {
		b.Run(mode, func(b *testing.B) {
			e := benchEngine(b, 0)
			ctx := testContext(b)
			if mode == "lookup" {
				reloadWith(b, ctx, e, func(e *Engine) { e.noRemoteFacts = true })
			}
			measureNewKeys(b, ctx, e, 400,
				func(i int) StanzaInput { return in(fmt.Sprintf("partner%05d.test", i%100*97), i) },
				func(i int) StanzaInput { return in(fmt.Sprintf("new%d.wild%03d.test", i, i%100), i) })
		})
	}
}

// BenchmarkNewLocalUser10kUsers: the first stanza of a local user never
// seen before — outbound presence to one of 100 partner domains, each
// user one of the 10,000 listed in external_users (and 100 blocked users
// in the data) —, through the shipped rules and 10,000 partners, after
// other users' presence to the same domains (classes narrowed). "facts":
// the engine gives the rules input.local, and an allowed user is no part
// of the key. "lookup": without it (the path before), every new user is
// a new key, evaluated in full.
func BenchmarkNewLocalUser10kUsers(b *testing.B) {
	var data strings.Builder
	data.WriteString(benchData())
	data.WriteString("external_users:\n")
	for i := range 10_000 {
		fmt.Fprintf(&data, "  - user%05d@company.test\n", i)
	}
	data.WriteString("blocked_users:\n")
	for i := range 100 {
		fmt.Fprintf(&data, "  - blocked%03d@company.test\n", i)
	}
	in := func(i int) StanzaInput {
		return StanzaInput{Direction: "outbound", Kind: "presence", ID: fmt.Sprint(i),
			From: jid(fmt.Sprintf("user%05d@company.test/r", i%10_000)), To: jid(fmt.Sprintf("peer@partner%05d.test", i%100*97))}
	}
	for _, mode := range []string{"facts", "lookup"} {
		b.Run(mode, func(b *testing.B) {
			e := shippedEngine(b, data.String(), Config{})
			// Not testContext's 30s: without input.local each decision
			// builds the 10,000 users' set, milliseconds each.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if mode == "lookup" {
				reloadWith(b, ctx, e, func(e *Engine) { e.noRemoteFacts = true })
			}
			measureNewKeys(b, ctx, e, 200,
				func(i int) StanzaInput { return in(9_000 + i) },
				func(i int) StanzaInput { return in(i % 9_000) }) // never a warm-up user
		})
	}
}

// reloadWith sets a test knob of e and reloads its policy (the knobs
// apply from the next load).
func reloadWith(b *testing.B, ctx context.Context, e *Engine, knob func(*Engine)) {
	knob(e)
	if err := e.Reload(ctx); err != nil {
		b.Fatal(err)
	}
}

// measureNewKeys decides warm stanzas of warmUp(0..warm-1) first, classes
// narrowed and programs built at once, then measures one decision each of
// input(0..b.N-1), every one allowed.
func measureNewKeys(b *testing.B, ctx context.Context, e *Engine, warm int, warmUp, input func(i int) StanzaInput) {
	e.syncPrograms = true
	for i := range warm {
		w := warmUp(i)
		if d := e.DecideStanza(ctx, &w); !d.Allow {
			b.Fatalf("warm-up denied: %+v", d)
		}
	}
	e.syncPrograms = false
	inputs := make([]StanzaInput, b.N)
	for i := range inputs {
		inputs[i] = input(i)
	}
	before := e.Stats()
	measure(b, func(i int) {
		if d := e.DecideStanza(ctx, &inputs[i]); !d.Allow {
			b.Fatalf("denied: %+v", d)
		}
	})
	reportHitRate(b, e, before)
}

// BenchmarkKeyNarrowing: the cost of narrowing one key class (narrow.go):
// a partial evaluation of the shipped stanza rules (10,000 partners, 50
// content rules) with the JIDs, the domains and the text unknown, and the walk of its
// residual. It runs in the background, once per class.
func BenchmarkKeyNarrowing(b *testing.B) {
	e := benchEngine(b, 0)
	ctx := testContext(b)
	q := &e.current.Load().stanza
	in := StanzaInput{Direction: "outbound", Kind: "message", Type: "chat", From: jid("alice@company.test/phone"),
		To: jid("bob@partner00031.test"), Body: "hello", Children: []Child{{"body", "jabber:client"}}}
	f := q.facets.stanzaFacets(&in, q.need)
	known := withoutPaths(stanzaValue(&in, q.need&^textFieldBits, &f), q.narrow.paths)
	measure(b, func(int) {
		if c := q.narrow.narrowClass(ctx, known, time.Minute); c.why != "" || len(c.keep) != 0 { // no user rules: nothing kept
			b.Fatalf("%+v", c)
		}
	})
}

// BenchmarkFirstDecisionAfterReload10kDomains: each iteration reloads the
// policy, or restarts (a new engine), (10,000 partners, 50 content rules; not timed) after traffic of
// a few key classes — sessions and stanzas, both directions, messages
// with a ~400-byte body, presence, iq — and then measures the first
// decision of each class for a new pair of JIDs and a partner domain not
// seen before. "warm-up": the reload decided the old load's samples with
// the new policy before making it active (warm.go); "cold": the path
// before, each a full evaluation. "restart": the engine saved its samples
// (SaveSamples) and a new one started from them (Config.SampleFile,
// warmfile.go); "cold-restart": a new one without. reload-ms is the
// reload's (or the new engine's start's) duration, warm-up included.
func BenchmarkFirstDecisionAfterReload10kDomains(b *testing.B) {
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
	stanza := func(i int, dir Direction, kind, typ, text string) StanzaInput {
		local, remote := jid(fmt.Sprintf("user%d@company.test/r", i%4)), jid(fmt.Sprintf("peer%d@partner%05d.test/r", i, i*7%10_000))
		s := StanzaInput{Direction: dir, Kind: kind, Type: typ, ID: fmt.Sprint(i), From: remote, To: local, Body: text}
		if text != "" {
			s.Children = []Child{{"body", "jabber:client"}}
		}
		if dir == "outbound" {
			s.From, s.To = local, remote
		}
		return s
	}
	stanzas := func(i int) []StanzaInput {
		var out []StanzaInput
		for _, dir := range []Direction{"inbound", "outbound"} {
			out = append(out, stanza(i, dir, "message", "chat", body), stanza(i, dir, "message", "normal", body),
				stanza(i, dir, "presence", "", ""), stanza(i, dir, "presence", "unavailable", ""), stanza(i, dir, "iq", "get", ""))
		}
		return out
	}
	session := func(i int, dir Direction, auth string) SessionInput {
		return SessionInput{Direction: dir, LocalDomain: "company.test", RemoteDomain: fmt.Sprintf("partner%05d.test", i*7%10_000),
			RemoteIP: "192.0.2.1", TLS: tls13, Auth: auth, Now: "2026-12-01T12:00:00Z"}
	}
	sessions := func(i int) []SessionInput {
		return []SessionInput{session(i, "inbound", "dialback"), session(i, "inbound", "sasl_external"), session(i, "outbound", "dialback")}
	}
	for _, mode := range []string{"warm-up", "cold", "restart", "cold-restart"} {
		b.Run(mode, func(b *testing.B) {
			data := benchData()
			cfg := Config{}
			if mode == "restart" {
				cfg.SampleFile = filepath.Join(b.TempDir(), "samples.json")
			}
			e := shippedEngine(b, data, cfg)
			e.noWarmUp = mode == "cold"
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			var first, reloads []time.Duration
			next := 1_000
			for range b.N {
				for range 3 { // the traffic before the reload: classes narrowed in the background
					next++
					for _, in := range stanzas(next) {
						e.DecideStanza(ctx, &in)
					}
					for _, in := range sessions(next) {
						e.DecideSession(ctx, &in)
					}
					e.waitBackground()
				}
				start := time.Now()
				switch mode {
				case "restart", "cold-restart":
					if err := e.SaveSamples(); err != nil {
						b.Fatal(err)
					}
					start = time.Now()
					e = shippedEngine(b, data, cfg)
				default:
					if err := e.Reload(ctx); err != nil {
						b.Fatal(err)
					}
				}
				reloads = append(reloads, time.Since(start))
				next++
				for _, in := range stanzas(next) {
					start := time.Now()
					if d := e.DecideStanza(ctx, &in); !d.Allow {
						b.Fatalf("denied: %+v %+v", in, d)
					}
					first = append(first, time.Since(start))
				}
				for _, in := range sessions(next) {
					start := time.Now()
					if d := e.DecideSession(ctx, &in); !d.Allow {
						b.Fatalf("denied: %+v %+v", in, d)
					}
					first = append(first, time.Since(start))
				}
			}
			if s := e.Stats(); s.Failures != 0 {
				b.Fatalf("%d failures", s.Failures)
			}
			slices.Sort(first)
			slices.Sort(reloads)
			pct := func(d []time.Duration, p float64) float64 { return float64(d[int(float64(len(d)-1)*p)].Nanoseconds()) }
			b.ReportMetric(pct(first, 0.50), "first-p50-ns")
			b.ReportMetric(pct(first, 0.99), "first-p99-ns")
			b.ReportMetric(pct(reloads, 0.50)/1e6, "reload-ms")
			warmed := float64(e.Stats().WarmedClasses) / float64(b.N) // a reload's count adds up
			if strings.HasSuffix(mode, "restart") {
				warmed = float64(e.Stats().WarmedClasses) // the last engine's
			}
			b.ReportMetric(warmed, "warmed/reload")
		})
	}
}

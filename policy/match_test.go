package policy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestKeywordMatcher(t *testing.T) {
	tests := []struct {
		keywords []string
		text     string
		want     bool
	}{
		{[]string{"CONFIDENTIAL"}, "this is confidential!", true},
		{[]string{"confidential"}, "THIS IS CONFIDENTIAL", true},
		{[]string{"INTERNAL ONLY"}, "internal  only", false},
		{[]string{"INTERNAL ONLY"}, "for Internal Only use", true},
		{[]string{"he", "she", "hers"}, "ushers", true},
		{[]string{"abcd", "bc"}, "xabcx", true},
		{[]string{"abcd", "bcx"}, "abcx", true},
		{[]string{"abcd"}, "abc", false},
		{[]string{"geheim"}, "Streng GEHEIM", true},
		{[]string{"Größe"}, "die GRÖSSE", false}, // simple lower-casing, no full folding
		{[]string{"größe"}, "Die GRÖßE zählt", true},
		{[]string{"ünter"}, "ÜNTER", true},
		{nil, "anything", false},
		{[]string{""}, "anything", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%s", tt.keywords, tt.text), func(t *testing.T) {
			m, err := newKeywordMatcher(tt.keywords)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.match(tt.text); got != tt.want {
				t.Fatalf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestKeywordMatcherAgainstNaive cross-checks the automaton with
// strings.Contains on lower-cased text.
func TestKeywordMatcherAgainstNaive(t *testing.T) {
	keywords := []string{"aab", "ab", "bab", "bba", "abba", "b a", "ZZ"}
	m, err := newKeywordMatcher(keywords)
	if err != nil {
		t.Fatal(err)
	}
	alphabet := "abAB z"
	var texts []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		texts = append(texts, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+string(c), n-1)
		}
	}
	gen("", 5)
	for _, text := range texts {
		want := false
		for _, k := range keywords {
			if strings.Contains(strings.ToLower(text), strings.ToLower(k)) {
				want = true
			}
		}
		if got := m.match(text); got != want {
			t.Fatalf("%q: match = %v, want %v", text, got, want)
		}
	}
}

// FuzzKeywordSets cross-checks a scan of two keyword sets (the keywords
// separated by commas, the sets by "|") with strings.Contains on
// lower-cased text: long texts, where the start state skips eight bytes
// at a time, and non-ASCII ones.
func FuzzKeywordSets(f *testing.F) {
	f.Add("secret,plan|x", "An ordinary chat message about lunch plans, nothing SECRET.")
	f.Add("abba,bab|zz", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabba")
	f.Add("ünter|größe", "0123456789 0123456789 ÜNTER")
	f.Add("a|b", "")
	f.Add("longer keyword|k", "ccccccckccccccccccccccccccccccccclonger keyworc longer keyword")
	f.Fuzz(func(t *testing.T, keywords, text string) {
		if len(keywords) > 256 {
			return // a trie of 254 byte classes per state: keep each input quick
		}
		var sets [][]string
		for _, set := range strings.SplitN(keywords, "|", 2) {
			ks := strings.Split(set, ",")
			if len(ks) > 16 {
				ks = ks[:16]
			}
			sets = append(sets, ks)
		}
		m, err := newKeywordSets(sets)
		if err != nil {
			return // more than 254 distinct bytes, or too many states
		}
		var want uint64
		for i, set := range sets {
			for _, k := range set {
				if strings.Contains(strings.ToLower(text), strings.ToLower(k)) {
					want |= 1 << i
				}
			}
		}
		if got := m.scan(text); got != want {
			t.Fatalf("sets %q, text %q: scan = %b, want %b", sets, text, got, want)
		}
	})
}

func TestPatternMatcher(t *testing.T) {
	m, err := newPatternMatcher([]string{`\b(?:\d[ -]?){13,16}\b`, `(?i)project\s+x`})
	if err != nil {
		t.Fatal(err)
	}
	for text, want := range map[string]bool{
		"4111 1111 1111 1111": true, "call 1234": false, "about PROJECT   X": true, "project y": false,
	} {
		if got := m.match(text); got != want {
			t.Errorf("%q: %v, want %v", text, got, want)
		}
	}
	if _, err := newPatternMatcher([]string{"ok", "(unclosed"}); err == nil || !strings.Contains(err.Error(), "(unclosed") {
		t.Fatalf("err = %v", err)
	}
}

func TestDomainMatcher(t *testing.T) {
	m := newDomainMatcher[string]()
	for _, p := range []string{"partner.test", "*.example.org", "*.chat.example.org", "bücher.example", "*.XN--BCHER-KVA.example"} {
		if err := m.add(p, p); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ domain, want string }{
		{"partner.test", "partner.test"},
		{"PARTNER.TEST.", "partner.test"},
		{"sub.partner.test", ""},
		{"chat.example.org", "*.example.org"},
		{"a.chat.example.org", "*.chat.example.org"},
		{"a.b.example.org", "*.example.org"},
		{"example.org", ""},
		{"badexample.org", ""},
		{"xn--bcher-kva.example", "bücher.example"},
		{"www.xn--bcher-kva.example", "*.XN--BCHER-KVA.example"},
	}
	for _, tt := range tests {
		got := ""
		if v := m.lookup(tt.domain); v != nil {
			got = v[0]
		}
		if got != tt.want {
			t.Errorf("lookup(%q) = %q, want %q", tt.domain, got, tt.want)
		}
	}
	any := newDomainMatcher[string]()
	any.add("*", "*")
	any.add("x.test", "x")
	if v := any.lookup("y.test"); len(v) != 1 || v[0] != "*" {
		t.Errorf("* fallback: %v", v)
	}
	if v := any.lookup("x.test"); v[0] != "x" {
		t.Errorf("exact before *: %v", v)
	}
}

// TestMatchersCompiledOncePerSet checks that a keyword set read from the
// store is compiled once, however many decisions use it.
func TestMatchersCompiledOncePerSet(t *testing.T) {
	e := shippedEngine(t, testData, Config{CacheSize: -1})
	ctx := testContext(t)
	for i := 0; i < 50; i++ {
		e.DecideStanza(ctx, &StanzaInput{Direction: "outbound", Kind: "message", From: jid("alice@company.test"), To: jid("p@partner.test"), Body: fmt.Sprint("hello ", i)})
	}
	b := e.current.Load().builtins
	b.mu.RLock()
	defer b.mu.RUnlock()
	// partners, keywords, patterns, audit_full, muc.services
	if b.compiles > 6 {
		t.Fatalf("%d sets compiled for 50 decisions", b.compiles)
	}
}

// BenchmarkKeywordSet compares the automaton with one case-insensitive
// alternation regexp, for 50 keywords over a 400-byte body.
func BenchmarkKeywordSet(b *testing.B) {
	var kws []string
	for i := range 50 {
		kws = append(kws, fmt.Sprintf("Secret-Word-%02d", i))
	}
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9)
	b.Run("aho-corasick", func(b *testing.B) {
		m, _ := newKeywordMatcher(kws)
		for b.Loop() {
			if m.match(body) {
				b.Fatal("match")
			}
		}
	})
	b.Run("regexp", func(b *testing.B) {
		quoted := make([]string, len(kws))
		for i, k := range kws {
			quoted[i] = regexp.QuoteMeta(k)
		}
		re := regexp.MustCompile("(?i)" + strings.Join(quoted, "|"))
		for b.Loop() {
			if re.MatchString(body) {
				b.Fatal("match")
			}
		}
	})
}

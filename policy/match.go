package policy

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// keywordMatcher finds any of a set of keywords in a text, ignoring case,
// in one pass over the text: an Aho-Corasick automaton compiled to a dense
// transition table over the byte classes that occur in the keywords.
//
// Case is ignored by lower-casing both the keywords and the text
// (strings.ToLower: Unicode simple case mapping). ASCII text is lowered
// byte by byte during the scan, without allocating; text with non-ASCII
// bytes is lowered as a whole first.
type keywordMatcher struct {
	class   [256]uint8 // byte → class; 0 = a byte in no keyword
	stride  int        // classes + 1
	delta   []int32    // state*stride + class → next state
	final   []bool     // state ends (a suffix that is) a keyword
	empty   bool       // an empty keyword: everything matches
	nothing bool       // no keywords: nothing matches
}

func newKeywordMatcher(keywords []string) (*keywordMatcher, error) {
	m := &keywordMatcher{}
	if len(keywords) == 0 {
		m.nothing = true
		return m, nil
	}
	lowered := make([]string, len(keywords))
	classes := 1
	for i, k := range keywords {
		lowered[i] = strings.ToLower(k)
		if lowered[i] == "" {
			m.empty = true
		}
		for j := 0; j < len(lowered[i]); j++ {
			b := lowered[i][j]
			if m.class[b] == 0 {
				if classes == 255 {
					return nil, fmt.Errorf("keyword set uses more than 254 distinct bytes")
				}
				m.class[b] = uint8(classes)
				classes++
			}
		}
	}
	m.stride = classes
	// Trie.
	type node struct {
		next  []int32
		fail  int32
		final bool
	}
	nodes := []node{{next: make([]int32, classes)}}
	for _, k := range lowered {
		s := int32(0)
		for j := 0; j < len(k); j++ {
			c := m.class[k[j]]
			if nodes[s].next[c] == 0 {
				nodes = append(nodes, node{next: make([]int32, classes)})
				nodes[s].next[c] = int32(len(nodes) - 1)
			}
			s = nodes[s].next[c]
		}
		nodes[s].final = true
	}
	// Breadth-first: failure links, and the goto function completed into a
	// DFA (a missing edge follows the failure link's edge).
	queue := make([]int32, 0, len(nodes))
	for c := 1; c < classes; c++ {
		if t := nodes[0].next[c]; t != 0 {
			nodes[t].fail = 0
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if nodes[nodes[s].fail].final {
			nodes[s].final = true
		}
		for c := 1; c < classes; c++ {
			t := nodes[s].next[c]
			if t != 0 {
				nodes[t].fail = nodes[nodes[s].fail].next[c]
				queue = append(queue, t)
			} else {
				nodes[s].next[c] = nodes[nodes[s].fail].next[c]
			}
		}
	}
	m.delta = make([]int32, len(nodes)*classes)
	m.final = make([]bool, len(nodes))
	for i, n := range nodes {
		copy(m.delta[i*classes:], n.next)
		m.final[i] = n.final
	}
	return m, nil
}

// match reports whether text contains any keyword, ignoring case.
func (m *keywordMatcher) match(text string) bool {
	if m.nothing {
		return false
	}
	if m.empty {
		return true
	}
	for i := 0; i < len(text); i++ {
		if text[i] >= utf8.RuneSelf {
			text = strings.ToLower(text)
			break
		}
	}
	s := int32(0)
	for i := 0; i < len(text); i++ {
		b := text[i]
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		s = m.delta[int(s)*m.stride+int(m.class[b])]
		if m.final[s] {
			return true
		}
	}
	return false
}

// patternMatcher matches a set of regular expressions (Go's RE2 syntax) in
// one pass: they are joined into one alternation.
type patternMatcher struct {
	re *regexp.Regexp // nil: no patterns, nothing matches
}

func newPatternMatcher(patterns []string) (*patternMatcher, error) {
	if len(patterns) == 0 {
		return &patternMatcher{}, nil
	}
	var b strings.Builder
	for i, p := range patterns {
		// Compile each alone first so that an error names the pattern.
		if _, err := regexp.Compile(p); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if i > 0 {
			b.WriteByte('|')
		}
		b.WriteString("(?:")
		b.WriteString(p)
		b.WriteString(")")
	}
	re, err := regexp.Compile(b.String())
	if err != nil {
		return nil, fmt.Errorf("joining patterns: %w", err)
	}
	return &patternMatcher{re: re}, nil
}

func (m *patternMatcher) match(text string) bool {
	return m.re != nil && m.re.MatchString(text)
}

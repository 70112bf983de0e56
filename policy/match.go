package policy

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/xmppedge/xmppedge/internal/bytescan"
)

// keywordMatcher finds any of a set of keywords in a text, ignoring case,
// in one pass over the text: an Aho-Corasick automaton compiled to a dense
// transition table over the byte classes that occur in the keywords.
//
// Case is ignored by lower-casing both the keywords and the text
// (strings.ToLower: Unicode simple case mapping). ASCII text is lowered
// byte by byte during the scan (an upper-case ASCII letter is in the class
// of its lower-case form), without allocating; text with non-ASCII bytes
// is lowered as a whole first.
type keywordMatcher struct {
	m *keywordSets
}

func newKeywordMatcher(keywords []string) (*keywordMatcher, error) {
	m, err := newKeywordSets([][]string{keywords})
	if err != nil {
		return nil, err
	}
	return &keywordMatcher{m: m}, nil
}

// match reports whether text contains any keyword, ignoring case.
func (m *keywordMatcher) match(text string) bool { return m.m.scan(text) != 0 }

// keywordSets matches up to 64 keyword sets at once: one pass over the
// text tells which sets have a keyword in it (bit i for set i). Content
// programs use it for all the keyword tests of one field.
type keywordSets struct {
	class  [256]uint8 // byte → class; 0 = a byte in no keyword
	stride int32      // classes
	delta  []int32    // state*stride + class → next state*stride, | hasMask
	mask   []uint64   // state → the sets a keyword of which ends there
	always uint64     // sets with an empty keyword: they always match
	all    uint64     // sets that can match: the scan stops when all did
	// stays[b] is 1 when byte b keeps the automaton in its start state
	// (it begins no keyword); staysASCII also is 0 for every non-ASCII
	// byte, for scan to lower the text. A text is mostly bytes that begin
	// no keyword, and in the start state those are skipped with
	// bytescan.Run, where the automaton's steps each wait for the
	// previous state.
	stays, staysASCII [256]uint8
}

const hasMask = 1 << 30

func newKeywordSets(sets [][]string) (*keywordSets, error) {
	if len(sets) > 64 {
		return nil, fmt.Errorf("more than 64 keyword sets")
	}
	m := &keywordSets{}
	lowered, classes, err := m.classify(sets)
	if err != nil {
		return nil, err
	}
	nodes := m.buildTrie(lowered, classes)
	if len(nodes)*classes >= hasMask {
		return nil, fmt.Errorf("keyword sets too large (%d states)", len(nodes))
	}
	completeAutomaton(nodes, classes)
	m.compileTable(nodes, classes)
	for b := range 256 {
		if m.delta[m.class[b]] == 0 {
			m.stays[b] = 1
			if b < utf8.RuneSelf {
				m.staysASCII[b] = 1
			}
		}
	}
	return m, nil
}

// trieNode is a state of the keyword automaton while it is built.
type trieNode struct {
	next []int32 // class → state; 0 = none (in the trie) or the root
	fail int32
	mask uint64 // the sets a keyword of which ends here
}

// classify lowers the keywords of sets, notes in m which sets can match
// (all) and which always do (always), and gives every byte that occurs in
// a keyword its class in m.class, upper-case ASCII letters sharing the
// class of their lower-case form. It returns the lowered sets and the
// number of classes (class 0 included).
func (m *keywordSets) classify(sets [][]string) (lowered [][]string, classes int, err error) {
	lowered = make([][]string, len(sets))
	classes = 1
	for i, set := range sets {
		if len(set) > 0 {
			m.all |= 1 << i
		}
		for _, k := range set {
			l := strings.ToLower(k)
			lowered[i] = append(lowered[i], l)
			if l == "" {
				m.always |= 1 << i
			}
			for j := 0; j < len(l); j++ {
				b := l[j]
				if m.class[b] == 0 {
					if classes == 255 {
						return nil, 0, fmt.Errorf("keyword set uses more than 254 distinct bytes")
					}
					m.class[b] = uint8(classes)
					classes++
				}
			}
		}
	}
	// Upper-case ASCII letters scan as their lower-case forms.
	for b := 'A'; b <= 'Z'; b++ {
		m.class[b] = m.class[b+'a'-'A']
	}
	m.stride = int32(classes)
	return lowered, classes, nil
}

// buildTrie returns the trie of the lowered keywords over m's byte
// classes, each keyword's last state marked with its set.
func (m *keywordSets) buildTrie(lowered [][]string, classes int) []trieNode {
	nodes := []trieNode{{next: make([]int32, classes)}}
	for i, set := range lowered {
		for _, k := range set {
			s := int32(0)
			for j := 0; j < len(k); j++ {
				c := m.class[k[j]]
				if nodes[s].next[c] == 0 {
					nodes = append(nodes, trieNode{next: make([]int32, classes)})
					nodes[s].next[c] = int32(len(nodes) - 1)
				}
				s = nodes[s].next[c]
			}
			nodes[s].mask |= 1 << i
		}
	}
	return nodes
}

// completeAutomaton walks the trie breadth-first: failure links (a state
// also ends the keywords its failure state ends), and the goto function
// completed into a DFA (a missing edge follows the failure link's edge).
func completeAutomaton(nodes []trieNode, classes int) {
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
		nodes[s].mask |= nodes[nodes[s].fail].mask
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
}

// compileTable lays the DFA out as m's dense transition table (delta,
// each target flagged with hasMask when a keyword ends there) and masks.
func (m *keywordSets) compileTable(nodes []trieNode, classes int) {
	m.delta = make([]int32, len(nodes)*classes)
	m.mask = make([]uint64, len(nodes))
	for i, n := range nodes {
		for c, t := range n.next {
			v := t * int32(classes)
			if nodes[t].mask != 0 {
				v |= hasMask
			}
			m.delta[i*classes+c] = v
		}
		m.mask[i] = n.mask
	}
}

// scan returns the sets that have a keyword in text, ignoring case.
func (m *keywordSets) scan(text string) uint64 {
	found := m.always
	if found == m.all {
		return found
	}
	delta, class, stride, stays := m.delta, &m.class, m.stride, &m.staysASCII
	s := int32(0)
	for i := 0; i < len(text); i++ {
		if s == 0 {
			if i = bytescan.Run(text, i, len(text), stays); i == len(text) {
				break
			}
		}
		b := text[i]
		if b >= utf8.RuneSelf {
			// Not ASCII: lower-case the whole text and start again.
			return m.scanLowered(strings.ToLower(text))
		}
		t := delta[s+int32(class[b])]
		s = t &^ hasMask
		if t&hasMask != 0 {
			found |= m.mask[s/stride]
			if found == m.all {
				break
			}
		}
	}
	return found
}

func (m *keywordSets) scanLowered(text string) uint64 {
	found := m.always
	s := int32(0)
	for i := 0; i < len(text); i++ {
		if s == 0 {
			if i = bytescan.Run(text, i, len(text), &m.stays); i == len(text) {
				break
			}
		}
		t := m.delta[s+int32(m.class[text[i]])]
		s = t &^ hasMask
		if t&hasMask != 0 {
			found |= m.mask[s/m.stride]
			if found == m.all {
				break
			}
		}
	}
	return found
}

// patternMatcher matches a set of regular expressions (Go's RE2 syntax).
// Patterns are matched in the cheapest way found for each:
//   - a pattern with a literal prefix alone, and only when the text
//     contains the prefix (a fast substring search);
//   - a pattern whose matches can only start with a byte of a small set
//     (computed from its syntax: \b(?:\d[ -]?){13,16}\b starts with a
//     digit) alone, from the first such byte of the text: a text without
//     one is not scanned at all;
//   - all other patterns joined into one alternation, one pass.
type patternMatcher struct {
	separate []prefiltered
	joined   *regexp.Regexp // nil: none left to join
}

// prefiltered is a pattern with, when first is set, the bytes its matches
// can start with.
type prefiltered struct {
	re     *regexp.Regexp
	prefix string // every match starts with this literal
	first  *[256]bool
}

func newPatternMatcher(patterns []string) (*patternMatcher, error) {
	m := &patternMatcher{}
	var b strings.Builder
	joined := 0
	for _, p := range patterns {
		// Compile each alone first so that an error names the pattern.
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		if prefix, _ := re.LiteralPrefix(); prefix != "" {
			m.separate = append(m.separate, prefiltered{re: re, prefix: prefix})
			continue
		}
		if first := firstBytes(p); first != nil {
			m.separate = append(m.separate, prefiltered{re: re, first: first})
			continue
		}
		if joined > 0 {
			b.WriteByte('|')
		}
		joined++
		b.WriteString("(?:")
		b.WriteString(p)
		b.WriteString(")")
	}
	if joined > 0 {
		re, err := regexp.Compile(b.String())
		if err != nil {
			return nil, fmt.Errorf("joining patterns: %w", err)
		}
		m.joined = re
	}
	return m, nil
}

func (m *patternMatcher) match(text string) bool {
	for i := range m.separate {
		if m.separate[i].match(text) {
			return true
		}
	}
	return m.joined != nil && m.joined.MatchString(text)
}

func (p *prefiltered) match(text string) bool {
	if p.prefix != "" {
		return strings.Contains(text, p.prefix) && p.re.MatchString(text)
	}
	if p.first == nil {
		return p.re.MatchString(text)
	}
	i := 0
	for i < len(text) && !p.first[text[i]] {
		i++
	}
	if i == len(text) {
		return false // no byte a match can start with
	}
	// Scan from the rune before the first candidate, so that \b and \B
	// at the candidate see the same context as in the whole text. The
	// previous byte must be ASCII (a rune of its own, whatever the bytes
	// around it): otherwise scan the whole text. No match starts at the
	// previous byte (it is not in first), and patterns with ^ or \A have
	// no first set.
	if i > 0 {
		if text[i-1] >= utf8.RuneSelf {
			return p.re.MatchString(text)
		}
		text = text[i-1:]
	}
	return p.re.MatchString(text)
}

// maxFirstBytes bounds the first-byte set worth a prefilter.
const maxFirstBytes = 128

// firstBytes returns the set of bytes that every non-empty match of
// pattern starts with, or nil when there is no useful set: the pattern can
// match the empty string, has a start-of-text or start-of-line assertion,
// or can start with too many bytes. A rune beyond ASCII (or folded to one)
// counts as every byte from 0x80: the set over-approximates, never misses.
func firstBytes(pattern string) *[256]bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	var set [256]bool
	empty, ok := firstOf(re.Simplify(), &set)
	if !ok || empty {
		return nil
	}
	n := 0
	for _, in := range set {
		if in {
			n++
		}
	}
	if n > maxFirstBytes {
		return nil
	}
	return &set
}

// firstOf adds to set the bytes a non-empty match of re can start with,
// and reports whether re can match the empty string; ok is false for a
// construct not handled.
func firstOf(re *syntax.Regexp, set *[256]bool) (empty, ok bool) {
	addRune := func(r rune, fold bool) {
		add := func(r rune) {
			if r < utf8.RuneSelf {
				set[r] = true
			} else {
				for b := utf8.RuneSelf; b < 256; b++ {
					set[b] = true
				}
			}
		}
		add(r)
		if fold {
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				add(f)
			}
		}
	}
	switch re.Op {
	case syntax.OpNoMatch:
		return false, true
	case syntax.OpEmptyMatch, syntax.OpEndLine, syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return true, true
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return true, true
		}
		addRune(re.Rune[0], re.Flags&syntax.FoldCase != 0)
		return false, true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			lo, hi := re.Rune[i], re.Rune[i+1]
			for r := lo; r <= hi && r < utf8.RuneSelf; r++ {
				set[r] = true
			}
			if hi >= utf8.RuneSelf {
				addRune(utf8.RuneSelf, false)
			}
		}
		return false, true
	case syntax.OpCapture:
		return firstOf(re.Sub[0], set)
	case syntax.OpStar, syntax.OpQuest:
		_, ok := firstOf(re.Sub[0], set)
		return true, ok
	case syntax.OpPlus:
		return firstOf(re.Sub[0], set)
	case syntax.OpRepeat:
		e, ok := firstOf(re.Sub[0], set)
		return e || re.Min == 0, ok
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			e, ok := firstOf(sub, set)
			if !ok {
				return false, false
			}
			if !e {
				return false, true
			}
		}
		return true, true
	case syntax.OpAlternate:
		empty := false
		for _, sub := range re.Sub {
			e, ok := firstOf(sub, set)
			if !ok {
				return false, false
			}
			empty = empty || e
		}
		return empty, true
	}
	// OpAnyChar, OpAnyCharNotNL (any byte), OpBeginLine, OpBeginText.
	return false, false
}

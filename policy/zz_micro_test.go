package policy

import (
	"fmt"
	"strings"
	"testing"
)

func BenchmarkZZMatchers(b *testing.B) {
	body := strings.Repeat("An ordinary chat message about lunch plans. ", 9) + " 42"
	var kws []string
	for i := range 40 {
		kws = append(kws, fmt.Sprintf("secret-word-%02d", i))
	}
	pats := []string{`\b(?:\d[ -]?){13,16}\b`}
	for i := range 9 {
		pats = append(pats, fmt.Sprintf(`project-%d\s+[a-z]+\d{3}`, i))
	}
	km, _ := newKeywordMatcher(kws)
	pm, _ := newPatternMatcher(pats)
	pm1, _ := newPatternMatcher(pats[:1])
	pm9, _ := newPatternMatcher(pats[1:])
	b.Run("kw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			km.match(body)
		}
	})
	b.Run("pat10", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pm.match(body)
		}
	})
	b.Run("pat-card", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pm1.match(body)
		}
	})
	b.Run("pat-9", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pm9.match(body)
		}
	})
}

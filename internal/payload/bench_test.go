package payload

import (
	"testing"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

func benchStanza(b *testing.B, name string) string {
	for _, tt := range classifyTests {
		if tt.name == name {
			return tt.stanza
		}
	}
	b.Fatalf("no test stanza %q", name)
	return ""
}

// BenchmarkInteresting is what every message pays: the pre-check on what
// the content scanner already yields.
func BenchmarkInteresting(b *testing.B) {
	for _, name := range []string{"plain chat message", "Conversations OMEMO with its fallback body"} {
		b.Run(name, func(b *testing.B) {
			c, ok := xmlstream.ParseContent([]byte(benchStanza(b, name)), streamHeader)
			if !ok {
				b.Fatal("ParseContent refused the stanza")
			}
			b.ReportAllocs()
			for b.Loop() {
				Interesting(c.Children, c.Body)
			}
		})
	}
}

// BenchmarkClassify is the cost on a parsed tree (without ParseNode).
func BenchmarkClassify(b *testing.B) {
	for _, name := range []string{"plain chat message", "Conversations OMEMO with its fallback body", "HTTP upload link (XEP-0363 + XEP-0066)", "Jingle file offer over SOCKS5"} {
		b.Run(name, func(b *testing.B) {
			n, body, _ := parse(b, benchStanza(b, name))
			b.ReportAllocs()
			for b.Loop() {
				Classify(n, body)
			}
		})
	}
}

// BenchmarkParseAndClassify adds the tree: what an interesting stanza
// costs in all.
func BenchmarkParseAndClassify(b *testing.B) {
	for _, name := range []string{"plain chat message", "Conversations OMEMO with its fallback body"} {
		b.Run(name, func(b *testing.B) {
			raw := []byte(benchStanza(b, name))
			b.ReportAllocs()
			for b.Loop() {
				n, err := xmlstream.ParseNode(raw, streamHeader)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := treeContent(n)
				Classify(n, body)
			}
		})
	}
}

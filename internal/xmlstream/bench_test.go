package xmlstream

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"testing"
)

// benchStanzas returns n realistic message stanzas of about 400 bytes
// each: several attributes, xml:lang, a body, and children in other
// namespaces.
func benchStanzas(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`<message from='alice.liddell@company.test/laptop-%04d' to='bob.builder@partner.test' type='chat' id='b8a1c0de-%08d' xml:lang='en'>`+
			`<body>Hello Bob, are we still on for the review at 3pm? I&apos;ll bring the numbers &amp; the slides. Message %d.</body>`+
			`<active xmlns='http://jabber.org/protocol/chatstates'/>`+
			`<request xmlns='urn:xmpp:receipts'/>`+
			`<origin-id xmlns='urn:xmpp:sid:0' id='c5d3a1f0-%08d'/></message>`, i%10000, i, i, i)
	}
	return out
}

// cycleReader returns the header once, then the body again and again, in
// reads of at most 16 KiB (a TLS record).
type cycleReader struct {
	header []byte
	body   []byte
	off    int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	if len(p) > 16<<10 {
		p = p[:16<<10]
	}
	if len(c.header) > 0 {
		n := copy(p, c.header)
		c.header = c.header[n:]
		return n, nil
	}
	n := copy(p, c.body[c.off:])
	c.off += n
	if c.off == len(c.body) {
		c.off = 0
	}
	return n, nil
}

func benchInput() (header string, body []byte, perStanza int) {
	stanzas := benchStanzas(256)
	joined := strings.Join(stanzas, "")
	return prosodyHeader, []byte(joined), len(joined) / len(stanzas)
}

func BenchmarkReaderNext(b *testing.B) {
	header, body, per := benchInput()
	r := NewReader(&cycleReader{header: []byte(header), body: body}, Limits{})
	if _, err := r.ReadHeader(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(per))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		el, err := r.Next()
		if err != nil {
			b.Fatal(err)
		}
		if el.Local != "message" || el.From == "" {
			b.Fatal("bad element")
		}
	}
}

func BenchmarkEncodingXMLToken(b *testing.B) {
	header, body, per := benchInput()
	d := xml.NewDecoder(&cycleReader{header: []byte(header), body: body})
	// Consume the declaration and the stream start.
	for {
		tok, err := d.Token()
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := tok.(xml.StartElement); ok {
			break
		}
	}
	b.SetBytes(int64(per))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		depth := 0
		for {
			tok, err := d.Token()
			if err != nil {
				b.Fatal(err)
			}
			switch tok.(type) {
			case xml.StartElement:
				depth++
			case xml.EndElement:
				depth--
			}
			if depth == 0 {
				if _, ok := tok.(xml.EndElement); ok {
					break
				}
			}
		}
	}
}

func TestBenchStanzaSize(t *testing.T) {
	_, _, per := benchInput()
	if per < 350 || per > 450 {
		t.Fatalf("benchmark stanza is %d bytes, want about 400", per)
	}
	// And the benchmark input is accepted by both parsers.
	header, body, _ := benchInput()
	r := NewReader(io.MultiReader(strings.NewReader(header), strings.NewReader(string(body))), Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		el, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		checkDifferential(t, el, h.Namespaces)
	}
}

// benchElement returns one typical 400-byte message as read by Next, with
// its stream header's namespaces.
func benchElement(b *testing.B) (Element, map[string]string) {
	b.Helper()
	r := NewReader(strings.NewReader(prosodyHeader+benchStanzas(1)[0]), Limits{})
	h, err := r.ReadHeader()
	if err != nil {
		b.Fatal(err)
	}
	el, err := r.Next()
	if err != nil {
		b.Fatal(err)
	}
	return el, h.Namespaces
}

func BenchmarkAppendForwardAddressed(b *testing.B) {
	el, ns := benchElement(b)
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(el.Raw)))
	b.ReportAllocs()
	for b.Loop() {
		dst = el.AppendForwardAddressed(dst[:0], ns, "alice.liddell@company.test/laptop-0000", "bob.builder@partner.test")
	}
}

func BenchmarkAppendCanonical(b *testing.B) {
	el, ns := benchElement(b)
	n, err := ParseNode(el.Raw, ns)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 1024)
	b.SetBytes(int64(len(el.Raw)))
	b.Run("tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			dst, _ = AppendCanonical(dst[:0], n, NSServer, nil, 0)
		}
	})
	// What the relay pays for a stanza it rewrites: parse, then write.
	b.Run("ParseNode+tree", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n, _ := ParseNode(el.Raw, ns)
			dst, _ = AppendCanonical(dst[:0], n, NSServer, nil, 0)
		}
	})
}

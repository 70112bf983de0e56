package xmlstream

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestAppendCanonical(t *testing.T) {
	tests := []struct {
		name, in, want string
		streamNS       string // default NSServer
	}{
		{"plain message, quotes normalised",
			`<message from="a@b/r" to='c@d' type='chat' id="x'y"><body>Hi</body></message>`,
			`<message from='a@b/r' to='c@d' type='chat' id='x&apos;y'><body>Hi</body></message>`, ""},
		{"cdata becomes escaped text",
			`<message><body>a<![CDATA[<message to='evil'/> & ]]]]>b</body></message>`,
			`<message><body>a&lt;message to='evil'/&gt; &amp; ]]b</body></message>`, ""},
		{"mixed content in order, whitespace kept",
			"<message>\n <body>Hi <b xmlns='urn:x'>there</b> you</body>\n</message>",
			"<message>\n <body>Hi <b xmlns='urn:x'>there</b> you</body>\n</message>", ""},
		{"prefixed elements become default namespaces",
			`<message><x:a xmlns:x='urn:x'><x:b/><c xmlns=''><x:d/></c></x:a></message>`,
			`<message><a xmlns='urn:x'><b/><c xmlns=''><d xmlns='urn:x'/></c></a></message>`, ""},
		{"root in another namespace, header prefix",
			`<db:result from='a' to='b'>k</db:result>`,
			`<result xmlns='jabber:server:dialback' from='a' to='b'>k</result>`, ""},
		{"root in no namespace",
			`<message xmlns=''><body/></message>`,
			`<message xmlns=''><body/></message>`, ""},
		{"stream with another default namespace",
			`<message><body/></message>`,
			`<message xmlns='jabber:server'><body/></message>`, NSClient},
		{"prefixed attributes get declared prefixes, xml keeps its own",
			`<message xmlns:p='urn:p' xmlns:q='urn:q' p:a='1' xml:lang='en' q:b='2' p:c='3'><x p:d='4'/></message>`,
			`<message xmlns:ns0='urn:p' xmlns:ns1='urn:q' ns0:a='1' xml:lang='en' ns1:b='2' ns0:c='3'><x xmlns:ns0='urn:p' ns0:d='4'/></message>`, ""},
		{"attribute in a header namespace",
			`<message db:x='1' stream:y='2'/>`,
			`<message xmlns:ns0='jabber:server:dialback' xmlns:ns1='http://etherx.jabber.org/streams' ns0:x='1' ns1:y='2'/>`, ""},
		{"attribute in the element's own namespace",
			`<p:m xmlns:p='urn:p' p:a='1'/>`,
			`<m xmlns='urn:p' xmlns:ns0='urn:p' ns0:a='1'/>`, ""},
		{"escapes",
			"<m a='&apos;&quot;&lt;&gt;&amp;&#10;&#9;&#13;' b='x\ny'>&lt;&amp;&gt;&#13;\r\n\t&#x1F600;</m>",
			"<m a='&apos;&quot;&lt;&gt;&amp;&#xA;&#x9;&#xD;' b='x y'>&lt;&amp;&gt;&#xD;\n\t😀</m>", ""},
		{"namespace name with a reference",
			`<m xmlns='urn:a&amp;b&#10;'/>`,
			`<m xmlns='urn:a&amp;b&#xA;'/>`, ""},
		{"empty element", `<a></a>`, `<a/>`, ""},
		{"empty cdata", `<a><![CDATA[]]></a>`, `<a/>`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode([]byte(tt.in), testHeaderNS)
			if err != nil {
				t.Fatal(err)
			}
			streamNS := tt.streamNS
			if streamNS == "" {
				streamNS = NSServer
			}
			out, err := AppendCanonical([]byte("prefix:"), n, streamNS, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(out); got != "prefix:"+tt.want {
				t.Fatalf("got  %q\nwant %q", got, "prefix:"+tt.want)
			}
			back, err := ParseNode(out[len("prefix:"):], map[string]string{"": streamNS})
			if err != nil {
				t.Fatal(err)
			}
			if d := treeDiff(n, back, false); d != "" {
				t.Fatalf("round trip differs: %s", d)
			}
		})
	}
}

func TestAppendCanonicalStrip(t *testing.T) {
	const in = "<message to='b'>\n <body>a</body>\n <x xmlns='urn:x'><y/>z</x>tail<html xmlns='urn:h'><b/></html></message>"
	tests := []struct {
		name  string
		strip func(path []*Node, child *Node) bool
		want  string
	}{
		{"nothing", nil, in},
		{"one child, text around it joined",
			func(_ []*Node, c *Node) bool { return c.Space == "urn:x" },
			"<message to='b'>\n <body>a</body>\n tail<html xmlns='urn:h'><b/></html></message>"},
		{"a grandchild",
			func(path []*Node, c *Node) bool { return len(path) == 2 && c.Local == "b" },
			"<message to='b'>\n <body>a</body>\n <x xmlns='urn:x'><y/>z</x>tail<html xmlns='urn:h'/></message>"},
		{"every child",
			func([]*Node, *Node) bool { return true },
			"<message to='b'>\n \n tail</message>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode([]byte(in), testHeaderNS)
			if err != nil {
				t.Fatal(err)
			}
			out, err := AppendCanonical(nil, n, NSServer, tt.strip, 0)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tt.want {
				t.Fatalf("got  %q\nwant %q", out, tt.want)
			}
		})
	}

	// strip sees the path from the root to the parent, and is not asked
	// about what is under a stripped child.
	n, err := ParseNode([]byte(in), testHeaderNS)
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	_, err = AppendCanonical(nil, n, NSServer, func(path []*Node, c *Node) bool {
		var p []string
		for _, a := range path {
			p = append(p, a.Local)
		}
		asked = append(asked, strings.Join(p, "/")+":"+c.Local)
		return c.Local == "x"
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(asked, " "), "message:body message:x message:html message/html:b"; got != want {
		t.Fatalf("strip asked %q, want %q", got, want)
	}
}

func TestAppendCanonicalHandBuilt(t *testing.T) {
	// Without Segments, Text comes first, then the children.
	n := &Node{Space: NSServer, Local: "message", Text: "t<",
		Children: []*Node{{Space: "urn:x", Local: "x", Attrs: []Attr{{Local: "a", Value: "1"}}}}}
	n.SetAttr("to", "b@c")
	out, err := AppendCanonical(nil, n, NSServer, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := `<message to='b@c'>t&lt;<x xmlns='urn:x' a='1'/></message>`; string(out) != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
}

func TestAppendCanonicalSizeLimit(t *testing.T) {
	// A namespace declared once and used through a prefix by many
	// elements is declared again on each of them: the output can be much
	// larger than the input, and the limit stops it.
	long := strings.Repeat("u", 1000)
	in := "<message xmlns:p='urn:" + long + "'>" + strings.Repeat("<p:a/>", 100) + "</message>"
	n, err := ParseNode([]byte(in), testHeaderNS)
	if err != nil {
		t.Fatal(err)
	}
	out, err := AppendCanonical(nil, n, NSServer, nil, 10*len(in))
	var se *StreamError
	if !errors.As(err, &se) || se.Condition != CondPolicyViolation || se.App != AppStanzaTooBig {
		t.Fatalf("err = %v, want policy-violation stanza-too-big", err)
	}
	if len(out) != 0 {
		t.Fatalf("a partial output of %d bytes was returned", len(out))
	}
	// It stopped soon after the limit (the full output would be ~100 KiB).
	if cap(out) > 2*(10*len(in)+2*len(long)) {
		t.Fatalf("grew to %d bytes before stopping", cap(out))
	}
	if out, _ := AppendCanonical([]byte("keep"), n, NSServer, nil, 10*len(in)); string(out) != "keep" {
		t.Fatalf("dst after an error: %.20q…", out)
	}
	// The limit counts only what is appended, not what dst held.
	if _, err := AppendCanonical(make([]byte, 1000), n, NSServer, nil, 200*len(in)); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	// Exactly at the limit is allowed.
	small, _ := ParseNode([]byte(`<a>x</a>`), nil)
	if _, err := AppendCanonical(nil, small, "", nil, len(`<a>x</a>`)); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	if _, err := AppendCanonical(nil, small, "", nil, len(`<a>x</a>`)-1); err == nil {
		t.Fatal("one byte over the limit accepted")
	}
}

// withoutStripped returns a copy of n without the children in stripped
// (and what is under them), the character data around each one joined.
func withoutStripped(n *Node, stripped map[*Node]bool) *Node {
	c := *n
	if len(n.Children) == 0 {
		return &c
	}
	c.Children, c.Segments = nil, nil
	cur := n.Segments[0]
	for i, ch := range n.Children {
		if stripped[ch] {
			cur += n.Segments[i+1]
			continue
		}
		c.Children = append(c.Children, withoutStripped(ch, stripped))
		c.Segments = append(c.Segments, cur)
		cur = n.Segments[i+1]
	}
	if len(c.Children) == 0 {
		c.Segments = nil
	} else {
		c.Segments = append(c.Segments, cur)
	}
	return &c
}

// FuzzCanonical checks AppendCanonical on every element the Reader
// accepts: the Reader accepts the output as one element with the same
// head, ParseNode reads it back to the same tree (minus exactly the
// stripped children, with a strip function driven by the fuzzer),
// encoding/xml reads it as ParseNode does, and canonicalising the output
// again gives the same bytes.
func FuzzCanonical(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(0xA5))
	}
	f.Add([]byte("<message to='b'>\n <body>a<![CDATA[<x/>]]></body>\n <x xmlns='urn:x' xmlns:p='urn:p' p:a='1'><y/>z</x>tail</message>"), uint8(0x3C))
	f.Fuzz(func(t *testing.T, body []byte, stripSeed uint8) {
		r := NewReader(bytes.NewReader(append([]byte(prosodyHeader), body...)), Limits{MaxElementSize: 2048, MaxDepth: 8})
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatal(err)
		}
		for {
			el, err := r.Next()
			if err != nil {
				return
			}
			n, err := ParseNode(el.Raw, h.Namespaces)
			if err != nil {
				t.Fatalf("ParseNode rejects what Next accepted (%q): %v", el.Raw, err)
			}
			const limit = 8 << 20 // far above what 2 KiB can expand to
			out, err := AppendCanonical(nil, n, NSServer, nil, limit)
			if err != nil {
				t.Fatalf("AppendCanonical(%q): %v", el.Raw, err)
			}
			checkCanonical(t, el, out, n)

			// Idempotent: the canonical form of the output is itself.
			n2, err := ParseNode(out, map[string]string{"": NSServer})
			if err != nil {
				t.Fatal(err)
			}
			again, err := AppendCanonical(nil, n2, NSServer, nil, limit)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("not idempotent:\n in     %q\n once   %q\n twice  %q (%v)", el.Raw, out, again, err)
			}

			// With a strip function: exactly the stripped children go.
			calls := 0
			stripped := map[*Node]bool{}
			asked := map[*Node]bool{}
			strip := func(path []*Node, c *Node) bool {
				if path[0] != n || !containsNode(path[len(path)-1].Children, c) || asked[c] {
					t.Fatalf("strip asked about %s with a wrong path or twice", c.Local)
				}
				asked[c] = true
				calls++
				s := stripSeed>>(calls%8)&1 == 1
				if s {
					stripped[c] = true
				}
				return s
			}
			out, err = AppendCanonical(nil, n, NSServer, strip, limit)
			if err != nil {
				t.Fatalf("AppendCanonical with strip (%q): %v", el.Raw, err)
			}
			checkAskedAll(t, n, stripped, asked)
			checkCanonical(t, el, out, withoutStripped(n, stripped))
		}
	})
}

func containsNode(list []*Node, n *Node) bool {
	for _, c := range list {
		if c == n {
			return true
		}
	}
	return false
}

// checkAskedAll checks that strip was asked about every child not under a
// stripped one.
func checkAskedAll(t *testing.T, n *Node, stripped, asked map[*Node]bool) {
	t.Helper()
	for _, c := range n.Children {
		if !asked[c] {
			t.Fatalf("strip not asked about a child %s of %s", c.Local, n.Local)
		}
		if !stripped[c] {
			checkAskedAll(t, c, stripped, asked)
		}
	}
}

// checkCanonical checks one canonical output against the tree it should
// mean and the element it came from.
func checkCanonical(t *testing.T, el Element, out []byte, want *Node) {
	t.Helper()
	// The Reader accepts it, on a stream whose only declaration is the
	// default namespace, as exactly one element with the same head.
	stream := "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
	r := NewReader(bytes.NewReader(append([]byte(stream), out...)), Limits{MaxElementSize: len(out) + 1, MaxDepth: 8})
	h, err := r.ReadHeader()
	if err != nil {
		t.Fatal(err)
	}
	el2, err := r.Next()
	if err != nil {
		t.Fatalf("Next rejects the canonical form %q of %q: %v", out, el.Raw, err)
	}
	if !bytes.Equal(el2.Raw, out) {
		t.Fatalf("Next read %q of %q", el2.Raw, out)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the canonical element: %v", err)
	}
	if el2.Space != el.Space || el2.Local != el.Local || el2.From != el.From || el2.To != el.To || el2.Type != el.Type || el2.ID != el.ID {
		t.Fatalf("head of %q: %+v, of its canonical form %q: %+v", el.Raw, el, out, el2)
	}
	if el2.HeaderPrefixes != nil || el2.HasCDATA {
		t.Fatalf("canonical form %q uses header prefixes %v or CDATA", out, el2.HeaderPrefixes)
	}
	// ParseNode reads back exactly the tree.
	got, err := ParseNode(out, map[string]string{"": NSServer})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("canonical form %q of %q: %s", out, el.Raw, treeDiff(want, got, false))
	}
	// And so does encoding/xml.
	checkDifferential(t, el2, h.Namespaces)
	// No construct beyond the canonical ones.
	if bytes.Contains(out, []byte("<!")) || bytes.Contains(out, []byte("<?")) || bytes.Contains(out, []byte("\r")) {
		t.Fatalf("canonical form %q has CDATA, a comment, a PI or a literal CR", out)
	}
}

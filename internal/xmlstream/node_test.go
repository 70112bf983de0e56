package xmlstream

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unsafe"
)

func TestParseNode(t *testing.T) {
	features := `<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>` +
		`<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism><mechanism>PLAIN</mechanism></mechanisms>` +
		`<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>`
	n, err := ParseNode([]byte(features), prosodyNamespaces)
	if err != nil {
		t.Fatal(err)
	}
	if n.Space != NSStream || n.Local != "features" {
		t.Fatalf("root {%s}%s", n.Space, n.Local)
	}
	tls := n.Child(NSTLS, "starttls")
	if tls == nil || tls.Child(NSTLS, "required") == nil {
		t.Fatalf("starttls/required missing: %+v", tls)
	}
	mechs := n.Child(NSSASL, "mechanisms")
	if mechs == nil || len(mechs.Children) != 2 || mechs.Children[0].Text != "EXTERNAL" || mechs.Children[1].Text != "PLAIN" {
		t.Fatalf("mechanisms: %+v", mechs)
	}
	db := n.Child(NSDialbackFeature, "dialback")
	if db == nil || db.Child(NSDialbackFeature, "errors") == nil {
		t.Fatalf("dialback feature: %+v", db)
	}
	if n.Child(NSTLS, "mechanisms") != nil {
		t.Fatal("Child matched the wrong namespace")
	}

	res, err := ParseNode([]byte(`<db:result from='company.test' to='partner.test' xml:lang='en'>37c6&#x39;</db:result>`), prosodyNamespaces)
	if err != nil {
		t.Fatal(err)
	}
	if res.Space != NSDialback || res.Local != "result" || res.Attr("from") != "company.test" || res.Attr("to") != "partner.test" || res.Attr("type") != "" || res.Text != "37c69" {
		t.Fatalf("db:result: %+v", res)
	}
	if len(res.Attrs) != 3 || res.Attrs[2] != (Attr{Space: NSXML, Local: "lang", Value: "en"}) {
		t.Fatalf("attrs: %+v", res.Attrs)
	}
	if res.Attr("lang") != "" {
		t.Fatal("Attr matched a prefixed attribute")
	}

	auth, err := ParseNode([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL' note='a\r\nb\tc&#10;d'>Y29t\r\ncGFueS50ZXN0&#13;</auth>"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth.Attr("mechanism") != "EXTERNAL" || auth.Attr("note") != "a b c\nd" || auth.Text != "Y29t\ncGFueS50ZXN0\r" {
		t.Fatalf("auth: %+v", auth)
	}
	mixed, err := ParseNode([]byte(`<a>x<b>inner</b>y<c/>z&amp;</a>`), nil)
	if err != nil || mixed.Text != "xyz&" || len(mixed.Children) != 2 || mixed.Children[0].Text != "inner" {
		t.Fatalf("mixed content: %+v, %v", mixed, err)
	}
	if _, err := ParseNode([]byte(`<db:result/>`), nil); streamCondition(err) != CondNotWellFormed {
		t.Fatalf("db prefix without header: err = %v", err)
	}
}

func TestParseNodeContentOrder(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		text     string
		segments []string // of the root; nil for a root without children
		childTxt []string
	}{
		{"leaf", `<a>x</a>`, "x", nil, nil},
		{"empty leaf", `<a/>`, "", nil, nil},
		{"mixed content keeps its order", `<p>Hi <b>there</b> you</p>`, "Hi  you", []string{"Hi ", " you"}, []string{"there"}},
		{"whitespace between children", "<m>\n <a/>\t<b/>\r\n</m>", "\n \t\n", []string{"\n ", "\t", "\n"}, []string{"", ""}},
		{"adjacent children", `<m><a/><b>x</b></m>`, "", []string{"", "", ""}, []string{"", "x"}},
		{"cdata is character data", `<a><![CDATA[<b>&amp;</b>]]></a>`, "<b>&amp;</b>", nil, nil},
		{"cdata merged with text", `<a>x&lt;<![CDATA[y]]>z<c/><![CDATA[]]><![CDATA[w]]></a>`, "x<yzw", []string{"x<yz", "w"}, []string{""}},
		{"cdata references are literal", "<a><![CDATA[&amp;&#x41;\r\n]]></a>", "&amp;&#x41;\n", nil, nil},
		{"cdata line ends", "<a><![CDATA[1\r\n2\r3\n]]>\r<![CDATA[\n]]></a>", "1\n2\n3\n\n\n", nil, nil},
		{"cdata brackets", `<a><![CDATA[]]]]>]<![CDATA[>]]></a>`, "]]]>", nil, nil},
		{"cdata in a child", `<a><b><![CDATA[k]]></b></a>`, "", []string{"", ""}, []string{"k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ParseNode([]byte(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			if n.Text != tt.text {
				t.Errorf("Text = %q, want %q", n.Text, tt.text)
			}
			if fmt.Sprintf("%q", n.Segments) != fmt.Sprintf("%q", tt.segments) || (n.Segments == nil) != (tt.segments == nil) {
				t.Errorf("Segments = %q, want %q", n.Segments, tt.segments)
			}
			if strings.Join(n.Segments, "") != n.Text && n.Segments != nil {
				t.Errorf("Segments %q do not join to Text %q", n.Segments, n.Text)
			}
			var childTxt []string
			for _, c := range n.Children {
				childTxt = append(childTxt, c.Text)
			}
			if fmt.Sprintf("%q", childTxt) != fmt.Sprintf("%q", tt.childTxt) {
				t.Errorf("children's text = %q, want %q", childTxt, tt.childTxt)
			}
		})
	}
}

// TestParseNodeSharesNamespaceNames: every name in a namespace declared on
// an ancestor shares one string. A copy per element would let a long
// namespace name and many small elements using it make ParseNode allocate
// far more than the element's size (256 KiB times 65,000 elements).
func TestParseNodeSharesNamespaceNames(t *testing.T) {
	long := "urn:" + strings.Repeat("x", 1000)
	for _, in := range []string{
		"<m xmlns='" + long + "'>" + strings.Repeat("<b/>", 50) + "</m>",
		"<p:m xmlns:p='" + long + "'>" + strings.Repeat("<p:b p:a='1'/>", 50) + "</p:m>",
		"<m xmlns:p='" + long + "&amp;'>" + strings.Repeat("<c><p:b p:a='1'/></c>", 50) + "</m>",
	} {
		n, err := ParseNode([]byte(in), nil)
		if err != nil {
			t.Fatal(err)
		}
		var spaces []string
		var walk func(*Node)
		walk = func(n *Node) {
			if len(n.Space) >= len(long) {
				spaces = append(spaces, n.Space)
			}
			for _, a := range n.Attrs {
				spaces = append(spaces, a.Space)
			}
			for _, c := range n.Children {
				walk(c)
			}
		}
		walk(n)
		if len(spaces) < 50 {
			t.Fatalf("%d names in the long namespace", len(spaces))
		}
		for _, s := range spaces {
			if !strings.HasPrefix(s, long) || unsafe.StringData(s) != unsafe.StringData(spaces[0]) {
				t.Fatalf("namespace name copied per element in %.40q…", in)
			}
		}
	}
}

func TestNodeSetAttr(t *testing.T) {
	n := &Node{Local: "message", Attrs: []Attr{{Space: NSXML, Local: "to", Value: "x"}, {Local: "to", Value: "old"}}}
	n.SetAttr("to", "new")
	n.SetAttr("from", "f")
	want := []Attr{{Space: NSXML, Local: "to", Value: "x"}, {Local: "to", Value: "new"}, {Local: "from", Value: "f"}}
	if fmt.Sprint(n.Attrs) != fmt.Sprint(want) {
		t.Fatalf("Attrs = %+v, want %+v", n.Attrs, want)
	}
}

func TestParseNodeErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", ``, CondNotWellFormed},
		{"leading space", ` <a/>`, CondNotWellFormed},
		{"trailing data", `<a/><b/>`, CondNotWellFormed},
		{"trailing space", `<a/> `, CondNotWellFormed},
		{"comment", `<a><!--x--></a>`, CondRestrictedXML},
		{"cdata outside the element", `<![CDATA[x]]>`, CondRestrictedXML},
		{"unterminated cdata", `<a><![CDATA[x]]</a>`, "unexpected EOF"},
		{"truncated", `<a><b>`, "unexpected EOF"},
		{"end tag", `</a>`, CondNotWellFormed},
		{"entity", `<a>&x;</a>`, CondRestrictedXML},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNode([]byte(tt.in), prosodyNamespaces)
			checkErr(t, err, tt.want)
		})
	}
}

func TestAppendForward(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"plain message", `<message to='b'><body>x</body></message>`, `<message to='b'><body>x</body></message>`},
		{"db:result", `<db:result from='a' to='b'>k</db:result>`, `<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>k</db:result>`},
		{"empty db:verify", `<db:verify/>`, `<db:verify xmlns:db='jabber:server:dialback'/>`},
		{"descendant prefixes", "<message\nto='b'><stream:error/><x db:a='1'/></message>", "<message xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'\nto='b'><stream:error/><x db:a='1'/></message>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader([]byte(prosodyHeader+tt.body)), Limits{})
			h, err := r.ReadHeader()
			if err != nil {
				t.Fatal(err)
			}
			el, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			out := el.AppendForward([]byte("prefix:"), h.Namespaces)
			if got := string(out); got != "prefix:"+tt.want {
				t.Fatalf("got  %q\nwant %q", got, "prefix:"+tt.want)
			}
			// The output is self-contained: it parses with only the
			// default namespace declared around it, to the same name.
			node, err := ParseNode(out[len("prefix:"):], map[string]string{"": NSServer})
			if err != nil {
				t.Fatal(err)
			}
			if node.Space != el.Space || node.Local != el.Local {
				t.Fatalf("forwarded {%s}%s, original {%s}%s", node.Space, node.Local, el.Space, el.Local)
			}
			d := xml.NewDecoder(bytes.NewReader(out[len("prefix:"):]))
			for {
				tok, err := d.Token()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if se, ok := tok.(xml.StartElement); ok && (se.Name.Space == "db" || se.Name.Space == "stream") {
					t.Fatalf("encoding/xml sees an undeclared prefix in %q", out)
				}
			}
		})
	}
}

func TestAppendEscaped(t *testing.T) {
	tests := []struct {
		in, text, attr string
	}{
		{"plain", "plain", "plain"},
		{`a<b>&c'd"e`, `a&lt;b&gt;&amp;c'd"e`, `a&lt;b&gt;&amp;c&apos;d&quot;e`},
		{"l1\nl2\tt\r", "l1\nl2\tt&#xD;", "l1&#xA;l2&#x9;t&#xD;"},
		{"nul\x00 esc\x1b bad\xff fffe\uFFFE ünï 😀", "nul\uFFFD esc\uFFFD bad\uFFFD fffe\uFFFD ünï 😀", "nul\uFFFD esc\uFFFD bad\uFFFD fffe\uFFFD ünï 😀"},
		{"]]>", "]]&gt;", "]]&gt;"},
	}
	for _, tt := range tests {
		if got := string(AppendEscapedText([]byte("x"), tt.in)); got != "x"+tt.text {
			t.Errorf("AppendEscapedText(%q) = %q, want %q", tt.in, got, "x"+tt.text)
		}
		if got := string(AppendEscapedAttr([]byte("x"), tt.in)); got != "x"+tt.attr {
			t.Errorf("AppendEscapedAttr(%q) = %q, want %q", tt.in, got, "x"+tt.attr)
		}
		// The output is always well-formed, whatever the input.
		doc := "<a v='" + string(AppendEscapedAttr(nil, tt.in)) + "'>" + string(AppendEscapedText(nil, tt.in)) + "</a>"
		if _, err := ParseNode([]byte(doc), nil); err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
	}
	// Valid strings round-trip exactly.
	for _, s := range []string{"a\r\nb\tc\nd", `<&>'"`, "ünï 😀"} {
		doc := "<a v='" + string(AppendEscapedAttr(nil, s)) + "'>" + string(AppendEscapedText(nil, s)) + "</a>"
		n, err := ParseNode([]byte(doc), nil)
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if n.Text != s || n.Attr("v") != s {
			t.Errorf("round trip of %q: text %q attr %q", s, n.Text, n.Attr("v"))
		}
	}
}

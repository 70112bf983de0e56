package xmlstream

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestAppendForwardAddressed(t *testing.T) {
	tests := []struct {
		name, body, from, to, want string
	}{
		{"both replaced", `<message from='Alice@Company.test/R' to='bob@PARTNER.test' type='chat'><body>x</body></message>`, "alice@company.test/R", "bob@partner.test",
			`<message from='alice@company.test/R' to='bob@partner.test' type='chat'><body>x</body></message>`},
		{"double quotes and spaces around =", `<message to = "B" id='1' from	="A"/>`, "a", "b",
			`<message to='b' id='1' from='a'/>`},
		{"values escaped", `<message from='a' to='b'/>`, `x'y"z<&>`, "t\u00e9\n",
			`<message from='x&apos;y&quot;z&lt;&amp;&gt;' to='té&#xA;'/>`},
		{"absent ones inserted", `<presence type='probe'/>`, "a", "b",
			`<presence from='a' to='b' type='probe'/>`},
		{"one absent, one present", `<iq to='b' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`, "a", "B",
			`<iq from='a' to='B' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`},
		{"empty value removes", `<message from='a' to='b'/>`, "", "c",
			`<message  to='c'/>`},
		{"empty value and absent: nothing", `<message/>`, "", "",
			`<message/>`},
		{"header prefixes declared", `<db:result from='A' to='B'>k</db:result>`, "a", "b",
			`<db:result xmlns:db='jabber:server:dialback' from='a' to='b'>k</db:result>`},
		{"only the root's unprefixed attributes", `<message xmlns:p='urn:p' p:from='x' from='a'><x from='q' to='r'/></message>`, "A", "B",
			`<message to='B' xmlns:p='urn:p' p:from='x' from='A'><x from='q' to='r'/></message>`},
		{"references in the old value", `<message from='a&#64;b' to='&lt;'/>`, "a@b", "c",
			`<message from='a@b' to='c'/>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(prosodyHeader+tt.body), Limits{})
			h, err := r.ReadHeader()
			if err != nil {
				t.Fatal(err)
			}
			el, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			raw := string(el.Raw)
			out := el.AppendForwardAddressed([]byte("prefix:"), h.Namespaces, tt.from, tt.to)
			if got := string(out); got != "prefix:"+tt.want {
				t.Fatalf("got  %q\nwant %q", got, "prefix:"+tt.want)
			}
			if string(el.Raw) != raw {
				t.Fatalf("Raw changed to %q", el.Raw)
			}
		})
	}
}

func TestAppendForwardAddressedZeroElement(t *testing.T) {
	var el Element
	if out := el.AppendForwardAddressed([]byte("x"), nil, "a", "b"); string(out) != "x" {
		t.Fatalf("got %q", out)
	}
}

// sanitized is what an attribute value reads back as after
// AppendEscapedAttr: characters XML cannot carry become U+FFFD.
func sanitized(s string) string {
	return strings.Map(func(r rune) rune {
		if !isChar(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}

// withoutAddresses returns a's attributes without the unprefixed from and
// to.
func withoutAddresses(a []Attr) []Attr {
	var out []Attr
	for _, x := range a {
		if x.Space == "" && (x.Local == "from" || x.Local == "to") {
			continue
		}
		out = append(out, x)
	}
	return out
}

// FuzzForwardAddressed: for every element the Reader accepts and any new
// addresses, the output parses (Reader.Next, on a stream declaring only the
// default namespace) to the same element with From and To equal to the new
// values, every other attribute and all content unchanged, encoding/xml
// agreeing; Raw is not modified.
func FuzzForwardAddressed(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "alice@company.test/r", "bob@partner.test")
	}
	f.Add([]byte(`<message to='B' from="A" id='1'><body>x</body></message>`), "", "b")
	f.Add([]byte(`<presence/>`), "a'b\"c", "\x00\t\r\n&<>")
	f.Add([]byte(`<db:verify from='a' to='b' id='i'>k</db:verify>`), "x", "")
	f.Fuzz(func(t *testing.T, body []byte, from, to string) {
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
			raw := bytes.Clone(el.Raw)
			out := el.AppendForwardAddressed(nil, h.Namespaces, from, to)
			if !bytes.Equal(el.Raw, raw) {
				t.Fatalf("Raw changed from %q to %q", raw, el.Raw)
			}
			stream := "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>"
			r2 := NewReader(bytes.NewReader(append([]byte(stream), out...)), Limits{MaxElementSize: len(out) + 1, MaxDepth: 8})
			h2, err := r2.ReadHeader()
			if err != nil {
				t.Fatal(err)
			}
			el2, err := r2.Next()
			if err != nil {
				t.Fatalf("Next rejects %q (from %q): %v", out, raw, err)
			}
			if !bytes.Equal(el2.Raw, out) {
				t.Fatalf("Next read %q of %q", el2.Raw, out)
			}
			if el2.From != sanitized(from) || el2.To != sanitized(to) {
				t.Fatalf("%q: from %q to %q, want %q %q", out, el2.From, el2.To, sanitized(from), sanitized(to))
			}
			if el2.Space != el.Space || el2.Local != el.Local || el2.Type != el.Type || el2.ID != el.ID || el2.HasCDATA != el.HasCDATA {
				t.Fatalf("head of %q: %+v, of %q: %+v", raw, el, out, el2)
			}
			checkDifferential(t, el2, h2.Namespaces)

			want, err := ParseNode(raw, h.Namespaces)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseNode(out, h2.Namespaces)
			if err != nil {
				t.Fatal(err)
			}
			if got.Attr("from") != sanitized(from) || got.Attr("to") != sanitized(to) {
				t.Fatalf("%q: ParseNode reads from %q to %q", out, got.Attr("from"), got.Attr("to"))
			}
			if !reflect.DeepEqual(withoutAddresses(got.Attrs), withoutAddresses(want.Attrs)) {
				t.Fatalf("other attributes of %q: %+v, of %q: %+v", raw, want.Attrs, out, got.Attrs)
			}
			got.Attrs, want.Attrs = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("content of %q and %q differs: %s", raw, out, treeDiff(want, got, false))
			}
		}
	})
}

package xmlstream

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"testing"
)

// chunkReader returns its data in reads of at most n bytes.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.data))
	copy(p, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

var fuzzSeeds = []string{
	`<message from='a@company.test/r' to='b@partner.test' type='chat' id='m1' xml:lang='en'><body>Hi &amp; there</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
	` <presence/> <iq type="get" id="x&apos;y"><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>`,
	`<db:result from='company.test' to='partner.test'>c0ffee</db:result>`,
	`<message><x xmlns:db='urn:other'><db:y/></x><stream:error db:a='1'/></message>`,
	`<message xmlns=''><x xml:lang='de'/></message><mé xmlns='urn:x' xmlns:ñ='urn:y' ñ:à='1'/>`,
	`<x xmlns='urn:a&amp;b' from='&#x41;&#66;'/>`,
	`<message><!-- hi --></message>`,
	`<message><body><![CDATA[x]]></body></message>`,
	`<message><body>&xxe;</body></message>`,
	`<message to='a' to='b'/>`,
	`<message xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`,
	"<message from='a\nb'/>",
	"<message><body>a]]>b</body></message>",
	"<message><body>\xED\xA0\x80</body></message>",
	`<a:b:c/>`,
	`<message xmlns:p=''/>`,
	`<a><b><c><d><e><f><g><h><i><j/></i></h></g></f></e></d></c></b></a>`,
	`<message to='&#xD;'/>`,
	"<message to='\r\n'/>",
	`<message to="'" from='"'/>`,
	"<\u00e9\u0300/>",
	"<a\u0387/>",
	"<\u0e47/>",
	"<A xmlns='\r0'/>", // found by FuzzNext: namespace name with a literal CR
	// CDATA sections: markup and references inside are text; line ends
	// are normalised; the first ]]> ends the section.
	`<message><body><![CDATA[<message to='evil'/>&amp;]]></body></message>`,
	"<message>a\r<![CDATA[\nb\r\n]]]>c]<![CDATA[]]>]></message>",
	`<message><body>x<![CDATA[y]]><b/><![CDATA[]]>z</body></message>`,
	`<message><![CDATA[a]]>]]></message>`,
	`<![CDATA[x]]><message/>`,
	"<message><![CDATA[\xEF\xBF\xBF]]></message>",
	`<message><![CDATA[x]]`,
	// Mixed content and whitespace between children, in order.
	"<message>\n <body>Hi <b xmlns='urn:x'>there</b> you</body>\n</message>",
}

// FuzzNext checks the property DESIGN.md §3 rests on: whatever the Reader
// accepts as an element, encoding/xml also parses, to the same name,
// namespace and head attributes; Raw is an exact slice of the input; and
// nothing panics.
func FuzzNext(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(64+3))
	}
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8) {
		in := append([]byte(prosodyHeader), body...)
		src := &chunkReader{data: in, n: int(chunk%16) + 1}
		if chunk >= 128 {
			src.n = len(in) + 1
		}
		r := NewReader(src, Limits{MaxElementSize: 2048, MaxDepth: 8})
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatal(err)
		}
		off := len(prosodyHeader)
		for {
			el, err := r.Next()
			if err != nil {
				var se *StreamError
				if err != io.EOF && err != ErrStreamEnd && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &se) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			for off < len(in) && isXMLSpace[in[off]] {
				off++
			}
			if !bytes.HasPrefix(in[off:], el.Raw) || len(el.Raw) == 0 {
				t.Fatalf("Raw %q is not the input at offset %d", el.Raw, off)
			}
			off += len(el.Raw)
			if len(el.Raw) > 2048 {
				t.Fatalf("Raw of %d bytes passed the limit", len(el.Raw))
			}
			checkDifferential(t, el, h.Namespaces)
			if _, err := ParseNode(el.Raw, h.Namespaces); err != nil {
				t.Fatalf("ParseNode rejects what Next accepted (%q): %v", el.Raw, err)
			}
			if chunk&64 != 0 {
				// An idle stream between elements: its buffers are
				// released (when nothing is buffered) and it waits; what
				// was returned stays intact through the reads after.
				raw, local := string(el.Raw), el.Local
				r.Release()
				r.AwaitIdle()
				defer func() {
					if string(el.Raw) != raw || el.Local != local {
						t.Fatalf("element %q changed after Release to %q", raw, el.Raw)
					}
				}()
			}
		}
	})
}

// FuzzParseNode checks ParseNode against encoding/xml: anything it accepts,
// encoding/xml accepts, with the same root name, attributes and text.
func FuzzParseNode(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback></stream:features>`))
	f.Add([]byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>Y29t\r\ncGFueQ&#13;==</auth>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := ParseNode(raw, prosodyNamespaces)
		if err != nil {
			return
		}
		var w bytes.Buffer
		w.WriteString(`<w xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>`)
		w.Write(raw)
		w.WriteString(`</w>`)
		d := xml.NewDecoder(&w)
		depth := 0
		var root *xml.StartElement
		var text []byte
		children := 0
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("encoding/xml rejects %q: %v", raw, err)
			}
			switch tok := tok.(type) {
			case xml.StartElement:
				depth++
				if depth == 2 {
					s := tok.Copy()
					root = &s
				}
				if depth == 3 {
					children++
				}
			case xml.EndElement:
				depth--
			case xml.CharData:
				if depth == 2 {
					text = append(text, tok...)
				}
			}
		}
		if root == nil || root.Name.Space != n.Space || root.Name.Local != n.Local {
			t.Fatalf("root of %q: encoding/xml %+v, ParseNode {%s}%s", raw, root, n.Space, n.Local)
		}
		if string(text) != n.Text {
			t.Fatalf("text of %q: encoding/xml %q, ParseNode %q", raw, text, n.Text)
		}
		if children != len(n.Children) {
			t.Fatalf("children of %q: encoding/xml %d, ParseNode %d", raw, children, len(n.Children))
		}
		var attrs []Attr
		for _, a := range root.Attr {
			if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
				continue
			}
			attrs = append(attrs, Attr{a.Name.Space, a.Name.Local, a.Value})
		}
		if len(attrs) != len(n.Attrs) {
			t.Fatalf("attributes of %q: encoding/xml %+v, ParseNode %+v", raw, attrs, n.Attrs)
		}
		// encoding/xml does not normalise whitespace in attribute values;
		// compare values only where there is none to normalise.
		literalWS := bytes.ContainsAny(raw, "\t\n\r")
		for i := range attrs {
			a, b := attrs[i], n.Attrs[i]
			if a.Space != b.Space || a.Local != b.Local || !literalWS && a.Value != b.Value {
				t.Fatalf("attribute %d of %q: encoding/xml %+v, ParseNode %+v", i, raw, a, b)
			}
		}
	})
}

// FuzzReadHeader checks ReadHeader on any input: it never panics, its
// errors are a *StreamError, io.EOF or wrap io.ErrUnexpectedEOF, and a
// header it accepts is read by encoding/xml, from exactly the bytes
// ReadHeader consumed, as nothing but an XML declaration and whitespace
// followed by a start tag with the same name, namespace, from, to, id,
// version, xml:lang and namespace declarations.
func FuzzReadHeader(f *testing.F) {
	for _, s := range []string{
		prosodyHeader,
		"\r\n  <stream:stream xmlns=\"jabber:server\" xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"partner.test\" version=\"1.0\">",
		`<?xml version="1.0" encoding="utf-8" standalone='yes' ?>` + "\n" + `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='a&amp;b&#x41;'>`,
		`<stream:stream xmlns:stream='urn:wrong'>`,
		`<stream xmlns='http://etherx.jabber.org/streams' from='a' to='b'>`,
		`<stream:stream xmlns='jabber:server'>`,
		`<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
		"\xEF\xBB\xBF<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
		`<!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<![CDATA[x]]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<?xml version='1.0'?><?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>`,
		"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='a\nb'>",
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='a' to='b'>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xml:lang='de' xmlns:db='jabber:server:dialback' db:x='1'>`,
		`<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='&#x1F600;&lt;'><message/>`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(200))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		src := &chunkReader{data: in, n: int(chunk%16) + 1}
		if chunk >= 128 {
			src.n = len(in) + 1
		}
		r := NewReader(src, Limits{})
		h, err := r.ReadHeader()
		if err != nil {
			var se *StreamError
			if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, &se) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		consumed := in[:len(in)-len(src.data)-r.Buffered()]
		d := xml.NewDecoder(bytes.NewReader(consumed))
		var start *xml.StartElement
		for start == nil {
			tok, err := d.Token()
			if err != nil {
				t.Fatalf("encoding/xml rejects the accepted header %q: %v", consumed, err)
			}
			switch tok := tok.(type) {
			case xml.StartElement:
				start = &tok
			case xml.ProcInst:
				if tok.Target != "xml" {
					t.Fatalf("accepted header %q with a processing instruction", consumed)
				}
			case xml.CharData:
				if len(bytes.TrimLeft(tok, " \t\r\n")) > 0 {
					t.Fatalf("accepted header %q with text before it", consumed)
				}
			default:
				t.Fatalf("accepted header %q with %T", consumed, tok)
			}
		}
		// The stream element is still open: encoding/xml reports the end
		// of its input, and no further token.
		if tok, err := d.Token(); err == nil {
			t.Fatalf("encoding/xml sees %T after the header in the consumed bytes %q", tok, consumed)
		}
		if start.Name.Space != h.Space || start.Name.Local != h.Local {
			t.Fatalf("name of %q: encoding/xml {%s}%s, ReadHeader {%s}%s", consumed, start.Name.Space, start.Name.Local, h.Space, h.Local)
		}
		got := map[string]string{"from": h.From, "to": h.To, "id": h.ID, "version": h.Version, "xml:lang": h.Lang}
		want := map[string]string{"from": "", "to": "", "id": "", "version": "", "xml:lang": ""}
		ns := map[string]string{}
		for _, a := range start.Attr {
			switch {
			case a.Name.Space == "" && a.Name.Local == "xmlns":
				ns[""] = a.Value
			case a.Name.Space == "xmlns":
				ns[a.Name.Local] = a.Value
			case a.Name.Space == NSXML && a.Name.Local == "lang":
				want["xml:lang"] = a.Value
			case a.Name.Space == "":
				if _, ok := want[a.Name.Local]; ok {
					want[a.Name.Local] = a.Value
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("attributes of %q: encoding/xml %v, ReadHeader %v", consumed, want, got)
		}
		delete(ns, "xml") // a declaration of the predefined prefix is not recorded
		if fmt.Sprint(ns) != fmt.Sprint(h.Namespaces) {
			t.Fatalf("namespaces of %q: encoding/xml %v, ReadHeader %v", consumed, ns, h.Namespaces)
		}
	})
}

package xmlstream

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// prosodyHeader is the stream header Prosody sends on s2s streams.
const prosodyHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' to='partner.test' from='company.test' version='1.0' id='' xml:lang='en'>`

var prosodyNamespaces = map[string]string{"": NSServer, "stream": NSStream, "db": NSDialback}

// wantCondition reports whether err is a *StreamError with condition cond.
func streamCondition(err error) string {
	var se *StreamError
	if errors.As(err, &se) {
		return se.Condition
	}
	return ""
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Header
		wantErr string // condition, or "EOF" / "unexpected EOF"
	}{
		{
			name: "prosody",
			in:   prosodyHeader,
			want: Header{From: "company.test", To: "partner.test", Version: "1.0", Lang: "en",
				Namespaces: prosodyNamespaces, Space: NSStream, Local: "stream"},
		},
		{
			name: "no declaration, leading whitespace, double quotes, probe without from and db",
			in:   "\r\n  <stream:stream xmlns=\"jabber:server\" xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"partner.test\" version=\"1.0\">",
			want: Header{To: "partner.test", Version: "1.0",
				Namespaces: map[string]string{"": NSServer, "stream": NSStream}, Space: NSStream, Local: "stream"},
		},
		{
			name: "declaration with encoding and standalone",
			in:   `<?xml version="1.0" encoding="utf-8" standalone='yes' ?>` + "\n" + `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' id='a&amp;b&#x41;'>`,
			want: Header{ID: "a&bA", Namespaces: map[string]string{"stream": NSStream}, Space: NSStream, Local: "stream"},
		},
		{
			name: "wrong namespace is reported, not rejected",
			in:   `<stream:stream xmlns:stream='urn:wrong'>`,
			want: Header{Namespaces: map[string]string{"stream": "urn:wrong"}, Space: "urn:wrong", Local: "stream"},
		},
		{name: "undeclared stream prefix", in: `<stream:stream xmlns='jabber:server'>`, wantErr: CondInvalidNamespace},
		{name: "latin-1 encoding", in: `<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondUnsupportedEncoding},
		{name: "utf-8 byte order mark", in: "\xEF\xBB\xBF" + `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondUnsupportedEncoding},
		{name: "utf-16 byte order mark", in: "\xFE\xFF\x00<", wantErr: CondUnsupportedEncoding},
		{name: "doctype", in: `<!DOCTYPE stream [<!ENTITY x 'y'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondRestrictedXML},
		{name: "comment", in: `<!-- hi --><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondRestrictedXML},
		{name: "cdata before the header", in: `<![CDATA[x]]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondRestrictedXML},
		{name: "other processing instruction", in: `<?xml-stylesheet href='x'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondRestrictedXML},
		{name: "two declarations", in: `<?xml version='1.0'?><?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondRestrictedXML},
		{name: "xml 1.1", in: `<?xml version='1.1'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondNotWellFormed},
		{name: "declaration without version", in: `<?xml encoding='UTF-8'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>`, wantErr: CondNotWellFormed},
		{name: "empty stream element", in: `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>`, wantErr: CondNotWellFormed},
		{name: "newline in from", in: "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='a\nb'>", wantErr: CondBadFormat},
		{name: "duplicate to", in: `<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='a' to='b'>`, wantErr: CondNotWellFormed},
		{name: "text before header", in: `hello<stream:stream>`, wantErr: CondNotWellFormed},
		{name: "end tag", in: `</stream:stream>`, wantErr: CondNotWellFormed},
		{name: "empty input", in: ``, wantErr: "EOF"},
		{name: "only whitespace", in: "  \n", wantErr: "EOF"},
		{name: "truncated header", in: `<stream:stream xmlns:stream='http://ether`, wantErr: "unexpected EOF"},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/onebyte=%v", tt.name, oneByte), func(t *testing.T) {
				var src io.Reader = strings.NewReader(tt.in)
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				h, err := NewReader(src, Limits{}).ReadHeader()
				checkErr(t, err, tt.wantErr)
				if tt.wantErr != "" {
					return
				}
				if fmt.Sprint(h) != fmt.Sprint(tt.want) {
					t.Errorf("header\n got %+v\nwant %+v", h, tt.want)
				}
			})
		}
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch want {
	case "":
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
	case "EOF":
		if err != io.EOF {
			t.Fatalf("error = %v, want io.EOF", err)
		}
	case "unexpected EOF":
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("error = %v, want io.ErrUnexpectedEOF", err)
		}
		if streamCondition(err) != "" {
			t.Fatalf("error = %v, want no StreamError", err)
		}
	case "end":
		if err != ErrStreamEnd {
			t.Fatalf("error = %v, want ErrStreamEnd", err)
		}
	default:
		if got := streamCondition(err); got != want {
			t.Fatalf("error = %v, want condition %s", err, want)
		}
	}
}

func TestNextRules(t *testing.T) {
	type elemWant struct {
		space, local, from, to, typ, id string
		headerPrefixes                  string // comma separated
		cdata                           bool
	}
	tests := []struct {
		name    string
		body    string // after the Prosody header
		lim     Limits
		want    []elemWant
		wantErr string
		app     string
	}{
		{
			name:    "message with body and child namespace",
			body:    `<message from='a@company.test/r' to='b@partner.test' type='chat' id='m1' xml:lang='en'><body>Hi &amp; &lt;there&gt; &#233;&#x1F600; ]] &gt; ></body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
			want:    []elemWant{{space: NSServer, local: "message", from: "a@company.test/r", to: "b@partner.test", typ: "chat", id: "m1"}},
			wantErr: "EOF",
		},
		{
			name:    "keepalives, several elements, stream close",
			body:    " \n\t<presence/>\r\n <iq type=\"get\" id=\"x&apos;&quot;y\"><ping xmlns='urn:xmpp:ping'/></iq >\n</stream:stream >",
			want:    []elemWant{{space: NSServer, local: "presence"}, {space: NSServer, local: "iq", typ: "get", id: `x'"y`}},
			wantErr: "end",
		},
		{
			name:    "escaped head attributes",
			body:    `<message from='a&#64;b&amp;c' to='&#x62;' id='&lt;&gt;'/>`,
			want:    []elemWant{{space: NSServer, local: "message", from: "a@b&c", to: "b", id: "<>"}},
			wantErr: "EOF",
		},
		{
			name:    "dialback prefix from header",
			body:    `<db:result from='company.test' to='partner.test'>c0ffee</db:result><db:verify from='a' to='b' id='i'>k</db:verify>`,
			want:    []elemWant{{space: NSDialback, local: "result", from: "company.test", to: "partner.test", headerPrefixes: "db"}, {space: NSDialback, local: "verify", from: "a", to: "b", id: "i", headerPrefixes: "db"}},
			wantErr: "EOF",
		},
		{
			name:    "header prefix used by a descendant and an attribute",
			body:    `<message><x xmlns:db='urn:other'><db:y/></x><stream:error db:a='1'/></message>`,
			want:    []elemWant{{space: NSServer, local: "message", headerPrefixes: "stream,db"}},
			wantErr: "EOF",
		},
		{
			name:    "own declarations shadow the header",
			body:    `<db:result xmlns:db='urn:shadow'><db:x/></db:result><features xmlns='http://etherx.jabber.org/streams'/>`,
			want:    []elemWant{{space: "urn:shadow", local: "result"}, {space: NSStream, local: "features"}},
			wantErr: "EOF",
		},
		{
			name:    "default namespace undeclared, xml prefix, non-ASCII names",
			body:    `<message xmlns=''><x xml:lang='de'/></message><mé xmlns='urn:x' xmlns:ñ='urn:y' ñ:à='1'/>`,
			want:    []elemWant{{space: "", local: "message"}, {space: "urn:x", local: "mé"}},
			wantErr: "EOF",
		},
		{
			name:    "namespace name with a reference",
			body:    `<x xmlns='urn:a&amp;b'/>`,
			want:    []elemWant{{space: "urn:a&b", local: "x"}},
			wantErr: "EOF",
		},
		{name: "comment", body: `<message><!-- hi --></message>`, wantErr: CondRestrictedXML},
		{name: "top-level comment", body: `<!-- hi -->`, wantErr: CondRestrictedXML},
		{name: "processing instruction", body: `<message><?php x ?></message>`, wantErr: CondRestrictedXML},
		{name: "xml declaration inside the stream", body: `<?xml version='1.0'?>`, wantErr: CondRestrictedXML},
		{name: "doctype", body: `<!DOCTYPE x>`, wantErr: CondRestrictedXML},
		{
			name:    "cdata sections",
			body:    `<message to='b'><body><![CDATA[x]]></body></message><presence><![CDATA[]]></presence><message><body><![CDATA[<message to='evil'/> &amp; ]] ]>]]]></body></message><iq/>`,
			want:    []elemWant{{space: NSServer, local: "message", to: "b", cdata: true}, {space: NSServer, local: "presence", cdata: true}, {space: NSServer, local: "message", cdata: true}, {space: NSServer, local: "iq"}},
			wantErr: "EOF",
		},
		{
			name:    "cdata with non-ASCII, line ends and brackets",
			body:    "<message><body>a]]<![CDATA[>é😀\r\n\t]]>]<![CDATA[]]>]></body></message>",
			want:    []elemWant{{space: NSServer, local: "message", cdata: true}},
			wantErr: "EOF",
		},
		{name: "top-level cdata", body: `<![CDATA[x]]>`, wantErr: CondRestrictedXML},
		{name: "cdata after an element", body: `<message/><![CDATA[<message/>]]>`, want: []elemWant{{space: NSServer, local: "message"}}, wantErr: CondRestrictedXML},
		{name: "cdata ends at the first ]]>", body: `<message><body><![CDATA[a]]>b]]></body></message>`, wantErr: CondNotWellFormed},
		{name: "lowercase cdata", body: `<message><![cdata[x]]></message>`, wantErr: CondNotWellFormed},
		{name: "malformed cdata opening", body: `<message><![CDATAx]]></message>`, wantErr: CondNotWellFormed},
		{name: "conditional section", body: `<message><![INCLUDE[x]]></message>`, wantErr: CondNotWellFormed},
		{name: "doctype inside an element", body: `<message><!DOCTYPE x></message>`, wantErr: CondRestrictedXML},
		{name: "control character in cdata", body: "<message><![CDATA[\x01]]></message>", wantErr: CondNotWellFormed},
		{name: "invalid utf-8 in cdata", body: "<message><![CDATA[\xC3\x28]]></message>", wantErr: CondNotWellFormed},
		{name: "U+FFFE in cdata", body: "<message><![CDATA[\xEF\xBF\xBE]]></message>", wantErr: CondNotWellFormed},
		{name: "unterminated cdata", body: `<message><![CDATA[x]]`, wantErr: "unexpected EOF"},
		{name: "eof inside cdata opening", body: `<message><![CD`, wantErr: "unexpected EOF"},
		{name: "cdata counts against the size limit", body: `<message><![CDATA[` + strings.Repeat("x", 100) + `]]></message>`, lim: Limits{MaxElementSize: 64}, wantErr: CondPolicyViolation, app: AppStanzaTooBig},
		{name: "internal entity", body: `<message><body>&xxe;</body></message>`, wantErr: CondRestrictedXML},
		{name: "entity in attribute", body: `<message to='&nbsp;'/>`, wantErr: CondRestrictedXML},
		{name: "char ref to NUL", body: `<message><body>&#0;</body></message>`, wantErr: CondNotWellFormed},
		{name: "char ref to surrogate", body: `<message><body>&#xD800;</body></message>`, wantErr: CondNotWellFormed},
		{name: "char ref to FFFE", body: `<message to='&#xFFFE;'/>`, wantErr: CondNotWellFormed},
		{name: "char ref out of range", body: `<message><body>&#x110000;</body></message>`, wantErr: CondNotWellFormed},
		{name: "char ref huge", body: `<message><body>&#99999999999999999999999;</body></message>`, wantErr: CondNotWellFormed},
		{name: "char ref uppercase X", body: `<message><body>&#X41;</body></message>`, wantErr: CondNotWellFormed},
		{name: "char ref empty", body: `<message><body>&#;</body></message>`, wantErr: CondNotWellFormed},
		{name: "reference without semicolon", body: `<message><body>&amp</body></message>`, wantErr: CondNotWellFormed},
		{name: "bare ampersand", body: `<message><body>a & b</body></message>`, wantErr: CondNotWellFormed},
		{name: "empty entity", body: `<message><body>&;</body></message>`, wantErr: CondNotWellFormed},
		{name: "mismatched end tag", body: `<message><body></bodx></message>`, wantErr: CondNotWellFormed},
		{name: "end tag with other prefix", body: `<db:result></result>`, wantErr: CondNotWellFormed},
		{name: "undeclared element prefix", body: `<foo:message/>`, wantErr: CondNotWellFormed},
		{name: "undeclared child prefix", body: `<message><foo:x/></message>`, wantErr: CondNotWellFormed},
		{name: "undeclared attribute prefix", body: `<message foo:a='1'/>`, wantErr: CondNotWellFormed},
		{name: "prefix out of scope", body: `<message><a xmlns:p='u'/><p:b/></message>`, wantErr: CondNotWellFormed},
		{name: "undeclaring a prefix", body: `<message xmlns:p=''/>`, wantErr: CondNotWellFormed},
		{name: "declaring xmlns", body: `<message xmlns:xmlns='u'/>`, wantErr: CondNotWellFormed},
		{name: "rebinding xml", body: `<message xmlns:xml='u'/>`, wantErr: CondNotWellFormed},
		{name: "binding the xml namespace", body: `<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>`, wantErr: CondNotWellFormed},
		{name: "xmlns element prefix", body: `<xmlns:message/>`, wantErr: CondNotWellFormed},
		{name: "element named xmlns", body: `<message><xmlns/></message>`, wantErr: CondNotWellFormed},
		{name: "duplicate attribute", body: `<message to='a' to='b'/>`, wantErr: CondNotWellFormed},
		{name: "duplicate expanded attribute", body: `<message xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, wantErr: CondNotWellFormed},
		{name: "duplicate declaration", body: `<message xmlns:p='u' xmlns:p='u'/>`, wantErr: CondNotWellFormed},
		{name: "unquoted attribute", body: `<message to=a/>`, wantErr: CondNotWellFormed},
		{name: "attribute without value", body: `<message to/>`, wantErr: CondNotWellFormed},
		{name: "lt in attribute", body: `<message to='a<b'/>`, wantErr: CondNotWellFormed},
		{name: "no space between attributes", body: `<message to='a'from='b'/>`, wantErr: CondNotWellFormed},
		{name: "space in empty-element close", body: `<message/ >`, wantErr: CondNotWellFormed},
		{name: "space before end tag name", body: `<message></ message>`, wantErr: CondNotWellFormed},
		{name: "invalid utf-8 in text", body: "<message><body>\xC3\x28</body></message>", wantErr: CondNotWellFormed},
		{name: "encoded surrogate", body: "<message><body>\xED\xA0\x80</body></message>", wantErr: CondNotWellFormed},
		{name: "invalid utf-8 in attribute", body: "<message to='\xFF'/>", wantErr: CondNotWellFormed},
		{name: "control character in text", body: "<message><body>\x01</body></message>", wantErr: CondNotWellFormed},
		{name: "control character in attribute", body: "<message to='\x1B'/>", wantErr: CondNotWellFormed},
		{name: "U+FFFF in text", body: "<message><body>\xEF\xBF\xBF</body></message>", wantErr: CondNotWellFormed},
		{name: "cdata end in text", body: `<message><body>a]]>b</body></message>`, wantErr: CondNotWellFormed},
		{name: "name starting with digit", body: `<1message/>`, wantErr: CondNotWellFormed},
		{name: "two colons", body: `<a:b:c/>`, wantErr: CondNotWellFormed},
		{name: "leading colon", body: `<:a/>`, wantErr: CondNotWellFormed},
		{name: "trailing colon", body: `<a:/>`, wantErr: CondNotWellFormed},
		{name: "non-name character", body: "<a\u00A0b/>", wantErr: CondNotWellFormed},
		{name: "top-level text", body: `hello`, wantErr: CondNotWellFormed},
		{name: "top-level end tag", body: `</message>`, wantErr: CondNotWellFormed},
		{name: "stream close with other prefix", body: `</s:stream>`, wantErr: CondNotWellFormed},
		{name: "newline in from", body: "<message from='a\nb'/>", wantErr: CondBadFormat},
		{name: "tab in id", body: "<message id='a\tb'/>", wantErr: CondBadFormat},
		{name: "carriage return in namespace name", body: "<message xmlns='\r0'/>", wantErr: CondBadFormat},
		{name: "newline in prefixed namespace name", body: "<message xmlns:p='urn:\nx'/>", wantErr: CondBadFormat},
		{name: "too big", body: `<message><body>` + strings.Repeat("x", 100) + `</body></message>`, lim: Limits{MaxElementSize: 64}, wantErr: CondPolicyViolation, app: AppStanzaTooBig},
		{name: "too big by one byte", body: `<message>` + strings.Repeat("x", 64-len("<message></message>")+1) + `</message>`, lim: Limits{MaxElementSize: 64}, wantErr: CondPolicyViolation, app: AppStanzaTooBig},
		{
			name:    "exactly at the size limit",
			body:    `<message>` + strings.Repeat("x", 64-len("<message></message>")) + `</message>`,
			lim:     Limits{MaxElementSize: 64},
			want:    []elemWant{{space: NSServer, local: "message"}},
			wantErr: "EOF",
		},
		{name: "too deep", body: `<a><b><c><d/></c></b></a>`, lim: Limits{MaxDepth: 3}, wantErr: CondPolicyViolation},
		{
			name:    "at the depth limit",
			body:    `<a><b><c/></b></a>`,
			lim:     Limits{MaxDepth: 3},
			want:    []elemWant{{space: NSServer, local: "a"}},
			wantErr: "EOF",
		},
		{name: "too many attributes", body: `<message` + manyAttrs(maxAttrsPerTag+1) + `/>`, wantErr: CondPolicyViolation},
		{
			name:    "many attributes, duplicates found with a map",
			body:    `<message` + manyAttrs(100) + ` a50='x'/>`,
			wantErr: CondNotWellFormed,
		},
		{
			name:    "many attributes",
			body:    `<message` + manyAttrs(maxAttrsPerTag-1) + ` from='x'/>`,
			want:    []elemWant{{space: NSServer, local: "message", from: "x"}},
			wantErr: "EOF",
		},
		{name: "duplicate expanded names among many attributes", body: `<message` + manyAttrs(40) + ` xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>`, wantErr: CondNotWellFormed},
		{name: "too many namespace declarations", body: `<message>` + strings.Repeat(`<x`+manyDecls(maxDeclsInScope/4)+`>`, 5) + `</message>`, wantErr: CondPolicyViolation},
		{
			name:    "many namespace declarations",
			body:    `<message` + manyDecls(maxDeclsInScope) + `><p0:x/></message>`,
			want:    []elemWant{{space: NSServer, local: "message"}},
			wantErr: "EOF",
		},
		{name: "eof inside element", body: `<message><body>hi`, wantErr: "unexpected EOF"},
		{name: "eof inside tag", body: `<message to='x`, wantErr: "unexpected EOF"},
		{name: "eof inside stream close", body: `</stream:str`, wantErr: "unexpected EOF"},
		{name: "eof inside reference", body: `<message><body>&am`, wantErr: "unexpected EOF"},
		{name: "eof inside utf-8 sequence", body: "<message><body>\xE2\x82", wantErr: "unexpected EOF"},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/onebyte=%v", tt.name, oneByte), func(t *testing.T) {
				in := prosodyHeader + tt.body
				var src io.Reader = strings.NewReader(in)
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				r := NewReader(src, tt.lim)
				h, err := r.ReadHeader()
				if err != nil {
					t.Fatal(err)
				}
				var got []elemWant
				for {
					el, err := r.Next()
					if err != nil {
						checkErr(t, err, tt.wantErr)
						if tt.app != "" {
							var se *StreamError
							if !errors.As(err, &se) || se.App != tt.app {
								t.Fatalf("error = %v, want app condition %s", err, tt.app)
							}
						}
						// Errors are sticky.
						if _, err2 := r.Next(); err2 != err && !(err == io.EOF && err2 == io.EOF) {
							t.Errorf("second Next: %v, want %v", err2, err)
						}
						break
					}
					checkDifferential(t, el, h.Namespaces)
					got = append(got, elemWant{el.Space, el.Local, el.From, el.To, el.Type, el.ID, strings.Join(el.HeaderPrefixes, ","), el.HasCDATA})
				}
				if fmt.Sprint(got) != fmt.Sprint(tt.want) {
					t.Errorf("elements\n got %+v\nwant %+v", got, tt.want)
				}
			})
		}
	}
}

// checkDifferential parses el.Raw with encoding/xml inside a wrapper that
// declares the header namespaces and compares what it reports with el.
func checkDifferential(t testing.TB, el Element, header map[string]string) {
	t.Helper()
	var w bytes.Buffer
	w.WriteString("<wrapper")
	for p, u := range header {
		if p == "" {
			w.WriteString(" xmlns='")
		} else {
			w.WriteString(" xmlns:" + p + "='")
		}
		w.Write(AppendEscapedAttr(nil, u))
		w.WriteString("'")
	}
	w.WriteString(">")
	w.Write(el.Raw)
	w.WriteString("</wrapper>")
	d := xml.NewDecoder(&w)
	depth := 0
	var root *xml.StartElement
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("encoding/xml rejects an accepted element %q: %v", el.Raw, err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 && root == nil {
				s := tok.Copy()
				root = &s
			} else if depth == 2 {
				t.Fatalf("encoding/xml sees two top-level elements in %q", el.Raw)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 1 {
				t.Fatalf("encoding/xml sees text outside the element in %q", el.Raw)
			}
		case xml.Comment, xml.ProcInst, xml.Directive:
			t.Fatalf("accepted element with %T: %q", tok, el.Raw)
		}
	}
	if root == nil {
		t.Fatalf("encoding/xml sees no element in %q", el.Raw)
	}
	if root.Name.Space != el.Space || root.Name.Local != el.Local {
		t.Fatalf("name of %q: encoding/xml {%s}%s, xmlstream {%s}%s", el.Raw, root.Name.Space, root.Name.Local, el.Space, el.Local)
	}
	head := map[string]string{"from": el.From, "to": el.To, "type": el.Type, "id": el.ID}
	seen := map[string]bool{}
	for _, a := range root.Attr {
		if a.Name.Space != "" {
			continue
		}
		want, ok := head[a.Name.Local]
		if !ok {
			continue
		}
		seen[a.Name.Local] = true
		if a.Value != want {
			t.Fatalf("attribute %s of %q: encoding/xml %q, xmlstream %q", a.Name.Local, el.Raw, a.Value, want)
		}
	}
	for k, v := range head {
		if !seen[k] && v != "" {
			t.Fatalf("attribute %s of %q: encoding/xml absent, xmlstream %q", k, el.Raw, v)
		}
	}
	// The whole tree agrees too: names, attributes and character data
	// (CDATA sections included) in document order.
	want, err := encodingXMLTree(el.Raw, header)
	if err != nil {
		t.Fatalf("encoding/xml rejects an accepted element %q: %v", el.Raw, err)
	}
	got, err := ParseNode(el.Raw, header)
	if err != nil {
		t.Fatalf("ParseNode rejects an accepted element %q: %v", el.Raw, err)
	}
	if d := treeDiff(want, got, true); d != "" {
		t.Fatalf("tree of %q: encoding/xml and ParseNode differ: %s", el.Raw, d)
	}
}

// encodingXMLTree parses one element with encoding/xml, inside a wrapper
// declaring the header namespaces, into a Node tree shaped like
// ParseNode's (CharData tokens, CDATA included, are merged as character
// data; Segments on nodes with children).
func encodingXMLTree(raw []byte, header map[string]string) (*Node, error) {
	var w bytes.Buffer
	w.WriteString("<wrapper")
	for p, u := range header {
		if p == "" {
			w.WriteString(" xmlns='")
		} else {
			w.WriteString(" xmlns:" + p + "='")
		}
		w.Write(AppendEscapedAttr(nil, u))
		w.WriteString("'")
	}
	w.WriteString(">")
	w.Write(raw)
	w.WriteString("</wrapper>")
	d := xml.NewDecoder(&w)
	type open struct {
		n      *Node
		text   []byte
		bounds []int
	}
	var root *Node
	var stack []*open
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && root == nil && tok.Name.Local == "wrapper" {
				stack = append(stack, &open{n: &Node{}}) // the wrapper
				continue
			}
			n := &Node{Space: tok.Name.Space, Local: tok.Name.Local}
			for _, a := range tok.Attr {
				if a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns" {
					continue
				}
				n.Attrs = append(n.Attrs, Attr{Space: a.Name.Space, Local: a.Name.Local, Value: a.Value})
			}
			top := stack[len(stack)-1]
			if len(stack) == 1 {
				if root != nil {
					return nil, errors.New("two elements")
				}
				root = n
			} else {
				top.n.Children = append(top.n.Children, n)
				top.bounds = append(top.bounds, len(top.text))
			}
			stack = append(stack, &open{n: n})
		case xml.EndElement:
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			top.n.Text = string(top.text)
			if len(top.n.Children) > 0 {
				prev := 0
				for _, b := range top.bounds {
					top.n.Segments = append(top.n.Segments, top.n.Text[prev:b])
					prev = b
				}
				top.n.Segments = append(top.n.Segments, top.n.Text[prev:])
			}
		case xml.CharData:
			if len(stack) > 1 {
				top := stack[len(stack)-1]
				top.text = append(top.text, tok...)
			} else if len(tok) > 0 {
				return nil, errors.New("text outside the element")
			}
		case xml.Comment, xml.ProcInst, xml.Directive:
			return nil, fmt.Errorf("%T in an element", tok)
		}
	}
	if root == nil {
		return nil, errors.New("no element")
	}
	return root, nil
}

// treeDiff describes the first difference between two trees, or returns
// "". With foldAttrWS, attribute values are compared with tab, newline
// and carriage return read as spaces: encoding/xml does not normalise
// attribute values as XML requires, ParseNode does.
func treeDiff(a, b *Node, foldAttrWS bool) string {
	if a.Space != b.Space || a.Local != b.Local {
		return fmt.Sprintf("name {%s}%s vs {%s}%s", a.Space, a.Local, b.Space, b.Local)
	}
	where := "{" + a.Space + "}" + a.Local
	if len(a.Attrs) != len(b.Attrs) {
		return fmt.Sprintf("%s: attributes %+v vs %+v", where, a.Attrs, b.Attrs)
	}
	fold := func(s string) string {
		if !foldAttrWS {
			return s
		}
		return strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, s)
	}
	for i := range a.Attrs {
		x, y := a.Attrs[i], b.Attrs[i]
		if x.Space != y.Space || x.Local != y.Local || fold(x.Value) != fold(y.Value) {
			return fmt.Sprintf("%s: attribute %d %+v vs %+v", where, i, x, y)
		}
	}
	if a.Text != b.Text {
		return fmt.Sprintf("%s: text %q vs %q", where, a.Text, b.Text)
	}
	if fmt.Sprintf("%q", a.Segments) != fmt.Sprintf("%q", b.Segments) || (a.Segments == nil) != (b.Segments == nil) {
		return fmt.Sprintf("%s: segments %q vs %q", where, a.Segments, b.Segments)
	}
	if len(a.Children) != len(b.Children) {
		return fmt.Sprintf("%s: %d vs %d children", where, len(a.Children), len(b.Children))
	}
	for i := range a.Children {
		if d := treeDiff(a.Children[i], b.Children[i], foldAttrWS); d != "" {
			return where + "/" + d
		}
	}
	return ""
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " a%d='%d'", i, i)
	}
	return b.String()
}

func manyDecls(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, " xmlns:p%d='urn:%d'", i, i)
	}
	return b.String()
}

func TestNextRawIsExact(t *testing.T) {
	elems := []string{
		`<message from='a@company.test/r' to='b@partner.test' type='chat' id='1'><body>one</body></message>`,
		`<presence from="a@company.test/r" to="b@partner.test"><show>away</show><status>&lt;3 — ünïcödé 😀</status></presence>`,
		`<iq type='get' id='p' to='partner.test' from='company.test'><ping xmlns='urn:xmpp:ping'/></iq>`,
		`<db:result from='company.test' to='partner.test'>0123456789abcdef</db:result>`,
	}
	body := " " + strings.Join(elems, "\n \t") + "\r\n</stream:stream>"
	for _, src := range []struct {
		name string
		r    func(string) io.Reader
	}{
		{"whole", func(s string) io.Reader { return strings.NewReader(s) }},
		{"onebyte", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }},
		{"halfreader", func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) }},
		{"dataerr", func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) }},
	} {
		t.Run(src.name, func(t *testing.T) {
			r := NewReader(src.r(prosodyHeader+body), Limits{})
			if _, err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			for i, want := range elems {
				el, err := r.Next()
				if err != nil {
					t.Fatalf("element %d: %v", i, err)
				}
				if string(el.Raw) != want {
					t.Fatalf("element %d raw\n got %q\nwant %q", i, el.Raw, want)
				}
			}
			if _, err := r.Next(); err != ErrStreamEnd {
				t.Fatalf("after the last element: %v, want ErrStreamEnd", err)
			}
			if _, err := r.Next(); err != ErrStreamEnd {
				t.Fatalf("after the stream end: %v, want ErrStreamEnd", err)
			}
		})
	}
}

func TestNextBeforeReadHeader(t *testing.T) {
	r := NewReader(strings.NewReader("<message/>"), Limits{})
	if _, err := r.Next(); err == nil {
		t.Fatal("Next before ReadHeader succeeded")
	}
}

func TestLargeElementsAndBufferShrink(t *testing.T) {
	big := `<message><body>` + strings.Repeat("0123456789", 50_000) + `</body></message>`
	small := `<message><body>x</body></message>`
	in := prosodyHeader + big + small + big
	r := NewReader(iotest.HalfReader(strings.NewReader(in)), Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{big, small, big} {
		el, err := r.Next()
		if err != nil {
			t.Fatalf("element %d: %v", i, err)
		}
		if string(el.Raw) != want {
			t.Fatalf("element %d differs (len %d, want %d)", i, len(el.Raw), len(want))
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("err = %v, want io.EOF", err)
	}
	if len(r.buf) > DefaultMaxElementSize+readSlack {
		t.Errorf("buffer grew to %d", len(r.buf))
	}

	// A too-big element is refused before the buffer passes the limit.
	huge := `<message><body>` + strings.Repeat("x", 2<<20)
	r = NewReader(strings.NewReader(prosodyHeader+huge), Limits{MaxElementSize: 1 << 10})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Next()
	checkErr(t, err, CondPolicyViolation)
	if len(r.buf) > 1<<10+readSlack {
		t.Errorf("buffer grew to %d for a 1 KiB limit", len(r.buf))
	}
}

// errAfterReader returns its data, then err.
type errAfterReader struct {
	data []byte
	err  error
}

func (e *errAfterReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReadErrorIsWrapped(t *testing.T) {
	boom := errors.New("connection reset")
	r := NewReader(&errAfterReader{data: []byte(prosodyHeader + "<message>"), err: boom}, Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Next()
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want wrapping %v", err, boom)
	}
}

func TestStreamErrorText(t *testing.T) {
	e := &StreamError{Condition: CondPolicyViolation, App: AppStanzaTooBig, Text: "too big"}
	if got, want := e.Error(), "xmlstream: policy-violation (stanza-too-big): too big"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// TestAwait: Await waits for bytes without consuming them, and leaves a
// read error for Next, which returns what it would have without Await.
func TestAwait(t *testing.T) {
	const msg = `<message to='a@company.test'><body>hi</body></message>`
	tests := []struct {
		name    string
		after   string // what follows the header
		src     func(string) io.Reader
		awaits  int
		wantEl  string // the local name Next returns, or ""
		wantErr error
	}{
		{"an element", msg, func(s string) io.Reader { return strings.NewReader(s) }, 1, "message", nil},
		{"one byte at a time", msg, func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }, 3, "message", nil},
		{"the source ends", "", func(s string) io.Reader { return strings.NewReader(s) }, 2, "", io.EOF},
		{"the source fails", "", func(s string) io.Reader {
			return io.MultiReader(strings.NewReader(s), iotest.ErrReader(errors.New("reset")))
		}, 1, "", errors.New("reset")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.src(prosodyHeader+tt.after), Limits{})
			if _, err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			for range tt.awaits {
				r.Await()
			}
			el, err := r.Next()
			switch {
			case tt.wantErr == nil && (err != nil || el.Local != tt.wantEl || string(el.Raw) != msg):
				t.Errorf("Next after Await = %q %q, %v; want the whole %s", el.Local, el.Raw, err, tt.wantEl)
			case tt.wantErr != nil && (err == nil || !strings.Contains(err.Error(), tt.wantErr.Error())):
				t.Errorf("Next after Await: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// scriptedReader returns its steps in turn: bytes, or an error (with or
// without bytes), then io.EOF. With r set, it notes what r holds when a
// step marked held is read (the buffers a waiting reader keeps).
type scriptedReader struct {
	steps []scriptStep
	r     *Reader
	held  []int
}

type scriptStep struct {
	data string
	err  error
	held bool
}

func (s *scriptedReader) Read(p []byte) (int, error) {
	if len(s.steps) == 0 {
		return 0, io.EOF
	}
	st := &s.steps[0]
	if st.held && s.r != nil { // its first read
		s.held = append(s.held, s.r.HeldBytes())
		st.held = false
	}
	n := copy(p, st.data)
	st.data = st.data[n:]
	if st.data != "" {
		return n, nil
	}
	s.steps = s.steps[1:]
	return n, st.err
}

// idleTimeout is what a deadline that passed returns (os.ErrDeadlineExceeded
// is one).
type idleTimeout struct{}

func (idleTimeout) Error() string   { return "i/o timeout" }
func (idleTimeout) Timeout() bool   { return true }
func (idleTimeout) Temporary() bool { return true }

// TestAwaitIdle: a timeout while waiting between elements releases the
// buffers and is not kept; anything else is Await's. Strings and Raw that
// earlier elements returned survive the release and the reads after it.
func TestAwaitIdle(t *testing.T) {
	const msg = `<message to='a@company.test' type='chat'><body>hi</body></message>`
	const msg2 = `<presence to='b@company.test'/>`
	tests := []struct {
		name     string
		steps    []scriptStep // after the header and msg
		wantIdle bool
		wantEl   string // what Next returns then, or ""
		wantErr  string
	}{
		{"idle, then an element", []scriptStep{{"", idleTimeout{}, false}, {msg2, nil, true}}, true, "presence", ""},
		{"an element at once", []scriptStep{{msg2, nil, false}}, false, "presence", ""},
		{"bytes with the timeout", []scriptStep{{msg2[:10], idleTimeout{}, false}, {msg2[10:], nil, false}}, false, "presence", ""},
		{"the source fails", []scriptStep{{"", errors.New("reset"), false}}, false, "", "reset"},
		{"the source ends", nil, false, "", "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &scriptedReader{steps: append([]scriptStep{{prosodyHeader + msg, nil, false}}, tt.steps...)}
			r := NewReader(src, Limits{})
			src.r = r
			if _, err := r.ReadHeader(); err != nil {
				t.Fatal(err)
			}
			first, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			raw, typ := string(first.Raw), first.Type
			rawView := first.Raw
			if idle := r.AwaitIdle(); idle != tt.wantIdle {
				t.Fatalf("AwaitIdle = %v, want %v", idle, tt.wantIdle)
			}
			if tt.wantIdle && r.HeldBytes() != 0 {
				t.Errorf("idle reader holds %d bytes", r.HeldBytes())
			}
			r.Await()
			el, err := r.Next()
			switch {
			case tt.wantErr == "" && (err != nil || el.Local != tt.wantEl || string(el.Raw) != msg2):
				t.Errorf("Next = %q %q, %v; want %s", el.Local, el.Raw, err, msg2)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Next: %v, want %s", err, tt.wantErr)
			}
			if typ != "chat" || (tt.wantIdle && string(rawView) != raw) {
				t.Errorf("the first element changed: type %q, raw %q", typ, rawView)
			}
			for _, held := range src.held {
				if held != 0 {
					t.Errorf("the wait after the release held %d bytes of buffers", held)
				}
			}
		})
	}
}

// TestReleaseKeepsBufferedBytes: Release with bytes buffered keeps
// everything.
func TestReleaseKeepsBufferedBytes(t *testing.T) {
	const msg = `<presence to='b@company.test'/>`
	r := NewReader(strings.NewReader(prosodyHeader+msg+msg), Limits{})
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() == 0 {
		t.Fatal("want the second element buffered")
	}
	r.Release()
	if r.HeldBytes() == 0 {
		t.Fatal("released a buffer holding bytes")
	}
	if el, err := r.Next(); err != nil || string(el.Raw) != msg {
		t.Fatalf("Next = %q, %v", el.Raw, err)
	}
}

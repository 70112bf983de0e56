package xmlstream

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

var testHeaderNS = map[string]string{"": NSServer, "stream": NSStream, "db": NSDialback}

// contentFromNode is the reference: Content as ParseNode's tree gives it.
func contentFromNode(n *Node) Content {
	var c Content
	thread := false
	for _, ch := range n.Children {
		c.Children = append(c.Children, Name{Space: ch.Space, Local: ch.Local})
		switch {
		case ch.Space == NSServer && ch.Local == "body":
			c.Body = JoinText(c.Body, ch.Text, false)
		case ch.Space == NSServer && ch.Local == "subject":
			c.Subject = JoinText(c.Subject, ch.Text, false)
		case ch.Space == NSServer && ch.Local == "thread" && !thread:
			c.Thread, thread = ch.Text, true
		}
	}
	return c
}

func TestParseContent(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want Content
		ok   bool
	}{
		{"plain message", "<message to='a@b' from='c@d'><body>hi &amp; bye &#x263A;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
			Content{Children: []Name{{NSServer, "body"}, {"http://jabber.org/protocol/chatstates", "active"}}, Body: "hi & bye ☺"}, true},
		{"every body is seen", "<message><body xml:lang='en'>ok</body><body xml:lang='de'>CONFIDENTIAL</body></message>",
			Content{Children: []Name{{NSServer, "body"}, {NSServer, "body"}}, Body: "ok\nCONFIDENTIAL"}, true},
		{"nested markup inside body is skipped, text kept", "<message><body>a<b xmlns='x'>hidden</b>c</body></message>",
			Content{Children: []Name{{NSServer, "body"}}, Body: "ac"}, true},
		{"body in another namespace is not the body", "<message><body xmlns='urn:other'>x</body></message>",
			Content{Children: []Name{{"urn:other", "body"}}}, true},
		{"default namespace redeclared on the stanza", "<message xmlns='jabber:server'><subject>s</subject><thread>t1</thread><thread>t2</thread></message>",
			Content{Children: []Name{{NSServer, "subject"}, {NSServer, "thread"}, {NSServer, "thread"}}, Subject: "s", Thread: "t1"}, true},
		{"line ends normalised", "<message><body>a\r\nb\rc</body></message>",
			Content{Children: []Name{{NSServer, "body"}}, Body: "a\nb\nc"}, true},
		{"greater-than in an attribute", "<message><x xmlns='u' a='1>2'/><body>b</body></message>",
			Content{Children: []Name{{"u", "x"}, {NSServer, "body"}}, Body: "b"}, true},
		{"empty stanza", "<presence/>", Content{}, true},
		{"prefixed child: slow path", "<message xmlns:p='urn:p'><p:body>x</p:body></message>", Content{}, false},
		{"security label: slow path", "<message><securitylabel xmlns='urn:xmpp:sec-label:0'/></message>", Content{}, false},
		{"cdata in a body: slow path", "<message><body>a<![CDATA[<b>]]></body></message>", Content{}, false},
		{"cdata in a nested element: slow path", "<message><x xmlns='u'><y><![CDATA[</x><body>b</body>]]></y></x></message>", Content{}, false},
		{"cdata in the stanza: slow path", "<message><![CDATA[<body>b</body>]]></message>", Content{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseContent([]byte(tt.raw), testHeaderNS)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if ok && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if !ok {
				return
			}
			n, err := ParseNode([]byte(tt.raw), testHeaderNS)
			if err != nil {
				t.Fatal(err)
			}
			if ref := contentFromNode(n); !reflect.DeepEqual(got, ref) {
				t.Fatalf("differs from ParseNode: %+v vs %+v", got, ref)
			}
		})
	}
}

// FuzzParseContent: for every element the Reader accepts, ParseContent
// either declines (ok false) or gives exactly what ParseNode gives. This is
// what makes the fast path safe for the policy: it cannot see a different
// body than the full parser.
func FuzzParseContent(f *testing.F) {
	for _, s := range []string{
		"<message><body>hi</body></message>",
		"<message><body>a<b>x</b>c</body><body>d</body><subject>s&lt;</subject></message>",
		"<message xmlns='jabber:server'><thread>t</thread><x xmlns='u'><body>inner</body></x></message>",
		"<message><body xmlns='jabber:client'>c</body></message>",
		"<iq type='get'><query xmlns='jabber:iq:version'/></iq>",
		"<message><body>&#65;&#x42;\r\n</body></message>",
		"<message><body a='>'>x</body></message>",
		"<message><body>a<![CDATA[<b>x</b>]]>c</body></message>",
		"<message><![CDATA[</message><body>x</body>]]><body>y</body></message>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		stream := "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback'>" + s
		r := NewReader(strings.NewReader(stream), Limits{})
		h, err := r.ReadHeader()
		if err != nil {
			t.Fatalf("header: %v", err)
		}
		for {
			el, err := r.Next()
			if err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrStreamEnd) {
					return
				}
				var se *StreamError
				if errors.As(err, &se) {
					return
				}
				return
			}
			raw := append([]byte(nil), el.Raw...)
			got, ok := ParseContent(raw, h.Namespaces)
			if !ok {
				continue
			}
			n, err := ParseNode(raw, h.Namespaces)
			if err != nil {
				t.Fatalf("ParseNode rejects what Next accepted: %v", err)
			}
			if ref := contentFromNode(n); !reflect.DeepEqual(got, ref) {
				t.Fatalf("ParseContent %+v\nParseNode   %+v\ninput %q", got, ref, raw)
			}
		}
	})
}

func BenchmarkParseContent(b *testing.B) {
	raw := []byte("<message from='alice@company.test/desk' to='bob@partner.test' id='m00000001' type='chat' xml:lang='en'><body>" + strings.Repeat("lorem ipsum dolor sit amet ", 10) + "</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/></message>")
	b.Run("ParseContent", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ParseContent(raw, testHeaderNS)
		}
	})
	b.Run("ParseNode", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			ParseNode(raw, testHeaderNS)
		}
	})
}

package xmlstream

import (
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

// contentCases are the stanzas TestParseContent and TestCollectedContent
// read: want is their content; fast says that ParseContent reads it
// (else it declines, for the tree); label that only the tree does (both
// decline). The collected notes read every other one.
var contentCases = []struct {
	name        string
	raw         string
	want        Content
	fast, label bool
}{
	{name: "plain message", raw: "<message to='a@b' from='c@d'><body>hi &amp; bye &#x263A;</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
		want: Content{Children: []Name{{NSServer, "body"}, {"http://jabber.org/protocol/chatstates", "active"}}, Body: "hi & bye ☺"}, fast: true},
	{name: "every body is seen", raw: "<message><body xml:lang='en'>ok</body><body xml:lang='de'>CONFIDENTIAL</body></message>",
		want: Content{Children: []Name{{NSServer, "body"}, {NSServer, "body"}}, Body: "ok\nCONFIDENTIAL"}, fast: true},
	{name: "nested markup inside body is skipped, text kept", raw: "<message><body>a<b xmlns='x'>hidden</b>c</body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "ac"}, fast: true},
	{name: "body in another namespace is not the body", raw: "<message><body xmlns='urn:other'>x</body></message>",
		want: Content{Children: []Name{{"urn:other", "body"}}}, fast: true},
	{name: "default namespace redeclared on the stanza", raw: "<message xmlns='jabber:server'><subject>s</subject><thread>t1</thread><thread>t2</thread></message>",
		want: Content{Children: []Name{{NSServer, "subject"}, {NSServer, "thread"}, {NSServer, "thread"}}, Subject: "s", Thread: "t1"}, fast: true},
	{name: "only the first thread, even empty", raw: "<message><subject>s</subject><thread/><thread>t2</thread></message>",
		want: Content{Children: []Name{{NSServer, "subject"}, {NSServer, "thread"}, {NSServer, "thread"}}, Subject: "s"}, fast: true},
	{name: "line ends normalised", raw: "<message><body>a\r\nb\rc</body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "a\nb\nc"}, fast: true},
	{name: "greater-than in an attribute", raw: "<message><x xmlns='u' a='1>2'/><body>b</body></message>",
		want: Content{Children: []Name{{"u", "x"}, {NSServer, "body"}}, Body: "b"}, fast: true},
	{name: "jabber:server declared with a reference", raw: "<message><body xmlns='jabber&#58;server'>x</body><thread xmlns='jabber&#x3A;server'>t</thread></message>",
		want: Content{Children: []Name{{NSServer, "body"}, {NSServer, "thread"}}, Body: "x", Thread: "t"}, fast: true},
	{name: "body undeclared into no namespace", raw: "<message><body xmlns=''>x</body></message>",
		want: Content{Children: []Name{{"", "body"}}}, fast: true},
	{name: "empty stanza", raw: "<presence/>", want: Content{}, fast: true},
	{name: "prefixed child", raw: "<message xmlns:p='urn:p'><p:body>x</p:body></message>",
		want: Content{Children: []Name{{"urn:p", "body"}}}},
	{name: "prefixed body in jabber:server", raw: "<message xmlns:p='jabber:server'><p:body>x</p:body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "x"}},
	{name: "prefix from the stream header (TestCollectedContent's)", raw: "<message><h:x/><body>b</body></message>",
		want: Content{Children: []Name{{"urn:header", "x"}, {NSServer, "body"}}, Body: "b"}},
	{name: "cdata in a body", raw: "<message><body>a<![CDATA[<b>&amp;\r\n]]>c</body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "a<b>&amp;\nc"}},
	{name: "cdata in a nested element", raw: "<message><x xmlns='u'><y><![CDATA[</x><body>b</body>]]></y></x></message>",
		want: Content{Children: []Name{{"u", "x"}}}},
	{name: "cdata in a nested element of the body", raw: "<message><body>a<x xmlns='u'><![CDATA[hidden]]></x></body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "a"}},
	{name: "cdata in the stanza", raw: "<message><![CDATA[<body>b</body>]]><body>y</body></message>",
		want: Content{Children: []Name{{NSServer, "body"}}, Body: "y"}},
	{name: "security label", raw: "<message><securitylabel xmlns='urn:xmpp:sec-label:0'/><body>x</body></message>", label: true},
}

func TestParseContent(t *testing.T) {
	for _, tt := range contentCases {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseContent([]byte(tt.raw), testHeaderNS)
			if ok != tt.fast {
				t.Fatalf("ok = %v, want %v", ok, tt.fast)
			}
			if !ok {
				return
			}
			if !sameContent(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
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

// contentSeeds start FuzzParseContent and FuzzCollectedContent.
var contentSeeds = []string{
	"<message><body>hi</body></message>",
	"<message><body>a<b>x</b>c</body><body>d</body><subject>s&lt;</subject></message>",
	"<message xmlns='jabber:server'><thread>t</thread><x xmlns='u'><body>inner</body></x></message>",
	"<message><body xmlns='jabber:client'>c</body></message>",
	"<message xmlns:p='jabber:server'><p:body>x</p:body><h:subject xmlns:h='jabber:server'>y</h:subject></message>",
	"<message><body>&#65;&#x42;\r\n</body></message>",
	"<message><body a='>'>x</body></message>",
	"<message><body>a<![CDATA[<b>x</b>]]>c\r</body></message>",
	"<message><![CDATA[</message><body>x</body>]]><body>y</body></message>",
	"<message><securitylabel xmlns='urn:xmpp:sec-label:0'/></message>",
	"<iq type='get'><query xmlns='jabber:iq:version'/></iq><presence/>",
}

// FuzzParseContent: for every element the Reader accepts, ParseContent
// either declines (ok false) or gives exactly what ParseNode gives. This is
// what makes the fast path safe for the policy: it cannot see a different
// body than the full parser.
func FuzzParseContent(f *testing.F) {
	for _, s := range contentSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		readElements(t, s, func(el *Element, h Header) {
			raw := append([]byte(nil), el.Raw...)
			got, ok := ParseContent(raw, h.Namespaces)
			if !ok {
				return
			}
			n, err := ParseNode(raw, h.Namespaces)
			if err != nil {
				t.Fatalf("ParseNode rejects what Next accepted: %v", err)
			}
			if ref := contentFromNode(n); !reflect.DeepEqual(got, ref) {
				t.Fatalf("ParseContent %+v\nParseNode   %+v\ninput %q", got, ref, raw)
			}
		})
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

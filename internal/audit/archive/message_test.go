package archive

import (
	"errors"
	"testing"
)

func TestParseStanza(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stanza string
		want   Message
		err    bool
	}{
		{"plain", `<message from='a@x.test/r' to='b@y.test' type='chat' id='m1'><body>hello</body></message>`,
			Message{Type: "chat", ID: "m1", Body: "hello"}, false},
		{"namespace and all parts", `<message xmlns='jabber:server' type='normal' id='m2'><subject>Re: Q3</subject><thread parent='p'>t-1</thread><body>line 1
line 2 &amp; &lt;more&gt;</body></message>`,
			Message{Type: "normal", ID: "m2", Subject: "Re: Q3", Thread: "t-1", Body: "line 1\nline 2 & <more>"}, false},
		{"client namespace", `<message xmlns='jabber:client'><body>c</body></message>`, Message{Body: "c"}, false},
		{"the body without xml:lang wins", `<message><body xml:lang='de'>Hallo</body><body>Hello</body><body>again</body></message>`,
			Message{Body: "Hello"}, false},
		{"else the first", `<message><body xml:lang='de'>Hallo</body><body xml:lang='fr'>Salut</body></message>`,
			Message{Body: "Hallo"}, false},
		{"a body of an extension is not the message's", `<message><x xmlns='urn:ext'><body>nested</body></x><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'>rich</body></html></message>`,
			Message{}, false},
		{"a body in another namespace", `<message><body xmlns='urn:other'>no</body></message>`, Message{}, false},
		{"CDATA", `<message><body><![CDATA[</body></message><message>]]></body></message>`,
			Message{Body: "</body></message><message>"}, false},
		{"character references", `<message id='a&#13;&#10;Bcc: x'><body>a&#13;b</body></message>`,
			Message{ID: "a\r\nBcc: x", Body: "a\rb"}, false},
		{"no body", `<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, Message{Type: "chat"}, false},
		{"presence", `<presence/>`, Message{}, true},
		{"two stanzas", `<message><body>a</body></message><message><body>b</body></message>`, Message{}, true},
		{"not XML", `<message><body>a</message>`, Message{}, true},
		{"empty", ``, Message{}, true},
		{"text first", `hello<message/>`, Message{}, true},
		{"unknown entity", `<message><body>&nbsp;</body></message>`, Message{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStanza(tc.stanza)
			if (err != nil) != tc.err {
				t.Fatalf("ParseStanza: %+v, %v; want error %v", got, err, tc.err)
			}
			if err == nil && got != tc.want {
				t.Fatalf("ParseStanza = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := ParseStanza(`<iq/>`); !errors.Is(err, errNotMessage) {
		t.Fatalf("an iq: %v, want errNotMessage", err)
	}
}

package archive

import (
	"bytes"
	"mime"
	"net/mail"
	"strings"
	"testing"
)

// FuzzParseStanza: any stanza, and any JID, either does not parse or
// becomes a message whose header cannot be escaped: every header line is
// one of the writer's, and a mail reader decodes the thread, id and
// sender back to what the stanza and record held.
func FuzzParseStanza(f *testing.F) {
	for _, s := range []string{
		`<message from='a@x.test/r' to='b@y.test' type='chat' id='m1'><body>hello</body></message>`,
		`<message xmlns='jabber:server' id='a&#13;&#10;Bcc: x'><subject>s</subject><thread>t&#13;&#10;To: y</thread><body>b</body></message>`,
		`<message><body xml:lang='de'>Hallo</body><body>Hello</body></message>`,
		`<message><body><![CDATA[</body></message>]]></body></message>`,
		`<message id='=?utf-8?q?=0D=0ABcc:_x?='><thread>=?utf-8?b?DQpCY2M6IHg=?=</thread><body>x</body></message>`,
		`<message><thread>` + strings.Repeat("t", 2000) + `</thread><body>` + strings.Repeat("ü", 300) + `</body></message>`,
	} {
		f.Add(s, "alice@company.test/desk")
	}
	f.Add(`<message><body>x</body></message>`, "jürgen@bücher.example/\"quoted\" <x>\r\nBcc: y")
	f.Fuzz(func(t *testing.T, stanza, from string) {
		m, err := ParseStanza(stanza)
		if err != nil {
			return
		}
		r := emlRecord(from, "bob@partner.test")
		var b bytes.Buffer
		if err := WriteEML(&b, &r, m); err != nil {
			t.Fatal(err)
		}
		checkHeaderSyntax(t, b.Bytes())
		msg, err := mail.ReadMessage(&b)
		if err != nil {
			t.Fatalf("net/mail cannot read the message: %v\n%q", err, b.String())
		}
		var dec mime.WordDecoder
		for _, h := range []struct{ name, want string }{
			{"X-XMPP-Thread", m.Thread}, {"X-XMPP-Id", m.ID}, {"X-XMPP-From", from}, {"Subject", m.Subject},
		} {
			got, err := dec.DecodeHeader(msg.Header.Get(h.name))
			if want := strings.ToValidUTF8(h.want, "\uFFFD"); err != nil || got != want {
				t.Fatalf("%s reads back as %q (%v), want %q", h.name, got, err, want)
			}
		}
	})
}

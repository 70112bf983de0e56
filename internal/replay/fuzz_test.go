package replay

import (
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// FuzzStanzaInput feeds stanzaInput what an edited or hostile audit line
// may hold: any addresses, stanza and file transfer list. It must not
// panic; it fails only on addresses that are not JIDs; a stanza it reads
// gives the content, and one it cannot read leaves the input to the
// record's metadata.
func FuzzStanzaInput(f *testing.F) {
	f.Add("bob@company.test/laptop", "alice@partner.test", `<message type='chat'><body>hi</body></message>`, "oob:upload.partner.test", "omemo")
	f.Add("a@b", "c@d", `<message><x:body xmlns:x='jabber:server'>p</x:body><securitylabel xmlns='urn:xmpp:sec-label:0'><displaymarking>SECRET</displaymarking></securitylabel></message>`, "ibb", "")
	f.Add("a@b", "c@d", `<message><body><![CDATA[x]]></body></message>`, "jingle:", "")
	f.Add("", "@", `<message`, ":", "")
	f.Add("a@bücher.example", "c@d", `<message><db:x xmlns:db='jabber:server:dialback'/></message>`, "", "")
	f.Fuzz(func(t *testing.T, from, to, stanza, transfer, encryption string) {
		r := &audit.Record{From: from, To: to, Stanza: stanza, Encryption: encryption, FileTransfer: audit.StringsOf(transfer)}
		in, content, err := stanzaInput(r, nil)
		if err != nil {
			if in != nil || content {
				t.Fatalf("error %v with an input", err)
			}
			return
		}
		if in.From.Domain == "" || in.To.Domain == "" || strings.Contains(in.From.Domain, "/") {
			t.Fatalf("from %q to %q: domains %q %q", from, to, in.From.Domain, in.To.Domain)
		}
		if !content && (len(in.Children) > 0 || in.Body != "" || in.Encryption != encryption) {
			t.Fatalf("no content read, yet children %v body %q encryption %q", in.Children, in.Body, in.Encryption)
		}
		if content && stanza == "" {
			t.Fatal("content read from no stanza")
		}
	})
}

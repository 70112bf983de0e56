package payload

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

var streamHeader = map[string]string{"": xmlstream.NSServer}

// parse gives what the stanza path has: the tree, the body the policy
// sees, and the children names (ParseContent's when it handles the
// stanza, else the tree's).
func parse(t testing.TB, raw string) (*xmlstream.Node, string, []xmlstream.Name) {
	t.Helper()
	n, err := xmlstream.ParseNode([]byte(raw), streamHeader)
	if err != nil {
		t.Fatalf("ParseNode: %v\n%s", err, raw)
	}
	body, names := treeContent(n)
	if c, ok := xmlstream.ParseContent([]byte(raw), streamHeader); ok {
		if c.Body != body || !reflect.DeepEqual(c.Children, names) {
			t.Fatalf("ParseContent disagrees with the tree: %q %v vs %q %v", c.Body, c.Children, body, names)
		}
	}
	return n, body, names
}

func treeContent(n *xmlstream.Node) (body string, names []xmlstream.Name) {
	for _, c := range n.Children {
		names = append(names, xmlstream.Name{Space: c.Space, Local: c.Local})
		if c.Space == xmlstream.NSServer && c.Local == "body" {
			body = xmlstream.JoinText(body, c.Text, false)
		}
	}
	return body, names
}

func oob(host string) Transfer { return Transfer{Method: MethodOOB, Host: host} }

var (
	jingle = Transfer{Method: MethodJingle}
	ibb    = Transfer{Method: MethodIBB}
	socks5 = Transfer{Method: MethodSOCKS5}
)

// classifyTests are stanzas as clients send them (and some hostile ones);
// FuzzClassify starts from them too.
var classifyTests = []struct {
	name   string
	stanza string
	want   Facts
}{
	{"plain chat message", `<message from='alice@company.test/phone' to='bob@partner.test' type='chat' id='m1'><body>Lunch at 12?</body><active xmlns='http://jabber.org/protocol/chatstates'/><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='5d2c'/></message>`,
		Facts{}},

	{"Conversations OMEMO with its fallback body", `<message from='alice@company.test/Conversations.kC3e' to='bob@partner.test' type='chat' id='2e1a4c7f'>
  <body>I sent you an OMEMO encrypted message but your client doesn’t seem to support that. Find more information on https://conversations.im/omemo</body>
  <encrypted xmlns='eu.siacs.conversations.axolotl'>
    <header sid='1532961127'>
      <key rid='1064716201'>MwohBTc2Z1/8b5R0kOe0HwmJ3q8sdAYpW4Mn6sN0m3zVsN1nEAAYACIwAB0=</key>
      <key prekey='true' rid='217366839'>MwiIlsX/BxIhBXvm7hx7O8Qw5TU9fSlAl6Ozu3yNFsVr</key>
      <iv>y3c9B4nEoW5i4tU1</iv>
    </header>
    <payload>ZWZXvgP1l9dSY9uq</payload>
  </encrypted>
  <request xmlns='urn:xmpp:receipts'/>
  <markable xmlns='urn:xmpp:chat-markers:0'/>
  <origin-id xmlns='urn:xmpp:sid:0' id='2e1a4c7f'/>
  <encryption xmlns='urn:xmpp:eme:0' name='OMEMO' namespace='eu.siacs.conversations.axolotl'/>
  <store xmlns='urn:xmpp:hints'/>
</message>`,
		Facts{Encryption: EncryptionOMEMO, BodyIsFallback: true}},

	{"Dino OMEMO 2", `<message from='alice@company.test/dino.5f1e' to='bob@partner.test' type='chat' id='7c0b'><body>[This message is OMEMO encrypted]</body><encrypted xmlns='urn:xmpp:omemo:2'><header sid='27183'><keys jid='bob@partner.test'><key rid='31415'>Zm9vYmFy</key><key kex='true' rid='12321'>YmF6</key></keys></header><payload>U2VjcmV0IG1lc3NhZ2U=</payload></encrypted><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:omemo:2' name='OMEMO'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:omemo:2'/><store xmlns='urn:xmpp:hints'/></message>`,
		Facts{Encryption: EncryptionOMEMO2, BodyIsFallback: true}},

	{"Gajim OpenPGP (XEP-0373)", `<message from='alice@company.test/gajim.QX2B' to='bob@partner.test' type='chat' id='ab12'><openpgp xmlns='urn:xmpp:openpgp:0'>hF4DZJmKq0RjCx0SAQdAzZ8r4uQ6Lq9UehB+1j0mZpY=</openpgp><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:openpgp:0'/><body>This message is *encrypted* with OpenPGP (See :XEP:` + "`0373`" + `)</body><store xmlns='urn:xmpp:hints'/></message>`,
		Facts{Encryption: EncryptionOpenPGP, BodyIsFallback: true}},

	{"legacy OpenPGP (XEP-0027)", `<message to='bob@partner.test' from='alice@company.test/psi' type='chat'><body>This message is encrypted.</body><x xmlns='jabber:x:encrypted'>hQEMAyW1aNX1c0r1AQf+</x></message>`,
		Facts{Encryption: EncryptionOpenPGP, BodyIsFallback: true}},

	{"OTR data message", `<message to='bob@partner.test' from='alice@company.test/pidgin' type='chat'><body>?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAIAAADAVoV88L+aKOU5X25jGi/mC3xG.</body></message>`,
		Facts{Encryption: EncryptionOTR, BodyIsFallback: true}},

	{"OTR query after some text", `<message to='bob@partner.test' type='chat'><body>Alice has requested an Off-the-Record private conversation ?OTRv23?</body></message>`,
		Facts{Encryption: EncryptionOTR, BodyIsFallback: true}},

	{"HTTP upload link (XEP-0363 + XEP-0066)", `<message from='alice@company.test/Conversations.kC3e' to='bob@partner.test' type='chat' id='f00d'><body>https://upload.company.test/slot/3a9c1f/holiday.jpg</body><x xmlns='jabber:x:oob'><url>https://upload.company.test/slot/3a9c1f/holiday.jpg</url></x><request xmlns='urn:xmpp:receipts'/></message>`,
		Facts{FileTransfer: []Transfer{oob("upload.company.test")}, BodyIsFallback: true}},

	{"link with other text in the body is not a fallback", `<message type='chat'><body>see the plan: https://files.example/x.pdf</body><x xmlns='jabber:x:oob'><url>https://files.example/x.pdf</url><desc>plan</desc></x></message>`,
		Facts{FileTransfer: []Transfer{oob("files.example")}}},

	{"link host: upper case, IDN, port, userinfo, final dot", `<message><x xmlns='jabber:x:oob'><url>  https://user@UPLOAD.Bücher.Example.:8443/a.png
</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("upload.xn--bcher-kva.example")}}},

	{"link hosts deduplicated, in order", `<message><x xmlns='jabber:x:oob'><url>https://a.example/1</url></x><x xmlns='jabber:x:oob'><url>https://B.example/2</url><url>https://a.example/3</url></x><x xmlns='jabber:x:oob'><url>https://b.example/4</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("a.example"), oob("b.example")}}},

	{"unparsable URL still counts as oob", `<message><x xmlns='jabber:x:oob'><url>https://evil.example\@upload.company.test/x</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("")}}},

	{"URL without a host", `<message><x xmlns='jabber:x:oob'><url>upload.company.test/x</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("")}}},

	{"URL host not a domain name", `<message><x xmlns='jabber:x:oob'><url>https://0x7f.1/x</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("")}}},

	{"URL with IP hosts", `<message><x xmlns='jabber:x:oob'><url>http://192.0.2.1/x</url><url>http://[2001:DB8::1]:80/x</url></x></message>`,
		Facts{FileTransfer: []Transfer{oob("192.0.2.1"), oob("[2001:db8::1]")}}},

	{"iq OOB", `<iq type='set' from='alice@company.test/r' to='bob@partner.test/r' id='oob1'><query xmlns='jabber:iq:oob'><url>http://www.shakespeare.lit/sonnets/sonnet19.txt</url><desc>A sonnet</desc></query></iq>`,
		Facts{FileTransfer: []Transfer{oob("www.shakespeare.lit")}}},

	{"url element in another namespace is not a link", `<message><x xmlns='jabber:x:oob'><url xmlns='urn:other'>https://a.example/</url></x></message>`,
		Facts{}},

	{"OMEMO-encrypted aesgcm link", `<message type='chat'><body>I sent you an OMEMO encrypted message</body><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><key rid='2'>AA==</key><iv>AA==</iv></header><payload>AA==</payload></encrypted></message>`,
		Facts{Encryption: EncryptionOMEMO, BodyIsFallback: true}},

	{"Dino stateless file sharing with OOB fallback", `<message type='chat' id='sfs1'><body>https://upload.partner.test/abc/cat.png</body><x xmlns='jabber:x:oob'><url>https://upload.partner.test/abc/cat.png</url></x><file-sharing xmlns='urn:xmpp:sfs:0' id='f1'><file xmlns='urn:xmpp:file:metadata:0'><media-type>image/png</media-type><name>cat.png</name><size>4096</size></file><sources><url-data xmlns='http://jabber.org/protocol/url-data' target='https://upload.partner.test/abc/cat.png'/><url-data xmlns='http://jabber.org/protocol/url-data' target='https://mirror.example/cat.png'/></sources></file-sharing><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:sfs:0'><body/></fallback></message>`,
		Facts{FileTransfer: []Transfer{oob("upload.partner.test"), oob("mirror.example")}, BodyIsFallback: true}},

	{"SIMS media sharing", `<message><media-sharing xmlns='urn:xmpp:sims:1'><file xmlns='urn:xmpp:jingle:apps:file-transfer:5'><name>x.jpg</name></file><sources><reference xmlns='urn:xmpp:reference:0' type='data' uri='https://files.example/x.jpg'/></sources></media-sharing></message>`,
		Facts{FileTransfer: []Transfer{oob("files.example")}}},

	{"Jingle file offer over SOCKS5", `<iq from='romeo@company.test/dr4hcr0st3lup4c' id='nzu25s8' to='juliet@partner.test/yn0cl4bnw0yr3vym' type='set'>
  <jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='romeo@company.test/dr4hcr0st3lup4c' sid='851ba2'>
    <content creator='initiator' name='a-file-offer' senders='initiator'>
      <description xmlns='urn:xmpp:jingle:apps:file-transfer:5'>
        <file>
          <date>1969-07-21T02:56:15Z</date>
          <desc>This is a test. If this were a real file...</desc>
          <media-type>text/plain</media-type>
          <name>test.txt</name>
          <range/>
          <size>6144</size>
          <hash xmlns='urn:xmpp:hashes:2' algo='sha-1'>w0mcJylzCn+AfvuGdqkty2+KP48=</hash>
        </file>
      </description>
      <transport xmlns='urn:xmpp:jingle:transports:s5b:1' mode='tcp' sid='vj3hs98y'>
        <candidate cid='hft54dqy' host='192.168.4.1' jid='romeo@company.test/dr4hcr0st3lup4c' port='5086' priority='8257636' type='direct'/>
        <candidate cid='hutr46fe' host='24.24.24.1' jid='romeo@company.test/dr4hcr0st3lup4c' port='5087' priority='8258636' type='direct'/>
      </transport>
    </content>
  </jingle>
</iq>`,
		Facts{FileTransfer: []Transfer{jingle, socks5}}},

	{"Jingle file offer over IBB (file-transfer:4)", `<iq from='romeo@company.test/orchard' id='jingle1' to='juliet@partner.test/balcony' type='set'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' initiator='romeo@company.test/orchard' sid='a73sjjvkla37jfea'><content creator='initiator' name='ex'><description xmlns='urn:xmpp:jingle:apps:file-transfer:4'><file><name>notes.txt</name><size>1022</size></file></description><transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='4096' sid='ch3d9s71'/></content></jingle></iq>`,
		Facts{FileTransfer: []Transfer{jingle, ibb}}},

	{"Jingle transport-replace to IBB (no description)", `<iq type='set' id='tr1'><jingle xmlns='urn:xmpp:jingle:1' action='transport-replace' sid='851ba2'><content creator='initiator' name='a-file-offer'><transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='4096' sid='ch3d9s71'/></content></jingle></iq>`,
		Facts{FileTransfer: []Transfer{ibb}}},

	{"Jingle audio call is not a file transfer", `<iq type='set' id='call1'><jingle xmlns='urn:xmpp:jingle:1' action='session-initiate' sid='a73sjjvkla37jfea'><content creator='initiator' name='voice'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'><payload-type id='96' name='speex' clockrate='16000'/></description><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' pwd='asd88fgpdd777uzjYhagZg' ufrag='8hhy'/></content></jingle></iq>`,
		Facts{}},

	{"Jingle message initiation of a file", `<message type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894'><description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/></propose></message>`,
		Facts{FileTransfer: []Transfer{jingle}}},

	{"Jingle message initiation of a call", `<message type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>`,
		Facts{}},

	{"IBB open", `<iq from='romeo@company.test/orchard' id='jn3h8g65' to='juliet@partner.test/balcony' type='set'><open xmlns='http://jabber.org/protocol/ibb' block-size='4096' sid='i781hf64' stanza='iq'/></iq>`,
		Facts{FileTransfer: []Transfer{ibb}}},

	{"IBB data", `<iq from='romeo@company.test/orchard' id='kr91n475' to='juliet@partner.test/balcony' type='set'><data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='i781hf64'>qANQR1DBwU4DX7jmYZnncmUQB/9KuKBddzQH+tZ1ZywKK0yHKnq57kWq+RFtQdCJWpdWpR0uQsuJe7+vh3NWn59/gTc5MDlX8dS9p0ovStmNcyLhxVgmqS8ZKhsblVeu</data></iq>`,
		Facts{FileTransfer: []Transfer{ibb}}},

	{"IBB data in a message", `<message from='romeo@company.test/orchard' to='juliet@partner.test/balcony' id='dsw71gj3'><data xmlns='http://jabber.org/protocol/ibb' seq='0' sid='i781hf64'>qANQR1DBwU4DX7jmYZnncmUQB/9KuKBddzQH</data></message>`,
		Facts{FileTransfer: []Transfer{ibb}}},

	{"IBB close", `<iq type='set' id='us71g45j'><close xmlns='http://jabber.org/protocol/ibb' sid='i781hf64'/></iq>`,
		Facts{FileTransfer: []Transfer{ibb}}},

	{"SOCKS5 bytestream query", `<iq from='requester@company.test/foo' id='hu2bac18' to='target@partner.test/bar' type='set'><query xmlns='http://jabber.org/protocol/bytestreams' sid='vxf9n471' mode='tcp'><streamhost jid='requester@company.test/foo' host='192.168.4.1' port='5086'/><streamhost jid='streamhostproxy.company.test' host='24.24.24.1' port='7625'/></query></iq>`,
		Facts{FileTransfer: []Transfer{socks5}}},

	{"stream-initiation file offer", `<iq type='set' id='offer1' to='receiver@partner.test/resource'><si xmlns='http://jabber.org/protocol/si' id='a0' mime-type='text/plain' profile='http://jabber.org/protocol/si/profile/file-transfer'><file xmlns='http://jabber.org/protocol/si/profile/file-transfer' name='test.txt' size='1022'/><feature xmlns='http://jabber.org/protocol/feature-neg'><x xmlns='jabber:x:data' type='form'><field var='stream-method' type='list-single'><option><value>http://jabber.org/protocol/bytestreams</value></option><option><value> http://jabber.org/protocol/ibb </value></option></field></x></feature></si></iq>`,
		Facts{FileTransfer: []Transfer{socks5, ibb}}},

	{"XEP-0380 tag naming an unknown method", `<message type='chat'><body>This message is encrypted with MLS</body><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:mls:0' name='MLS'/><mls xmlns='urn:xmpp:mls:0'>AAAA</mls></message>`,
		Facts{Encryption: "xep0380:urn:xmpp:mls:0", BodyIsFallback: true}},

	{"XEP-0380 tag naming OTR", `<message><body>?</body><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:otr:0'/></message>`,
		Facts{Encryption: EncryptionOTR, BodyIsFallback: true}},

	{"XEP-0380 tag naming legacy OpenPGP", `<message><encryption xmlns='urn:xmpp:eme:0' namespace='jabber:x:encrypted'/></message>`,
		Facts{Encryption: EncryptionOpenPGP}},

	{"payload element wins over a contradicting tag", `<message><encryption xmlns='urn:xmpp:eme:0' namespace='urn:xmpp:openpgp:0'/><encrypted xmlns='urn:xmpp:omemo:2'/></message>`,
		Facts{Encryption: EncryptionOMEMO2}},

	{"encryption without a body", `<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted><store xmlns='urn:xmpp:hints'/></message>`,
		Facts{Encryption: EncryptionOMEMO}},

	{"reply fallback (XEP-0428 + XEP-0461)", `<message type='chat'><body>&gt; Anna wrote:
&gt; We should bake a cake
Great idea!</body><reply xmlns='urn:xmpp:reply:0' to='anna@partner.test/laptop' id='message-id1'/><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='36'/></fallback></message>`,
		Facts{BodyIsFallback: true}},

	{"wrong element name in a payload namespace", `<message><body>hi</body><header xmlns='eu.siacs.conversations.axolotl'/><foo xmlns='jabber:x:oob'><url>https://a.example/</url></foo></message>`,
		Facts{}},

	{"MUC archive result forwarding an upload link", `<message to='bob@company.test/laptop' from='room@muc.partner.test'><result xmlns='urn:xmpp:mam:2' queryid='f27' id='28482-98726-73623'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/><message xmlns='jabber:client' from='room@muc.partner.test/carol' type='groupchat'><body>https://upload.partner.test/x/doc.pdf</body><x xmlns='jabber:x:oob'><url>https://upload.partner.test/x/doc.pdf</url></x></message></forwarded></result></message>`,
		Facts{FileTransfer: []Transfer{oob("upload.partner.test")}}},

	{"archive result forwarding an OMEMO message", `<message to='bob@company.test/laptop' from='room@muc.partner.test'><result xmlns='urn:xmpp:mam:2' queryid='f27' id='1'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='groupchat'><body>fallback</body><encrypted xmlns='eu.siacs.conversations.axolotl'/></message></forwarded></result></message>`,
		Facts{Encryption: EncryptionOMEMO}},

	{"carbon forwarding an OTR message", `<message to='bob@company.test/laptop' from='bob@company.test'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>?OTR:AAMDJ+</body></message></forwarded></received></message>`,
		Facts{Encryption: EncryptionOTR}},

	{"own encryption wins over a forwarded one", `<message><body>x</body><encrypted xmlns='urn:xmpp:omemo:2'/><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><x xmlns='jabber:x:encrypted'/></message></forwarded></message>`,
		Facts{Encryption: EncryptionOMEMO2, BodyIsFallback: true}},

	{"payload inside an unknown extension is ignored", `<message><body>hi</body><x xmlns='urn:example:custom'><encrypted xmlns='eu.siacs.conversations.axolotl'/><x xmlns='jabber:x:oob'><url>https://a.example/</url></x></x></message>`,
		Facts{}},

	{"a forwarded non-stanza is not read", `<message><forwarded xmlns='urn:xmpp:forward:0'><thing xmlns='jabber:client'><x xmlns='jabber:x:oob'><url>https://a.example/</url></x></thing></forwarded></message>`,
		Facts{}},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyTests {
		t.Run(tt.name, func(t *testing.T) {
			n, body, names := parse(t, tt.stanza)
			got := Classify(n, body)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Classify:\n got %+v\nwant %+v", got, tt.want)
			}
			interesting := Interesting(names, body)
			if !interesting && !reflect.DeepEqual(got, Facts{}) {
				t.Fatalf("Interesting = false but Classify found %+v", got)
			}
			if reflect.DeepEqual(tt.want, Facts{}) == false && !interesting {
				t.Fatal("Interesting = false for a stanza with facts")
			}
		})
	}
}

func TestInteresting(t *testing.T) {
	n := func(space, local string) xmlstream.Name { return xmlstream.Name{Space: space, Local: local} }
	plain := []xmlstream.Name{n(xmlstream.NSServer, "body"), n("http://jabber.org/protocol/chatstates", "active"), n("urn:xmpp:receipts", "request")}
	tests := []struct {
		name     string
		children []xmlstream.Name
		body     string
		want     bool
	}{
		{"plain message", plain, "hello", false},
		{"no children", nil, "", false},
		{"OTR in the body", plain, "hi ?OTRv3?", true},
		{"OMEMO", append(plain, n("eu.siacs.conversations.axolotl", "encrypted")), "", true},
		{"OOB", append(plain, n("jabber:x:oob", "x")), "", true},
		{"fallback", append(plain, n("urn:xmpp:fallback:0", "fallback")), "", true},
		{"jingle", []xmlstream.Name{n("urn:xmpp:jingle:1", "jingle")}, "", true},
		{"IBB", []xmlstream.Name{n("http://jabber.org/protocol/ibb", "data")}, "", true},
		{"MAM result", []xmlstream.Name{n("urn:xmpp:mam:2", "result")}, "", true},
		{"carbon", []xmlstream.Name{n("urn:xmpp:carbons:2", "received")}, "", true},
		{"ping", []xmlstream.Name{n("urn:xmpp:ping", "ping")}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Interesting(tt.children, tt.body); got != tt.want {
				t.Fatalf("Interesting = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestManyTransfers: a stanza full of distinct links is classified in
// linear time and every host is listed once.
func TestManyTransfers(t *testing.T) {
	var b strings.Builder
	b.WriteString("<message><x xmlns='jabber:x:oob'>")
	const hosts = 5000
	for i := range hosts {
		fmt.Fprintf(&b, "<url>https://n%d.example/a</url><url>https://N%d.example/b</url>", i, i)
		fmt.Fprintf(&b, "<url>https://h%s.example/</url>", strings.Repeat("a", i%7))
	}
	b.WriteString("</x></message>")
	n, body, _ := parse(t, b.String())
	f := Classify(n, body)
	if len(f.FileTransfer) != 7+hosts {
		t.Fatalf("%d transfers, want %d", len(f.FileTransfer), 7+hosts)
	}
	seen := map[Transfer]bool{}
	for _, tr := range f.FileTransfer {
		if seen[tr] {
			t.Fatalf("%+v listed twice", tr)
		}
		seen[tr] = true
	}
}

func TestClassifyNil(t *testing.T) {
	if got := Classify(nil, "?OTR:AAM"); got.Encryption != EncryptionOTR || !got.BodyIsFallback {
		t.Fatalf("got %+v", got)
	}
	if got := Classify(nil, ""); !reflect.DeepEqual(got, Facts{}) {
		t.Fatalf("got %+v", got)
	}
}

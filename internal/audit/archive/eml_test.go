package archive

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
	"github.com/xmppedge/xmppedge/internal/audit/archive/archivetest"
)

// emlCase is a record and message to write, and what a mail parser must
// read back.
type emlCase struct {
	name string
	rec  audit.Record
	msg  Message
	// want: what Python's email package reads (empty: as given).
	fromAddr, toAddr string
}

var emlTime = time.Date(2026, 3, 15, 10, 20, 30, 500_000_000, time.UTC)

func emlRecord(from, to string) audit.Record {
	return audit.Record{Seq: 42, Time: emlTime, Node: "edge-1", Event: audit.EventStanza, Kind: "message",
		From: from, To: to, Direction: "outbound", Decision: audit.DecisionAllow, Hash: strings.Repeat("ab", 32)}
}

func emlCases() []emlCase {
	hostile := emlRecord("alice@company.test/desk", "bob@partner.test")
	hostile.Node = "edge 1\r\nBcc: node@attacker.test"
	hostile.Reason = "policy\r\nBcc: reason@attacker.test"
	hostile.Decision = audit.DecisionDeny
	return []emlCase{
		{name: "plain", rec: emlRecord("alice@company.test/desk", "bob@partner.test/phone"),
			msg:      Message{Type: "chat", ID: "m1", Thread: "t1", Body: "hello"},
			fromAddr: "alice@company.test", toAddr: "bob@partner.test"},
		{name: "CRLF and header text in body, id and thread", rec: hostile,
			msg: Message{Type: "chat", ID: "m1\r\nBcc: id@attacker.test", Subject: "s\r\n\r\nBcc: subject@attacker.test",
				Thread: "t\r\nBcc: thread@attacker.test\r\n\r\nbody", Body: "line1\r\nBcc: body@attacker.test\r\n\r\n--\r\n.\r\nFrom me"},
			fromAddr: "alice@company.test", toAddr: "bob@partner.test"},
		{name: "encoded words in the text", rec: emlRecord("alice@company.test", "bob@partner.test"),
			msg:      Message{ID: "=?utf-8?q?=0D=0ABcc:_x@attacker.test?=", Thread: "=?utf-8?b?DQpCY2M6IHg=?=", Body: "=?utf-8?q?x?="},
			fromAddr: "alice@company.test", toAddr: "bob@partner.test"},
		{name: "non-ASCII JIDs and text", rec: emlRecord("jürgen@bücher.example/Telefon ☎", "王@例え.テスト/r"),
			msg:      Message{Subject: "Grüße", Thread: "fäden", Body: "Grüße, 王"},
			fromAddr: "j%C3%BCrgen@xn--bcher-kva.example", toAddr: "%E7%8E%8B@xn--r8jz45g.xn--zckzah"},
		{name: "specials in the resource", rec: emlRecord(`bob@partner.test/"quoted" <x>, (c); \ =?`, "carol@company.test/a  b "),
			msg: Message{Body: "x"}, fromAddr: "bob@partner.test", toAddr: "carol@company.test"},
		{name: "domain JIDs", rec: emlRecord("partner.test", "company.test/admin"),
			msg: Message{Body: "server notice"}, fromAddr: "postmaster@partner.test", toAddr: "postmaster@company.test"},
		{name: "empty body, no id", rec: emlRecord("a@x.test", "b@y.test"), msg: Message{}, fromAddr: "a@x.test", toAddr: "b@y.test"},
		{name: "long values", rec: emlRecord("a@x.test/"+strings.Repeat("r", 1000), "b@y.test"),
			msg: Message{ID: strings.Repeat("i", 3000), Thread: strings.Repeat("t ", 800), Subject: strings.Repeat("ü", 500),
				Body: strings.Repeat("long line without a break ", 200)},
			fromAddr: "a@x.test", toAddr: "b@y.test"},
		{name: "invalid UTF-8", rec: emlRecord("a@x.test", "b@y.test"),
			msg: Message{Thread: "t\xff", Body: "b\xfe\xff"}, fromAddr: "a@x.test", toAddr: "b@y.test"},
		{name: "a localpart with specials", rec: emlRecord(`a,b\c[d]@x.test`, "b@y.test"),
			msg: Message{Body: "x"}, fromAddr: `"a,b\\c[d]"@x.test`, toAddr: "b@y.test"},
	}
}

// The header block is 7-bit ASCII lines ending CRLF, none longer than
// 998, each a header of the writer's own or a folded continuation.
func checkHeaderSyntax(t *testing.T, data []byte) {
	t.Helper()
	head, _, ok := bytes.Cut(data, []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no empty line ends the header:\n%q", data)
	}
	allowed := []string{"From", "To", "Date", "Subject", "Message-ID", "X-XMPP-Thread", "X-XMPP-From", "X-XMPP-To",
		"X-XMPP-Type", "X-XMPP-Id", "X-XMPP-Direction", "X-XMPP-Decision", "X-XMPP-Reason", "X-Xmppedge-Chain",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding"}
	for i, line := range strings.Split(string(head), "\r\n") {
		if len(line) > 998 || strings.ContainsAny(line, "\r\n") {
			t.Fatalf("header line %d is %d bytes or holds a CR/LF: %q", i, len(line), line)
		}
		for _, c := range []byte(line) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("header line %d holds byte %#x: %q", i, c, line)
			}
		}
		if strings.HasPrefix(line, " ") {
			continue
		}
		name, _, ok := strings.Cut(line, ": ")
		if !ok || !slices.Contains(allowed, name) {
			t.Fatalf("header line %d is no header of the writer's: %q", i, line)
		}
	}
}

func TestWriteEML(t *testing.T) {
	cases := emlCases()
	dir := t.TempDir()
	var files []string
	for i, tc := range cases {
		var b bytes.Buffer
		if err := WriteEML(&b, &tc.rec, tc.msg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkHeaderSyntax(t, b.Bytes())
		f := filepath.Join(dir, strings.Repeat("x", i+1)+".eml")
		if err := os.WriteFile(f, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	got := archivetest.ReadEML(t, files...)
	for i, tc := range cases {
		checkParsed(t, tc, got[i])
	}
}

func checkParsed(t *testing.T, tc emlCase, p archivetest.Parsed) {
	t.Helper()
	valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
	if len(p.Defects) > 0 {
		t.Errorf("%s: the parser found defects: %v", tc.name, p.Defects)
	}
	if p.From == nil || p.From.Name != shown(tc.rec.From) || p.From.Addr != tc.fromAddr || p.XMPPFrom != valid(tc.rec.From) {
		t.Errorf("%s: From = %+v, X-XMPP-From %q; want %q <%s>", tc.name, p.From, p.XMPPFrom, shown(tc.rec.From), tc.fromAddr)
	}
	if p.To == nil || p.To.Name != shown(tc.rec.To) || p.To.Addr != tc.toAddr || p.XMPPTo != valid(tc.rec.To) {
		t.Errorf("%s: To = %+v, X-XMPP-To %q; want %q <%s>", tc.name, p.To, p.XMPPTo, shown(tc.rec.To), tc.toAddr)
	}
	if p.Date != "2026-03-15T10:20:30+00:00" {
		t.Errorf("%s: Date = %q", tc.name, p.Date)
	}
	wantBody := strings.ReplaceAll(valid(tc.msg.Body), "\r\n", "\n")
	if !strings.HasSuffix(wantBody, "\n") {
		wantBody += "\n"
	}
	if p.Body != wantBody || p.Charset != "utf-8" {
		t.Errorf("%s: body %q (charset %s), want %q", tc.name, p.Body, p.Charset, wantBody)
	}
	for _, f := range []struct {
		what string
		got  *string
		want string
	}{{"Subject", p.Subject, tc.msg.Subject}, {"X-XMPP-Thread", p.Thread, tc.msg.Thread}, {"X-XMPP-Id", p.ID, tc.msg.ID}} {
		switch {
		case f.want == "" && f.got != nil:
			t.Errorf("%s: %s = %q, want none", tc.name, f.what, *f.got)
		case f.want != "" && (f.got == nil || *f.got != valid(f.want)):
			t.Errorf("%s: %s = %v, want %q", tc.name, f.what, f.got, f.want)
		}
	}
	if want := valid(tc.rec.Node) + " 42 " + tc.rec.Hash; p.Chain != want || p.Decision != tc.rec.Decision {
		t.Errorf("%s: X-Xmppedge-Chain %q, decision %q; want %q, %q", tc.name, p.Chain, p.Decision, want, tc.rec.Decision)
	}
	if p.MessageID != messageID(&tc.rec) {
		t.Errorf("%s: Message-ID %q, want %q", tc.name, p.MessageID, messageID(&tc.rec))
	}
	for _, h := range p.Headers {
		if strings.EqualFold(h, "bcc") {
			t.Errorf("%s: a Bcc header was injected: %v", tc.name, p.Headers)
		}
	}
}

// shown is the display name a reader gets for a JID: the JID, its bare
// JID and "/…" when too long for one encoded word, white space runs
// collapsed (Python's email package collapses them in a display name;
// X-XMPP-From and X-XMPP-To keep them).
func shown(j string) string {
	j = strings.ToValidUTF8(j, "\uFFFD")
	if !plain(j) && len(j) > wordBytes {
		bare, _, _ := strings.Cut(j, "/")
		j = bare + "/…"
	}
	return regexp.MustCompile(` +`).ReplaceAllString(j, " ")
}

// The Message-ID is the same at every export of a record, and differs
// for another record or another stanza id.
func TestMessageIDStable(t *testing.T) {
	r := emlRecord("a@x.test", "b@y.test")
	r.ID = "m1"
	other := r
	other.Seq++
	otherID := r
	otherID.ID = "m2"
	otherNode := r
	otherNode.Node = "edge-2"
	if messageID(&r) != messageID(&r) {
		t.Fatal("not stable")
	}
	for _, o := range []audit.Record{other, otherID, otherNode} {
		if messageID(&o) == messageID(&r) {
			t.Fatalf("%+v and %+v share Message-ID %s", o, r, messageID(&r))
		}
	}
}

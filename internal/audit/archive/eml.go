package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// WriteEML writes the message m, read from the stanza of record r, as an
// RFC 5322 message: From and To the record's JIDs (see mailbox), Date the
// record's time, a Message-ID stable for the record's place in the chain,
// the Subject and thread of the stanza, the record's direction, decision
// and chain position in X- headers, and the body as text/plain in UTF-8,
// quoted-printable.
func WriteEML(w io.Writer, r *audit.Record, m Message) error {
	var h headerBlock
	h.add("From", mailbox(r.From))
	h.add("To", mailbox(r.To))
	h.add("Date", r.Time.UTC().Format(time.RFC1123Z))
	if m.Subject != "" {
		h.add("Subject", text(m.Subject))
	}
	h.add("Message-ID", messageID(r))
	if m.Thread != "" {
		h.add("X-XMPP-Thread", text(m.Thread))
	}
	h.add("X-XMPP-From", text(r.From))
	h.add("X-XMPP-To", text(r.To))
	for _, x := range []struct{ name, value string }{
		{"X-XMPP-Type", m.Type}, {"X-XMPP-Id", m.ID}, {"X-XMPP-Direction", r.Direction},
		{"X-XMPP-Decision", r.Decision}, {"X-XMPP-Reason", r.Reason},
	} {
		if x.value != "" {
			h.add(x.name, text(x.value))
		}
	}
	h.add("X-Xmppedge-Chain", text(r.Node)+" "+strconv.FormatUint(r.Seq, 10)+" "+text(r.Hash))
	h.add("MIME-Version", "1.0")
	h.add("Content-Type", mime.FormatMediaType("text/plain", map[string]string{"charset": "utf-8"}))
	h.add("Content-Transfer-Encoding", "quoted-printable")
	bw := bufio.NewWriter(w)
	bw.WriteString(h.b.String())
	bw.WriteString("\r\n")
	if err := writeBody(bw, m.Body); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the message: %w", err)
	}
	return nil
}

// writeBody writes text quoted-printable, its line breaks as CRLF, ending
// with a line break.
func writeBody(w io.Writer, body string) error {
	body = strings.ToValidUTF8(body, "\uFFFD")
	if !strings.HasSuffix(body, "\n") {
		body += "\n"
	}
	qp := quotedprintable.NewWriter(w)
	if _, err := io.WriteString(qp, body); err != nil {
		return fmt.Errorf("writing the body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return fmt.Errorf("writing the body: %w", err)
	}
	return nil
}

// messageID is <seq.digest@node.xmppedge>: the same for the same record
// at every export (an archiver deduplicates on it), the digest over the
// node, seq and the stanza's id.
func messageID(r *audit.Record) string {
	sum := sha256.Sum256([]byte(r.Node + "\x00" + strconv.FormatUint(r.Seq, 10) + "\x00" + r.ID))
	return "<" + strconv.FormatUint(r.Seq, 10) + "." + hex.EncodeToString(sum[:12]) + "@" + token(r.Node) + ".xmppedge>"
}

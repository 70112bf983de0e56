package archive

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Message is the text of a message stanza, as an archive keeps it.
type Message struct {
	Type    string // the type attribute: chat, normal, groupchat, headline, error
	ID      string // the id attribute
	Body    string // the <body/> without xml:lang, else the first
	Subject string // the <subject/> chosen the same way
	Thread  string // the first <thread/>
}

// errNotMessage is returned for a stanza that is not a <message/>.
var errNotMessage = errors.New("not a <message/> stanza")

const xmlNamespace = "http://www.w3.org/XML/1998/namespace"

// ParseStanza reads the text of a message stanza as an audit record holds
// it (audit.Record.Stanza, the stanza as relayed). The stanza's children
// count in the stream's namespaces only (none written, jabber:server or
// jabber:client): a <body/> in another namespace is an extension's, not
// the message's.
func ParseStanza(stanza string) (Message, error) {
	d := xml.NewDecoder(strings.NewReader(stanza))
	d.Strict = true
	root, err := firstElement(d)
	if err != nil {
		return Message{}, err
	}
	if root.Name.Local != "message" || !streamNamespace(root.Name.Space) {
		return Message{}, errNotMessage
	}
	m := Message{Type: attr(root, "type"), ID: attr(root, "id")}
	p := &messageParts{}
	if err := p.read(d); err != nil {
		return Message{}, err
	}
	m.Body, m.Subject, m.Thread = p.body.text(), p.subject.text(), p.thread.text()
	if err := rest(d); err != nil {
		return Message{}, err
	}
	return m, nil
}

// firstElement skips what may come before the stanza (white space, a
// comment) and returns its start tag.
func firstElement(d *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return xml.StartElement{}, fmt.Errorf("the stanza is not XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return t, nil
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return xml.StartElement{}, errNotMessage
			}
		}
	}
}

// rest checks that nothing but white space follows the stanza.
func rest(d *xml.Decoder) error {
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("after the stanza: %w", err)
		}
		if cd, ok := tok.(xml.CharData); !ok || strings.TrimSpace(string(cd)) != "" {
			return errors.New("the record holds more than one stanza")
		}
	}
}

func streamNamespace(ns string) bool {
	return ns == "" || ns == "jabber:server" || ns == "jabber:client"
}

func attr(el xml.StartElement, name string) string {
	for _, a := range el.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// textChild is one kind of the message's text children: the first one
// without xml:lang wins, else the first.
type textChild struct {
	value  strings.Builder
	found  bool // a child was read
	noLang bool // the one read has no xml:lang
}

func (c *textChild) text() string { return c.value.String() }

// take reports whether the child at hand replaces the one kept.
func (c *textChild) take(el xml.StartElement) bool {
	hasLang := false
	for _, a := range el.Attr {
		if a.Name.Local == "lang" && (a.Name.Space == xmlNamespace || a.Name.Space == "xml") {
			hasLang = true
		}
	}
	if c.found && (c.noLang || hasLang) {
		return false
	}
	c.found, c.noLang = true, !hasLang
	c.value.Reset()
	return true
}

// messageParts collects the body, subject and thread children.
type messageParts struct {
	body, subject, thread textChild
}

// read reads the stanza's content up to its end tag.
func (p *messageParts) read(d *xml.Decoder) error {
	depth := 1
	var into *strings.Builder // the child being read, or nil
	for depth > 0 {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("the stanza is not XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				into = p.child(t)
			}
		case xml.EndElement:
			depth--
			if depth == 1 {
				into = nil
			}
		case xml.CharData:
			if into != nil {
				into.Write(t)
			}
		}
	}
	return nil
}

// child returns where the text of the child element el goes, or nil.
func (p *messageParts) child(el xml.StartElement) *strings.Builder {
	if !streamNamespace(el.Name.Space) {
		return nil
	}
	var c *textChild
	switch el.Name.Local {
	case "body":
		c = &p.body
	case "subject":
		c = &p.subject
	case "thread":
		if p.thread.found {
			return nil
		}
		c = &p.thread
	default:
		return nil
	}
	if !c.take(el) {
		return nil
	}
	return &c.value
}

package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/xmppedge/xmppedge/internal/xmlstream"
)

// Namespaces of client streams.
const (
	nsBind    = "urn:ietf:params:xml:ns:xmpp-bind"
	nsSession = "urn:ietf:params:xml:ns:xmpp-session"
)

// c2sClient is a minimal XMPP client (RFC 6120): STARTTLS, SASL PLAIN,
// resource binding; after that it only reads.
type c2sClient struct {
	conn net.Conn
	r    *xmlstream.Reader
	jid  string // the full JID bound
	hdr  xmlstream.Header

	wmu    sync.Mutex
	closed bool
}

// c2sOptions are the login's parameters.
type c2sOptions struct {
	addr, domain, user, password, resource string
	tls                                    *tls.Config // nil: no STARTTLS (PLAIN then needs the server's consent)
	timeout                                time.Duration
}

// dialC2S connects and logs in.
func dialC2S(ctx context.Context, o c2sOptions) (*c2sClient, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	c := &c2sClient{conn: conn, r: xmlstream.NewReader(conn, xmlstream.Limits{})}
	stop := context.AfterFunc(ctx, func() { c.netConn().SetDeadline(time.Now()) })
	defer stop()
	if err := c.login(ctx, o); err != nil {
		c.netConn().Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return nil, fmt.Errorf("log in %s@%s at %s: %w", o.user, o.domain, o.addr, err)
	}
	c.netConn().SetDeadline(time.Time{})
	return c, nil
}

func (c *c2sClient) netConn() net.Conn {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.conn
}

func (c *c2sClient) write(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	_, err := c.conn.Write([]byte(s))
	return err
}

// open sends our stream header and reads the server's header and
// features.
func (c *c2sClient) open(domain string) (*xmlstream.Node, error) {
	if err := c.write("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='" +
		string(xmlstream.AppendEscapedAttr(nil, domain)) + "' version='1.0'>"); err != nil {
		return nil, err
	}
	h, err := c.r.ReadHeader()
	if err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	if h.Space != xmlstream.NSStream || h.Namespaces[""] != xmlstream.NSClient {
		return nil, errors.New("not a client stream header")
	}
	c.hdr = h
	el, err := c.next()
	if err != nil {
		return nil, err
	}
	if el.Space != xmlstream.NSStream || el.Local != "features" {
		return nil, fmt.Errorf("expected stream features, got <%s>", el.Local)
	}
	return xmlstream.ParseNode(el.Raw, h.Namespaces)
}

// next reads the next element; a stream error is an error.
func (c *c2sClient) next() (xmlstream.Element, error) {
	el, err := c.r.Next()
	if err == nil && el.Space == xmlstream.NSStream && el.Local == "error" {
		cond := "unknown"
		if n, perr := xmlstream.ParseNode(el.Raw, c.hdr.Namespaces); perr == nil {
			for _, ch := range n.Children {
				if ch.Space == xmlstream.NSStreams && ch.Local != "text" {
					cond = ch.Local
				}
			}
		}
		return el, fmt.Errorf("stream error from the server: %s", cond)
	}
	return el, err
}

func (c *c2sClient) login(ctx context.Context, o c2sOptions) error {
	f, err := c.open(o.domain)
	if err != nil {
		return err
	}
	if o.tls != nil {
		if f.Child(xmlstream.NSTLS, "starttls") == nil {
			return errors.New("the server does not offer STARTTLS")
		}
		if err := c.write("<starttls xmlns='" + xmlstream.NSTLS + "'/>"); err != nil {
			return err
		}
		el, err := c.next()
		if err != nil {
			return err
		}
		if el.Local != "proceed" || c.r.Buffered() != 0 {
			return fmt.Errorf("STARTTLS refused (<%s/>)", el.Local)
		}
		conf := o.tls.Clone()
		conf.ServerName = o.domain
		tc := tls.Client(c.conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		c.wmu.Lock()
		c.conn = tc
		c.wmu.Unlock()
		c.r.Reset(tc)
		if f, err = c.open(o.domain); err != nil {
			return err
		}
	}
	mechs := f.Child(xmlstream.NSSASL, "mechanisms")
	plain := false
	if mechs != nil {
		for _, m := range mechs.Children {
			if m.Local == "mechanism" && strings.TrimSpace(m.Text) == "PLAIN" {
				plain = true
			}
		}
	}
	if !plain {
		return errors.New("the server does not offer SASL PLAIN")
	}
	creds := base64.StdEncoding.EncodeToString([]byte("\x00" + o.user + "\x00" + o.password))
	if err := c.write("<auth xmlns='" + xmlstream.NSSASL + "' mechanism='PLAIN'>" + creds + "</auth>"); err != nil {
		return err
	}
	el, err := c.next()
	if err != nil {
		return err
	}
	if el.Local != "success" {
		return fmt.Errorf("SASL PLAIN refused (<%s/>)", el.Local)
	}
	c.r.Restart()
	if f, err = c.open(o.domain); err != nil {
		return err
	}
	if f.Child(nsBind, "bind") == nil {
		return errors.New("the server does not offer resource binding")
	}
	if err := c.write("<iq type='set' id='bind'><bind xmlns='" + nsBind + "'><resource>" +
		string(xmlstream.AppendEscapedAttr(nil, o.resource)) + "</resource></bind></iq>"); err != nil {
		return err
	}
	n, err := c.result("bind")
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if b := n.Child(nsBind, "bind"); b != nil {
		if j := b.Child(nsBind, "jid"); j != nil {
			c.jid = strings.TrimSpace(j.Text)
		}
	}
	if c.jid == "" {
		return errors.New("bind: no JID in the result")
	}
	// RFC 3921 sessions, for servers that still require them.
	if s := f.Child(nsSession, "session"); s != nil && s.Child(nsSession, "optional") == nil {
		if err := c.write("<iq type='set' id='sess'><session xmlns='" + nsSession + "'/></iq>"); err != nil {
			return err
		}
		if _, err := c.result("sess"); err != nil {
			return fmt.Errorf("session: %w", err)
		}
	}
	return nil
}

// result waits for the iq result with id, skipping other elements.
func (c *c2sClient) result(id string) (*xmlstream.Node, error) {
	for {
		el, err := c.next()
		if err != nil {
			return nil, err
		}
		if el.Local != "iq" || el.ID != id {
			continue
		}
		if el.Type != "result" {
			return nil, fmt.Errorf("iq of type %q", el.Type)
		}
		return xmlstream.ParseNode(el.Raw, c.hdr.Namespaces)
	}
}

// read reads stanzas until the stream ends, handing each to onStanza.
func (c *c2sClient) read(onStanza func(el *xmlstream.Element)) error {
	for {
		el, err := c.next()
		if err != nil {
			return err
		}
		if el.Space == xmlstream.NSClient {
			onStanza(&el)
		}
	}
}

// close ends the stream and the connection.
func (c *c2sClient) close() {
	c.write("</stream:stream>")
	c.wmu.Lock()
	c.closed = true
	c.conn.Close()
	c.wmu.Unlock()
}

package testbed

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

//go:embed client.py
var clientPy []byte

// Bounds on the client's steps.
const (
	clientLoginTimeout = 20 * time.Second
	clientCloseTimeout = 3 * time.Second
)

// Event is one thing the client saw, as reported by client.py.
//
// Kinds: "session_start" (To = the bound full JID), "message",
// "message_error", "presence" (available or Type "unavailable"),
// "presence_error", "subscribe", "subscribed", "unsubscribe",
// "unsubscribed", "iq_result", "iq_error", "iq_timeout", "failed_auth",
// "connection_failed", "stream_error", "disconnected", "command_error".
type Event struct {
	Kind      string    `json:"kind"`
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	Type      string    `json:"type,omitempty"`
	ID        string    `json:"id,omitempty"`
	Body      string    `json:"body,omitempty"`  // message body; for a version iq_result "NAME VERSION"
	Error     string    `json:"error,omitempty"` // error condition of *_error events, e.g. "remote-server-not-found"
	ErrorText string    `json:"error_text,omitempty"`
	Show      string    `json:"show,omitempty"`
	Status    string    `json:"status,omitempty"`   // presence status text
	Children  []string  `json:"children,omitempty"` // payload elements, "{namespace}name", in order
	At        time.Time `json:"-"`                  // when the test bed read it
}

// Client is one real XMPP client (slixmpp, Debian's /usr/bin/python3) logged
// in as a JID, driven over stdin/stdout JSON lines by the embedded
// client.py. It accepts every subscription request and subscribes back
// (slixmpp's auto_authorize and auto_subscribe), answers XEP-0199 pings and
// XEP-0092 version queries, and does not verify the server's certificate.
type Client struct {
	JID     string // the bare JID it logged in as
	FullJID string // the bound full JID

	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	wmu    sync.Mutex
	done   chan struct{}
	closed sync.Once
	stderr lockedBuffer

	mu     sync.Mutex
	events []Event
	notify chan struct{} // closed and replaced at every new event

	seq atomic.Uint64
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartClient starts a client for jid (a bare JID), connects it to
// serverAddr (IP:PORT of a c2s listener, STARTTLS without certificate
// verification), logs in with password, sends initial presence, and returns
// once the session has started. It fails the test if that takes longer than
// a bound. The client is closed by t.Cleanup.
func StartClient(t testing.TB, jid, password, serverAddr string) *Client {
	t.Helper()
	Require(t)
	host, port, err := net.SplitHostPort(serverAddr)
	if err != nil {
		t.Fatalf("testbed: server address %q: %v", serverAddr, err)
	}
	c := &Client{JID: jid, t: t, done: make(chan struct{}), notify: make(chan struct{})}
	// The script is passed with -c: no file to write or clean up.
	c.cmd = exec.Command(Python, "-c", string(clientPy), jid, password, host, port)
	c.cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
	c.cmd.Stderr = &c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.stdin, err = c.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("testbed: start client %s: %v", jid, err)
	}
	go c.read(stdout)
	t.Cleanup(func() {
		c.Close()
		if t.Failed() || os.Getenv("XMPPEDGE_E2E_VERBOSE") != "" {
			t.Logf("testbed: client %s stderr tail:\n%s", jid, tailLines(c.stderr.String(), 40))
		}
	})
	ev, err := c.WaitEvent(clientLoginTimeout, func(e Event) bool {
		switch e.Kind {
		case "session_start", "failed_auth", "connection_failed", "disconnected", "stream_error":
			return true
		}
		return false
	})
	if err != nil || ev.Kind != "session_start" {
		t.Fatalf("testbed: client %s did not log in to %s (%v %+v); stderr:\n%s", jid, serverAddr, err, ev, tailLines(c.stderr.String(), 40))
	}
	c.FullJID = ev.To
	return c
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *Client) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			ev = Event{Kind: "bad_output", Body: sc.Text()}
		}
		ev.At = time.Now()
		c.mu.Lock()
		c.events = append(c.events, ev)
		close(c.notify)
		c.notify = make(chan struct{})
		c.mu.Unlock()
	}
	_ = c.cmd.Wait()
	close(c.done)
	c.mu.Lock()
	close(c.notify)
	c.notify = make(chan struct{})
	c.mu.Unlock()
}

func (c *Client) send(cmd map[string]any) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.Exited() {
		return fmt.Errorf("client %s has exited", c.JID)
	}
	_, err = c.stdin.Write(b)
	return err
}

// Exited reports whether the client process has exited.
func (c *Client) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// SendMessage sends a chat message.
func (c *Client) SendMessage(to, body string) error {
	return c.send(map[string]any{"cmd": "message", "to": to, "body": body})
}

// SendMessageID sends a chat message with the given stanza id.
func (c *Client) SendMessageID(to, body, id string) error {
	return c.send(map[string]any{"cmd": "message", "to": to, "body": body, "id": id})
}

// SendRaw sends a stanza written by the test exactly as given (the client
// adds nothing; the server stamps its from). Answers to a raw iq whose id
// starts with "raw-" come back as iq_result / iq_error events.
func (c *Client) SendRaw(xml string) error {
	return c.send(map[string]any{"cmd": "raw", "xml": xml})
}

// Subscribe sends presence type='subscribe' to a bare JID. The other side's
// test-bed client approves it and subscribes back, so presence then flows
// both ways.
func (c *Client) Subscribe(to string) error {
	return c.send(map[string]any{"cmd": "subscribe", "to": to})
}

// SendPresence sends a presence of the given type ("" = available) to a JID.
func (c *Client) SendPresence(to, typ string) error {
	return c.send(map[string]any{"cmd": "presence", "to": to, "type": typ})
}

// Ping sends a XEP-0199 ping iq to a JID or a server domain and waits for the
// answer: an "iq_result" or "iq_error" event is returned with a nil error;
// no answer within timeout gives an error (and an "iq_timeout" event).
func (c *Client) Ping(to string, timeout time.Duration) (Event, error) {
	return c.iq("ping", to, timeout)
}

// Version sends a XEP-0092 software version query to a server domain or a
// full JID; an "iq_result" event has Body "NAME VERSION". Like Ping.
func (c *Client) Version(to string, timeout time.Duration) (Event, error) {
	return c.iq("version", to, timeout)
}

func (c *Client) iq(what, to string, timeout time.Duration) (Event, error) {
	id := what + "-" + strconv.FormatUint(c.seq.Add(1), 10)
	if err := c.send(map[string]any{"cmd": "iq", "what": what, "to": to, "id": id, "timeout": timeout.Seconds()}); err != nil {
		return Event{}, err
	}
	ev, err := c.WaitEvent(timeout+5*time.Second, func(e Event) bool {
		return e.ID == id && strings.HasPrefix(e.Kind, "iq_")
	})
	if err != nil {
		return ev, err
	}
	if ev.Kind == "iq_timeout" {
		return ev, fmt.Errorf("client %s: %s to %s: no answer within %v", c.JID, what, to, timeout)
	}
	return ev, nil
}

// WaitEvent returns the first event, among all the client has seen since it
// started and those still to come, that match accepts; it gives an error after
// timeout or when the client has exited. Matchers should be specific (an id,
// a body, a sender): an event that matched once matches again.
func (c *Client) WaitEvent(timeout time.Duration, match func(Event) bool) (Event, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	next := 0
	for {
		c.mu.Lock()
		evs := c.events[next:]
		next = len(c.events)
		notify := c.notify
		c.mu.Unlock()
		for _, e := range evs {
			if match(e) {
				return e, nil
			}
		}
		if c.Exited() {
			// Events read before exit are all in c.events already.
			c.mu.Lock()
			more := len(c.events) > next
			c.mu.Unlock()
			if !more {
				return Event{}, fmt.Errorf("client %s has exited", c.JID)
			}
			continue
		}
		select {
		case <-notify:
		case <-deadline.C:
			return Event{}, fmt.Errorf("client %s: no matching event within %v", c.JID, timeout)
		}
	}
}

// WaitMessages waits until the client has received at least n 'message'
// events and returns them all (or those it has, with an error, after timeout).
func (c *Client) WaitMessages(n int, timeout time.Duration) ([]Event, error) {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		notify := c.notify
		c.mu.Unlock()
		msgs := c.Messages()
		if len(msgs) >= n {
			return msgs, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return msgs, fmt.Errorf("client %s: %d of %d messages within %v", c.JID, len(msgs), n, timeout)
		}
		if c.Exited() {
			return msgs, errors.New("client " + c.JID + " has exited")
		}
		select {
		case <-notify:
		case <-time.After(left):
		}
	}
}

// Events returns a copy of all events seen so far.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// Messages returns a copy of all 'message' events seen so far, in order.
func (c *Client) Messages() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Event
	for _, e := range c.events {
		if e.Kind == "message" {
			out = append(out, e)
		}
	}
	return out
}

// Stderr returns the client's log so far.
func (c *Client) Stderr() string { return c.stderr.String() }

// Close disconnects the client and ends its process (SIGKILL to its process
// group after a bound). Idempotent; also run by t.Cleanup.
func (c *Client) Close() {
	c.closed.Do(func() {
		_ = c.send(map[string]any{"cmd": "close"})
		c.wmu.Lock()
		_ = c.stdin.Close()
		c.wmu.Unlock()
		select {
		case <-c.done:
		case <-time.After(clientCloseTimeout):
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	})
}

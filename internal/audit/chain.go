package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"time"
)

// chainHasher computes record hashes: hex(SHA-256(prev + "\n" + canonical))
// or, with a key, hex(HMAC-SHA256(key, prev + "\n" + canonical)), where
// canonical is the line's body (everything before the hash member) + "}".
// It is not safe for concurrent use.
type chainHasher struct {
	h      hash.Hash
	digest [sha256.Size]byte
}

func newChainHasher(hmacKey []byte) *chainHasher {
	if len(hmacKey) > 0 {
		return &chainHasher{h: hmac.New(sha256.New, hmacKey)}
	}
	return &chainHasher{h: sha256.New()}
}

var (
	newlineByte    = []byte{'\n'}
	closeBraceByte = []byte{'}'}
)

// sum returns the hex hash of a record whose previous hash is prev and
// whose line, up to and without the hash member, is body.
func (c *chainHasher) sum(prev, body []byte) [2 * sha256.Size]byte {
	c.h.Reset()
	c.h.Write(prev)
	c.h.Write(newlineByte)
	c.h.Write(body)
	c.h.Write(closeBraceByte)
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], c.h.Sum(c.digest[:0]))
	return out
}

// check reports whether the line's hash member is the hash of its prev
// and body.
func (c *chainHasher) check(p lineParts) bool {
	want := c.sum(p.prev, p.body)
	return hmac.Equal(want[:], p.hash)
}

// Chain is one node's hash chain, used by the file Log and by other
// backends (a replicated log such as internal/audit/jsaudit): it gives each record its
// seq, time, node, prev and hash and encodes it as exactly the line the
// file Log writes, so that lines taken from that backend and written one
// after the other to a file pass [Verify]. It holds the chain head (the
// last seq and hash); it is not safe for concurrent use.
type Chain struct {
	node    string
	hasher  *chainHasher
	seq     uint64
	last    [hashHexLen]byte
	lastLen int
	lastStr string
	body    []byte // scratch for Next
}

// NewChain starts an empty chain (the first record gets seq 1 and prev "")
// for records of node, hashed with hmacKey if it is set (at least
// MinHMACKeyLen bytes).
func NewChain(node string, hmacKey []byte) (*Chain, error) {
	if node == "" {
		return nil, errors.New("audit: a chain needs a node name")
	}
	if len(hmacKey) > 0 && len(hmacKey) < MinHMACKeyLen {
		return nil, fmt.Errorf("audit: the HMAC key is %d bytes: use at least %d", len(hmacKey), MinHMACKeyLen)
	}
	return newChain(node, hmacKey), nil
}

func newChain(node string, hmacKey []byte) *Chain {
	return &Chain{node: node, hasher: newChainHasher(hmacKey)}
}

// Resume continues the chain after line, the last stored record of this
// chain (without its newline). The line must be a record of the chain's
// node whose hash is the hash of its content with the chain's key;
// otherwise Resume says why and leaves the head as it was.
func (c *Chain) Resume(line []byte) error {
	p, err := splitLine(line)
	if err != nil {
		return fmt.Errorf("audit: the last record is unreadable: %w", err)
	}
	if !json.Valid(line) || bytes.IndexByte(line, '\n') >= 0 {
		return errors.New("audit: the last record is not a JSON line")
	}
	if !c.hasher.check(p) {
		return errors.New("audit: the last record's hash does not match its content (edited, or written with another HMAC key?)")
	}
	var r struct {
		Node string `json:"node"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("audit: the last record: %w", err)
	}
	if r.Node != c.node {
		return fmt.Errorf("audit: the last record was written by node %q, not %q", r.Node, c.node)
	}
	c.setHead(p)
	return nil
}

// Head returns the seq and hash of the last record of the chain (0 and ""
// for an empty chain).
func (c *Chain) Head() (seq uint64, hash string) { return c.seq, c.lastStr }

// Next makes r the chain's next record: it sets r.Seq, r.Time (now, UTC),
// r.Node, r.Prev and r.Hash, appends r's line with its newline to b and
// returns it.
func (c *Chain) Next(b []byte, r *Record, now time.Time) []byte {
	r.Node = c.node
	c.body = appendBody(c.body[:0], r)
	return c.appendEncoded(b, r, c.body, now)
}

// appendEncoded is Next for a record whose body (appendBody, with r.Node
// set) the caller encoded already: Log encodes it before taking its lock.
func (c *Chain) appendEncoded(b []byte, r *Record, body []byte, now time.Time) []byte {
	c.seq++
	r.Seq = c.seq
	r.Time = now.UTC().Round(0)
	start := len(b)
	b = appendHead(b, r.Seq, r.Time)
	b = append(b, body...)
	prev := c.last[:c.lastLen]
	b = append(b, prevMemberPrefix...)
	b = append(b, prev...)
	b = append(b, '"')
	sum := c.hasher.sum(prev, b[start:])
	b = append(b, hashMemberPrefix...)
	b = append(b, sum[:]...)
	b = append(b, '"', '}', '\n')
	r.Prev = c.lastStr
	r.Hash = string(sum[:])
	c.last = sum
	c.lastLen = hashHexLen
	c.lastStr = r.Hash
	return b
}

// setHead continues the chain after the record p (checked by the caller).
func (c *Chain) setHead(p lineParts) {
	c.seq = p.seq
	c.lastLen = copy(c.last[:], p.hash)
	c.lastStr = string(p.hash)
}

// AppendBody appends the members of r between time and prev (node to the
// last optional member) exactly as they appear in its line; a backend uses
// its length to size a record before giving it a place in the chain.
func AppendBody(b []byte, r *Record) []byte { return appendBody(b, r) }

package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
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

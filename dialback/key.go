package dialback

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// Key returns the XEP-0185 dialback key that the originating domain's
// server gives the receiving domain's server on the stream streamID:
//
//	hex(HMAC-SHA256(key = hex(SHA256(secret)), receiving+" "+originating+" "+streamID))
//
// The HMAC key is the 64-character lowercase hex encoding of the digest,
// not the raw digest. The result is 64 lowercase hex characters.
func Key(secret, receiving, originating, streamID string) string {
	digest := sha256.Sum256([]byte(secret))
	hmacKey := make([]byte, hex.EncodedLen(len(digest)))
	hex.Encode(hmacKey, digest[:])

	mac := hmac.New(sha256.New, hmacKey)
	mac.Write([]byte(receiving))
	mac.Write([]byte{' '})
	mac.Write([]byte(originating))
	mac.Write([]byte{' '})
	mac.Write([]byte(streamID))
	return hex.EncodeToString(mac.Sum(nil))
}

// Equal reports whether two dialback keys are the same, taking time that
// does not depend on where they differ (crypto/subtle). Keys of different
// lengths are unequal; only the length is revealed by timing.
func Equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// streamIDBytes is the number of random bytes in a stream id: 128 bits.
const streamIDBytes = 16

// NewStreamID returns a new stream id: 128 bits from crypto/rand as 32
// lowercase hex characters. Ids are unpredictable and, with overwhelming
// probability, never repeat, so a dialback key observed on one stream
// cannot be replayed on another.
func NewStreamID() string {
	var b [streamIDBytes]byte
	// crypto/rand.Read never returns an error (Go >= 1.24): it crashes
	// the program rather than return predictable bytes.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

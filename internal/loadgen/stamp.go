package loadgen

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// stampPrefix starts every id the tool writes.
const stampPrefix = "xl."

// runIDLen is the length of a run id: lowercase hexadecimal.
const runIDLen = 8

// Stamp is what a stanza's id carries: the run it belongs to, its
// sequence number in the run, and when it was sent (the offset from the
// run's base time on the monotonic clock).
type Stamp struct {
	Run  string
	Seq  uint64
	Sent time.Duration
}

// ErrNotStamp is the error of ParseStamp for an id that is not a stamp.
var ErrNotStamp = errors.New("loadgen: not a stamp")

// AppendID appends the stanza id for st to b: xl.RUN.SEQ.NANOS, in
// decimal without leading zeros. st.Run must be a valid run id and
// st.Sent not negative.
func AppendID(b []byte, st Stamp) []byte {
	b = append(b, stampPrefix...)
	b = append(b, st.Run...)
	b = append(b, '.')
	b = strconv.AppendUint(b, st.Seq, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, uint64(st.Sent), 10)
}

// ParseStamp reads an id written by AppendID. It accepts exactly that
// form (a run id of 8 lowercase hexadecimal digits, decimal numbers
// without sign or leading zeros, a send time that fits a Duration), so
// that AppendID(ParseStamp(id)) == id.
func ParseStamp(id string) (Stamp, error) {
	rest, ok := strings.CutPrefix(id, stampPrefix)
	if !ok || len(rest) < runIDLen+1 || rest[runIDLen] != '.' {
		return Stamp{}, ErrNotStamp
	}
	run := rest[:runIDLen]
	if !ValidRunID(run) {
		return Stamp{}, ErrNotStamp
	}
	seqStr, nsStr, ok := strings.Cut(rest[runIDLen+1:], ".")
	if !ok {
		return Stamp{}, ErrNotStamp
	}
	seq, ok := parseDecimal(seqStr)
	if !ok {
		return Stamp{}, ErrNotStamp
	}
	ns, ok := parseDecimal(nsStr)
	if !ok || ns > 1<<63-1 {
		return Stamp{}, ErrNotStamp
	}
	return Stamp{Run: run, Seq: seq, Sent: time.Duration(ns)}, nil
}

// ValidRunID reports whether s is a run id: 8 lowercase hexadecimal
// digits.
func ValidRunID(s string) bool {
	if len(s) != runIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// parseDecimal parses an unsigned decimal number without sign or leading
// zeros.
func parseDecimal(s string) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

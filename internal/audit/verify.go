package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// VerifyResult is what Verify found. When OK is false, File, Line, Seq and
// Reason name the first break.
type VerifyResult struct {
	Records uint64 // records that verified before the first break (all, if OK)
	OK      bool
	File    string // the file of the first break
	Line    int    // its line, from 1
	Seq     uint64 // the seq on that line, or the seq expected there if unreadable
	Reason  string // e.g. "hash mismatch (record edited?)", "torn last line"

	Files     int    // files read
	FirstSeq  uint64 // seq of the first record
	FirstPrev string // prev of the first record: "" if the series starts a chain, else it continues files not given
	LastSeq   uint64 // seq of the last verified record
	LastHash  string // hash of the last verified record: publish it to anchor the chain
	// Recoveries counts log.recovered records: places where a torn last
	// line (crash) was cut off and the chain continued from the last
	// complete record.
	Recoveries uint64
	// FirstFile is the file of the first record.
	FirstFile string
	// Anchors counts audit.anchor records (retention runs). StartAnchor
	// is the one that names the start of a series that starts mid-chain
	// (nil when none does, or the series starts a chain): see
	// RequireAnchoredStart.
	Anchors     int
	StartAnchor *Record

	// fileStarts are the seq and prev of each file's first record: a
	// retention anchor names one of them.
	fileStarts []chainPoint
}

// chainPoint is a record's place in the chain: its seq and prev.
type chainPoint struct {
	seq  uint64
	prev string
}

// RequireAnchoredStart makes a verified series that starts mid-chain (its
// first record's prev is not "") a break unless an audit.anchor record in
// it names where it starts: the seq and prev of the first record of one
// of its files, at or after its first record (a retention run deleted the
// files before; a run cut short may have left some of them). Without that
// anchor, files were deleted or moved without retention — an attacker
// removing old records, or not every file was given.
func (r *VerifyResult) RequireAnchoredStart() {
	if !r.OK || r.FirstPrev == "" {
		return
	}
	if r.StartAnchor != nil {
		return
	}
	r.OK = false
	r.File, r.Line, r.Seq = r.FirstFile, 1, r.FirstSeq
	r.Reason = fmt.Sprintf("the series starts mid-chain (seq %d continues a record not in these files) and no %s record names that start: "+
		"files were deleted or moved without a retention anchor (old records removed?), or not every file of the series was given", r.FirstSeq, EventAnchor)
}

// noteAnchor decodes an audit.anchor line and keeps it as the start
// anchor when it names a file start at or after the first record.
func (v *chainVerifier) noteAnchor(line []byte) {
	var rec Record
	if json.Unmarshal(line, &rec) != nil || rec.Event != EventAnchor {
		return
	}
	v.res.Anchors++
	for _, s := range v.res.fileStarts {
		if s.seq == rec.AnchorSeq && s.prev == rec.AnchorPrev {
			v.res.StartAnchor = &rec
			return
		}
	}
}

// Verify checks the hash chain over files, in order (the rotated files
// oldest first, then the current one): every line must be a complete JSON
// record; its hash must be the hash of its prev and canonical bytes (with
// hmacKey if the log was written with one); its prev must be the previous
// record's hash and its seq the previous seq + 1, across file boundaries.
// The first record's prev is taken as given (the series may start after
// archived files: see VerifyResult.FirstPrev). A line without its newline
// at the end is a break ("torn last line").
//
// The error is for files that cannot be read; a broken chain is a result
// with OK false.
func Verify(files []string, hmacKey []byte) (VerifyResult, error) {
	return VerifyEach(files, hmacKey, nil)
}

// VerifyEach is Verify, and it hands every record that continues the
// chain to fn (when not nil), decoded, in order, as soon as its line is
// checked: one pass, so that what fn sees is what was verified even while
// the log is written. A record at or after the first break is not handed
// on. fn returning an error stops the reading with that error.
func VerifyEach(files []string, hmacKey []byte, fn RecordFunc) (VerifyResult, error) {
	if len(files) == 0 {
		return VerifyResult{}, errors.New("audit: no files to verify: name the audit file(s), oldest first")
	}
	v := newChainVerifier(hmacKey)
	v.fn = fn
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return v.res, fmt.Errorf("audit: verify: %w", err)
		}
		v.res.Files++
		v.fileStart, v.name = true, name
		broken, err := v.verifyFile(name, f)
		f.Close()
		if v.stop != nil {
			return v.res, v.stop
		}
		if err != nil {
			return v.res, fmt.Errorf("audit: verify: reading %s: %w", name, err)
		}
		if broken {
			return v.res, nil
		}
	}
	v.res.OK = true
	return v.res, nil
}

// chainVerifier checks lines one after the other.
type chainVerifier struct {
	hasher  *chainHasher
	keyed   bool
	res     VerifyResult
	started bool
	last    [hashHexLen]byte
	fn      RecordFunc // VerifyEach: receives each verified record
	stop    error      // what fn returned, or why a verified line did not decode
	// fileStart is true until the first record of the current file.
	fileStart bool
	name      string // the current file
}

func newChainVerifier(hmacKey []byte) *chainVerifier {
	return &chainVerifier{hasher: newChainHasher(hmacKey), keyed: len(hmacKey) > 0}
}

// verifyFile checks the lines of one file; it reports whether the chain
// broke (and then v.res says where).
func (v *chainVerifier) verifyFile(name string, r io.Reader) (broken bool, err error) {
	lineNo := 0
	err = readLines(r, func(line []byte, complete bool) bool {
		lineNo++
		var reason string
		if !complete {
			reason = "torn last line (no newline at the end: a crash while writing, or the file was cut; a live file may also be caught mid-write)"
		} else {
			reason = v.line(line)
		}
		if reason != "" {
			v.res.File, v.res.Line, v.res.Reason = name, lineNo, reason
			if p, err := splitLine(line); err == nil && complete {
				v.res.Seq = p.seq
			} else {
				v.res.Seq = v.res.LastSeq + 1
			}
			broken = true
			return false
		}
		return v.handOn(line)
	})
	return broken, err
}

// handOn decodes a verified line for VerifyEach's fn; it reports whether
// reading goes on.
func (v *chainVerifier) handOn(line []byte) bool {
	if v.fn == nil {
		return true
	}
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		v.stop = fmt.Errorf("audit: record seq %d verifies but does not decode: %w", v.res.LastSeq, err)
		return false
	}
	if err := v.fn(&rec, line); err != nil {
		v.stop = err
		return false
	}
	return true
}

// line checks one complete line (without its newline) against the chain
// so far; it returns "" if it continues the chain, else why not.
func (v *chainVerifier) line(line []byte) string {
	if len(line) == 0 {
		return "empty line"
	}
	p, err := splitLine(line)
	if err != nil {
		if !json.Valid(line) {
			return "not JSON"
		}
		return err.Error()
	}
	if !json.Valid(line) {
		return "not JSON"
	}
	if !v.hasher.check(p) {
		switch {
		case !v.started && !v.keyed:
			return "hash mismatch (record edited? or the log is HMAC-keyed and no key was given)"
		case !v.started:
			return "hash mismatch (record edited? or the HMAC key is not the log's)"
		}
		return "hash mismatch (record edited?)"
	}
	if v.started {
		want := v.res.LastSeq + 1
		switch {
		case p.seq < want:
			return fmt.Sprintf("sequence goes back: expected %d, found %d (record inserted, duplicated or reordered?)", want, p.seq)
		case p.seq > want:
			return fmt.Sprintf("sequence gap: expected %d, found %d (record deleted or reordered, or a file missing?)", want, p.seq)
		}
		if !bytes.Equal(p.prev, v.last[:]) {
			return "prev does not match the previous record's hash (record deleted, inserted or reordered?)"
		}
	} else {
		v.started = true
		v.res.FirstSeq = p.seq
		v.res.FirstPrev = string(p.prev)
		v.res.FirstFile = v.name
	}
	if v.fileStart {
		v.fileStart = false
		v.res.fileStarts = append(v.res.fileStarts, chainPoint{p.seq, string(p.prev)})
	}
	copy(v.last[:], p.hash)
	v.res.LastSeq = p.seq
	v.res.LastHash = string(p.hash)
	v.res.Records++
	if bytes.Contains(p.body, []byte(`,"event":"`+EventLogRecovered+`"`)) {
		v.res.Recoveries++
	}
	if bytes.Contains(p.body, []byte(`,"event":"`+EventAnchor+`"`)) {
		v.noteAnchor(line)
	}
	return ""
}

// readLines calls fn with each line of r without its newline; complete is
// false for a last line that has no newline. fn returns false to stop.
// The line is only valid during the call.
func readLines(r io.Reader, fn func(line []byte, complete bool) bool) error {
	br := bufio.NewReaderSize(r, 256<<10)
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long, chunk...)
			continue
		}
		line := chunk
		if len(long) > 0 {
			line = append(long, chunk...)
			long = long[:0]
		}
		switch {
		case err == nil:
			if !fn(line[:len(line)-1], true) {
				return nil
			}
		case errors.Is(err, io.EOF):
			if len(line) > 0 {
				fn(line, false)
			}
			return nil
		default:
			return err
		}
		if cap(long) > 16<<20 {
			long = nil
		}
	}
}

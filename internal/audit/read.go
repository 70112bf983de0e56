package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RecordFunc receives a decoded record and the exact line it was decoded
// from (without its newline; valid only during the call). Printing the
// line rather than re-encoding the record keeps it verifiable.
type RecordFunc func(r *Record, line []byte) error

// ReadRecords decodes the records of files, in order, and calls fn with
// each; fn returning an error stops the reading with that error. A last
// line without its newline (being written, or torn) is skipped; any other
// line that is not a record is an error naming the file and line. It does
// not check the chain (that is Verify).
func ReadRecords(files []string, fn RecordFunc) error {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		err = decodeLines(f, name, 0, fn)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeLines(r io.Reader, name string, firstLine int, fn RecordFunc) error {
	lineNo := firstLine
	var stop error
	err := readLines(r, func(line []byte, complete bool) bool {
		lineNo++
		if !complete {
			return false
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			stop = fmt.Errorf("audit: %s line %d is not a record: %w", name, lineNo, err)
			return false
		}
		if err := fn(&rec, line); err != nil {
			stop = err
			return false
		}
		return true
	})
	if stop != nil {
		return stop
	}
	if err != nil {
		return fmt.Errorf("audit: reading %s: %w", name, err)
	}
	return nil
}

// LastRecords calls fn with the last n records of the file at path (fewer
// if it holds fewer), oldest first, and returns the offset just past the
// last complete line, from which Follow can go on.
func LastRecords(path string, n int, fn RecordFunc) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	end, err := lastIndexByte(f, info.Size(), '\n')
	if err != nil {
		return 0, fmt.Errorf("audit: reading %s: %w", path, err)
	}
	end++ // past the newline; 0 when there is none
	start := end
	for i := 0; i < n && start > 0; i++ {
		nl, err := lastIndexByte(f, start-1, '\n')
		if err != nil {
			return 0, fmt.Errorf("audit: reading %s: %w", path, err)
		}
		start = nl + 1
	}
	return end, decodeLines(io.NewSectionReader(f, start, end-start), path, 0, fn)
}

// Follow reads the records appended to the file at path from offset on
// and calls fn with each, polling every poll, until ctx ends (then it
// returns nil) or fn fails. It follows rotation: when path is renamed
// away it finishes the old file and goes on at the start of the new one;
// when a seq gap shows that whole files were rotated between two polls,
// it reads the missing records from the rotated files (their names carry
// their first seq) before going on.
//
// after is the seq of the record just before offset, when the caller
// read it (0: Follow reads it there). With it Follow notices a rotation
// between the caller's read and its own open — offset then belongs to
// the rotated file — and goes on from the records after it wherever they
// are.
func Follow(ctx context.Context, path string, offset int64, after uint64, poll time.Duration, fn RecordFunc) error {
	fw := &follower{path: path, fn: fn, lastSeq: after}
	f, err := os.Open(path)
	for after > 0 && errors.Is(err, fs.ErrNotExist) {
		// Rotated away since the caller read it, and not made again yet
		// (the log makes the current file at its next write).
		if err := fw.fillGap(math.MaxUint64); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
		f, err = os.Open(path)
		offset = 0
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer func() { f.Close() }()
	if offset > 0 { // the seq before offset: to notice gaps, and a file rotated since
		seq := uint64(0)
		if line, _, _, err := lastLine(f, offset); err == nil {
			if p, err := splitLine(line); err == nil {
				seq = p.seq
			}
		}
		switch {
		case after == 0:
			fw.lastSeq = seq
		case seq != after:
			// Not the file offset was taken in: what came after `after`
			// is in the files rotated since, then in this one from its
			// start (what is not after `after` is skipped).
			offset = 0
			if err := fw.fillGap(math.MaxUint64); err != nil {
				return err
			}
		}
	}
	var partial []byte
	buf := make([]byte, 256<<10)
	drain := func() error {
		for {
			n, err := f.ReadAt(buf, offset)
			if n > 0 {
				offset += int64(n)
				data := append(partial, buf[:n]...)
				last := bytes.LastIndexByte(data, '\n') // complete lines only
				if last < 0 {
					partial = data
				} else {
					if err := decodeLines(bytes.NewReader(data[:last+1]), path, 0, fw.emit); err != nil {
						return err
					}
					partial = append(partial[:0:0], data[last+1:]...)
				}
			}
			if errors.Is(err, io.EOF) || n == 0 {
				return nil
			}
			if err != nil {
				return fmt.Errorf("audit: reading %s: %w", path, err)
			}
		}
	}
	for {
		if err := drain(); err != nil {
			return err
		}
		cur, curErr := f.Stat()
		now, nowErr := os.Stat(path)
		switch {
		case curErr != nil:
			return fmt.Errorf("audit: %w", curErr)
		case nowErr == nil && !os.SameFile(cur, now):
			// Rotated: the old file is complete; drain what was written
			// just before the rename, then go on with the new file.
			if err := drain(); err != nil {
				return err
			}
			nf, err := os.Open(path)
			if errors.Is(err, fs.ErrNotExist) {
				break // rotated again before it was made anew: look at the next poll
			}
			if err != nil {
				return fmt.Errorf("audit: %w", err)
			}
			f.Close()
			f, offset, partial = nf, 0, nil
			// Files rotated away before we opened the new one.
			if fw.lastSeq != 0 {
				if err := fw.fillGap(math.MaxUint64); err != nil {
					return err
				}
			}
			continue
		case cur.Size() < offset:
			// Cut (a torn line removed on restart): the partial line is gone.
			offset, partial = cur.Size(), nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// follower passes records on in seq order, filling gaps from rotated
// files.
type follower struct {
	path    string
	fn      RecordFunc
	lastSeq uint64 // 0: unknown
}

// emit passes r on unless it was passed on already (read from a rotated
// file by fillGap). Following therefore does not go back to a new chain
// that restarts at seq 1; restart the tail for that.
func (fw *follower) emit(r *Record, line []byte) error {
	if fw.lastSeq != 0 {
		if r.Seq <= fw.lastSeq {
			return nil
		}
		if r.Seq > fw.lastSeq+1 {
			if err := fw.fillGap(r.Seq); err != nil {
				return err
			}
		}
	}
	fw.lastSeq = r.Seq
	return fw.fn(r, line)
}

// fillGap passes on the records between lastSeq and until from the
// rotated files that hold them.
func (fw *follower) fillGap(until uint64) error {
	files, err := RotatedFiles(fw.path)
	if err != nil {
		return err
	}
	base := filepath.Base(fw.path)
	for i, name := range files {
		first, _ := parseRotatedName(base, filepath.Base(name))
		next := uint64(math.MaxUint64)
		if i+1 < len(files) {
			next, _ = parseRotatedName(base, filepath.Base(files[i+1]))
		}
		if next <= fw.lastSeq+1 || first >= until {
			continue
		}
		err := ReadRecords([]string{name}, func(r *Record, line []byte) error {
			if r.Seq <= fw.lastSeq || r.Seq >= until {
				return nil
			}
			fw.lastSeq = r.Seq
			return fw.fn(r, line)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Filter selects records for an operator's questions. Zero fields match
// everything.
type Filter struct {
	// Domain matches local_domain, remote_domain, or the domain of from or
	// to (case-insensitive).
	Domain string
	// JID matches from or to: a full JID (with /resource) exactly, a bare
	// JID whatever the resource (case-insensitive but for the resource).
	JID string
	// Since and Until bound the time: Since <= time < Until.
	Since, Until time.Time
	// Decision matches the decision exactly (allow, deny, bounced, ...).
	Decision string
	// Event matches the event exactly, or all events under a prefix:
	// "session" matches session.open, session.auth and session.close.
	Event string
}

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if !f.Since.IsZero() && r.Time.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.Time.Before(f.Until) {
		return false
	}
	if f.Decision != "" && r.Decision != f.Decision {
		return false
	}
	if f.Event != "" && r.Event != f.Event && !strings.HasPrefix(r.Event, f.Event+".") {
		return false
	}
	if f.Domain != "" && !strings.EqualFold(r.LocalDomain, f.Domain) && !strings.EqualFold(r.RemoteDomain, f.Domain) &&
		!strings.EqualFold(jidDomain(r.From), f.Domain) && !strings.EqualFold(jidDomain(r.To), f.Domain) {
		return false
	}
	if f.JID != "" && !jidMatches(f.JID, r.From) && !jidMatches(f.JID, r.To) {
		return false
	}
	return true
}

// jidDomain is the domain part of a JID: [local@]domain[/resource].
func jidDomain(jid string) string {
	if i := strings.IndexByte(jid, '/'); i >= 0 {
		jid = jid[:i]
	}
	if i := strings.IndexByte(jid, '@'); i >= 0 {
		jid = jid[i+1:]
	}
	return jid
}

func jidMatches(want, jid string) bool {
	if jid == "" {
		return false
	}
	wantBare, wantRes, wantFull := strings.Cut(want, "/")
	bare, res, _ := strings.Cut(jid, "/")
	if !strings.EqualFold(wantBare, bare) {
		return false
	}
	return !wantFull || wantRes == res
}

// TableWriter writes records as a readable table, one line each, with
// fixed columns (so that it can stream): time (UTC, milliseconds), seq,
// event, direction, from, to, kind, decision, reason. For session events
// from and to are the domains, in the direction of the stream.
type TableWriter struct {
	w      io.Writer
	header bool
}

// NewTableWriter returns a TableWriter on w.
func NewTableWriter(w io.Writer) *TableWriter { return &TableWriter{w: w} }

const tableFormat = "%-23s %8s %-13s %-8s %-30s %-30s %-14s %-10s %s\n"

// Write writes one record (and the header before the first). Its
// signature is a RecordFunc's; line is not used.
func (t *TableWriter) Write(r *Record, _ []byte) error {
	if !t.header {
		t.header = true
		if _, err := fmt.Fprintf(t.w, tableFormat, "TIME (UTC)", "SEQ", "EVENT", "DIR", "FROM", "TO", "KIND", "DECISION", "REASON"); err != nil {
			return err
		}
	}
	from, to := r.From, r.To
	if from == "" && to == "" {
		from, to = r.RemoteDomain, r.LocalDomain
		if r.Direction == "outbound" {
			from, to = to, from
		}
	}
	kind := r.Kind
	if kind != "" && r.Type != "" {
		kind += "/" + r.Type
	}
	reason := strings.Join(strings.Fields(r.Reason), " ")
	_, err := fmt.Fprintf(t.w, tableFormat, r.Time.UTC().Format("2006-01-02 15:04:05.000"), fmt.Sprint(r.Seq), r.Event, r.Direction,
		dash(from), dash(to), dash(kind), dash(r.Decision), reason)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ParseTime reads a time bound for queries: RFC 3339 ("2026-03-15T10:20:30Z"),
// a UTC date or minute ("2026-03-15", "2026-03-15T10:20"), or a duration
// meaning that long before now ("24h", "90m").
func ParseTime(s string, now time.Time) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: give RFC 3339 (2026-03-15T10:20:30Z), a date (2026-03-15, UTC), or a duration ago (24h)", s)
}

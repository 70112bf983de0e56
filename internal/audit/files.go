package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rotatedTimeLayout is the UTC timestamp in rotated file names.
const rotatedTimeLayout = "20060102T150405Z"

// RotatedName is the name a current file at path gets when it is rotated
// at time t: PATH.<UTC YYYYMMDDTHHMMSSZ>.<first seq>, the first seq being
// that of the file's first record, zero-padded to 20 digits so that a
// shell glob lists the files in chain order, e.g.
// audit.jsonl.20260315T102030Z.00000000000000000001.
func RotatedName(path string, t time.Time, firstSeq uint64) string {
	return fmt.Sprintf("%s.%s.%020d", path, t.UTC().Format(rotatedTimeLayout), firstSeq)
}

// parseRotatedName returns the first seq encoded in a rotated file's base
// name, if base is a rotated name of the current file named current.
func parseRotatedName(current, base string) (uint64, bool) {
	rest, ok := strings.CutPrefix(base, current+".")
	if !ok {
		return 0, false
	}
	ts, seqText, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	if _, err := time.Parse(rotatedTimeLayout, ts); err != nil {
		return 0, false
	}
	if len(seqText) == 0 || strings.TrimLeft(seqText, "0123456789") != "" {
		return 0, false
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return 0, false
	}
	return seq, true
}

// parseRotatedTime returns the rotation time encoded in a rotated file's
// base name, if base is a rotated name of the current file named current.
func parseRotatedTime(current, base string) (time.Time, bool) {
	if _, ok := parseRotatedName(current, base); !ok {
		return time.Time{}, false
	}
	ts, _, _ := strings.Cut(strings.TrimPrefix(base, current+"."), ".")
	t, err := time.Parse(rotatedTimeLayout, ts)
	return t, err == nil
}

// RotatedFiles lists the rotated files of the current file at path,
// oldest first (ordered by the first seq in their names, not by time,
// which a clock step could disorder). Files that do not match the naming
// exactly are ignored.
func RotatedFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: listing the rotated files of %s: %w", path, err)
	}
	type rotated struct {
		name string
		seq  uint64
	}
	var found []rotated
	for _, e := range entries {
		if seq, ok := parseRotatedName(base, e.Name()); ok && e.Type().IsRegular() {
			found = append(found, rotated{filepath.Join(filepath.Dir(path), e.Name()), seq})
		}
	}
	slices.SortFunc(found, func(a, b rotated) int {
		if a.seq != b.seq {
			return cmpUint(a.seq, b.seq)
		}
		return strings.Compare(a.name, b.name)
	})
	files := make([]string, len(found))
	for i, f := range found {
		files[i] = f.name
	}
	return files, nil
}

// SeriesFiles is the whole series of the current file at path, in chain
// order: its rotated files, oldest first, then path itself when it exists.
func SeriesFiles(path string) ([]string, error) {
	files, err := RotatedFiles(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		files = append(files, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return files, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// tornName is where Open saves the bytes of a torn last line before it
// cuts them off: PATH-torn-<UTC timestamp>. It deliberately does not
// match PATH.* so that globs of the rotated series leave it out.
func tornName(path string, t time.Time) string {
	return fmt.Sprintf("%s-torn-%s", path, t.UTC().Format(rotatedTimeLayout))
}

// MinHMACKeyLen is the shortest HMAC key accepted.
const MinHMACKeyLen = 16

// LoadHMACKey reads the chain's HMAC key from a file: the file's bytes
// with surrounding white space (a trailing newline) removed are the key,
// so `head -c 32 /dev/urandom | base64 > key` and
// `openssl rand -hex 32 > key` both work. The gateway and `xmppedge audit
// verify` must read the key the same way; both use this function.
func LoadHMACKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: reading the HMAC key: %w", err)
	}
	key := bytes.TrimSpace(data)
	if len(key) < MinHMACKeyLen {
		return nil, fmt.Errorf("audit: the HMAC key in %s is %d bytes: use at least %d, e.g. `openssl rand -hex 32 > %s`", path, len(key), MinHMACKeyLen, path)
	}
	return key, nil
}

// syncDir fsyncs a directory so that a create or rename in it survives a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// lastIndexByte returns the offset of the last byte c in r before offset
// end, or -1.
func lastIndexByte(r io.ReaderAt, end int64, c byte) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end > 0 {
		start := max(end-chunk, 0)
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return -1, err
		}
		if i := bytes.LastIndexByte(b, c); i >= 0 {
			return start + int64(i), nil
		}
		end = start
	}
	return -1, nil
}

// readSection reads [start, end) of r.
func readSection(r io.ReaderAt, start, end int64) ([]byte, error) {
	b := make([]byte, end-start)
	n, err := r.ReadAt(b, start)
	if n == len(b) {
		return b, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, err
}

// lastLine returns the last complete (newline-terminated) line of a file
// of the given size, without its newline, the offset where it starts, and
// the offset just past its newline (0 if there is no complete line).
func lastLine(r io.ReaderAt, size int64) (line []byte, start, end int64, err error) {
	nl, err := lastIndexByte(r, size, '\n')
	if err != nil || nl < 0 {
		return nil, 0, 0, err
	}
	end = nl + 1
	prevNL, err := lastIndexByte(r, nl, '\n')
	if err != nil {
		return nil, 0, 0, err
	}
	start = prevNL + 1
	line, err = readSection(r, start, nl)
	return line, start, end, err
}

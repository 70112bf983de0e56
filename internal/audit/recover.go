package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// tornTail describes the bytes Open cut off the end of the current file.
type tornTail struct {
	offset, length int64
	sum            string // hex SHA-256 of the bytes
	savedAs        string
}

// recoverChain finds the chain head (last seq and hash) from the current
// file, or from the newest rotated file when the current one holds no
// complete record, and cuts a torn last line off the current file.
func (l *Log) recoverChain() (*tornTail, error) {
	path := l.cfg.Path
	r, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: reading %s to recover the chain: %w", path, err)
	}
	defer r.Close()
	info, err := r.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	size := info.Size()
	line, lineStart, end, err := lastLine(r, size)
	if err != nil {
		return nil, fmt.Errorf("audit: reading the end of %s: %w", path, err)
	}

	var torn *tornTail
	if end < size {
		if torn, err = saveTorn(r, path, end, size); err != nil {
			return nil, err
		}
	}

	if end > 0 {
		p, err := l.checkHead(line)
		if err != nil {
			return nil, fmt.Errorf("audit: the last complete line of %s (byte offset %d) %v: the file was changed by something other than xmppedge, or is not an audit file; run `xmppedge audit verify %s`, then move the file aside so that a new one is started", path, lineStart, err, path)
		}
		first, err := readFirstRecord(r, end)
		if err != nil {
			return nil, fmt.Errorf("audit: the first line of %s: %w; run `xmppedge audit verify %s`", path, err, path)
		}
		l.setHead(p)
		l.fileFirstSeq, l.fileStart = first.Seq, first.Time
	} else if err := l.recoverFromRotated(); err != nil {
		return nil, err
	}

	if torn != nil {
		if err := l.file.Truncate(end); err != nil {
			return nil, fmt.Errorf("audit: cutting the torn last line off %s: %w", path, err)
		}
		if err := l.file.Sync(); err != nil {
			return nil, fmt.Errorf("audit: fsync of %s: %w", path, err)
		}
	}
	l.fileSize, l.syncedSize = end, end
	return torn, nil
}

// recoverFromRotated continues the chain from the newest rotated file, if
// there is one; otherwise a new chain starts.
func (l *Log) recoverFromRotated() error {
	rotated, err := RotatedFiles(l.cfg.Path)
	if err != nil || len(rotated) == 0 {
		return err
	}
	name := rotated[len(rotated)-1]
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("audit: reading the newest rotated file to recover the chain: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	line, _, end, err := lastLine(f, info.Size())
	switch {
	case err != nil:
		return fmt.Errorf("audit: reading the end of %s: %w", name, err)
	case end == 0 || end != info.Size():
		return fmt.Errorf("audit: the newest rotated file %s does not end in a complete record; run `xmppedge audit verify` on the series and move the damaged file aside", name)
	}
	p, err := l.checkHead(line)
	if err != nil {
		return fmt.Errorf("audit: the last line of %s %v; run `xmppedge audit verify` on the series", name, err)
	}
	l.setHead(p)
	return nil
}

// checkHead checks that line is a record whose hash matches its content.
func (l *Log) checkHead(line []byte) (lineParts, error) {
	p, err := splitLine(line)
	if err != nil {
		return p, fmt.Errorf("is not an audit record (%w)", err)
	}
	if !l.chain.hasher.check(p) {
		return p, errors.New("has a hash that does not match its content (edited, or written with another HMAC key than the one configured?)")
	}
	return p, nil
}

func (l *Log) setHead(p lineParts) { l.chain.setHead(p) }

// readFirstRecord decodes the first line of a file whose complete lines
// end at end.
func readFirstRecord(r io.ReaderAt, end int64) (*Record, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, end), 64<<10)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return nil, fmt.Errorf("not an audit record: %w", err)
	}
	return &rec, nil
}

// saveTorn copies the torn bytes [start, end) of the current file to
// PATH-torn-<time>, fsynced, so that nothing is destroyed, and describes
// them.
func saveTorn(r io.ReaderAt, path string, start, end int64) (*tornTail, error) {
	data, err := readSection(r, start, end)
	if err != nil {
		return nil, fmt.Errorf("audit: reading the torn last line of %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	t := &tornTail{offset: start, length: end - start, sum: hex.EncodeToString(sum[:])}
	now := time.Now()
	for i := 0; ; i++ {
		t.savedAs = tornName(path, now)
		if i > 0 {
			t.savedAs += fmt.Sprintf(".%d", i)
		}
		f, err := os.OpenFile(t.savedAs, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) && i < 100 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: saving the torn last line of %s: %w", path, err)
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("audit: saving the torn last line of %s to %s: %w", path, t.savedAs, err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		return t, nil
	}
}

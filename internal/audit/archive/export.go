package archive

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// Export formats.
const (
	FormatEML   = "eml"   // an .eml per message kept in full with a body; the other records in records.jsonl
	FormatJSONL = "jsonl" // every matching record in records.jsonl
)

// Options says what an export writes where.
type Options struct {
	Dir    string // the export folder: must not exist, or be empty
	Format string // FormatEML or FormatJSONL
	Filter audit.Filter
	// Verified: the caller hands on only records that verified
	// (audit.VerifyEach); false with -no-verify.
	Verified bool
}

// Export writes an export folder. Files go to a hidden staging folder
// beside Dir, which Finish renames to Dir once the manifest is written:
// Dir holds a complete export or nothing. Use it from one goroutine:
// Start, then for each chain BeginChain, Add for each record, EndChain;
// then Finish, or Abort.
type Export struct {
	opts  Options
	tmp   string
	man   Manifest
	chain *Chain
	lines *recordsFile
}

// Start checks Dir and makes the staging folder.
func Start(opts Options) (*Export, error) {
	if opts.Format != FormatEML && opts.Format != FormatJSONL {
		return nil, fmt.Errorf("format %q: use %s or %s", opts.Format, FormatEML, FormatJSONL)
	}
	if err := checkEmptyDir(opts.Dir); err != nil {
		return nil, err
	}
	parent := filepath.Dir(filepath.Clean(opts.Dir))
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return nil, fmt.Errorf("making the export folder's parent: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(opts.Dir)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("making the staging folder: %w", err)
	}
	e := &Export{opts: opts, tmp: tmp}
	e.man = Manifest{Tool: "xmppedge audit export", Format: opts.Format, Created: time.Now().UTC(),
		Filter: summarize(opts.Filter), Verified: opts.Verified, Chains: []Chain{}, Files: []File{}}
	return e, nil
}

// checkEmptyDir accepts a folder that does not exist or is empty.
func checkEmptyDir(dir string) error {
	if dir == "" {
		return errors.New("no export folder: give -o DIR")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("export folder: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("export folder %s is not empty: name a new folder (an export is never mixed with other files)", dir)
	}
	return nil
}

func summarize(f audit.Filter) FilterSummary {
	s := FilterSummary{Domain: f.Domain, JID: f.JID}
	if !f.Since.IsZero() {
		s.Since = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		s.Until = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return s
}

// BeginChain starts a chain read from files.
func (e *Export) BeginChain(files []string) {
	e.man.Chains = append(e.man.Chains, Chain{Source: append([]string(nil), files...)})
	e.chain = &e.man.Chains[len(e.man.Chains)-1]
}

// EndChain notes what reading (and verifying) the chain found.
func (e *Export) EndChain(res audit.VerifyResult) {
	c := e.chain
	c.Records, c.FirstSeq, c.FirstPrev, c.LastSeq, c.LastHash, c.Intact = res.Records, res.FirstSeq, res.FirstPrev, res.LastSeq, res.LastHash, res.OK
	if !res.OK {
		c.Break = fmt.Sprintf("%s line %d (seq %d): %s", res.File, res.Line, res.Seq, res.Reason)
	}
}

// Add exports r if it matches the filter; line is its line in the log.
// Its signature is an audit.RecordFunc's.
func (e *Export) Add(r *audit.Record, line []byte) error {
	if e.chain == nil {
		return errors.New("archive: Add before BeginChain")
	}
	e.man.Counts.Read++
	if !e.opts.Filter.Match(r) {
		return nil
	}
	e.man.Counts.Matched++
	pos := &Position{Node: r.Node, Seq: r.Seq, Hash: r.Hash, Time: r.Time}
	if e.chain.ExportedFirst == nil {
		e.chain.ExportedFirst = pos
	}
	e.chain.ExportedLast = pos
	if e.opts.Format == FormatEML {
		if done, err := e.addMessage(r, pos); done || err != nil {
			return err
		}
	}
	return e.addLine(line, pos)
}

// addMessage writes r as an .eml if it is a message kept in full with a
// body; it reports whether it did.
func (e *Export) addMessage(r *audit.Record, pos *Position) (bool, error) {
	if r.Event != audit.EventStanza || r.Kind != "message" || r.Stanza == "" {
		return false, nil
	}
	m, err := ParseStanza(r.Stanza)
	if err != nil {
		e.man.Counts.Unparsed++
		return false, nil
	}
	if m.Body == "" {
		e.man.Counts.NoBody++
		return false, nil
	}
	name := fmt.Sprintf("%s-%020d.eml", token(r.Node), r.Seq)
	f, err := e.create(name)
	if err != nil {
		return false, err
	}
	if err := WriteEML(f, r, m); err != nil {
		f.Close()
		return false, fmt.Errorf("%s: %w", name, err)
	}
	file, err := f.finish()
	if err != nil {
		return false, err
	}
	file.Record = pos
	e.man.Files = append(e.man.Files, file)
	e.man.Counts.Messages++
	return true, nil
}

// addLine appends the record's line to records.jsonl.
func (e *Export) addLine(line []byte, pos *Position) error {
	if e.lines == nil {
		f, err := e.create(RecordsName)
		if err != nil {
			return err
		}
		e.lines = &recordsFile{hashedFile: f}
	}
	if _, err := e.lines.Write(line); err != nil {
		return err
	}
	if _, err := e.lines.Write([]byte{'\n'}); err != nil {
		return err
	}
	if e.lines.first == nil {
		e.lines.first = pos
	}
	e.lines.last = pos
	e.lines.records++
	e.man.Counts.Lines++
	return nil
}

// Finish closes records.jsonl, writes the manifest and renames the
// staging folder to Dir.
func (e *Export) Finish() (*Manifest, error) {
	if e.lines != nil {
		file, err := e.lines.finish()
		if err != nil {
			e.Abort()
			return nil, err
		}
		file.Records, file.First, file.Last = e.lines.records, e.lines.first, e.lines.last
		e.man.Files = append(e.man.Files, file)
	}
	if err := e.writeManifest(); err != nil {
		e.Abort()
		return nil, err
	}
	// An empty Dir gives way (os.Rename does not replace a folder);
	// os.Remove never removes one that holds something.
	if err := os.Remove(e.opts.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		e.Abort()
		return nil, fmt.Errorf("moving the export into place: %w (is %s still empty?)", err, e.opts.Dir)
	}
	if err := os.Rename(e.tmp, e.opts.Dir); err != nil {
		e.Abort()
		return nil, fmt.Errorf("moving the export into place: %w (is %s still empty?)", err, e.opts.Dir)
	}
	return &e.man, nil
}

func (e *Export) writeManifest() error {
	data, err := json.MarshalIndent(&e.man, "", "  ")
	if err != nil {
		return fmt.Errorf("the manifest: %w", err)
	}
	path := filepath.Join(e.tmp, ManifestName)
	if err := os.WriteFile(path, append(data, '\n'), 0o640); err != nil {
		return fmt.Errorf("writing the manifest: %w", err)
	}
	d, err := os.Open(e.tmp)
	if err != nil {
		return fmt.Errorf("syncing the export: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing the export: %w", err)
	}
	return nil
}

// Abort removes the staging folder and what it holds.
func (e *Export) Abort() {
	if e.lines != nil {
		e.lines.f.Close()
	}
	os.RemoveAll(e.tmp)
}

// hashedFile is a new file of the export, hashed as it is written.
type hashedFile struct {
	name  string
	f     *os.File
	w     *bufio.Writer
	sum   hash.Hash
	bytes int64
}

func (e *Export) create(name string) (*hashedFile, error) {
	f, err := os.OpenFile(filepath.Join(e.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("exporting: %w", err)
	}
	h := &hashedFile{name: name, f: f, sum: sha256.New()}
	h.w = bufio.NewWriter(io.MultiWriter(f, h.sum))
	return h, nil
}

func (h *hashedFile) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.bytes += int64(n)
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", h.name, err)
	}
	return n, nil
}

// Close closes the file without its entry (after a failed write).
func (h *hashedFile) Close() { h.f.Close() }

// finish flushes and closes the file and returns its entry. (It is not
// synced: an export is a copy, made again from the log if lost.)
func (h *hashedFile) finish() (File, error) {
	err := h.w.Flush()
	if cerr := h.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, fmt.Errorf("writing %s: %w", h.name, err)
	}
	return File{Name: h.name, SHA256: hex.EncodeToString(h.sum.Sum(nil)), Bytes: h.bytes}, nil
}

// recordsFile is records.jsonl, with the first and last record in it.
type recordsFile struct {
	*hashedFile
	records     uint64
	first, last *Position
}

package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LegalHold keeps every rotated file that holds a record it matches. A
// record matches when it is of one of Domains or JIDs (any of them; none
// given: every record) and its time is in [Since, Until) (a zero bound is
// open).
type LegalHold struct {
	// Reference names the hold (a case or ticket number); the log, the
	// plan and the anchor record name it.
	Reference string
	// Domains match local_domain, remote_domain or the domain of from or
	// to, as Filter.Domain does.
	Domains []string
	// JIDs match from or to: a bare JID any resource, a full JID exactly,
	// as Filter.JID does.
	JIDs         []string
	Since, Until time.Time
}

// Match reports whether the hold covers r.
func (h *LegalHold) Match(r *Record) bool {
	f := Filter{Since: h.Since, Until: h.Until}
	if len(h.Domains) == 0 && len(h.JIDs) == 0 {
		return f.Match(r)
	}
	for _, d := range h.Domains {
		f.Domain = d
		if f.Match(r) {
			return true
		}
	}
	f.Domain = ""
	for _, j := range h.JIDs {
		f.JID = j
		if f.Match(r) {
			return true
		}
	}
	return false
}

// Retention says which rotated files of a log may be deleted: those whose
// records are all older than MaxAge and that no hold matches, oldest first
// and without holes (see PlanRetention). MaxAge 0 keeps everything.
type Retention struct {
	MaxAge time.Duration
	Holds  []LegalHold
}

// FileFate is what retention decided for one file.
type FileFate struct {
	Path   string
	Delete bool
	// Why: "expired: …", "held by …", "not expired: …", "kept: an older
	// file is kept …", "the current file".
	Why string
	// Hold is the reference of the hold that keeps the file, if one does.
	Hold string
}

// RetentionPlan is what a retention run deletes and keeps, oldest first.
type RetentionPlan struct {
	Cutoff time.Time  // records before it are expired
	Files  []FileFate // every file of the series, oldest first; the deleted ones lead
	// AnchorSeq and AnchorPrev are the seq and prev of the first record
	// kept (set when something is deleted): the anchor names them.
	AnchorSeq  uint64
	AnchorPrev string
}

// Deleted returns the files the plan deletes, oldest first.
func (p *RetentionPlan) Deleted() []FileFate {
	for i, f := range p.Files {
		if !f.Delete {
			return p.Files[:i]
		}
	}
	return p.Files
}

// PlanRetention decides the fate of every file of the series of the
// current file at path at time now. Files are deleted oldest first and
// contiguously: the first rotated file that must stay (a record newer
// than the cutoff, or one a hold matches) keeps every newer file too, so
// that the remaining series is one unbroken chain that Verify can check
// from its first record on. The current file always stays. Before
// anything is deleted the files to delete are verified (with hmacKey) and
// must lead on to the first record kept; a broken chain refuses the plan.
func PlanRetention(path string, r Retention, hmacKey []byte, now time.Time) (RetentionPlan, error) {
	plan := RetentionPlan{}
	rotated, err := RotatedFiles(path)
	if err != nil {
		return plan, err
	}
	if r.MaxAge > 0 {
		plan.Cutoff = now.Add(-r.MaxAge)
	}
	keeping := r.MaxAge <= 0
	for _, f := range rotated {
		fate := FileFate{Path: f}
		switch {
		case r.MaxAge <= 0:
			fate.Why = "kept: no retention (audit.retention 0 keeps every file)"
		case keeping:
			fate.Why = "kept: an older file is kept, and files are deleted oldest first without holes"
		default:
			if fate, err = judgeFile(path, f, r.Holds, plan.Cutoff); err != nil {
				return plan, err
			}
			keeping = !fate.Delete
		}
		plan.Files = append(plan.Files, fate)
	}
	plan.Files = append(plan.Files, FileFate{Path: path, Why: "kept: the current file"})
	if len(plan.Deleted()) > 0 {
		if err := plan.findAnchor(hmacKey); err != nil {
			return plan, err
		}
	}
	return plan, nil
}

// errStopScan ends a file's scan once its fate is known.
var errStopScan = errors.New("stop")

// judgeFile decides one rotated file: deleted when all its records are
// before cutoff and no hold matches any of them.
func judgeFile(current, file string, holds []LegalHold, cutoff time.Time) (FileFate, error) {
	fate := FileFate{Path: file}
	if rotatedAt, ok := parseRotatedTime(filepath.Base(current), filepath.Base(file)); ok && !rotatedAt.Before(cutoff) {
		fate.Why = fmt.Sprintf("not expired: rotated at %s, after the cutoff %s", rotatedAt.Format(time.RFC3339), cutoff.Format(time.RFC3339))
		return fate, nil
	}
	var records int
	err := ReadRecords([]string{file}, func(rec *Record, _ []byte) error {
		records++
		if !rec.Time.Before(cutoff) {
			fate.Why = fmt.Sprintf("not expired: record seq %d of %s is after the cutoff %s", rec.Seq, rec.Time.Format(time.RFC3339), cutoff.Format(time.RFC3339))
			return errStopScan
		}
		for i := range holds {
			if holds[i].Match(rec) {
				fate.Hold = holds[i].Reference
				fate.Why = fmt.Sprintf("held by legal hold %q: record seq %d (%s %s)", fate.Hold, rec.Seq, rec.Event, recordParties(rec))
				return errStopScan
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errStopScan):
		return fate, nil
	case err != nil:
		return fate, fmt.Errorf("audit retention: reading %s: %w (nothing deleted: run `xmppedge audit verify` on the series)", file, err)
	}
	fate.Delete = true
	fate.Why = fmt.Sprintf("expired: its %d record(s) are all before the cutoff %s, and no legal hold matches them", records, cutoff.Format(time.RFC3339))
	return fate, nil
}

// recordParties names the domains and JIDs of a record, for reasons.
func recordParties(r *Record) string {
	var parts []string
	for _, p := range []string{r.LocalDomain, r.RemoteDomain, r.From, r.To} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// findAnchor verifies the files to delete and sets the seq and prev of
// the first record kept: the record after the last one deleted. When the
// first kept file has a record already, it must be that one.
func (p *RetentionPlan) findAnchor(hmacKey []byte) error {
	del := p.Deleted()
	files := make([]string, len(del))
	for i, f := range del {
		files[i] = f.Path
	}
	res, err := Verify(files, hmacKey)
	if err != nil {
		return fmt.Errorf("audit retention: %w (nothing deleted)", err)
	}
	if !res.OK || res.Records == 0 {
		return fmt.Errorf("audit retention: the files to delete do not verify (%s line %d: %s): nothing deleted; run `xmppedge audit verify` and keep the evidence", res.File, res.Line, res.Reason)
	}
	p.AnchorSeq, p.AnchorPrev = res.LastSeq+1, res.LastHash
	kept := p.Files[len(del)].Path
	var first *Record
	err = ReadRecords([]string{kept}, func(r *Record, _ []byte) error {
		first = r
		return errStopScan
	})
	if err != nil && !errors.Is(err, errStopScan) && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit retention: reading %s: %w (nothing deleted)", kept, err)
	}
	if first != nil && (first.Seq != p.AnchorSeq || first.Prev != p.AnchorPrev) {
		return fmt.Errorf("audit retention: %s does not continue the chain of the files to delete (its first record is seq %d, expected %d with prev %s): nothing deleted; run `xmppedge audit verify` on the series", kept, first.Seq, p.AnchorSeq, p.AnchorPrev)
	}
	return nil
}

// anchorRecord is the audit.anchor record of a plan that deletes files.
func (p *RetentionPlan) anchorRecord(r Retention) *Record {
	del := p.Deleted()
	names := make([]string, len(del))
	for i, f := range del {
		names[i] = filepath.Base(f.Path)
	}
	reason := fmt.Sprintf("retention %s: %d file(s) deleted, every record before the cutoff %s; the chain goes on at seq %d",
		FormatRetention(r.MaxAge), len(del), p.Cutoff.UTC().Format(time.RFC3339), p.AnchorSeq)
	for _, f := range p.Files[len(del):] {
		if f.Hold != "" {
			reason += fmt.Sprintf("; %s kept: %s", filepath.Base(f.Path), f.Why)
			break
		}
	}
	return &Record{Event: EventAnchor, Reason: reason, AnchorSeq: p.AnchorSeq, AnchorPrev: p.AnchorPrev, DeletedFiles: StringsOf(names...)}
}

// FormatRetention writes a retention of whole days as "2555d", else as
// time.Duration does.
func FormatRetention(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// ApplyRetention runs one retention: it plans (PlanRetention at now), and
// when files are to go it first appends an audit.anchor record naming the
// first record kept, waits until the record is durable, and only then
// deletes the files, oldest first. If the anchor cannot be written
// nothing is deleted. It returns the plan; the error says what failed.
func (l *Log) ApplyRetention(ctx context.Context, r Retention, now time.Time) (RetentionPlan, error) {
	l.retentionMu.Lock()
	defer l.retentionMu.Unlock()
	plan, err := PlanRetention(l.cfg.Path, r, l.cfg.HMACKey, now)
	del := plan.Deleted()
	if err != nil || len(del) == 0 {
		return plan, err
	}
	anchor := plan.anchorRecord(r)
	seq, err := l.Append(anchor)
	if err == nil {
		err = l.WaitDurable(ctx, seq)
	}
	if err != nil {
		return plan, fmt.Errorf("audit retention: writing the anchor record: %w (nothing deleted)", err)
	}
	for i, f := range del {
		if err := os.Remove(f.Path); err != nil {
			for j := i; j < len(del); j++ {
				plan.Files[j].Delete = false
				plan.Files[j].Why = "not deleted: " + err.Error()
			}
			return plan, fmt.Errorf("audit retention: deleting %s: %w (the older files are deleted; the anchor record seq %d covers this one once it is deleted)", f.Path, err, seq)
		}
		l.log.Info("audit retention: deleted an expired audit file", "file", f.Path, "why", f.Why, "anchor_seq", seq)
	}
	if err := syncDir(filepath.Dir(l.cfg.Path)); err != nil {
		l.log.Warn("audit retention: cannot fsync the audit folder after deleting", "err", err)
	}
	return plan, nil
}

package audit

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// run is the writer goroutine: it turns the pending batch into one
// write() and (sync mode) one fsync, wakes the waiters, rotates, and while
// writing fails retries every retryInterval.
func (l *Log) run() {
	defer l.stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		if l.failure.Load() != nil {
			closing := l.sleepFailed(timer)
			l.retry()
			if l.failure.Load() != nil {
				if closing {
					lost := l.LastSeq() - l.durable.Load()
					l.closeErr = fmt.Errorf("audit: closing %s: %d records could not be written: %w", l.cfg.Path, lost, l.failure.Load().err)
					return
				}
				continue
			}
		}

		l.mu.Lock()
		pendingBytes, pendingCount, since, closing := l.pendingBytes, len(l.pending), l.pendingSince, l.closing
		l.mu.Unlock()
		now := time.Now()
		wait := time.Duration(-1) // -1: nothing is due; sleep until woken

		if pendingBytes > 0 {
			// The window applies to a batch started at an idle writer;
			// records that came while the previous batch was written and
			// fsynced have waited already and go at once.
			due := since.Add(l.window)
			if since.Before(l.lastCommitEnd) {
				due = since
			}
			if closing || pendingCount >= maxBatchRecords || pendingBytes >= maxBatchBytes || !now.Before(due) {
				l.takePending()
				if l.writeOut() == nil && !l.async && l.syncOut() == nil {
					l.rotateIfDue(time.Now())
				}
				l.lastCommitEnd = time.Now()
				continue
			}
			wait = due.Sub(now)
		}
		if len(l.out) > 0 { // async: written, not yet fsynced
			due := l.outSince.Add(l.cfg.AsyncBound / 2)
			if closing || !now.Before(due) || len(l.out) >= maxUnsyncedBytes {
				if l.writeOut() == nil && l.syncOut() == nil {
					l.rotateIfDue(time.Now())
				}
				continue
			}
			wait = minWait(wait, due.Sub(now))
		}
		if closing {
			return
		}
		if l.cfg.RotateAge > 0 && l.fileSize > 0 {
			due := l.fileStart.Add(l.cfg.RotateAge)
			if due.Before(l.rotateBlockedUntil) {
				due = l.rotateBlockedUntil
			}
			if !now.Before(due) {
				l.rotateIfDue(now)
				continue
			}
			wait = minWait(wait, due.Sub(now))
		}

		if wait < 0 {
			<-l.wake
			continue
		}
		timer.Reset(wait)
		select {
		case <-l.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func minWait(a, b time.Duration) time.Duration {
	if a < 0 || b < a {
		return b
	}
	return a
}

// stop ends the writer: closes the file and releases every waiter.
func (l *Log) stop() {
	if l.file != nil {
		if err := l.file.Close(); err != nil && l.closeErr == nil {
			l.closeErr = fmt.Errorf("audit: closing %s: %w", l.cfg.Path, err)
		}
		l.file = nil
	}
	l.stopped.Store(true)
	l.broadcast()
	close(l.done)
}

// sleepFailed waits retryInterval, or less if Close is called; it
// reports whether the log is closing.
func (l *Log) sleepFailed(timer *time.Timer) bool {
	timer.Reset(l.retryInterval)
	defer timer.Stop()
	for {
		l.mu.Lock()
		closing := l.closing
		l.mu.Unlock()
		if closing {
			return true
		}
		select {
		case <-timer.C:
			return false
		case <-l.wake:
		}
	}
}

// takePending encodes the queued records, in seq order, onto out: the
// chain's hashes are computed here, on the writer goroutine.
func (l *Log) takePending() {
	l.mu.Lock()
	recs := l.pending
	l.pending = l.spare[:0]
	first, since, last := l.pendingFirst, l.pendingSince, l.seq
	l.pendingBytes = 0
	l.mu.Unlock()
	if len(recs) == 0 {
		l.spare = recs
		return
	}
	if len(l.out) == 0 {
		l.outFirst, l.outSince = first, since
	}
	for _, q := range recs {
		l.out = l.chain.Next(l.out, q.r, q.at)
		if q.recycle {
			*q.r = Record{}
			l.recycled.Put(q.r)
		}
	}
	l.outLast = last
	clear(recs) // the records are not held once encoded
	l.spare = recs
}

// writeOut writes the part of out not yet in the file, with one write().
func (l *Log) writeOut() error {
	if l.outWritten == len(l.out) {
		return nil
	}
	if l.fileSize == 0 { // out[:outWritten] is always in the current file, so outWritten is 0
		l.fileFirstSeq, l.fileStart = l.outFirst, l.outSince
	}
	n, err := l.file.Write(l.out[l.outWritten:])
	l.fileSize += int64(n)
	if err == nil && n < len(l.out)-l.outWritten {
		err = io.ErrShortWrite
	}
	if err != nil {
		l.fail(fmt.Errorf("writing %s: %w", l.cfg.Path, err))
		return err
	}
	l.outWritten = len(l.out)
	l.batches.Add(1)
	return nil
}

// syncOut fsyncs the file; then every record in out is durable.
func (l *Log) syncOut() error {
	if err := l.file.Sync(); err != nil {
		l.fail(fmt.Errorf("fsync of %s: %w", l.cfg.Path, err))
		return err
	}
	l.syncs.Add(1)
	l.syncedSize = l.fileSize
	if len(l.out) > 0 {
		l.durable.Store(l.outLast)
		l.out, l.outWritten = l.out[:0], 0
		if cap(l.out) > 2*maxBatchBytes {
			l.out = nil // let a burst's buffer go
		}
		l.broadcast()
	}
	return nil
}

// fail puts the log in the failed state: Append refuses, waiters get err.
func (l *Log) fail(err error) {
	l.writeFailures.Add(1)
	if l.failure.Load() == nil {
		l.failedSince = time.Now()
		l.failedAtSeq = l.durable.Load()
		l.log.Error("audit: cannot write the audit log: refusing records (fail closed) until writing works again",
			"file", l.cfg.Path, "err", err, "retry_every", l.retryInterval)
	} else {
		l.log.Warn("audit: the audit log still cannot be written", "file", l.cfg.Path, "err", err)
	}
	l.failure.Store(&failureState{err: err})
	l.broadcast()
}

// retry reopens the current file, cuts off whatever was written after the
// last successful fsync (a failed write may have left part of a line, and
// after a failed fsync the kernel may have dropped the pages), writes the
// kept batch again and fsyncs. On success the log is healthy again and a
// log.resumed record says what happened.
func (l *Log) retry() {
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
	f, err := l.openFile(l.cfg.Path)
	if err != nil {
		l.fail(fmt.Errorf("reopening %s: %w", l.cfg.Path, err))
		return
	}
	l.file = f
	if err := lockFile(f); err != nil {
		l.log.Warn("audit: cannot lock the reopened audit file", "file", l.cfg.Path, "err", err)
	}
	info, err := f.Stat()
	if err != nil {
		l.fail(fmt.Errorf("stat of %s: %w", l.cfg.Path, err))
		return
	}
	switch size := info.Size(); {
	case size > l.syncedSize:
		if err := f.Truncate(l.syncedSize); err != nil {
			l.fail(fmt.Errorf("cutting the unsynced tail of %s: %w", l.cfg.Path, err))
			return
		}
	case size < l.syncedSize:
		l.log.Error("audit: the audit file is shorter than what was fsynced to it: something else truncated or replaced it; continuing the chain, `xmppedge audit verify` will show the break",
			"file", l.cfg.Path, "size", size, "synced", l.syncedSize)
		l.syncedSize = size
	}
	l.fileSize = l.syncedSize
	l.outWritten = 0
	if err := l.writeOut(); err != nil {
		return
	}
	if err := l.syncOut(); err != nil {
		return
	}
	from, until := l.failedAtSeq+1, l.LastSeq()
	failedFor := time.Since(l.failedSince).Round(time.Millisecond)
	cause := l.failure.Load().err
	l.failure.Store(nil)
	l.log.Info("audit: the audit log can be written again; accepting records", "file", l.cfg.Path, "failed_for", failedFor)
	reason := fmt.Sprintf("writing failed for %s from %s (%v)", failedFor, l.failedSince.UTC().Format(time.RFC3339), cause)
	if until >= from {
		reason += fmt.Sprintf("; records %d to %d were written after the outage, and callers waiting for them (sync mode) were told the write failed", from, until)
	}
	if _, err := l.Append(&Record{Event: EventLogResumed, Reason: reason}); err != nil {
		l.log.Warn("audit: cannot append the log.resumed record", "err", err)
	}
}

// rotateIfDue starts a new current file when the current one is past
// RotateSize or RotateAge. Everything written is fsynced by then.
func (l *Log) rotateIfDue(now time.Time) {
	if l.fileSize == 0 || l.file == nil || now.Before(l.rotateBlockedUntil) {
		return
	}
	sizeDue := l.cfg.RotateSize > 0 && l.fileSize >= l.cfg.RotateSize
	ageDue := l.cfg.RotateAge > 0 && !now.Before(l.fileStart.Add(l.cfg.RotateAge))
	if !sizeDue && !ageDue {
		return
	}
	if len(l.out) > 0 { // async: fsync first
		if l.writeOut() != nil || l.syncOut() != nil {
			return
		}
	}
	name := RotatedName(l.cfg.Path, now, l.fileFirstSeq)
	if _, err := os.Lstat(name); err == nil {
		l.log.Error("audit: cannot rotate: the rotated name exists already; writing on in the current file", "file", name)
		l.rotateBlockedUntil = now.Add(l.retryInterval)
		return
	}
	if err := os.Rename(l.cfg.Path, name); err != nil {
		l.log.Error("audit: cannot rotate the audit file; writing on in the current file", "file", l.cfg.Path, "err", err)
		l.rotateBlockedUntil = now.Add(l.retryInterval)
		return
	}
	l.file.Close() // everything in it is fsynced
	l.file = nil
	l.fileSize, l.syncedSize, l.fileFirstSeq = 0, 0, 0
	l.rotations.Add(1)
	dir := filepath.Dir(l.cfg.Path)
	if err := syncDir(dir); err != nil {
		l.log.Warn("audit: cannot fsync the audit folder after rotating", "dir", dir, "err", err)
	}
	f, err := l.openFile(l.cfg.Path)
	if err != nil {
		l.fail(fmt.Errorf("creating %s after rotation: %w", l.cfg.Path, err))
		return
	}
	if err := lockFile(f); err != nil {
		l.log.Warn("audit: cannot lock the new audit file", "file", l.cfg.Path, "err", err)
	}
	l.file = f
	if err := syncDir(dir); err != nil {
		l.log.Warn("audit: cannot fsync the audit folder after rotating", "dir", dir, "err", err)
	}
	l.log.Info("audit: rotated the audit file", "rotated", name)
	if l.cfg.Rotated != nil {
		l.cfg.Rotated(name)
	}
}

package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Warm-up at start: the samples of the last run (Config.SampleFile).
//
// A reload warms the new policy up with the classes the old one learnt
// (warm.go); a process that starts has no old load, so without more the
// first decision of every class after a start is a full evaluation
// (~0.5 ms with 10,000 partners). With Config.SampleFile set, the engine
// writes its samples to that file (SaveSamples: the gateway calls it after
// each reload and at shutdown) and New reads them back and decides them,
// as a reload's warm-up does, before the first load is active.
//
// The file holds what a sample holds (warm.go): addresses, ids, stanza
// kinds, children's names and payload facts; never a body, subject or
// thread (each is "." when the sample had one, and whatever text a file
// carries is read as "."). It is trusted for nothing: a sample is decided
// by the policy like any input, so a damaged or hostile file costs at
// most the warm-up's budget, never a decision. A file that cannot be read
// or parsed is logged and the engine starts cold.

const (
	// sampleFileVersion is the format written and the only one read.
	sampleFileVersion = 1
	// maxSampleFileSize bounds what New reads: maxWarmSamples of each
	// kind at a generous few KiB each.
	maxSampleFileSize = 8 << 20
)

// sampleFile is the JSON document SaveSamples writes.
type sampleFile struct {
	Version  int            `json:"version"`
	Revision string         `json:"revision"` // the policy that learnt the samples (for the operator)
	Saved    string         `json:"saved"`    // RFC 3339
	Sessions []SessionInput `json:"sessions"`
	Stanzas  []StanzaInput  `json:"stanzas"`
}

// SaveSamples writes the active policy's warm-up samples to
// Config.SampleFile (replacing it whole: a new file renamed over the old
// one, readable by the owner only). Without a SampleFile it does nothing.
func (e *Engine) SaveSamples() error {
	path := e.cfg.SampleFile
	if path == "" {
		return nil
	}
	l := e.current.Load()
	sessions, stanzas := l.warm.snapshot()
	doc := sampleFile{Version: sampleFileVersion, Revision: l.revision, Saved: time.Now().UTC().Format(time.RFC3339),
		Sessions: sessions, Stanzas: stanzas}
	b, err := json.Marshal(&doc)
	if err != nil {
		return fmt.Errorf("policy samples: encode: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("policy samples: %w (policy.warm_samples names a file in a folder xmppedge can write)", err)
	}
	defer os.Remove(tmp.Name()) // gone once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("policy samples: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("policy samples: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("policy samples: %w", err)
	}
	e.log.Debug("policy samples saved", "file", path, "sessions", len(sessions), "stanzas", len(stanzas))
	return nil
}

// readSampleFile reads the samples SaveSamples wrote to path, at most
// maxWarmSamples of each kind (the newest), with every text made warmText.
// A missing file is fs.ErrNotExist (the first start).
func readSampleFile(path string) (sessions []SessionInput, stanzas []StanzaInput, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSampleFileSize+1))
	if err != nil {
		return nil, nil, err
	}
	if len(b) > maxSampleFileSize {
		return nil, nil, fmt.Errorf("larger than %d bytes: not a file xmppedge wrote", maxSampleFileSize)
	}
	var doc sampleFile
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("not a samples file: %w", err)
	}
	if doc.Version != sampleFileVersion {
		return nil, nil, fmt.Errorf("format version %d: this xmppedge reads version %d (the file is rewritten at the next reload or shutdown)", doc.Version, sampleFileVersion)
	}
	sessions = doc.Sessions[max(0, len(doc.Sessions)-maxWarmSamples):]
	stanzas = doc.Stanzas[max(0, len(doc.Stanzas)-maxWarmSamples):]
	for i := range stanzas {
		dropText(&stanzas[i])
	}
	return sessions, stanzas, nil
}

// warmFromFile warms l, the first load (not active yet), with the samples
// of Config.SampleFile, and logs what it did.
func (e *Engine) warmFromFile(ctx context.Context, l *loaded) {
	path := e.cfg.SampleFile
	if path == "" || e.noWarmUp {
		return
	}
	sessions, stanzas, err := readSampleFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.log.Info("policy warm-up: no samples yet; they are saved at the next reload or shutdown", "file", path)
		return
	case err != nil:
		e.log.Warn("policy warm-up samples unreadable; starting cold", "file", path, "err", err)
		return
	}
	start := time.Now()
	warmed := e.warmWith(ctx, l, sessions, stanzas, e.warmBudget)
	e.warmed.Add(uint64(warmed))
	e.log.Info("policy warmed up from the last run's samples", "file", path, "warmed_classes", warmed,
		"samples", len(sessions)+len(stanzas), "warm_up", time.Since(start).Round(time.Millisecond))
}

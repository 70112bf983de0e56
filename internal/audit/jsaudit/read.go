package jsaudit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmppedge/xmppedge/internal/audit"
)

// Head is one node's chain head in the stream.
type Head struct {
	Node      string // the subject's last token
	Subject   string // xmppedge.audit.<node>
	Seq       uint64 // chain seq of the node's last record
	Hash      string // its hash
	StreamSeq uint64 // its stream sequence
}

// Heads returns every node's chain head in the stream, in node order.
func Heads(ctx context.Context, js jetstream.JetStream, streamName string) ([]Head, error) {
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("jsaudit: opening stream %s: %w", streamName, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("jsaudit: listing the subjects of stream %s: %w", streamName, err)
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		subjects = append(subjects, subj)
	}
	slices.Sort(subjects)
	heads := make([]Head, 0, len(subjects))
	for _, subj := range subjects {
		m, err := st.GetLastMsgForSubject(ctx, subj)
		if err != nil {
			return nil, fmt.Errorf("jsaudit: reading the last record of %s: %w", subj, err)
		}
		var r struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return nil, fmt.Errorf("jsaudit: the last message on %s (stream sequence %d) is not a record: %w", subj, m.Sequence, err)
		}
		heads = append(heads, Head{
			Node:      strings.TrimPrefix(subj, SubjectPrefix),
			Subject:   subj,
			Seq:       r.Seq,
			Hash:      r.Hash,
			StreamSeq: m.Sequence,
		})
	}
	return heads, nil
}

// ReadChain calls fn with each record of node's chain, in order, from the
// first the stream holds to the last it held when ReadChain started, with
// the record's exact line (without a newline), as audit.ReadRecords does
// for files. It reads with an ordered consumer (no state on the server
// beyond the read). A message that is not a record is an error naming its
// stream sequence; fn returning an error stops the reading with it. It
// does not check the chain: export and verify, or use audit.Chain.
func ReadChain(ctx context.Context, js jetstream.JetStream, streamName, node string, fn audit.RecordFunc) error {
	if err := checkNode(node); err != nil {
		return err
	}
	st, err := js.Stream(ctx, streamName)
	if err != nil {
		return fmt.Errorf("jsaudit: opening stream %s: %w", streamName, err)
	}
	subject := SubjectPrefix + node
	last, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("jsaudit: reading the last record of %s: %w", subject, err)
	}
	// Creating a consumer goes through the cluster's meta leader, which
	// may still be settling after a server came back: retry with short
	// attempts, as Open does.
	var cons jetstream.Consumer
	err = retry(ctx, "creating a reader", func(actx context.Context) error {
		c, err := st.OrderedConsumer(actx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
		cons = c
		return err
	})
	if err != nil {
		return fmt.Errorf("jsaudit: creating a reader of %s: %w", subject, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("jsaudit: starting to read %s: %w", subject, err)
	}
	defer it.Stop()
	var read int
	var at uint64
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("jsaudit: reading %s (%d records read, at stream sequence %d of %d): %w", subject, read, at, last.Sequence, err)
		}
		read++
		md, err := m.Metadata()
		if err != nil {
			return fmt.Errorf("jsaudit: reading %s: %w", subject, err)
		}
		var rec audit.Record
		if err := json.Unmarshal(m.Data(), &rec); err != nil {
			return fmt.Errorf("jsaudit: %s stream sequence %d is not a record: %w", subject, md.Sequence.Stream, err)
		}
		if err := fn(&rec, m.Data()); err != nil {
			return err
		}
		at = md.Sequence.Stream
		if md.Sequence.Stream >= last.Sequence {
			return nil
		}
	}
}

// ReadAll calls fn with every node's chain, one node after the other in
// node order, each in chain order (see ReadChain).
func ReadAll(ctx context.Context, js jetstream.JetStream, streamName string, fn audit.RecordFunc) error {
	heads, err := Heads(ctx, js, streamName)
	if err != nil {
		return err
	}
	for _, h := range heads {
		if err := ReadChain(ctx, js, streamName, h.Node, fn); err != nil {
			return err
		}
	}
	return nil
}

// Export writes each node's chain to dir/<node>.jsonl (dir is created;
// existing files are replaced), one line per record exactly as stored,
// and returns the files in node order. Each file is what the file log
// would have written for that node: audit.Verify accepts it (with the
// HMAC key if the chain has one); its first record's prev is "" unless
// the stream's retention has dropped the chain's beginning.
func Export(ctx context.Context, js jetstream.JetStream, streamName, dir string) ([]string, error) {
	heads, err := Heads(ctx, js, streamName)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("jsaudit: export: %w", err)
	}
	files := make([]string, 0, len(heads))
	for _, h := range heads {
		name := filepath.Join(dir, h.Node+".jsonl")
		if err := exportChain(ctx, js, streamName, h.Node, name); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	return files, nil
}

func exportChain(ctx context.Context, js jetstream.JetStream, streamName, node, name string) (err error) {
	tmp := name + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("jsaudit: export: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var buf []byte
	err = ReadChain(ctx, js, streamName, node, func(_ *audit.Record, line []byte) error {
		buf = append(buf, line...)
		buf = append(buf, '\n')
		if len(buf) >= 1<<20 {
			if _, err := f.Write(buf); err != nil {
				return fmt.Errorf("jsaudit: export to %s: %w", tmp, err)
			}
			buf = buf[:0]
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("jsaudit: export to %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("jsaudit: export to %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("jsaudit: export to %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("jsaudit: export: %w", err)
	}
	return nil
}

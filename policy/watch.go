package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Watch keeps the policy current until ctx ends: with a rules directory it
// polls the modification times and sizes of the .rego and data files every
// second (new and removed files included) and reloads on a change; with a
// bundle it downloads the bundle every Poll interval (conditionally, so an
// unchanged bundle is cheap) and activates a changed one. A reload that
// fails is logged and counted, and the old policy stays active.
func (e *Engine) Watch(ctx context.Context) {
	interval := e.watchInterval
	if e.bundle != nil {
		interval = e.bundle.cfg.Poll
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var last string
	if e.bundle == nil {
		last = e.fingerprint()
		// Catch a change made between the load and now.
		_, _ = e.reload(ctx, false)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if e.bundle == nil {
			fp := e.fingerprint()
			if fp == last {
				continue
			}
			last = fp
		}
		// Errors are logged and counted by reload.
		_, _ = e.reload(ctx, false)
	}
}

// fingerprint summarises the names, sizes and modification times of the
// files a rules-directory policy is made of.
func (e *Engine) fingerprint() string {
	var b strings.Builder
	files, err := regoFiles(e.cfg.Rules, false)
	if err != nil {
		fmt.Fprintf(&b, "error:%v\n", err)
	}
	for _, f := range append(files, e.cfg.Data...) {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing\n", filepath.Clean(f))
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d\n", filepath.Clean(f), fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

package loadgen

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
)

// ProcessMemory is what a process's resident memory grew by while the
// streams were open and idle (Config.Hold).
type ProcessMemory struct {
	PID    int    `json:"pid"`
	Name   string `json:"name"`
	Before int64  `json:"rss_before_kib"` // before the streams opened
	After  int64  `json:"rss_after_kib"`  // after the hold
	// PerStream is (After − Before) / streams open: what one idle
	// stream costs the process.
	PerStream float64 `json:"kib_per_stream"`
}

// ProcRSS is the resident set size of process pid, in KiB.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	kib, err := parseRSS(b)
	if err != nil {
		return 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	return kib, nil
}

// parseRSS reads the VmRSS line of a /proc/PID/status file ("VmRSS:
// 1234 kB").
func parseRSS(b []byte) (int64, error) {
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unreadable VmRSS line %q", bytes.TrimSpace(line))
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("VmRSS %q is not a size in kB", f[0])
		}
		return n, nil
	}
	return 0, fmt.Errorf("no VmRSS line (a kernel thread, or not Linux)")
}

// memorySample is the RSS of each of pids, in KiB.
func memorySample(pids []int) ([]int64, error) {
	out := make([]int64, len(pids))
	for i, pid := range pids {
		kib, err := ProcRSS(pid)
		if err != nil {
			return nil, err
		}
		out[i] = kib
	}
	return out, nil
}

// memoryGrowth is the summary's memory section: the growth of each
// process between before and after, per stream open.
func memoryGrowth(pids []int, before, after []int64, streams int) []ProcessMemory {
	out := make([]ProcessMemory, len(pids))
	for i, pid := range pids {
		_, name, _ := ProcCPU(pid)
		m := ProcessMemory{PID: pid, Name: name, Before: before[i], After: after[i]}
		if streams > 0 {
			m.PerStream = math.Round(float64(after[i]-before[i])/float64(streams)*10) / 10
		}
		out[i] = m
	}
	return out
}

package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// userHZ is the unit of the times in /proc/PID/stat: Linux reports them
// in USER_HZ, which is 100 on every architecture it runs on (the kernel
// converts from its own HZ).
const userHZ = 100

// ProcCPU is the CPU time (user + system) the process pid has used, and
// its command name.
func ProcCPU(pid int) (time.Duration, string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	cpu, comm, err := parseStat(b)
	if err != nil {
		return 0, "", fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return cpu, comm, nil
}

// parseStat reads the command name and utime+stime of a /proc/PID/stat
// line. The name is between the first '(' and the last ')' (it may hold
// spaces and parentheses); utime and stime are the 14th and 15th fields.
func parseStat(b []byte) (time.Duration, string, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return 0, "", fmt.Errorf("unreadable stat line %q", b)
	}
	comm := string(b[open+1 : end])
	fields := bytes.Fields(b[end+1:])
	// fields[0] is the state, the 3rd field: utime is the 14th.
	if len(fields) < 13 {
		return 0, "", fmt.Errorf("stat line with %d fields after the name", len(fields))
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseUint(string(f), 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("stat line: %q is not a number of ticks", f)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, comm, nil
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

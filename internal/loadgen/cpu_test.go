package loadgen

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		wantCPU  time.Duration
		wantComm string
		wantErr  bool
	}{
		{"prosody", "4242 (lua5.4) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 50 0 0 20 0 1 0 1000 100000 2000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0",
			3 * time.Second, "lua5.4", false},
		{"a name with spaces and parentheses", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 5 0 0",
			30 * time.Millisecond, "a (b) c", false},
		{"too short", "7 (x) R 1 2 3", 0, "", true},
		{"no name", "7 x R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 0, "", true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 2 0 0", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cpu, comm, err := parseStat([]byte(tt.line))
			if (err != nil) != tt.wantErr || cpu != tt.wantCPU || comm != tt.wantComm {
				t.Errorf("parseStat = %v, %q, %v; want %v, %q, error %v", cpu, comm, err, tt.wantCPU, tt.wantComm, tt.wantErr)
			}
		})
	}
}

func TestProcCPUSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	_, comm, err := ProcCPU(os.Getpid())
	if err != nil || comm == "" {
		t.Fatalf("ProcCPU(self) = %q, %v", comm, err)
	}
	if _, _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1) did not fail")
	}
}

package loadgen

import (
	"os"
	"testing"
)

func TestParseRSS(t *testing.T) {
	tests := []struct {
		name, in string
		want     int64
		wantErr  bool
	}{
		{"status", "Name:\txmppedge\nVmPeak:\t  99 kB\nVmRSS:\t   24816 kB\nRssAnon:\t 1 kB\n", 24816, false},
		{"zero", "VmRSS:\t0 kB\n", 0, false},
		{"no line", "Name:\tkthreadd\nState:\tS\n", 0, true},
		{"other unit", "VmRSS:\t12 MB\n", 0, true},
		{"not a number", "VmRSS:\tlots kB\n", 0, true},
		{"negative", "VmRSS:\t-5 kB\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRSS([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseRSS = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestProcRSS reads this process's own RSS: more than nothing.
func TestProcRSS(t *testing.T) {
	kib, err := ProcRSS(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if kib <= 0 {
		t.Errorf("ProcRSS(self) = %d KiB", kib)
	}
}

func TestMemoryGrowth(t *testing.T) {
	pid := os.Getpid()
	got := memoryGrowth([]int{pid}, []int64{1000}, []int64{1000 + 16*500}, 500)
	if len(got) != 1 || got[0].PerStream != 16 || got[0].Before != 1000 || got[0].PID != pid {
		t.Errorf("memoryGrowth = %+v, want 16 KiB per stream", got)
	}
}

package bytescan

import "testing"

// naive is Run one byte at a time.
func naive(s string, i, end int, marked *[256]uint8) int {
	for i < end && marked[s[i]] != 0 {
		i++
	}
	return i
}

func lettersTable() *[256]uint8 {
	var t [256]uint8
	for c := 'a'; c <= 'z'; c++ {
		t[c] = 1
	}
	return &t
}

func TestRun(t *testing.T) {
	letters := lettersTable()
	tests := []struct {
		s      string
		i, end int
		want   int
	}{
		{"", 0, 0, 0},
		{"abc", 0, 3, 3},
		{"abc<", 0, 4, 3},
		{"abcdefgh<", 0, 9, 8},            // the stop just past a full step
		{"abcdefg<hijk", 0, 12, 7},        // the stop at a step's last byte
		{"abcdefghijklmnop", 0, 12, 12},   // end before len
		{"<abcdefghijklmnopq", 1, 18, 18}, // from i
		{"abcdefghijklmnop7", 3, 17, 16},
	}
	for _, tc := range tests {
		if got := Run(tc.s, tc.i, tc.end, letters); got != tc.want {
			t.Errorf("Run(%q, %d, %d) = %d, want %d", tc.s, tc.i, tc.end, got, tc.want)
		}
		if got := Run([]byte(tc.s), tc.i, tc.end, letters); got != tc.want {
			t.Errorf("Run([]byte(%q), %d, %d) = %d, want %d", tc.s, tc.i, tc.end, got, tc.want)
		}
	}
}

// FuzzRun cross-checks Run with a byte-at-a-time loop.
func FuzzRun(f *testing.F) {
	f.Add("abcdefghijklmnopqrstuvwxyz<abc", uint8(0))
	f.Add("abcdefg<", uint8(3))
	f.Fuzz(func(t *testing.T, s string, start uint8) {
		letters := lettersTable()
		i := min(int(start), len(s))
		if got, want := Run(s, i, len(s), letters), naive(s, i, len(s), letters); got != want {
			t.Fatalf("Run(%q, %d) = %d, want %d", s, i, got, want)
		}
	})
}

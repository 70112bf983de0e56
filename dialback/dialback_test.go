package dialback

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestKey(t *testing.T) {
	tests := []struct {
		name                                   string
		secret, receiving, originating, stream string
		want                                   string
	}{
		{
			name:        "XEP-0185 test vector",
			secret:      "s3cr3tf0rd14lb4ck",
			receiving:   "xmpp.example.com",
			originating: "example.org",
			stream:      "D60000229F",
			want:        "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Key(tt.secret, tt.receiving, tt.originating, tt.stream)
			if got != tt.want {
				t.Fatalf("Key() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestKeyDependsOnEveryField(t *testing.T) {
	base := Key("secret", "r.example", "o.example", "id1")
	variants := map[string]string{
		"secret":      Key("secret2", "r.example", "o.example", "id1"),
		"receiving":   Key("secret", "r2.example", "o.example", "id1"),
		"originating": Key("secret", "r.example", "o2.example", "id1"),
		"stream id":   Key("secret", "r.example", "o.example", "id2"),
		"swapped":     Key("secret", "o.example", "r.example", "id1"),
	}
	for field, k := range variants {
		if k == base {
			t.Errorf("changing %s did not change the key", field)
		}
	}
	if len(base) != 64 || strings.ToLower(base) != base {
		t.Errorf("key %q is not 64 lowercase hex characters", base)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"abc", "abc", true},
		{"", "", true},
		{"abc", "abd", false},
		{"abc", "ab", false},
		{"abc", "", false},
		{"ABC", "abc", false},
	}
	for _, tt := range tests {
		if got := Equal(tt.a, tt.b); got != tt.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNewStreamIDUnique(t *testing.T) {
	const n = 10000
	seen := make(map[string]struct{}, n)
	for i := 0; i < n; i++ {
		id := NewStreamID()
		if len(id) != 32 {
			t.Fatalf("stream id %q has length %d, want 32", id, len(id))
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("stream id %q repeated after %d ids", id, i)
		}
		seen[id] = struct{}{}
	}
}

func TestLoadOrCreateSecret(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits are not meaningful on Windows")
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string) // nil: no file
		want    string                          // expected secret; "" = any new one
		wantErr string                          // substring of the error
	}{
		{name: "missing file is created"},
		{
			name: "existing file is read and trimmed",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, "  shared-secret\n\n", 0o600)
			},
			want: "shared-secret",
		},
		{
			name: "empty file",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, " \n", 0o600)
			},
			wantErr: "is empty",
		},
		{
			name: "world-readable file",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, "shared-secret", 0o644)
			},
			wantErr: "chmod 600",
		},
		{
			name: "group-readable file",
			setup: func(t *testing.T, path string) {
				writeFile(t, path, "shared-secret", 0o640)
			},
			wantErr: "accessible to group or others",
		},
		{
			name: "directory",
			setup: func(t *testing.T, path string) {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "dialback.secret")
			if tt.setup != nil {
				tt.setup(t, path)
			}
			got, err := LoadOrCreateSecret(path)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("LoadOrCreateSecret() = %q, want error containing %q", got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not contain %q and the path", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadOrCreateSecret(): %v", err)
			}
			if tt.want != "" && got != tt.want {
				t.Fatalf("secret = %q, want %q", got, tt.want)
			}
			if tt.want == "" {
				if len(got) != 64 {
					t.Fatalf("new secret %q is not 64 hex characters", got)
				}
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if perm := info.Mode().Perm(); perm != 0o600 {
					t.Fatalf("new secret file has mode %04o, want 0600", perm)
				}
			}
			again, err := LoadOrCreateSecret(path)
			if err != nil {
				t.Fatalf("second LoadOrCreateSecret(): %v", err)
			}
			if again != got {
				t.Fatalf("second call returned %q, first %q", again, got)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries, want only the secret (temporary file left behind?)", len(entries))
			}
		})
	}
}

func TestLoadOrCreateSecretRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dialback.secret")
	const racers = 16
	results := make([]string, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = LoadOrCreateSecret(path)
		}()
	}
	wg.Wait()
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Fatalf("racer %d read %q, racer 0 read %q", i, results[i], results[0])
		}
	}
}

func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // umask may have removed bits
		t.Fatal(err)
	}
}

func FuzzKey(f *testing.F) {
	f.Add("s3cr3tf0rd14lb4ck", "xmpp.example.com", "example.org", "D60000229F")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, secret, receiving, originating, streamID string) {
		k := Key(secret, receiving, originating, streamID)
		if len(k) != 64 || !Equal(k, Key(secret, receiving, originating, streamID)) {
			t.Fatalf("Key is not a stable 64-character hex string: %q", k)
		}
	})
}

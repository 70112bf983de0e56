package certs

import (
	"slices"
	"testing"
)

func TestPEMBlocks(t *testing.T) {
	const cert = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"
	const key = "-----BEGIN EC PRIVATE KEY-----\nBAUG\n-----END EC PRIVATE KEY-----\n"
	tests := []struct {
		name      string
		data      string
		wantTypes []string
	}{
		{"empty", "", nil},
		{"not PEM", "hello, world\n", nil},
		{"one block", cert, []string{"CERTIFICATE"}},
		{"two blocks in order", key + cert, []string{"EC PRIVATE KEY", "CERTIFICATE"}},
		{"text before and between blocks", "bag attributes\n" + cert + "comment\n" + key, []string{"CERTIFICATE", "EC PRIVATE KEY"}},
		{"trailing garbage", cert + "-----BEGIN BROKEN", []string{"CERTIFICATE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, b := range pemBlocks([]byte(tt.data)) {
				got = append(got, b.Type)
			}
			if !slices.Equal(got, tt.wantTypes) {
				t.Errorf("pemBlocks types = %q, want %q", got, tt.wantTypes)
			}
		})
	}
}

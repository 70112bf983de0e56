package jid

import "testing"

func BenchmarkPrepare(b *testing.B) {
	for _, bc := range []struct{ name, in string }{
		{"ascii", "alice@company.test/phone-123"},
		{"ascii-upper", "Alice@Company.Test/Phone-123"},
		{"non-ascii", "élodie@bücher.example/téléphone"},
		{"ascii-full-path", "alice@company.test/phone-123"},
	} {
		prepare := Prepare
		if bc.name == "ascii-full-path" {
			prepare = prepareFull
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := prepare(bc.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

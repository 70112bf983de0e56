//go:build !unix

package audit

// lockFile is a no-op where flock is not available.
func lockFile(auditFile) error { return nil }

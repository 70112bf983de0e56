//go:build unix

package audit

import (
	"errors"
	"syscall"
)

// lockFile takes an exclusive advisory lock (flock) on the current file so
// that a second process cannot write the same chain.
func lockFile(f auditFile) error {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return nil
	}
	err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errors.New("it is locked")
	}
	return err
}

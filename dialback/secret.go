package dialback

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// secretBytes is the number of random bytes in a generated secret.
const secretBytes = 32

// LoadOrCreateSecret returns the dialback secret stored at path, with
// surrounding white space removed.
//
// If the file does not exist, it is created with 32 random bytes, hex
// encoded, mode 0600. Creation is exclusive and atomic: the secret is
// written to a temporary file that is then hard-linked into place, so
// when two nodes race, one wins and both read the winner's secret; a
// half-written secret is never visible.
//
// It is an error if the file is empty or can be read or written by the
// group or others (the secret lets anyone who knows it impersonate the
// deployment's domains through dialback). All nodes of a deployment must
// use the same secret.
func LoadOrCreateSecret(path string) (string, error) {
	secret, err := readSecret(path)
	if err == nil {
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := createSecret(path); err != nil {
		return "", err
	}
	return readSecret(path)
}

// readSecret reads and checks an existing secret file. A missing file is
// reported with an error wrapping fs.ErrNotExist.
func readSecret(path string) (string, error) {
	// Check the type before opening: opening a FIFO would block.
	if info, err := os.Stat(path); err == nil && !info.Mode().IsRegular() {
		return "", fmt.Errorf("dialback secret %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("dialback secret %s cannot be opened: %w", path, err)
	}
	defer f.Close()

	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("dialback secret %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("dialback secret %s is not a regular file", path)
	}
	// Windows has no Unix permission bits worth checking.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("dialback secret %s has mode %04o and is accessible to group or others; fix: chmod 600 %s",
			path, info.Mode().Perm(), path)
	}
	const maxSecretFile = 64 << 10
	if info.Size() > maxSecretFile {
		return "", fmt.Errorf("dialback secret %s is %d bytes, more than the %d a secret file may hold", path, info.Size(), maxSecretFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile))
	if err != nil {
		return "", fmt.Errorf("dialback secret %s cannot be read: %w", path, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return "", fmt.Errorf("dialback secret %s is empty; fix: delete it to have a new one generated, or write the deployment's shared secret into it", path)
	}
	return secret, nil
}

// createSecret writes a new random secret to path unless a file already
// exists there. Losing a race to another process is not an error.
func createSecret(path string) error {
	var raw [secretBytes]byte
	_, _ = rand.Read(raw[:])
	content := hex.EncodeToString(raw[:]) + "\n"

	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("dialback secret %s cannot be created: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)

	// CreateTemp uses mode 0600 already; make it explicit.
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("dialback secret %s cannot be created: %w", path, err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("dialback secret %s cannot be written: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("dialback secret %s cannot be written: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dialback secret %s cannot be written: %w", path, err)
	}

	// link(2) fails if path exists: an exclusive, atomic publication.
	err = os.Link(tmpName, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	// Some file systems have no hard links: fall back to O_EXCL, which is
	// still exclusive (a racing reader may briefly see an empty file).
	f, err2 := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err2 != nil {
		if errors.Is(err2, fs.ErrExist) {
			return nil
		}
		return fmt.Errorf("dialback secret %s cannot be created: %w", path, errors.Join(err, err2))
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("dialback secret %s cannot be written: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dialback secret %s cannot be written: %w", path, err)
	}
	return nil
}

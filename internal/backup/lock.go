package backup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// errBusy is a backup location another process is writing.
var errBusy = errors.New("another backup is being made in this location (a custodia backup run, or the server's daily run)")

// lockFile holds the backup location's lock: an advisory lock on a file
// in it, which the system drops when the process dies.
type lockFile struct{ f *os.File }

// lock takes dir's lock; with wait false it answers errBusy at once when
// another process holds it.
func lock(dir string, wait bool) (*lockFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_EX
	if !wait {
		how |= syscall.LOCK_NB
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errBusy
		}
		return nil, fmt.Errorf("lock the backup location: %w", err)
	}
	return &lockFile{f}, nil
}

func (l *lockFile) unlock() { _ = l.f.Close() } // closing drops the lock

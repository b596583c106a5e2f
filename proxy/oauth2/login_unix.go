//go:build unix

package oauth2

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// giveToDirOwner hands files that `oauth login` wrote as root to the
// owner of their directory: the store directory belongs to the user the
// daemon runs as (systemd's StateDirectory=, a volume's owner), which must
// go on reading and replacing them without a restart. It returns that
// owner's uid, or -1 if nothing changed hands.
func giveToDirOwner(paths ...string) (int, error) {
	if os.Geteuid() != 0 || len(paths) == 0 {
		return -1, nil
	}
	st, err := os.Stat(filepath.Dir(paths[0]))
	if err != nil {
		return -1, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 {
		return -1, nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(sys.Uid), int(sys.Gid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return -1, err
		}
	}
	return int(sys.Uid), nil
}

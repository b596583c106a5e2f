//go:build !unix

package oauth2

// lockFile is a no-op where flock(2) is missing: only one process may
// then write a token store file at a time.
func lockFile(string) (func(), error) { return func() {}, nil }

//go:build !unix

package oauth2

// giveToDirOwner does nothing where files have no unix owner.
func giveToDirOwner(...string) (int, error) { return -1, nil }

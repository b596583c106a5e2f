//go:build !unix

package proxy

// descriptorLimit is unknown here: no derived connection limit.
func descriptorLimit() int { return 0 }

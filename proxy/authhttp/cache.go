// cache.go holds answerCache: positive answers kept for auth_http.cache_ttl,
// keyed on a keyed hash of the credentials, the client address and
// whether TLS is on, so that no password is kept as a key.

package authhttp

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey is HMAC-SHA-256 of a request's cacheKey parts.
type cacheKey [sha256.Size]byte

// answerCache is bounded in size. Every entry lives the same TTL, so the
// oldest entry is the first to expire: entries are kept in insertion
// order and the oldest goes when the cache is full.
type answerCache struct {
	ttl  time.Duration
	size int
	// secret keys the hash, random per process: a dump of the cache
	// cannot be used to test guessed passwords.
	secret [32]byte

	mu      sync.Mutex
	entries map[cacheKey]*list.Element
	order   *list.List // of *cacheEntry, oldest first
}

type cacheEntry struct {
	key     cacheKey
	answer  Answer
	expires time.Time
}

func newAnswerCache(ttl time.Duration, size int) *answerCache {
	c := &answerCache{ttl: ttl, size: size, entries: make(map[cacheKey]*list.Element), order: list.New()}
	rand.Read(c.secret[:])
	return c
}

// key hashes the parts with their lengths, so that no two requests with
// different parts share a key.
func (c *answerCache) key(r *Request) cacheKey {
	m := hmac.New(sha256.New, c.secret[:])
	for _, p := range r.cacheKey() {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		m.Write(n[:])
		m.Write([]byte(p))
	}
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// get returns the live answer for k.
func (c *answerCache) get(k cacheKey, now time.Time) (Answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return Answer{}, false
	}
	ce := e.Value.(*cacheEntry)
	if !now.Before(ce.expires) {
		c.remove(e)
		return Answer{}, false
	}
	return ce.answer, true
}

// put keeps a for the TTL, replacing an older answer for k, and drops
// expired entries and, when full, the oldest.
func (c *answerCache) put(k cacheKey, a Answer, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
	for e := c.order.Front(); e != nil; e = c.order.Front() {
		if c.order.Len() < c.size && now.Before(e.Value.(*cacheEntry).expires) {
			break
		}
		c.remove(e)
	}
	c.entries[k] = c.order.PushBack(&cacheEntry{key: k, answer: a, expires: now.Add(c.ttl)})
}

func (c *answerCache) remove(e *list.Element) {
	delete(c.entries, e.Value.(*cacheEntry).key)
	c.order.Remove(e)
}

// len counts the entries, expired ones included.
func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}

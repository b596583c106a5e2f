package state

// This file holds the Lua scripts of the Redis store. Each runs atomically
// on the server, and reads the time from the server (TIME), so replicas
// whose clocks differ still agree on every window and expiry. Each is
// idempotent for its token, so a command retried after a lost reply does
// not count twice.

import "github.com/redis/go-redis/v9"

// serverNow sets now to the server's time in milliseconds.
const serverNow = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// reserveScript: a sliding log of attempts per key, a sorted set of tokens
// scored by the time of the attempt. KEYS[1] the set; ARGV limit, window
// (ms), token. Returns 1 when the token holds an attempt, 0 when refused.
var reserveScript = redis.NewScript(serverNow + `
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 1
`)

// failScript moves a reserved attempt to the time of its failure, so that
// it counts for a whole window from then on. ARGV token, window (ms).
var failScript = redis.NewScript(serverNow + `
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now, ARGV[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
`)

// acquireSlotScript: connection slots per key, a sorted set of tokens
// scored by their expiry. ARGV limit, ttl (ms), token. Returns 1 when the
// token holds a slot, 0 when refused.
var acquireSlotScript = redis.NewScript(serverNow + `
local limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
`)

// renewSlotScript extends a slot by ttl. ARGV ttl (ms), token. Only a
// slot still in the set is extended (XX): a renewal that crosses the
// slot's release must not bring it back. A slot that expired while the
// store was away stays uncounted until its connection ends.
var renewSlotScript = redis.NewScript(serverNow + `
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
`)

// lockScript takes the lock KEYS[1] for token ARGV[1] for ARGV[2] ms.
// Returns 1 when the token holds it, 0 when another token does.
var lockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// renewLockScript extends the lock by ARGV[2] ms only while token ARGV[1]
// holds it. Returns 0 when it does not: the lease is lost.
var renewLockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// unlockScript deletes the lock only while token ARGV[1] holds it, so a
// late release never frees another session's lock.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

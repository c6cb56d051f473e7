package redisstream

import (
	"crypto/sha1"
	"encoding/hex"
)

// A script is a Lua script and its SHA-1, for EVALSHA.
type script struct{ src, sha string }

func newScript(src string) *script {
	sum := sha1.Sum([]byte(src))
	return &script{src: src, sha: hex.EncodeToString(sum[:])}
}

// Both scripts take the topic's two keys: KEYS[1] its stream, KEYS[2] its
// meta hash (fields epoch and offset); and, as ARGV[1], a new epoch for a
// topic that has none. A topic has none when its meta hash is gone (a fresh
// Redis, FLUSHALL, eviction, IdleTTL): whatever its stream still holds
// belongs to a lost history, so they delete it. Offsets are written with
// %d, never as Lua's %.14g, which turns 1e14 into "1e+14".

// appendScript appends ARGV[5..] to the topic as its newest events, oldest
// first, each with the next offset as its stream id ("<offset>-0"); trims
// the stream to ARGV[2] events; if ARGV[3] is not "0", sets both keys to
// expire after that many milliseconds; and publishes to the channel ARGV[4]
// one message with every event it appended:
//
//	<epoch> <offset of the first> <length of each, in bytes, space-separated>\n<the wire forms, concatenated>
//
// It returns {epoch, offset of the first event}.
var appendScript = newScript(`
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset')
local epoch, offset = meta[1], tonumber(meta[2])
if not epoch or not offset then
	epoch, offset = ARGV[1], 0
	redis.call('DEL', KEYS[1])
end
local first = offset + 1
local header = {epoch, string.format('%d', first)}
for i = 5, #ARGV do
	offset = offset + 1
	redis.call('XADD', KEYS[1], string.format('%d-0', offset), 'w', ARGV[i])
	header[#header + 1] = string.format('%d', #ARGV[i])
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[2])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', string.format('%d', offset))
if ARGV[3] ~= '0' then
	redis.call('PEXPIRE', KEYS[1], ARGV[3])
	redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PUBLISH', ARGV[4], table.concat(header, ' ') .. '\n' .. table.concat(ARGV, '', 5))
return {epoch, first}
`)

// readScript returns {epoch, head offset, wire forms...}: the topic's epoch
// and the offset of its newest event, then, if ARGV[3] is that epoch, the
// events from offset ARGV[4]+1 on, until they hold at least ARGV[5] bytes
// or reach the head. It returns no events when the stream no longer holds
// the event at ARGV[4]+1. A topic without an epoch gets one (ARGV[1]), and
// if ARGV[2] is not "0" its meta hash expires after that many milliseconds.
var readScript = newScript(`
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset')
local epoch, head = meta[1], tonumber(meta[2])
if not epoch or not head then
	epoch, head = ARGV[1], 0
	redis.call('DEL', KEYS[1])
	redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', '0')
	if ARGV[2] ~= '0' then
		redis.call('PEXPIRE', KEYS[2], ARGV[2])
	end
end
local out = {epoch, head}
local want = tonumber(ARGV[4]) + 1
if epoch ~= ARGV[3] or want > head then
	return out
end
local size, max = 0, tonumber(ARGV[5])
while size < max and want <= head do
	local entries = redis.call('XRANGE', KEYS[1], string.format('%d', want), '+', 'COUNT', 100)
	if #entries == 0 then
		return out
	end
	for _, e in ipairs(entries) do
		if tonumber(string.match(e[1], '^%d+')) ~= want then
			return out
		end
		out[#out + 1] = e[2][2]
		size = size + #e[2][2]
		want = want + 1
		if size >= max then
			return out
		end
	end
end
return out
`)

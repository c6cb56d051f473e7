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

// prologue begins both scripts. They take the topic's two keys: KEYS[1] its
// stream, KEYS[2] its meta hash (fields epoch and offset, the offset of its
// newest event, and writer); and ARGV[1], a new epoch, and ARGV[2] and
// ARGV[3], the caller's high-water mark: an epoch and the highest offset the
// caller has seen the topic hold in it ("" and 0 for none).
//
// The invariant: an epoch names one unbroken history, in which offsets only
// grow and each names one event for good. So the topic starts a new epoch,
// ARGV[1], with no events (forget), whenever its history may not be the one
// its offsets were given in:
//
//   - when its meta hash is gone (a fresh Redis, FLUSHALL, eviction,
//     IdleTTL);
//   - when its offset is below the caller's mark in the same epoch: Redis
//     went back in time in the same history (a RESTORE of an older DUMP),
//     and would give the offsets after it again, to other events;
//   - when an Append runs on a Redis that is not the writer that numbered
//     the topic (see appendScript).
//
// What the stream still holds then belongs to a history that may have
// forked: it is deleted. The prologue leaves the topic's epoch and newest
// offset in epoch and head, and fresh true when it started a new history
// (whose meta hash the script must write).
//
// Offsets are written with %d, never as Lua's %.14g, which turns 1e14 into
// "1e+14".
const prologue = `
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset', 'writer')
local epoch, head = meta[1], tonumber(meta[2])
local fresh = false
local function forget()
	epoch, head, fresh = ARGV[1], 0, true
	redis.call('DEL', KEYS[1])
end
if not epoch or not head or (epoch == ARGV[2] and head < tonumber(ARGV[3])) then
	forget()
end
local function replid(info)
	return string.match(info or redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
end
`

// appendScript appends ARGV[7..] to the topic as its newest events, oldest
// first, each with the next offset as its stream id ("<offset>-0"); trims
// the stream to ARGV[4] events; sets both keys to expire after ARGV[5]
// milliseconds, or, if it is "0", makes them last (a read may have made the
// meta hash, to expire); and publishes to the channel ARGV[6]
// one message with every event it appended:
//
//	<epoch> <offset of the first> <length of each, in bytes, space-separated>\n<the wire forms, concatenated>
//
// It returns {epoch, offset of the first event}.
//
// The writer field of the meta hash holds the master_replid (INFO
// replication) of the Redis that last numbered the topic's events, an id
// Redis draws anew at each start and at each promotion of a replica. When
// the script runs on another, the topic starts a new epoch: a replica
// promoted in a failover holds only what the old master had sent it, while
// the old master may have numbered more events, and may even go on doing so
// (paused past the failover, then resumed; or during a Sentinel failover,
// which does not stop it); and a Redis restarted from an RDB or AOF file may
// have lost its newest events. Neither can tell, and numbering on would give
// the lost offsets to other events. A topic whose keys moved to another
// master of a Cluster (a reshard) starts a new epoch too: the script cannot
// tell a move from a failover. Reads need no such check: until an Append
// numbers an event on the new writer, what it holds of the epoch is what
// the old writer had numbered.
//
// Only the script adds to the stream, but another client may too (an XADD
// by hand, with an automatic id, say): its entries come after the head, and
// the stream would refuse the next offset, which must follow them. When the
// first XADD is refused, the script deletes every entry after the head
// (none is an event of the topic), sets the stream's last id back to the
// head's (XSETID, Redis 7.0 or later), and adds the event again.
var appendScript = newScript(prologue + `
local info = redis.call('INFO', 'replication')
local writer = meta[3]
if not (writer and string.find(info, 'master_replid:' .. writer .. '\r\n', 1, true)) then
	local current = replid(info)
	if writer and writer ~= current and not fresh then
		forget()
	end
	writer = current
end
local offset = head
local first = offset + 1
local header = {epoch, string.format('%d', first)}
for i = 7, #ARGV do
	offset = offset + 1
	local id = string.format('%d-0', offset)
	local added = redis.pcall('XADD', KEYS[1], id, 'w', ARGV[i])
	if type(added) == 'table' and added.err then
		local top = string.format('%d-0', offset - 1)
		for _, e in ipairs(redis.call('XRANGE', KEYS[1], '(' .. top, '+')) do
			redis.call('XDEL', KEYS[1], e[1])
		end
		if offset == 1 then
			redis.call('DEL', KEYS[1])
		else
			redis.call('XSETID', KEYS[1], top, 'MAXDELETEDID', top)
		end
		redis.call('XADD', KEYS[1], id, 'w', ARGV[i])
	end
	header[#header + 1] = string.format('%d', #ARGV[i])
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[4])
redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', string.format('%d', offset), 'writer', writer)
if ARGV[5] ~= '0' then
	redis.call('PEXPIRE', KEYS[1], ARGV[5])
	redis.call('PEXPIRE', KEYS[2], ARGV[5])
else
	redis.call('PERSIST', KEYS[1])
	redis.call('PERSIST', KEYS[2])
end
redis.call('PUBLISH', ARGV[6], table.concat(header, ' ') .. '\n' .. table.concat(ARGV, '', 7))
return {epoch, first}
`)

// readScript returns {epoch, head offset, wire forms...}: the topic's epoch
// and the offset of its newest event, then, if ARGV[5] is that epoch, the
// events from offset ARGV[6]+1 on, until they hold at least ARGV[7] bytes
// or reach the head. It returns no events when the stream no longer holds
// the event at ARGV[6]+1. A topic it gives a new epoch gets a meta hash
// that expires after ARGV[4] milliseconds, so that reads alone leave no
// lasting key.
var readScript = newScript(prologue + `
if fresh then
	redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', '0', 'writer', replid())
	redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local out = {epoch, head}
local want = tonumber(ARGV[6]) + 1
if epoch ~= ARGV[5] or want > head then
	return out
end
local size, max = 0, tonumber(ARGV[7])
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

// probeScript publishes ARGV[1] to the channel KEYS[1], and returns the
// number of its receivers on this Redis. The channel is passed as a key only
// so that the script runs on a master (of the channel's slot, in a Cluster),
// as Appends do; the script touches no key.
var probeScript = newScript(`return redis.call('PUBLISH', KEYS[1], ARGV[1])`)

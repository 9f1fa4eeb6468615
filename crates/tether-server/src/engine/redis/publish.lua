-- One publication on a channel, atomically: the channel's epoch (made when
-- missing) and next offset, the publication appended to its stream (capped
-- at the history size, expiring with the history TTL), its idempotency key
-- checked and remembered, and the PUBLISH every node's subscriber reads.
--
-- KEYS[1] the channel's meta hash (epoch, offset), KEYS[2] its stream,
-- KEYS[3] the idempotency key's own key (unused without a key).
-- ARGV[1] data, ARGV[2] history size, ARGV[3] history TTL in ms (0: none),
-- ARGV[4] idempotency window in ms, ARGV[5] an epoch for a new channel,
-- ARGV[6] the pub/sub topic, ARGV[7] idempotency key ('' : none),
-- ARGV[8] conflation key ('' : none).
-- Returns {offset, epoch, 1 if the key was seen before (nothing published)}.
local meta, stream, seen = KEYS[1], KEYS[2], KEYS[3]
local data, size, ttl, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local fresh, topic, idem, key = ARGV[5], ARGV[6], ARGV[7], ARGV[8]

if idem ~= '' then
  local before = redis.call('GET', seen)
  if before then
    local space = string.find(before, ' ', 1, true)
    return {tonumber(string.sub(before, 1, space - 1)), string.sub(before, space + 1), 1}
  end
end

-- A channel without meta starts a new epoch; a stream left from an older
-- one (the meta evicted, say) is not its history.
if redis.call('HSETNX', meta, 'epoch', fresh) == 1 then
  redis.call('DEL', stream)
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = redis.call('HINCRBY', meta, 'offset', 1)

if size > 0 then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('XADD', stream, 'MAXLEN', size, offset .. '-0', 'd', data, 't', ms)
end
-- The channel lasts as long as what it holds: history for its TTL, keys for
-- their window. History without a TTL keeps it (and its offsets) for good.
if ttl > 0 or size == 0 then
  redis.call('PEXPIRE', meta, math.max(ttl, window))
  if size > 0 then redis.call('PEXPIRE', stream, ttl) end
else
  redis.call('PERSIST', meta)
  redis.call('PERSIST', stream)
end
if idem ~= '' then
  redis.call('SET', seen, offset .. ' ' .. epoch, 'PX', window)
end
redis.call('PUBLISH', topic, offset .. ' ' .. epoch .. ' ' .. string.len(key) .. ' ' .. key .. data)
return {offset, epoch, 0}

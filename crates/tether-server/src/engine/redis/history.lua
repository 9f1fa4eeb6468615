-- A channel's epoch, newest offset and retained publications after an
-- offset, read in one step so they agree with each other.
--
-- KEYS[1] the channel's meta hash, KEYS[2] its stream.
-- ARGV[1] since (-1: from the oldest), ARGV[2] limit (0: all),
-- ARGV[3] history TTL in ms (0: none), ARGV[4] an epoch for a new channel.
-- Returns {epoch, offset, complete (0/1), offset1, data1, offset2, data2, ...}.
local meta, stream = KEYS[1], KEYS[2]
local since, limit, ttl, fresh = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]

-- Reading a channel fixes its epoch, so a subscriber and the next publisher agree.
if redis.call('HSETNX', meta, 'epoch', fresh) == 1 then
  redis.call('DEL', stream)
  if ttl > 0 then redis.call('PEXPIRE', meta, ttl) end
end
local epoch = redis.call('HGET', meta, 'epoch')
local offset = tonumber(redis.call('HGET', meta, 'offset') or '0')

local out = {epoch, offset, 1}
if since >= 0 and since > offset then
  out[3] = 0
  return out
end
if since >= 0 and since == offset then
  return out
end
local from = '-'
if since >= 0 then from = (since + 1) .. '-0' end
local entries = redis.call('XRANGE', stream, from, '+')
local oldest = 0
if ttl > 0 then
  local now = redis.call('TIME')
  oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl
end
local kept = {}
for _, entry in ipairs(entries) do
  local fields, data, at = entry[2], nil, 0
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then data = fields[i + 1] elseif fields[i] == 't' then at = tonumber(fields[i + 1]) end
  end
  if at > oldest then
    local dash = string.find(entry[1], '-', 1, true)
    kept[#kept + 1] = {tonumber(string.sub(entry[1], 1, dash - 1)), data}
  end
end
if since >= 0 and (#kept == 0 or kept[1][1] ~= since + 1) then
  out[3] = 0
  return out
end
local skip = 0
if limit > 0 and #kept > limit then
  skip = #kept - limit
  out[3] = 0
end
for i = skip + 1, #kept do
  out[#out + 1] = kept[i][1]
  out[#out + 1] = kept[i][2]
end
return out

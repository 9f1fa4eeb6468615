-- Presence of one channel: who is there, each until an expiry its node keeps
-- pushing forward. Joins and leaves go out on the channel's topic, once:
-- from the script that made the change.
--
-- KEYS[1] the presence hash (client -> user, '' for none), KEYS[2] the
-- expiry sorted set (client by ms).
-- ARGV[1] what to do: 'add', 'remove', 'refresh' or 'list'; ARGV[2] how
-- long (ms) an added or refreshed entry lasts; ARGV[3] unused; ARGV[4] the
-- topic; (times are Redis's own, so the nodes' clocks do not matter)
-- ARGV[5..] for add and refresh: client, user pairs; for remove: a client.
-- A refresh puts back (and announces) a client reaped while its node was
-- away.
-- Every call first removes (and announces) who has expired.
local present, expiry = KEYS[1], KEYS[2]
local op, ttl, topic = ARGV[1], tonumber(ARGV[2]), ARGV[4]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expires = now + ttl

local function announce(kind, client, user)
  if user and user ~= '' then
    redis.call('PUBLISH', topic, kind .. ' ' .. client .. ' ' .. user)
  else
    redis.call('PUBLISH', topic, kind .. ' ' .. client)
  end
end

local function leave(client)
  local user = redis.call('HGET', present, client)
  redis.call('ZREM', expiry, client)
  if redis.call('HDEL', present, client) == 1 then
    announce('L', client, user)
  end
end

for _, client in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', now)) do
  leave(client)
end

if op == 'add' or op == 'refresh' then
  for i = 5, #ARGV - 1, 2 do
    local client, user = ARGV[i], ARGV[i + 1]
    redis.call('ZADD', expiry, expires, client)
    if redis.call('HSET', present, client, user) == 1 then
      announce('J', client, user)
    end
  end
elseif op == 'remove' then
  leave(ARGV[5])
end

-- Abandoned presence goes away by itself.
if (op == 'add' or op == 'refresh') and redis.call('EXISTS', present) == 1 then
  local keep = math.max(ttl, 1000) * 2
  redis.call('PEXPIRE', present, keep)
  redis.call('PEXPIRE', expiry, keep)
end
if op == 'list' then
  return redis.call('HGETALL', present)
end
return 0

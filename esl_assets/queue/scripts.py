"""Lua scripts that change queue state atomically on the Redis server.

A script runs without interleaving with any other command, so each one is a
transaction. Scripts build some key names from the prefix in ``ARGV[1]``
(pending lists per lane, other workers' keys); Redis Cluster accepts that
because every key of a queue shares one hash tag.

A payload is ``"<attempts> <job JSON>"``. ``attempts`` counts the deliveries
that ended without a result because the worker holding the job stopped. The
JSON has ``id``, ``lane``, ``file``, ``max_attempts``, ``settings`` (an id in
the settings hash) and ``job`` (``Job.to_dict()``). The reaper rewrites only
the count, so the JSON text never changes and ``LREM`` by value works.
"""

from __future__ import annotations

#: KEYS: known set, settings hash. ARGV: prefix, settings id, settings JSON,
#: then (job id, lane, payload) triples. Returns the number of jobs added.
ENQUEUE = """
redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
local added = 0
for i = 4, #ARGV, 3 do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then
    redis.call('RPUSH', ARGV[1] .. 'pending:' .. ARGV[i + 1], ARGV[i + 2])
    added = added + 1
  end
end
return added
"""

#: KEYS: pending list of one lane, the worker's claims list. ARGV: the maximum
#: number of jobs to move. Returns the claimed payloads, oldest first.
CLAIM = """
local claimed = {}
for i = 1, tonumber(ARGV[1]) do
  local payload = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not payload then
    break
  end
  claimed[i] = payload
end
return claimed
"""

#: KEYS: claims list, results hash, counts hash, failed list, dead list,
#: finished_per_s hash, audio pause key, images pause key. ARGV: prefix, the
#: worker's Unix second (for the rate), then (payload, job id, lane, outcome,
#: result JSON) groups. Returns the remaining pause of the audio and images
#: lanes in ms (<= 0: none).
#:
#: A result is written once: replaying the same finish (after a lost reply)
#: changes nothing, and a later ``skipped`` never replaces a ``success`` of the
#: same job. When the claim is gone, the reaper returned the job while this
#: worker still ran it, so its requeued copy is withdrawn.
FINISH = """
local deltas = {}
local finished = 0
for i = 3, #ARGV, 5 do
  local payload, id, lane = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local outcome, result = ARGV[i + 3], ARGV[i + 4]
  local removed = redis.call('LREM', KEYS[1], 1, payload)
  local previous = false
  if redis.call('HSETNX', KEYS[2], id, result) == 0 then
    previous = redis.call('HGET', KEYS[2], id)
  end
  if previous ~= result then
    if removed == 0 then
      local attempts, body = string.match(payload, '^(%d+) (.*)$')
      local requeued = (tonumber(attempts) + 1) .. ' ' .. body
      redis.call('LREM', ARGV[1] .. 'pending:' .. lane, 1, requeued)
      redis.call('LREM', KEYS[5], 1, requeued)
    end
    local keep_previous = false
    if previous then
      local previous_outcome = cjson.decode(previous)['outcome']
      if previous_outcome == 'success' and outcome == 'skipped' then
        keep_previous = true
      else
        deltas[previous_outcome] = (deltas[previous_outcome] or 0) - 1
        redis.call('HSET', KEYS[2], id, result)
      end
    end
    if not keep_previous then
      deltas[outcome] = (deltas[outcome] or 0) + 1
      if outcome == 'error' then
        redis.call('RPUSH', KEYS[4], payload)
      elseif outcome == 'dead' then
        redis.call('RPUSH', KEYS[5], payload)
      end
    end
    finished = finished + 1
  end
end
for outcome, delta in pairs(deltas) do
  if delta ~= 0 then
    redis.call('HINCRBY', KEYS[3], outcome, delta)
  end
end
if finished > 0 then
  redis.call('HINCRBY', KEYS[6], ARGV[2], finished)
end
-- Pauses are rare: one EXISTS usually replaces the two PTTL calls.
if redis.call('EXISTS', KEYS[7], KEYS[8]) == 0 then
  return {0, 0}
end
return {redis.call('PTTL', KEYS[7]), redis.call('PTTL', KEYS[8])}
"""

#: KEYS: workers hash, results hash, counts hash, dead list, finished_per_s.
#: ARGV: prefix. Returns {workers reaped, jobs requeued, jobs dead-lettered}.
#:
#: For each registered worker whose heartbeat key has expired, every claim goes
#: back to the front of its pending list with one more attempt, or to the dead
#: list when that reaches the job's max_attempts, and the worker is removed.
#: Also drops per-second finish counts older than two minutes.
REAP = """
local now_s = tonumber(redis.call('TIME')[1])
local reaped, requeued, dead = 0, 0, 0
for _, worker in ipairs(redis.call('HKEYS', KEYS[1])) do
  local base = ARGV[1] .. 'worker:' .. worker
  if redis.call('EXISTS', base .. ':heartbeat') == 0 then
    local claims = base .. ':claims'
    local payload = redis.call('RPOP', claims)
    while payload do
      local attempts_text, body = string.match(payload, '^(%d+) (.*)$')
      local job = cjson.decode(body)
      local attempts = tonumber(attempts_text) + 1
      local returned = attempts .. ' ' .. body
      if attempts >= tonumber(job['max_attempts']) then
        local previous = redis.call('HGET', KEYS[2], job['id'])
        if previous then
          redis.call('HINCRBY', KEYS[3], cjson.decode(previous)['outcome'], -1)
        end
        local result = cjson.encode({
          status = 'error', outcome = 'dead', file = job['file'],
          reason = 'worker_lost', worker = worker, attempts = attempts,
          finished_at = now_s,
          error = 'The worker holding this job stopped sending heartbeats '
            .. attempts .. ' time(s), so the job may crash workers. Check '
            .. 'the worker logs, then run esl-assets requeue --dead.'})
        redis.call('HSET', KEYS[2], job['id'], result)
        redis.call('HINCRBY', KEYS[3], 'dead', 1)
        redis.call('RPUSH', KEYS[4], returned)
        dead = dead + 1
      else
        redis.call('LPUSH', ARGV[1] .. 'pending:' .. job['lane'], returned)
        requeued = requeued + 1
      end
      payload = redis.call('RPOP', claims)
    end
    redis.call('HDEL', KEYS[1], worker)
    reaped = reaped + 1
  end
end
for _, second in ipairs(redis.call('HKEYS', KEYS[5])) do
  if tonumber(second) < now_s - 120 then
    redis.call('HDEL', KEYS[5], second)
  end
end
return {reaped, requeued, dead}
"""

#: KEYS: the worker's claims list, its heartbeat key, workers hash. ARGV:
#: prefix, worker id. Returns every claim to the front of its pending list
#: without counting an attempt, then unregisters the worker. Returns the
#: number of jobs returned.
RETIRE = """
local released = 0
local payload = redis.call('RPOP', KEYS[1])
while payload do
  local body = string.match(payload, '^%d+ (.*)$')
  redis.call('LPUSH', ARGV[1] .. 'pending:' .. cjson.decode(body)['lane'], payload)
  released = released + 1
  payload = redis.call('RPOP', KEYS[1])
end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return released
"""

#: KEYS: workers hash, then the pending lists. ARGV: prefix. Returns the
#: number of jobs pending or claimed by any registered worker.
UNFINISHED = """
local total = 0
for i = 2, #KEYS do
  total = total + redis.call('LLEN', KEYS[i])
end
for _, worker in ipairs(redis.call('HKEYS', KEYS[1])) do
  total = total + redis.call('LLEN', ARGV[1] .. 'worker:' .. worker .. ':claims')
end
return total
"""

#: KEYS: rate key of a lane, pause key of the lane. ARGV: interval between
#: requests in ms. Reserves the lane's next request slot, at least one
#: interval after the previous one and not before a pause ends, and returns
#: the ms to wait for it (Redis time, so every instance shares one clock).
RESERVE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then
  slot = now
end
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 and now + pause > slot then
  slot = now + pause
end
local next_slot = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.3f', next_slot),
  'PX', math.ceil(next_slot - now) + 60000)
return math.ceil(slot - now)
"""

#: KEYS: pause key of a lane. ARGV: pause in ms. A longer pause already set wins.
PAUSE = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1
"""

#: KEYS: source list (failed or dead), results hash, counts hash. ARGV:
#: prefix, the outcome the source list holds. Moves each job whose result
#: still has that outcome back to its pending list with zero attempts and
#: drops the others (a later run already finished them). Returns
#: {jobs requeued, stale entries dropped}.
REQUEUE = """
local moved, dropped = 0, 0
local payload = redis.call('LPOP', KEYS[1])
while payload do
  local body = string.match(payload, '^%d+ (.*)$')
  local job = cjson.decode(body)
  local previous = redis.call('HGET', KEYS[2], job['id'])
  if previous and cjson.decode(previous)['outcome'] == ARGV[2] then
    redis.call('HDEL', KEYS[2], job['id'])
    redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
    redis.call('RPUSH', ARGV[1] .. 'pending:' .. job['lane'], '0 ' .. body)
    moved = moved + 1
  else
    dropped = dropped + 1
  end
  payload = redis.call('LPOP', KEYS[1])
end
return {moved, dropped}
"""

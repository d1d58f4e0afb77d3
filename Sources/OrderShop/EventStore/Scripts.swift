import RedisClient

/// The Lua scripts that append events and update the read models in one atomic step.
///
/// Why scripts: an event and its read-model change must never be seen apart (read-your-writes
/// for every process, and no window where a crash leaves one without the other), every check
/// (exists, unique, enough stock) must hold at the moment of the write, and the version of an
/// entity must be assigned by Redis, not by whichever process raced to it.
///
/// Every script checks everything first and writes only when all checks pass: a failed command
/// changes nothing. Event ids are made by Redis (`XADD ... *`).
///
/// The last two ARGV of every writing script are the W3C `traceparent` and `tracestate` of the
/// command (each may be ""), written into every event it appends: a worker's span continues the
/// request's trace. Last, so that no script's own argument positions move.
///
/// The creating scripts take an idempotency record too (``idempotencyPrelude``): its key is their
/// last KEY, and its two ARGV come just before the trace context.
enum Scripts {
    /// Shared helpers, prepended to every writing script.
    static let prelude = """
        local traceparent, tracestate = ARGV[#ARGV - 1], ARGV[#ARGV]
        local function emit(stream, entity_id, event_id, json, version, time, trace, cause, created_seq)
          local args = {'XADD', stream, '*', 'event_id', event_id, 'entity', json, 'entity_id', entity_id,
                        'version', tostring(version), 'time', time, 'trace_id', trace}
          if cause ~= '' then
            args[#args + 1] = 'cause'
            args[#args + 1] = cause
          end
          if created_seq then
            args[#args + 1] = 'created_seq'
            args[#args + 1] = created_seq
          end
          if traceparent ~= '' then
            args[#args + 1] = 'traceparent'
            args[#args + 1] = traceparent
            if tracestate ~= '' then
              args[#args + 1] = 'tracestate'
              args[#args + 1] = tracestate
            end
          end
          return redis.call(unpack(args))
        end
        -- A name-based UUID (version 5 layout over SHA-1), for events a script makes on its own:
        -- unique because the name contains the caller's random event id.
        local function derived_uuid(name)
          local h = redis.sha1hex(name)
          return string.sub(h, 1, 8) .. '-' .. string.sub(h, 9, 12) .. '-5' .. string.sub(h, 14, 16) .. '-a' ..
            string.sub(h, 18, 20) .. '-' .. string.sub(h, 21, 32)
        end

        """

    /// A create's `Idempotency-Key` (``EventStore/CreateKey``): KEYS[#KEYS] is its record
    /// (`{T}_idempotency:<key>`, a string "<digest> <id>,<id>..." kept for the key's TTL);
    /// ARGV[#ARGV - 3] the request's digest ("" when the request has no key), ARGV[#ARGV - 2]
    /// the TTL in ms. `replay()` answers, before any check, what the first request with the key
    /// made: `{'replayed', ids...}`, or `{'keyreused', digest}` when that request's body differed
    /// (nil: no record, go on). `remember(ids)` writes the record with the command's writes.
    static let idempotencyPrelude = """
        local idem_digest, idem_ttl = ARGV[#ARGV - 3], ARGV[#ARGV - 2]
        local function replay()
          if idem_digest == '' then return nil end
          local prev = redis.call('GET', KEYS[#KEYS])
          -- 'pending ...': orders whose ids are fixed but not all made yet (OrderScripts.claim).
          if not prev or string.sub(prev, 1, 8) == 'pending ' then return nil end
          local digest, ids = string.match(prev, '^(%S+) (.*)$')
          if digest ~= idem_digest then return {'keyreused', digest} end
          local out = {'replayed'}
          for id in string.gmatch(ids, '[^,]+') do out[#out + 1] = id end
          return out
        end
        local function remember(ids)
          if idem_digest ~= '' then
            redis.call('SET', KEYS[#KEYS], idem_digest .. ' ' .. table.concat(ids, ','), 'PX', idem_ttl)
          end
        end

        """

    /// The score of a create's `i`-th entity (from 0) in the ids set `ids`, for a shop in
    /// partitions: a number drawn before from the type's counter (another slot, `first` the
    /// batch's first), as a score free in this partition, carried in the event for rebuilds
    /// (``CreationSequence``). nil with one partition (`first` nil): the caller counts with the
    /// type's own counter, in its slot.
    static let creationScorePrelude = """
        local function creation_score(ids, first, i)
          if not first then return nil end
          local base = (first + i) * \(CreationSequence.scoresPerNumber)
          local score = base
          while score < base + \(CreationSequence.scoresPerNumber - 1)
            and #redis.call('ZRANGE', ids, score, score, 'BYSCORE', 'LIMIT', 0, 1) > 0 do
            score = score + 1
          end
          return string.format('%.0f', score)
        end

        """

    /// Creates a batch of entities, all or none. Every key is in the type's slot: the referenced
    /// entities (a stock record's product, a billing's order) are checked before, by
    /// ``EventStore``.
    ///
    /// KEYS: entities, versions, ids, seq, created stream, unique index, idempotency record.
    /// ARGV: time, trace id, n, the first creation number or "" (``CreationSequence``), then n
    /// times: id, event id, json, unique value or ""; then the idempotency digest and TTL
    /// (``idempotencyPrelude``).
    /// Returns `{'ok', entry ids...}`, or `{'exists', id}`, `{'unique', value, holder}`,
    /// `{'uniqueinbatch', value}` (two of the batch share it), `{'replayed', ids...}`,
    /// `{'keyreused', digest}`.
    static let create = RedisScript(
        prelude + idempotencyPrelude + creationScorePrelude + """
            local replayed = replay()
            if replayed then return replayed end
            local time, trace, n, first = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
            local seen = {}
            for i = 0, n - 1 do
              local b = 5 + i * 4
              local id, uv = ARGV[b], ARGV[b + 3]
              if redis.call('HEXISTS', KEYS[2], id) == 1 then return {'exists', id} end
              if uv ~= '' then
                local holder = redis.call('HGET', KEYS[6], uv)
                if holder then return {'unique', uv, holder} end
                if seen[uv] then return {'uniqueinbatch', uv} end
                seen[uv] = id
              end
            end
            local out, ids = {'ok'}, {}
            for i = 0, n - 1 do
              local b = 5 + i * 4
              local id, eid, json, uv = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
              redis.call('HSET', KEYS[1], id, json)
              redis.call('HSET', KEYS[2], id, 1)
              if uv ~= '' then redis.call('HSET', KEYS[6], uv, id) end
              local created_seq = creation_score(KEYS[3], first, i)
              redis.call('ZADD', KEYS[3], created_seq or redis.call('INCR', KEYS[4]), id)
              out[#out + 1] = emit(KEYS[5], id, eid, json, 1, time, trace, '', created_seq)
              ids[#ids + 1] = id
            end
            remember(ids)
            return out
            """)

    /// Replaces one live entity (its reference checked before, as for ``create``).
    ///
    /// KEYS: entities, versions, updated stream, unique index.
    /// ARGV: id, event id, json, time, trace id, unique field or "", unique value.
    /// Returns `{'ok', entry id, version}`, or `{'notfound'}`, `{'unique', value, holder}`.
    static let update = RedisScript(
        prelude + """
            local id = ARGV[1]
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            local field, uv = ARGV[6], ARGV[7]
            if field ~= '' then
              local ov = cjson.decode(old)[field]
              if ov ~= uv then
                local holder = redis.call('HGET', KEYS[4], uv)
                if holder and holder ~= id then return {'unique', uv, holder} end
                if ov and redis.call('HGET', KEYS[4], ov) == id then redis.call('HDEL', KEYS[4], ov) end
                redis.call('HSET', KEYS[4], uv, id)
              end
            end
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HSET', KEYS[1], id, ARGV[3])
            return {'ok', emit(KEYS[3], id, ARGV[2], ARGV[3], v, ARGV[4], ARGV[5], ''), v}
            """)

    /// Deletes one live entity; its last state stays as a tombstone.
    ///
    /// KEYS: entities, versions, ids, tombstones, deleted stream, unique index.
    /// ARGV: id, event id, time, trace id, unique field or "".
    /// Returns `{'ok', entry id, version}` or `{'notfound'}`.
    static let delete = RedisScript(
        prelude + """
            local id = ARGV[1]
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HDEL', KEYS[1], id)
            redis.call('ZREM', KEYS[3], id)
            redis.call('HSET', KEYS[4], id, old)
            if ARGV[5] ~= '' then
              local ov = cjson.decode(old)[ARGV[5]]
              if ov and redis.call('HGET', KEYS[6], ov) == id then redis.call('HDEL', KEYS[6], ov) end
            end
            return {'ok', emit(KEYS[5], id, ARGV[2], old, v, ARGV[3], ARGV[4], ''), v}
            """)

    // MARK: Queries

    /// One page of live entities in creation order: those whose score in the ids set is above
    /// ARGV[1] (a `ZRANGE BYSCORE` bound: `-inf`, or `(<score>` for after that score), at most
    /// ARGV[2] of them. KEYS: ids, entities, generation (``ReadModelKeys/generation``).
    /// Returns `{generation, last score or false, ids read, id, score, json, id, score, json,
    /// ...}`: fewer ids read than asked means the last page.
    static let page = RedisScript(
        """
        local generation = redis.call('GET', KEYS[3]) or '0'
        local read = redis.call('ZRANGE', KEYS[1], ARGV[1], '+inf', 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]), 'WITHSCORES')
        local n = #read / 2
        if n == 0 then return {generation, false, 0} end
        local ids = {}
        for i = 1, #read, 2 do ids[#ids + 1] = read[i] end
        local out = {generation, read[#read], n}
        for i, v in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do
          if v then
            out[#out + 1] = ids[i]
            out[#out + 1] = read[i * 2]
            out[#out + 1] = v
          end
        end
        return out
        """)

    /// For each id of ARGV, 1 when it is a field of the hash KEYS[1], else 0.
    static let present = RedisScript(
        """
        local out = {}
        for i, id in ipairs(ARGV) do out[i] = redis.call('HEXISTS', KEYS[1], id) end
        return out
        """)

    /// One live entity's JSON, or nil. KEYS: entities. ARGV: id. (A plain HGET, as a script for
    /// the confirmed read of ``ReadModel``.)
    static let one = RedisScript("return redis.call('HGET', KEYS[1], ARGV[1])")

    /// An entity, live or deleted: `{json, 'live'|'deleted'}` or nil. KEYS: entities, tombstones. ARGV: id.
    static let lookup = RedisScript(
        """
        local v = redis.call('HGET', KEYS[1], ARGV[1])
        if v then return {v, 'live'} end
        v = redis.call('HGET', KEYS[2], ARGV[1])
        if v then return {v, 'deleted'} end
        return false
        """)

    /// The first of ARGV that is not a field of the hash KEYS[1], or nil.
    static let firstMissing = RedisScript(
        """
        for _, id in ipairs(ARGV) do
          if redis.call('HEXISTS', KEYS[1], id) == 0 then return id end
        end
        return false
        """)
}

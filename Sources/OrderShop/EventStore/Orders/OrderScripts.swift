import RedisClient

/// The scripts of an order change, each touching the keys of one slot only: a stock
/// partition's (`{inventory}` with one partition) or an order partition's (`{order}`). See
/// ``OrderSteps`` for how they make one change.
enum OrderScripts {
    /// How long an order-slot decision is kept: a committed one when nobody cleaned it up (a
    /// process died after the decision), which must outlive any reservation still waiting for
    /// it; an aborted one always, so that a process stalled past the reaper's grace time finds
    /// it when it comes back (one that comes back later than this would make its change without
    /// the stock it reserved). A day, like the idempotency records. Aborts are rare (a crash or a
    /// stall between two steps), so these keys are few.
    static let decisionTTLms = 24 * 3600 * 1000

    /// Stock moves, shared by ``prepare`` and ``finish``, in one stock partition
    /// (``OrderStepKeys/inventory(in:)``). KEYS: [1] inventory entities,
    /// [2] inventory versions, [3] inventory unique (product id -> inventory id), [4] the
    /// inventory_updated stream, [5] reservations (hash rid -> record), [6] open reservations
    /// (sorted set rid -> Redis time in ms when it was prepared).
    static let inventoryPrelude = Scripts.prelude + """
        -- The units in stock of a product (0 without a stock record).
        local function in_stock(pid)
          local inv_id = redis.call('HGET', KEYS[3], pid)
          local inv = inv_id and redis.call('HGET', KEYS[1], inv_id)
          return inv and cjson.decode(inv).amount or 0
        end
        -- Takes (d > 0) or returns (d < 0) units of a product, with its inventory_updated event.
        -- A product whose stock record was deleted meanwhile has nothing to return units to.
        local function move(pid, d, name, time, trace, cause)
          local inv_id = redis.call('HGET', KEYS[3], pid)
          local inv = inv_id and redis.call('HGET', KEYS[1], inv_id)
          if not inv then return end
          local amount = cjson.decode(inv).amount - d
          local json = '{"id":' .. cjson.encode(inv_id) .. ',"product_id":' .. cjson.encode(pid) ..
            ',"amount":' .. string.format('%d', amount) .. '}'
          local v = redis.call('HINCRBY', KEYS[2], inv_id, 1)
          redis.call('HSET', KEYS[1], inv_id, json)
          emit(KEYS[4], inv_id, derived_uuid(name .. ':' .. inv_id), json, v, time, trace, cause)
        end
        local function redis_ms()
          local t = redis.call('TIME')
          return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        end

        """

    /// Step 1 of an order change, in one stock partition: records each reservation's part there
    /// and takes its units, all or none. A reservation already recorded, or ended with an "ended"
    /// mark (a keyed create's retry with the same rid), is left as it is and takes nothing again.
    ///
    /// KEYS: ``inventoryPrelude``, then the n reservations' ended marks
    /// (``OrderStepKeys/ended(_:in:)``). ARGV: time, n, then n times: rid, order id, action,
    /// event id, trace id, keep ("1": leave an ended mark, for a keyed create's rids), the stock
    /// partitions the reservation has parts in ("0,3": the reaper ends them all), m, m times
    /// (product id, units to take), g, g times (product id, units to give back once the change
    /// is committed); then traceparent, tracestate.
    /// Returns `{'ok'}` or `{'stock', product id, available, wanted}`.
    static let prepare = RedisScript(
        inventoryPrelude + """
            local time, n, b = ARGV[1], tonumber(ARGV[2]), 3
            local fresh, total = {}, {}
            for i = 1, n do
              local r = {rid = ARGV[b], order = ARGV[b + 1], action = ARGV[b + 2], eid = ARGV[b + 3], trace = ARGV[b + 4],
                         keep = ARGV[b + 5] == '1', parts = ARGV[b + 6], take = {}, give = {}, tp = traceparent, ts = tracestate}
              b = b + 7
              local m = tonumber(ARGV[b])
              b = b + 1
              for j = 1, m do r.take[ARGV[b]] = tonumber(ARGV[b + 1]); b = b + 2 end
              local g = tonumber(ARGV[b])
              b = b + 1
              for j = 1, g do r.give[ARGV[b]] = tonumber(ARGV[b + 1]); b = b + 2 end
              if redis.call('HEXISTS', KEYS[5], r.rid) == 0 and redis.call('EXISTS', KEYS[6 + i]) == 0 then
                fresh[#fresh + 1] = r
                for pid, u in pairs(r.take) do total[pid] = (total[pid] or 0) + u end
              end
            end
            for pid, d in pairs(total) do
              local amount = in_stock(pid)
              if amount < d then return {'stock', pid, tostring(amount), tostring(d)} end
            end
            local now = redis_ms()
            for _, r in ipairs(fresh) do
              for pid, u in pairs(r.take) do move(pid, u, r.eid, time, r.trace, 'order_' .. r.action .. ':' .. r.order) end
              redis.call('HSET', KEYS[5], r.rid, cjson.encode(r))
              redis.call('ZADD', KEYS[6], now, r.rid)
            end
            return {'ok'}
            """)

    /// ``prepare`` without its stock check: the planted bug ``OrderChangePlantedBug/oversells``.
    static let preparePlantedOversells: RedisScript = {
        let check = "if amount < d then return {'stock'"
        precondition(prepare.source.contains(check), "the planted oversell must remove prepare's stock check")
        return RedisScript(prepare.source.replacingOccurrences(of: check, with: "if false then return {'stock'"))
    }()

    /// Step 3, in one stock partition: ends reservations' parts by their decisions. Committed: gives
    /// back the units the change returns (an update's or a deletion's); aborted: gives back the
    /// units it took. Either way the reservation is gone; one that is gone already is skipped.
    ///
    /// A reservation made with `keep` leaves its ended mark (the decision, for a day).
    ///
    /// KEYS: ``inventoryPrelude``, then the n reservations' ended marks. ARGV: time, n, then n
    /// times: rid, 'committed' or 'aborted'; then traceparent, tracestate (unused: each event
    /// carries its reservation's).
    /// Returns `{'ok', n ended, the rids ended...}`.
    static let finish = RedisScript(
        inventoryPrelude + """
            local time, n, ended = ARGV[1], tonumber(ARGV[2]), {'ok', 0}
            for i = 0, n - 1 do
              local rid, decision = ARGV[3 + i * 2], ARGV[4 + i * 2]
              local raw = redis.call('HGET', KEYS[5], rid)
              if raw then
                local r = cjson.decode(raw)
                traceparent, tracestate = r.tp or '', r.ts or ''
                if decision == 'committed' then
                  for pid, u in pairs(r.give) do move(pid, -u, r.eid, time, r.trace, 'order_' .. r.action .. ':' .. r.order) end
                else
                  for pid, u in pairs(r.take) do move(pid, -u, r.eid .. ':aborted', time, r.trace, 'order_aborted:' .. r.order) end
                end
                redis.call('HDEL', KEYS[5], rid)
                if r.keep then redis.call('SET', KEYS[7 + i], decision, 'PX', \(decisionTTLms)) end
                ended[2] = ended[2] + 1
                ended[#ended + 1] = rid
              end
              redis.call('ZREM', KEYS[6], rid)
            end
            return ended
            """)

    /// The reservations of one stock partition prepared more than ARGV[1] ms ago (Redis's
    /// clock), at most ARGV[2], each with the stock partitions it has parts in ("" when its
    /// record is gone or older than parts). KEYS: open reservations, reservations.
    /// Returns `{rid, parts, rid, parts, ...}`.
    static let due = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local out = {}
        for _, rid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))) do
          local raw = redis.call('HGET', KEYS[2], rid)
          local parts = raw and cjson.decode(raw).parts
          out[#out + 1] = rid
          out[#out + 1] = type(parts) == 'string' and parts or ''
        end
        return out
        """)

    /// Step 2 for a reservation whose change will not be made (refused, or found by the reaper),
    /// in its order partition: its decision becomes 'aborted' unless it was made already. KEYS:
    /// the decision keys, then the partition's count of the reaper's aborts
    /// (``OrderStepKeys/reaperAborts(in:)``), which ARGV[1] = '1' (the reaper) adds each one it
    /// made to. Returns each decision key's decision: 'committed' or 'aborted'.
    static let abort = RedisScript(
        """
        local out = {}
        for i = 1, #KEYS - 1 do
          local d = redis.call('GET', KEYS[i])
          if not d then
            d = 'aborted'
            redis.call('SET', KEYS[i], d, 'PX', \(decisionTTLms))
            if ARGV[1] == '1' then redis.call('INCR', KEYS[#KEYS]) end
          end
          out[i] = d
        end
        return out
        """)

    /// A keyed create of orders, before its reservations: the ids it makes are fixed in the
    /// key's record (`pending <digest> <ids>`), so that a retry reserves for the same orders
    /// instead of taking the stock again for new ones.
    ///
    /// KEYS: the idempotency record. ARGV: digest, TTL in ms, the ids to replace ("" or the
    /// pending ids whose reservations were aborted), the proposed ids (comma-separated).
    /// Returns `{'claimed'}` (use the proposed ids), `{'pending', ids...}` (use these),
    /// `{'replayed', ids...}` (made already) or `{'keyreused', digest}`.
    static let claim = RedisScript(
        """
        local prev = redis.call('GET', KEYS[1])
        local function list(tag, ids)
          local out = {tag}
          for id in string.gmatch(ids, '[^,]+') do out[#out + 1] = id end
          return out
        end
        if prev then
          local digest, ids = string.match(prev, '^pending (%S+) (.*)$')
          if not digest then
            digest, ids = string.match(prev, '^(%S+) (.*)$')
            if digest ~= ARGV[1] then return {'keyreused', digest} end
            return list('replayed', ids)
          end
          if digest ~= ARGV[1] then return {'keyreused', digest} end
          if ids ~= ARGV[3] then return list('pending', ids) end
        end
        redis.call('SET', KEYS[1], 'pending ' .. ARGV[1] .. ' ' .. ARGV[4], 'PX', tonumber(ARGV[2]))
        return {'claimed'}
        """)

    /// Step 2 of creating orders, in their order partition: writes them and commits their
    /// reservations (rid = order id), unless one was aborted already.
    ///
    /// KEYS: order entities, versions, ids, seq, created stream, n decision keys, then the
    /// idempotency record (last, as ``Scripts/idempotencyPrelude`` takes it). ARGV: time, trace
    /// id, n, the first creation number or "" (``CreationSequence``), n times (id, event id,
    /// json); then the idempotency digest and TTL (``Scripts/idempotencyPrelude``), traceparent,
    /// tracestate.
    /// Returns `{'ok', entry ids...}`, `{'aborted', id}`, `{'exists', id}`, `{'replayed', ids...}`
    /// or `{'keyreused', digest}`.
    static let createOrders = RedisScript(
        Scripts.prelude + Scripts.idempotencyPrelude + Scripts.creationScorePrelude + """
            local replayed = replay()
            if replayed then return replayed end
            local time, trace, n, first = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
            for i = 0, n - 1 do
              local id = ARGV[5 + i * 3]
              if redis.call('GET', KEYS[6 + i]) == 'aborted' then return {'aborted', id} end
              if redis.call('HEXISTS', KEYS[2], id) == 1 then return {'exists', id} end
            end
            local out, ids = {'ok'}, {}
            for i = 0, n - 1 do
              local id, eid, json = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
              redis.call('HSET', KEYS[1], id, json)
              redis.call('HSET', KEYS[2], id, 1)
              local created_seq = creation_score(KEYS[3], first, i)
              redis.call('ZADD', KEYS[3], created_seq or redis.call('INCR', KEYS[4]), id)
              redis.call('SET', KEYS[6 + i], 'committed', 'PX', \(decisionTTLms))
              out[#out + 1] = emit(KEYS[5], id, eid, json, 1, time, trace, '', created_seq)
              ids[#ids + 1] = id
            end
            remember(ids)
            return out
            """)

    /// Step 2 of replacing an order, in its order partition: only if its version is still the one
    /// its reservation was made for, and the reservation was not aborted.
    ///
    /// KEYS: order entities, versions, updated stream, decision key. ARGV: id, event id, json,
    /// time, trace id, expected version; traceparent, tracestate.
    /// Returns `{'ok', entry id, version}`, `{'notfound'}`, `{'changed'}` or `{'aborted'}`.
    static let updateOrder = RedisScript(
        Scripts.prelude + """
            if redis.call('GET', KEYS[4]) == 'aborted' then return {'aborted'} end
            local id = ARGV[1]
            if not redis.call('HGET', KEYS[1], id) then return {'notfound'} end
            if redis.call('HGET', KEYS[2], id) ~= ARGV[6] then return {'changed'} end
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HSET', KEYS[1], id, ARGV[3])
            redis.call('SET', KEYS[4], 'committed', 'PX', \(decisionTTLms))
            return {'ok', emit(KEYS[3], id, ARGV[2], ARGV[3], v, ARGV[4], ARGV[5], ''), v}
            """)

    /// Step 2 of deleting an order, in its order partition (as ``updateOrder``).
    ///
    /// KEYS: order entities, versions, ids, tombstones, deleted stream, decision key.
    /// ARGV: id, event id, time, trace id, expected version; traceparent, tracestate.
    /// Returns `{'ok', entry id, version}`, `{'notfound'}`, `{'changed'}` or `{'aborted'}`.
    static let deleteOrder = RedisScript(
        Scripts.prelude + """
            if redis.call('GET', KEYS[6]) == 'aborted' then return {'aborted'} end
            local id = ARGV[1]
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            if redis.call('HGET', KEYS[2], id) ~= ARGV[5] then return {'changed'} end
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HDEL', KEYS[1], id)
            redis.call('ZREM', KEYS[3], id)
            redis.call('HSET', KEYS[4], id, old)
            redis.call('SET', KEYS[6], 'committed', 'PX', \(decisionTTLms))
            return {'ok', emit(KEYS[5], id, ARGV[2], old, v, ARGV[3], ARGV[4], ''), v}
            """)

    /// A live order and its version: `{json, version}` or nil. KEYS: order entities, versions. ARGV: id.
    static let state = RedisScript(
        """
        local v = redis.call('HGET', KEYS[1], ARGV[1])
        if not v then return false end
        return {v, redis.call('HGET', KEYS[2], ARGV[1])}
        """)
}

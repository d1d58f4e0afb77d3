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
        local function emit(stream, entity_id, event_id, json, version, time, trace, cause)
          local args = {'XADD', stream, '*', 'event_id', event_id, 'entity', json, 'entity_id', entity_id,
                        'version', tostring(version), 'time', time, 'trace_id', trace}
          if cause ~= '' then
            args[#args + 1] = 'cause'
            args[#args + 1] = cause
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
          if not prev then return nil end
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

    /// Creates a batch of entities, all or none.
    ///
    /// KEYS: entities, versions, ids, seq, created stream, unique index, referenced entities,
    /// idempotency record. ARGV: time, trace id, n, then n times: id, event id, json, unique
    /// value or "", referenced id or ""; then the idempotency digest and TTL (``idempotencyPrelude``).
    /// Returns `{'ok', entry ids...}`, or `{'exists', id}`, `{'unique', value, holder}`,
    /// `{'reference', id, item}`, `{'replayed', ids...}`, `{'keyreused', digest}`.
    static let create = RedisScript(
        prelude + idempotencyPrelude + """
            local replayed = replay()
            if replayed then return replayed end
            local time, trace, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
            local seen = {}
            for i = 0, n - 1 do
              local b = 4 + i * 5
              local id, uv, rv = ARGV[b], ARGV[b + 3], ARGV[b + 4]
              if redis.call('HEXISTS', KEYS[2], id) == 1 then return {'exists', id} end
              if uv ~= '' then
                local holder = redis.call('HGET', KEYS[6], uv) or seen[uv]
                if holder then return {'unique', uv, holder} end
                seen[uv] = id
              end
              if rv ~= '' and redis.call('HEXISTS', KEYS[7], rv) == 0 then return {'reference', rv, tostring(i)} end
            end
            local out, ids = {'ok'}, {}
            for i = 0, n - 1 do
              local b = 4 + i * 5
              local id, eid, json, uv = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
              redis.call('HSET', KEYS[1], id, json)
              redis.call('HSET', KEYS[2], id, 1)
              redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), id)
              if uv ~= '' then redis.call('HSET', KEYS[6], uv, id) end
              out[#out + 1] = emit(KEYS[5], id, eid, json, 1, time, trace, '')
              ids[#ids + 1] = id
            end
            remember(ids)
            return out
            """)

    /// Replaces one live entity.
    ///
    /// KEYS: entities, versions, updated stream, unique index, referenced entities.
    /// ARGV: id, event id, json, time, trace id, unique field or "", unique value, referenced id or "".
    /// Returns `{'ok', entry id, version}`, or `{'notfound'}`, `{'unique', value, holder}`, `{'reference', id}`.
    static let update = RedisScript(
        prelude + """
            local id = ARGV[1]
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            local field, uv, rv = ARGV[6], ARGV[7], ARGV[8]
            if rv ~= '' and redis.call('HEXISTS', KEYS[5], rv) == 0 then return {'reference', rv} end
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

    // MARK: Orders and stock

    /// Stock helpers shared by the order scripts. Order keys come first, then inventory, then customers:
    /// KEYS[1] order entities, [2] order versions, [3] order ids, [4] order seq, [5] order tombstones,
    /// [6] order created, [7] order updated, [8] order deleted, [9] inventory entities,
    /// [10] inventory versions, [11] inventory unique (product id -> inventory id),
    /// [12] inventory updated stream, [13] customer entities, [14] product entities.
    static let stockPrelude = prelude + """
        local function units(pids)
          local u = {}
          for _, pid in ipairs(pids) do u[pid] = (u[pid] or 0) + 1 end
          return u
        end
        -- Returns nil when every positive change can be taken from stock, else the reason.
        local function check_stock(delta)
          for pid, d in pairs(delta) do
            if d > 0 then
              local inv_id = redis.call('HGET', KEYS[11], pid)
              local inv = inv_id and redis.call('HGET', KEYS[9], inv_id)
              local amount = inv and cjson.decode(inv).amount or 0
              if amount < d then return {'stock', pid, tostring(amount), tostring(d)} end
            end
          end
          return nil
        end
        -- The first product that is not live (never created, or deleted) among those the delta
        -- takes units of: an order may keep units of a product deleted since, but not add any.
        local function check_products(delta)
          for pid, d in pairs(delta) do
            if d > 0 and redis.call('HEXISTS', KEYS[14], pid) == 0 then return {'product', pid} end
          end
          return nil
        end
        -- Takes (positive) or returns (negative) units; one inventory_updated event per product.
        local function apply_stock(delta, event_id, time, trace, cause)
          for pid, d in pairs(delta) do
            if d ~= 0 then
              local inv_id = redis.call('HGET', KEYS[11], pid)
              local inv = inv_id and redis.call('HGET', KEYS[9], inv_id)
              if inv then
                local amount = cjson.decode(inv).amount - d
                local json = '{"id":' .. cjson.encode(inv_id) .. ',"product_id":' .. cjson.encode(pid) ..
                  ',"amount":' .. string.format('%d', amount) .. '}'
                local v = redis.call('HINCRBY', KEYS[10], inv_id, 1)
                redis.call('HSET', KEYS[9], inv_id, json)
                emit(KEYS[12], inv_id, derived_uuid(event_id .. ':' .. inv_id), json, v, time, trace, cause)
              end
            end
          end
        end
        -- Reads `k, pid1..pidk` from ARGV at position b; returns the list and the next position.
        local function read_pids(b)
          local k = tonumber(ARGV[b])
          local pids = {}
          for j = 1, k do pids[j] = ARGV[b + j] end
          return pids, b + k + 1
        end

        """

    /// Creates a batch of orders: checks every customer and the stock for all of them, then takes
    /// the stock and appends the order_created events, in one step. Not enough stock: nothing changes.
    ///
    /// KEYS: the order keys (``stockPrelude``), then the idempotency record (KEYS[15]).
    /// ARGV: time, trace id, n, then n times: id, event id, json, customer id, k, k product ids;
    /// then the idempotency digest and TTL (``idempotencyPrelude``).
    /// Returns `{'ok', entry ids...}`, `{'customer', id}`, `{'product', id}` (not live), `{'stock', product id,
    /// available, wanted}`, `{'exists', id}`, `{'replayed', ids...}` or `{'keyreused', digest}`.
    static let createOrders = RedisScript(
        stockPrelude + idempotencyPrelude + """
            local replayed = replay()
            if replayed then return replayed end
            local time, trace, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
            local orders, total, b = {}, {}, 4
            for i = 1, n do
              local o = {id = ARGV[b], eid = ARGV[b + 1], json = ARGV[b + 2], customer = ARGV[b + 3]}
              o.pids, b = read_pids(b + 4)
              if redis.call('HEXISTS', KEYS[2], o.id) == 1 then return {'exists', o.id} end
              if redis.call('HEXISTS', KEYS[13], o.customer) == 0 then return {'customer', o.customer} end
              o.units = units(o.pids)
              for pid, u in pairs(o.units) do total[pid] = (total[pid] or 0) + u end
              orders[i] = o
            end
            local short = check_products(total) or check_stock(total)
            if short then return short end
            local out, ids = {'ok'}, {}
            for _, o in ipairs(orders) do
              apply_stock(o.units, o.eid, time, trace, 'order_created:' .. o.id)
              redis.call('HSET', KEYS[1], o.id, o.json)
              redis.call('HSET', KEYS[2], o.id, 1)
              redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[4]), o.id)
              out[#out + 1] = emit(KEYS[6], o.id, o.eid, o.json, 1, time, trace, '')
              ids[#ids + 1] = o.id
            end
            remember(ids)
            return out
            """)

    /// Replaces an order: returns the units of its old products and takes those of the new ones,
    /// as one net change checked against the stock. A changed customer must exist.
    ///
    /// ARGV: id, event id, json, time, trace id, customer id, k, k product ids.
    /// Returns `{'ok', entry id, version}`, `{'notfound'}`, `{'customer', id}`, `{'product', id}` or `{'stock', ...}`.
    static let updateOrder = RedisScript(
        stockPrelude + """
            local id, eid, json, time, trace, customer = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
            local pids = read_pids(7)
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            local previous = cjson.decode(old)
            -- A new customer must exist; an order may keep the customer it has, even one who left.
            if customer ~= previous.customer_id and redis.call('HEXISTS', KEYS[13], customer) == 0 then
              return {'customer', customer}
            end
            local delta = units(pids)
            for pid, u in pairs(units(previous.product_ids)) do delta[pid] = (delta[pid] or 0) - u end
            local short = check_products(delta) or check_stock(delta)
            if short then return short end
            apply_stock(delta, eid, time, trace, 'order_updated:' .. id)
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HSET', KEYS[1], id, json)
            return {'ok', emit(KEYS[7], id, eid, json, v, time, trace, ''), v}
            """)

    /// Deletes an order and returns its units to stock.
    ///
    /// ARGV: id, event id, time, trace id. Returns `{'ok', entry id, version}` or `{'notfound'}`.
    static let deleteOrder = RedisScript(
        stockPrelude + """
            local id, eid, time, trace = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
            local old = redis.call('HGET', KEYS[1], id)
            if not old then return {'notfound'} end
            local delta = {}
            for pid, u in pairs(units(cjson.decode(old).product_ids)) do delta[pid] = -u end
            apply_stock(delta, eid, time, trace, 'order_deleted:' .. id)
            local v = redis.call('HINCRBY', KEYS[2], id, 1)
            redis.call('HDEL', KEYS[1], id)
            redis.call('ZREM', KEYS[3], id)
            redis.call('HSET', KEYS[5], id, old)
            return {'ok', emit(KEYS[8], id, eid, old, v, time, trace, ''), v}
            """)

    // MARK: Queries

    /// Every live entity's JSON, in creation order. KEYS: ids, entities.
    static let all = RedisScript(
        """
        local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
        local out = {}
        for i = 1, #ids, 500 do
          local chunk = {}
          for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
          for _, v in ipairs(redis.call('HMGET', KEYS[2], unpack(chunk))) do
            if v then out[#out + 1] = v end
          end
        end
        return out
        """)

    /// Live orders that no live billing refers to, in creation order.
    /// KEYS: order ids, order entities, billing unique index (order id -> billing id).
    static let unbilled = RedisScript(
        """
        local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
        local out = {}
        for _, id in ipairs(ids) do
          if redis.call('HEXISTS', KEYS[3], id) == 0 then
            local v = redis.call('HGET', KEYS[2], id)
            if v then out[#out + 1] = v end
          end
        end
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
}

import RedisClient

/// The Lua scripts of the worker runtime. Each runs atomically in Redis, so that checking who
/// owns an entry and acting on it cannot be interleaved with another consumer's claim.
///
/// Every script reads its stream as KEYS[1]; other keys it writes (markers, dead letters) share
/// the stream's hash slot (see ``StreamKeys``). Handler effects are the exception: they touch
/// whatever keys the handler names.
enum WorkerScripts {
    /// Which of `ids` (ascending) this consumer still owns, looked up run by run: `ends` are the
    /// indexes where runs end, a run being ids with none of this consumer's other entries in
    /// between (the caller knows what it holds), so that each XPENDING range returns little
    /// more than the run itself (its reply, converted for Lua entry by entry, was the largest
    /// part of the settle's cost when one range spanned the entries still in flight). The lease
    /// refresh passes all it holds as one run.
    private static let ownedRunsHelper = """
        local function owned_runs(stream, group, consumer, ids, ends)
          local set = {}
          local first = 1
          for _, last in ipairs(ends) do
            if last < first then break end
            local limit = last - first + 1 + 64
            local res = redis.call('XPENDING', stream, group, ids[first], ids[last], limit, consumer)
            for _, e in ipairs(res) do set[e[1]] = true end
            if #res >= limit then
              -- More of ours in that range than asked for: look the rest up one by one.
              for i = first, last do
                if not set[ids[i]] and #redis.call('XPENDING', stream, group, ids[i], ids[i], 1, consumer) > 0 then
                  set[ids[i]] = true
                end
              end
            end
            first = last + 1
          end
          return set
        end
        """

    /// Idempotent settle of a batch.
    ///
    /// KEYS: stream, the current marker hash, the previous one, the stale one (see
    /// ``IdempotencyMarkers``). ARGV: group, consumer, the current hash's expiry (ms since
    /// 1970), entry count n, run count r, r run ends (1-based entry indexes, see
    /// `owned_runs`), then per entry: id, event id, effect count, and per effect: argument
    /// count, arguments. Ids must be in ascending order. Returns one result per entry:
    /// 1 applied, 2 duplicate (marker existed: acked, effects skipped),
    /// 3 foreign (another consumer owns it now: nothing applied or acked),
    /// 4 already settled (not pending any more and its marker exists),
    /// {5, effects run, error} effects failed: one of its effects got an error reply; the
    /// effects before it were applied, the rest were not; neither marked nor acked (the caller
    /// dead-letters it).
    /// The markers of the batch are read with two HMGET and written with one HSET: a call per
    /// entry made this script the largest cost of Redis's single thread.
    ///
    /// Effects run with redis.pcall: Redis does not roll a script back, so an error raised by
    /// entry k's effect used to abort the script after entries 1..k-1 had applied theirs
    /// without their markers or XACK, and the retry applied them again. Now nothing after the
    /// first effect can raise (markers and stream were already read, so they have the right
    /// type). The one error still raised is a transient refusal (``FailureKind``'s: OOM,
    /// READONLY, ...) met before anything was written: the whole settle fails, is retried after
    /// a backoff, and has nothing to apply twice; dead-lettering would blame the entry for a
    /// server that is full or failing over. Redis refuses OOM writes only until a script's first
    /// write, and the others follow server state that does not change during a script, so after
    /// a write they do not occur (were one to, it counts as the entry's effects failing).
    static let settle = RedisScript(settleSource(checksOwner: true, markers: .checkedAndWritten))

    /// The settle of plain mode (``SettleMode/plain``) for entries whose handler returned
    /// effects: the same script without markers (at-least-once). Same KEYS (the stream only
    /// is read) and ARGV (the event ids are ignored); returns 1, 3 or {5, ...} per entry.
    static let settlePlain = RedisScript(settleSource(checksOwner: true, markers: .none))

    /// The settle with a check left out, for the planted bugs only (``PlantedBug``): without the
    /// owner check a stalled consumer's late settle applies and acks entries another consumer
    /// owns; without the marker check a redelivered, already applied entry is applied again.
    static func settle(checksOwner: Bool, checksMarkers: Bool) -> RedisScript {
        switch (checksOwner, checksMarkers) {
        case (true, true): settle
        case (false, true): settleWithoutOwnerCheck
        case (true, false): settleWithoutMarkerCheck
        case (false, false): settleWithoutChecks
        }
    }
    private static let settleWithoutOwnerCheck = RedisScript(settleSource(checksOwner: false, markers: .checkedAndWritten))
    private static let settleWithoutMarkerCheck = RedisScript(settleSource(checksOwner: true, markers: .writtenOnly))
    private static let settleWithoutChecks = RedisScript(settleSource(checksOwner: false, markers: .writtenOnly))

    /// What a settle script does with idempotency markers.
    private enum MarkerUse {
        /// Reads them to skip duplicates, writes those it applies (idempotent mode).
        case checkedAndWritten
        /// Writes them without reading (the planted marker bug).
        case writtenOnly
        /// Neither (plain mode).
        case none
    }

    private static func settleSource(checksOwner: Bool, markers: MarkerUse) -> String {
        let owned =
            checksOwner
            ? "local owned = owned_runs(stream, group, consumer, ids, ends)"
            : "local owned = {}\nfor _, id in ipairs(ids) do owned[id] = true end"
        let seen =
            markers == .checkedAndWritten
            ? "local in_current = redis.call('HMGET', current, unpack(events))\nlocal in_previous = redis.call('HMGET', previous, unpack(events))"
            : "local in_current, in_previous = {}, {}"
        let fresh = markers == .checkedAndWritten ? "fresh[event]" : "false"
        let writesMarkers = markers == .none ? "false" : "true"
        return ownedRunsHelper + """

            -- Transient error codes (FailureKind's): re-raised when met before anything was written.
            local refused = { \(FailureKind.transientCodes.sorted().map { "\($0) = true" }.joined(separator: ", ")) }
            local wrote = false
            -- Runs an entry's effects until one fails: returns how many ran, and the error reply.
            local function apply(start)
              local count = tonumber(ARGV[start + 2])
              local p = start + 3
              for k = 1, count do
                local argc = tonumber(ARGV[p])
                local res = redis.pcall(unpack(ARGV, p + 1, p + argc))
                if type(res) == 'table' and res.err then return k - 1, res end
                wrote = true
                p = p + 1 + argc
              end
              return count, nil
            end
            local stream, current, previous, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
            local group, consumer = ARGV[1], ARGV[2]
            local expire_at, n, r = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
            local ends = {}
            for k = 1, r do ends[k] = tonumber(ARGV[5 + k]) end
            local ids, events, starts = {}, {}, {}
            local pos = 6 + r
            for i = 1, n do
              ids[i], events[i], starts[i] = ARGV[pos], ARGV[pos + 1], pos
              local count = tonumber(ARGV[pos + 2])
              pos = pos + 3
              for _ = 1, count do pos = pos + 1 + tonumber(ARGV[pos]) end
            end
            \(owned)
            \(seen)
            local codes, ack, fresh, marks = {}, {}, {}, { 'HSET', current }
            for i = 1, n do
              local id, event = ids[i], events[i]
              local seen = in_current[i] or in_previous[i] or \(fresh)
              if owned[id] then
                if seen then
                  codes[i] = 2
                  ack[#ack + 1] = id
                else
                  local ran, failure = apply(starts[i])
                  if failure == nil then
                    fresh[event] = true
                    if \(writesMarkers) then
                      marks[#marks + 1] = event
                      marks[#marks + 1] = '1'
                    end
                    codes[i] = 1
                    ack[#ack + 1] = id
                  elseif not wrote and refused[string.match(failure.err, '^%-?(%u+)')] then
                    return failure
                  else
                    codes[i] = { 5, ran, failure.err }
                  end
                end
              elseif seen then
                codes[i] = 4
              else
                codes[i] = 3
              end
            end
            if #marks > 2 then
              redis.call(unpack(marks))
              redis.call('PEXPIREAT', current, expire_at)
              redis.call('UNLINK', stale)
            end
            if #ack > 0 then redis.call('XACK', stream, group, unpack(ack)) end
            return codes
            """
    }

    /// Moves entries to the dead letters: XADD there and XACK here in one step, only for
    /// entries this consumer still owns.
    ///
    /// KEYS[1] stream, KEYS[2] dead-letter stream. ARGV: group, consumer, entry count, then per
    /// entry: id, reason, last error, delivery count, field count, then the original name/value
    /// pairs. Returns per entry 1 (moved) or 0 (not ours any more).
    static let deadLetter = RedisScript(
        """
        local stream, dlq, group, consumer = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
        local n, pos = tonumber(ARGV[3]), 4
        local codes = {}
        for i = 1, n do
          local id, reason, err, deliveries = ARGV[pos], ARGV[pos + 1], ARGV[pos + 2], ARGV[pos + 3]
          local nf = tonumber(ARGV[pos + 4])
          local fields = {}
          for k = 1, nf do fields[k] = ARGV[pos + 4 + k] end
          pos = pos + 5 + nf
          if #redis.call('XPENDING', stream, group, id, id, 1, consumer) > 0 then
            local args = { 'XADD', dlq, '*' }
            for _, v in ipairs(fields) do args[#args + 1] = v end
            for _, v in ipairs({ 'dlq.reason', reason, 'dlq.error', err, 'dlq.original_id', id,
                                 'dlq.delivery_count', deliveries, 'dlq.stream', stream,
                                 'dlq.group', group, 'dlq.consumer', consumer }) do
              args[#args + 1] = v
            end
            redis.call(unpack(args))
            redis.call('XACK', stream, group, id)
            codes[i] = 1
          else
            codes[i] = 0
          end
        end
        return codes
        """)

    /// Refreshes the lease of entries this consumer still owns (XCLAIM ... JUSTID to itself
    /// resets their idle time without counting a delivery). Never takes an entry back from a
    /// consumer that claimed it meanwhile.
    ///
    /// KEYS[1] stream. ARGV: group, consumer, ids (ascending). Returns the ids still owned.
    static let refreshLease = RedisScript(
        ownedRunsHelper + """

            local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
            local ids = {}
            for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
            local owned = owned_runs(stream, group, consumer, ids, { #ids })
            local mine = {}
            for _, id in ipairs(ids) do if owned[id] then mine[#mine + 1] = id end end
            if #mine > 0 then
              -- unpack() expands to all ids only as the last argument, so build the call whole.
              local args = { 'XCLAIM', stream, group, consumer, 0 }
              for _, id in ipairs(mine) do args[#args + 1] = id end
              args[#args + 1] = 'JUSTID'
              redis.call(unpack(args))
            end
            return mine
            """)

    /// Re-delivers an entry this consumer owns, to retry it: sets Redis's delivery counter to
    /// the retry's count (RETRYCOUNT), so retries count against the maximum deliveries. JUSTID:
    /// the entry's fields are already in hand.
    ///
    /// KEYS[1] stream. ARGV: group, consumer, id, delivery count. Returns 1 (claimed), 0 (another
    /// consumer owns it now) or -1 (deleted from the stream: acked here).
    static let retryClaim = RedisScript(
        """
        local stream, group, consumer, id = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
        if #redis.call('XPENDING', stream, group, id, id, 1, consumer) == 0 then return 0 end
        if #redis.call('XRANGE', stream, id, id) == 0 then
          redis.call('XACK', stream, group, id)
          return -1
        end
        redis.call('XCLAIM', stream, group, consumer, 0, id, 'RETRYCOUNT', ARGV[4], 'JUSTID')
        return 1
        """)

    /// Removes this consumer from the group only if it holds no pending entries.
    /// KEYS[1] stream. ARGV: group, consumer. Returns 1 when removed.
    static let leaveGroup = RedisScript(
        """
        local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
        if #redis.call('XPENDING', stream, group, '-', '+', 1, consumer) > 0 then return 0 end
        redis.call('XGROUP', 'DELCONSUMER', stream, group, consumer)
        return 1
        """)

    /// Lists a consumer that holds no pending entries in its group and marks it seen now (its
    /// `idle` in XINFO CONSUMERS back to 0): a read of its own pending history, which is empty,
    /// creates it when missing and, on Redis 7.0, is the only read that resets `idle` without
    /// delivering (XGROUP CREATECONSUMER does not; a blocked or empty `>` read does not either).
    /// A consumer that holds entries is left as it is: a history read would deliver its oldest
    /// one again (its delivery count up by one, toward the dead letters), and the clean-up never
    /// removes a consumer that holds entries anyway. XGROUP CREATECONSUMER first, since a
    /// read that delivers nothing reaches neither the replicas nor the append-only file (a
    /// review, with `redis-cli --replica`): a failover or a restart would otherwise forget the
    /// consumer until the next round; under maxmemory it is refused (OOM) and the read still
    /// lists the consumer on this node. KEYS[1] stream. ARGV: group, consumer. Returns 1 when
    /// it marked it, 0 when it holds entries.
    static let announceConsumer = RedisScript(
        """
        local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
        if #redis.call('XPENDING', stream, group, '-', '+', 1, consumer) > 0 then return 0 end
        redis.pcall('XGROUP', 'CREATECONSUMER', stream, group, consumer)
        redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, '0')
        return 1
        """)

    /// Removes consumers idle longer than ARGV[2] ms that hold no pending entries (never
    /// ARGV[3], the caller). Checked and done in one step. KEYS[1] stream. ARGV: group,
    /// idle ms, self. Returns the removed names.
    static let removeIdleConsumers = RedisScript(
        """
        local stream, group, idle, self = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
        local removed = {}
        for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
          local info = {}
          for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
          if info['name'] ~= self and tonumber(info['pending']) == 0 and tonumber(info['idle']) > idle then
            redis.call('XGROUP', 'DELCONSUMER', stream, group, info['name'])
            removed[#removed + 1] = info['name']
          end
        end
        return removed
        """)

    /// Trims a stream without removing any entry a group still needs: MINID is the smallest of
    /// every group's oldest pending id and the id after its last-delivered id. With a MAXLEN cap
    /// (ARGV[1] > 0) that would cut deeper, the cap is refused and only the safe trim is done.
    ///
    /// KEYS[1] stream. ARGV: maxlen (0: none), a floor id ('' for none: entries from it on are
    /// kept whatever the groups need), then the number of groups required (-1: no list), then
    /// their names. Returns {removed, min id kept, refused flag, group count, the first required
    /// group that does not exist or ''}.
    ///
    /// Without a list, a stream with no groups is not trimmed (a group created later from the
    /// beginning would need every entry). With one, a stream is not trimmed while a group of it
    /// does not exist (its reader has not started yet and will want every entry), and a stream
    /// with no groups (and none required) is trimmed to the floor and the record alone.
    ///
    /// With a coverage record (KEYS[2], a hash in the stream's slot; the two ARGV after the
    /// group names: its field, and which space-separated word of it is this stream's last
    /// covered id): entries after that id are kept too, read here, at the moment of trimming, on
    /// the node that trims. A record or field that is missing keeps every entry.
    static let safeTrim = trimScript(keepingWhatGroupsNeed: true)

    /// ``safeTrim`` without the groups' needs: the floor and the coverage record alone
    /// (``StreamRetention/PlantedBug/trimIgnoresGroups``, for the chaos harness only).
    static let plantedTrimIgnoringGroups = trimScript(keepingWhatGroupsNeed: false)

    private static func trimScript(keepingWhatGroupsNeed: Bool) -> RedisScript {
        RedisScript(
        """
        local stream, maxlen, floor = KEYS[1], tonumber(ARGV[1]), ARGV[2]
        local required = tonumber(ARGV[3])
        local rec = 4 + math.max(required, 0)
        local function parse(id)
          local ms, seq = string.match(id, '^(%d+)-(%d+)$')
          return tonumber(ms), tonumber(seq)
        end
        local function less(a, b)
          local am, as = parse(a)
          local bm, bs = parse(b)
          if am ~= bm then return am < bm end
          return as < bs
        end
        -- The id after `id`; `id` itself (one entry more kept) where Lua's numbers, printed
        -- with 14 digits, could not spell the next one exactly.
        local function after(id)
          local ms, seq = parse(id)
          if ms == nil or ms >= 1e14 or seq >= 1e14 then return id end
          return ms .. '-' .. (seq + 1)
        end
        if redis.call('EXISTS', stream) == 0 then
          -- No stream, so no group: the first required one is missing (a trim said a stream its
          -- worker will read had no reader).
          if required > 0 then return { 0, '0-0', 0, 0, ARGV[4] } end
          return { 0, '0-0', 0, 0, '' }
        end
        local groups = redis.call('XINFO', 'GROUPS', stream)
        local infos = {}
        for _, g in ipairs(groups) do
          local info = {}
          for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
          infos[#infos + 1] = info
        end
        if required > 0 then
          local present = {}
          for _, info in ipairs(infos) do present[info['name']] = true end
          for i = 1, required do
            if not present[ARGV[3 + i]] then return { 0, '0-0', 0, #groups, ARGV[3 + i] } end
          end
        end
        local keep = nil
        if #groups == 0 then
          if required < 0 or floor == '' then return { 0, '0-0', 0, 0, '' } end
          keep = floor
        end
        \(keepingWhatGroupsNeed ? "" : "if floor ~= '' then keep = floor; infos = {} end")
        for _, info in ipairs(infos) do
          local candidate = after(info['last-delivered-id'])
          local summary = redis.call('XPENDING', stream, info['name'])
          if summary[1] > 0 and less(summary[2], candidate) then candidate = summary[2] end
          if keep == nil or less(candidate, keep) then keep = candidate end
        end
        if floor ~= '' and less(floor, keep) then keep = floor end
        if KEYS[2] then
          local covered = nil
          local record = redis.call('HGET', KEYS[2], ARGV[rec])
          if record then
            local n = 0
            for word in string.gmatch(record, '%S+') do
              n = n + 1
              if n == tonumber(ARGV[rec + 1]) then covered = word end
            end
          end
          local floor_covered = '0-0'
          if covered and parse(covered) then floor_covered = after(covered) end
          if less(floor_covered, keep) then keep = floor_covered end
        end
        local refused = 0
        if maxlen > 0 then
          local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', maxlen)
          -- The cap removes what is older than the newest maxlen entries: refused where some of
          -- that is needed; otherwise the needed point already removes at least as much (before,
          -- the trim point moved back to the cap's, and a trim with --maxlen 10 kept 10 entries a
          -- plain trim removed).
          if #newest == maxlen and less(keep, newest[#newest][1]) then refused = 1 end
        end
        local removed = redis.call('XTRIM', stream, 'MINID', keep)
        return { removed, keep, refused, #groups, '' }
        """)
    }
}

import RedisClient

/// Operations on a group's dead letters: list, replay, purge.
public struct DeadLetters: Sendable {
    /// One dead-lettered entry with why it is there.
    public struct Letter: Sendable, Codable, Equatable {
        public var id: String
        /// The entry's id in the stream the group reads (for a replayed entry dead-lettered
        /// again, the id it had there before its replay, not its id in the replay stream).
        public var originalID: String
        public var reason: String
        public var error: String
        public var deliveryCount: Int
        /// The original fields (without the `dlq.` metadata).
        public var fields: [String: String]
        /// How many fields a view of the letter left out of ``fields`` (the dashboard shows at
        /// most a few dozen); nil when none.
        public var omittedFields: Int? = nil
        /// How many fields of its entry the letter itself lacks (an entry wider than a dead
        /// letter keeps); nil when it has them all. Such a letter is not replayed
        /// (``replay(ids:)``).
        public var cutFields: Int? = nil
    }

    /// What ``replay(ids:)`` did.
    public struct Replayed: Sendable, Equatable {
        /// The replayed entries' ids in the replay stream.
        public var ids: [String]
        /// Letters left in the dead letters because they lack fields of their entry
        /// (``Letter/cutFields``): a replay would deliver another event than the entry, under
        /// the entry's id. Handle the entry (its id is in the letter) by hand, then purge them.
        public var cut: [String]

        /// The letters found (replayed or left as cut).
        public var found: Int { ids.count + cut.count }

        /// Why ``cut`` were not replayed, for an operator.
        public var cutExplanation: String? { Self.explanation(cut: cut) }

        /// Why letters `cut` (of one replay or several) were not replayed; nil when none.
        public static func explanation(cut: [String]) -> String? {
            guard !cut.isEmpty else { return nil }
            let named = cut.prefix(5).joined(separator: ", ") + (cut.count > 5 ? ", ..." : "")
            return "\(cut.count) dead letters not replayed (\(named)): each keeps only part of its entry's fields,"
                + " so a replay would deliver another event under the entry's id; handle the entry named in its reason by hand, then purge the letter"
        }
    }

    /// The Redis the dead letters are on (the primary of their slot).
    public let client: any RedisClientProtocol
    public let stream: String
    public let group: String
    public var key: String { StreamKeys.deadLetter(stream: stream, group: group) }
    /// With it, a replay or purge counts as done only once that many replicas have it (`WAIT`),
    /// else it throws ``RedisError/Code/outcomeUnknown``: on a replicated Redis a failover could
    /// undo a replay reported done (the letters back in the dead letters, not in the replay
    /// stream), and the operator would not know to look again.
    public var confirmation: ReplicaConfirmation?

    public init(client: any RedisClientProtocol, stream: String, group: String) {
        self.client = client
        self.stream = stream
        self.group = group
    }

    /// A stream or group that does not exist (see ``requireGroup(orDeadLetters:)``).
    public struct NoSuchGroup: Error, CustomStringConvertible {
        public let stream: String, group: String, groups: [String]
        public init(stream: String, group: String, groups: [String]) {
            self.stream = stream
            self.group = group
            self.groups = groups
        }
        public var description: String {
            groups.isEmpty
                ? "stream \(stream) has no consumer groups (or does not exist); nothing done"
                : "stream \(stream) has no consumer group \(group) (its groups: \(groups.joined(separator: ", "))); nothing done"
        }
    }

    /// Refuses a stream or group that does not exist (``NoSuchGroup``): a typo would list
    /// nothing, or replay into a replay stream no worker reads, and say it succeeded.
    /// `orDeadLetters`: dead letters kept for a group since removed may still be listed and purged.
    public func requireGroup(orDeadLetters: Bool) async throws {
        let groups: [String]
        do {
            groups = try await client.send(XINFOGROUPS(RedisArgument(stream))).map(\.name)
        } catch let error as RedisError where error.isNoSuchKey {
            groups = []
        }
        if groups.contains(group) { return }
        if orDeadLetters, try await client.send(XLEN(RedisArgument(key))) > 0 { return }
        throw NoSuchGroup(stream: stream, group: group, groups: groups)
    }

    /// Ids given to ``replay(ids:)`` or ``purge(ids:)`` that are not stream ids (`<ms>-<seq>`
    /// or `<ms>`), which Redis would refuse with a bare "Invalid stream ID".
    public struct InvalidIDs: Error, Sendable, CustomStringConvertible {
        public var ids: [String]
        public var description: String {
            "not dead-letter ids (stream ids such as 1700000000000-0, as `dlq list` shows them): "
                + ids.prefix(5).map { "'\($0.prefix(60))'" }.joined(separator: ", ") + (ids.count > 5 ? ", ..." : "")
        }
    }

    /// Throws ``InvalidIDs`` naming the ids that are not stream ids.
    public static func requireValid(_ ids: [String]?) throws(InvalidIDs) {
        let bad = (ids ?? []).filter { StreamID($0) == nil }
        if !bad.isEmpty { throw InvalidIDs(ids: bad) }
    }

    /// Valid ids written as `ms-seq`, each once, in their order: an id given as `ms` is
    /// `ms-0`, as XDEL takes it. A replay looked a letter up with `XRANGE ms ms` (any sequence)
    /// and deleted `ms-0`: letter `ms-3` was replayed and kept (a review).
    public static func normalized(_ ids: [String]) -> [String] {
        var seen = Set<String>()
        return ids.map { StreamID($0)?.description ?? $0 }.filter { seen.insert($0).inserted }
    }

    public func list(count: Int = 100) async throws -> [Letter] {
        try await client.send(XRANGE(RedisArgument(key), count: count)).map { entry in
            var fields: [String: String] = [:]
            for f in entry.fields where !f.name.hasPrefix("dlq.") { fields[f.name] = String(decoding: f.value, as: UTF8.self) }
            return Letter(
                // A replayed entry dead-lettered again: its id in the stream, not in the replay stream.
                id: entry.id, originalID: entry.string("replayed_from") ?? entry.string("dlq.original_id") ?? "", reason: entry.string("dlq.reason") ?? "",
                error: entry.string("dlq.error") ?? "", deliveryCount: Int(entry.string("dlq.delivery_count") ?? "") ?? 0,
                fields: fields, cutFields: entry.string(DeadLetterCall.cutMarker).flatMap { Int($0) })
        }
    }

    /// Re-delivers dead letters to this group only: each is added to the group's replay stream
    /// (``StreamKeys/replay(stream:group:)``), which the group's workers read besides the stream,
    /// and removed from the dead letters, atomically per call. A replayed entry keeps its
    /// identity: its handler sees the original stream, id and fields, so its event id and
    /// idempotency key are those of the original delivery, and an entry already applied is
    /// acked as a duplicate, not applied again. No other group sees it. `ids` nil: all of them.
    /// A letter that lacks fields of its entry (``Letter/cutFields``) stays: it is not the
    /// event, and its handler would take it for the event (``Replayed/cut``).
    ///
    /// In calls of at most ``replayBatch`` letters, each atomic, all of them read a page at a
    /// time: one script over 17,802 letters held Redis's thread 1.16 s, after a read of the
    /// whole dead-letter stream (110 MB) for their ids, and a PING beside it waited 1.7 s (a
    /// trial).
    @discardableResult
    public func replay(ids: [String]? = nil) async throws -> Replayed {
        try await replay(ids: ids, batch: Self.replayBatch)
    }

    /// ``replay(ids:)`` in calls of `batch` letters (tests use small ones).
    func replay(ids: [String]?, batch: Int) async throws -> Replayed {
        try Self.requireValid(ids)
        var done = Replayed(ids: [], cut: [])
        func add(_ letters: [String]) async throws {
            let replayed = try await replayOnce(letters)
            done.ids += replayed.ids
            done.cut += replayed.cut
        }
        if let ids {
            let targets = Self.normalized(ids)
            for start in stride(from: 0, to: targets.count, by: batch) {
                try await add(Array(targets[start..<min(start + batch, targets.count)]))
            }
            return done
        }
        // The letters there now, up to the last one: a letter dead-lettered again while this
        // runs (a replayed entry its handler refuses) lands after it, and paging on to the end
        // replayed it again, page after page, for as long as the worker kept up (a review:
        // 5,000 letters, 11,400 replays).
        guard let end = try await client.send(XRANGE(RedisArgument(key), count: 1, reverse: true)).first?.id else { return done }
        var after = "-"
        while true {
            let page = try await client.send(XRANGE(RedisArgument(key), start: after, end: end, count: batch)).map(\.id)
            guard let last = page.last else { return done }
            try await add(page)
            // Cut letters stay: the next page starts after this one, not at the first letter left.
            after = "(" + last
            if last == end || page.count < batch { return done }
        }
    }

    /// Letters per replay call (and per page read for a replay of all).
    static let replayBatch = 500

    /// One atomic replay of `targets` (at most ``replayBatch``).
    private func replayOnce(_ targets: [String]) async throws -> Replayed {
        guard !targets.isEmpty else { return Replayed(ids: [], cut: []) }
        let reply = try await run(
            Self.replayScript, keys: [RedisArgument(key), RedisArgument(replayKey)],
            arguments: [RedisArgument(group), RedisArgument(DeadLetterCall.cutMarker)] + targets.map { RedisArgument($0) },
            what: { "replayed \($0.array?.first?.array?.count ?? 0) entries" }
        ) { ($0.array?.first?.array?.count ?? 0) > 0 }
        guard let parts = reply.array, parts.count == 2, let added = parts[0].array, let cut = parts[1].array else {
            throw RedisError(.unexpectedReply, "the replay script answered \(reply)")
        }
        return Replayed(ids: added.compactMap(\.string), cut: cut.compactMap(\.string))
    }

    /// Runs an operation's script, confirmed by the replicas when ``confirmation`` asks for it.
    private func run(
        _ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument], what: (RESPValue) -> String,
        wrote: @escaping @Sendable (RESPValue) -> Bool
    ) async throws -> RESPValue {
        guard let confirmation else { return try await client.evaluate(script, keys: keys, arguments: arguments) }
        let confirmed = try await client.evaluate(
            script, keys: keys, arguments: arguments, confirming: confirmation, barrier: RedisArgument(key + ":replica-barrier"), wrote: wrote)
        guard confirmed.isConfirmed else {
            throw RedisError(
                .outcomeUnknown,
                "\(what(confirmed.reply)) on the primary, but \(confirmed.acknowledgedBy) of \(confirmation.replicas) replicas confirmed it within \(confirmation.timeout): a failover may undo it; see `dlq list` before running it again")
        }
        return confirmed.reply
    }

    /// The group's replay stream.
    public var replayKey: String { StreamKeys.replay(stream: stream, group: group) }

    /// Deletes dead letters (`ids` nil: all; empty: none). Returns how many were removed.
    /// One script, so that the count is of what was deleted (a letter added between a count
    /// and a `DEL` would have gone uncounted).
    ///
    /// Empty ids delete nothing: they reached the script as no ids, which it takes for "all",
    /// and a dashboard purge of `"ids": []` (a filter that matched nothing) deleted 3,942
    /// letters (a trial).
    @discardableResult
    public func purge(ids: [String]? = nil) async throws -> Int {
        try Self.requireValid(ids)
        if let ids, ids.isEmpty { return 0 }
        let reply = try await run(
            Self.purgeScript, keys: [RedisArgument(key)], arguments: Self.normalized(ids ?? []).map { RedisArgument($0) }, what: { "purged \($0.int ?? 0) dead letters" }) {
                ($0.int ?? 0) > 0
            }
        return reply.int ?? 0
    }

    /// KEYS[1] dead letters; ARGV the ids to delete, none: all. Returns how many went.
    static let purgeScript = RedisScript(
        """
        if #ARGV == 0 then
          local n = redis.call('XLEN', KEYS[1])
          redis.call('DEL', KEYS[1])
          return n
        end
        -- In chunks: unpack() of thousands of ids would pass Lua's C stack limit.
        local n = 0
        for i = 1, #ARGV, 1000 do
          n = n + redis.call('XDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
        end
        return n
        """)

    /// KEYS[1] dead letters, KEYS[2] the group's replay stream; ARGV group, the cut letters'
    /// marker field (``DeadLetterCall/cutMarker``), then ids. Same hash slot by construction.
    /// The original id is kept in `replayed_from` (a letter replayed before and dead-lettered
    /// again keeps the first one). Creates the replay stream's group (from the beginning) if the
    /// workers have not yet. A letter with the marker, or cut before the marker existed (its
    /// reason says so), stays. Returns `{replayed ids in the replay stream, cut letters' ids}`.
    static let replayScript = RedisScript(
        """
        local group, marker = ARGV[1], ARGV[2]
        redis.pcall('XGROUP', 'CREATE', KEYS[2], group, '0', 'MKSTREAM')
        local out, cut = {}, {}
        for k = 3, #ARGV do
          local id = ARGV[k]
          local found = redis.call('XRANGE', KEYS[1], id, id)
          if #found == 1 then
            local fields = found[1][2]
            local args = { 'XADD', KEYS[2], '*' }
            local original, first, partial = id, nil, false
            for i = 1, #fields, 2 do
              local name = fields[i]
              if name == 'dlq.original_id' then original = fields[i + 1] end
              if name == 'replayed_from' then first = fields[i + 1] end
              if name == marker then partial = true end
              if name == 'dlq.reason' and string.find(fields[i + 1], 'its dead letter keeps the first', 1, true) then partial = true end
              if string.sub(name, 1, 4) ~= 'dlq.' and name ~= 'replayed_from' then
                args[#args + 1] = name
                args[#args + 1] = fields[i + 1]
              end
            end
            if partial then
              cut[#cut + 1] = id
            else
              args[#args + 1] = 'replayed_from'
              args[#args + 1] = first or original
              out[#out + 1] = redis.call(unpack(args))
              redis.call('XDEL', KEYS[1], id)
            end
          end
        end
        return {out, cut}
        """)
}

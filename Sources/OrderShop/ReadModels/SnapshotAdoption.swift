import RedisClient

extension EventStore {
    /// Takes the read model as a snapshot, for a shop whose streams were trimmed before snapshots
    /// existed (by the earlier `trim`), where ``takeSnapshot(_:)`` refuses: the read model then
    /// holds the only record of the trimmed events, and from this snapshot on retention and
    /// rebuilds work again. Read in one script with the cut (the scripts that append events write
    /// the read model in the same step, so the two agree). Creation order is kept as the read
    /// model's (its sequence numbers stand in for the creation entry ids, before any real one).
    @discardableResult
    public func adoptReadModelAsSnapshot(_ type: EntityType) async throws -> ReadModelSnapshot {
        let k = type.keys
        let keys = ([k.entities, k.versions, k.tombstones, k.ids] + type.streams).map { RedisArgument($0) }
        let reply = try await pool.evaluate(Self.adoptScript, keys: keys)
        guard let parts = reply.array, parts.count == 5 else { throw RedisError(.unexpectedReply, "read model adoption answered \(reply)") }
        let cut = try StreamCut.parse(parts[4], type: type)
        func hash(_ v: RESPValue) -> [String: [UInt8]] {
            let a = v.array ?? []
            var out: [String: [UInt8]] = [:]
            for i in stride(from: 0, to: a.count - 1, by: 2) { if let key = a[i].string, let value = a[i + 1].bytes { out[key] = value } }
            return out
        }
        let (live, tombstones) = (hash(parts[0]), hash(parts[2]))
        let versions = hash(parts[1]).compactMapValues { Int(String(decoding: $0, as: UTF8.self)) }
        let order = hash(parts[3]).compactMapValues { UInt64(Double(String(decoding: $0, as: UTF8.self)) ?? 0) }
        var states: [String: Projection.State] = [:]
        for (id, version) in versions {
            guard let json = live[id] ?? tombstones[id] else { continue }
            states[id] = Projection.State(
                json: json, version: version, deleted: live[id] == nil, created: StreamID(milliseconds: 0, sequence: order[id] ?? 0))
        }
        let snapshot = ReadModelSnapshot(type: type, cut: cut, takenAt: Self.now(), states: states)
        try await install(snapshot)
        return snapshot
    }

    /// KEYS: entities, versions, tombstones, ids, the 3 streams. Returns the four read-model keys and the cut.
    static let adoptScript = RedisScript(
        StreamCut.lua + """
            return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
                    redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), stream_cut({KEYS[5], KEYS[6], KEYS[7]})}
            """)
}

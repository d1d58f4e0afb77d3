import RedisClient

/// `snapshot --from-read-model` was refused: the read model is adopted only where it is the sole
/// record left (a stream trimmed with no snapshot yet), never where events can still be folded,
/// since a read model may differ from its events (a projection bug) and `trim` would then drop
/// the events that only that wrong snapshot "covers".
public struct SnapshotAdoptionRefused: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension EventStore {
    /// Takes the read model as a snapshot, for a shop whose streams were trimmed before snapshots
    /// existed (by the earlier `trim`), where ``takeSnapshot(_:)`` refuses: the read model then
    /// holds the only record of the trimmed events, and from this snapshot on retention and
    /// rebuilds work again. Read in one script with the cut (the scripts that append events write
    /// the read model in the same step, so the two agree). Creation order is kept as the read
    /// model's (its sequence numbers stand in for the creation entry ids, before any real one).
    ///
    /// Throws ``SnapshotAdoptionRefused`` (and writes nothing) unless folding is impossible: a
    /// snapshot exists already, or every stream still holds all its events (then
    /// ``takeSnapshot(_:)`` folds them). The install itself refuses if a snapshot appeared meanwhile.
    @discardableResult
    public func adoptReadModelAsSnapshot(_ partition: EntityPartition) async throws -> ReadModelSnapshot {
        // Its scores are creation scores, not the sequence numbers that stand in for entry ids
        // here; and no shop in partitions had the trim that snapshots did not cover.
        guard partition.count == 1 else {
            throw SnapshotAdoptionRefused(
                description: "a shop laid out in partitions never had the old trim: `ordershop snapshot` folds its events")
        }
        if let existing = try await latestSnapshot(partition) {
            throw SnapshotAdoptionRefused(
                description: "a snapshot exists (covers \(existing.cut)); later snapshots are folded from it and the events, never copied from the read model")
        }
        do {
            _ = try await events(partition, after: .origin(partition), upTo: try await StreamCut.read(partition, pool: pool))
            throw SnapshotAdoptionRefused(
                description: "its streams hold every event, so `ordershop snapshot \(partition)` folds them; the read model may differ from the events and is adopted only for streams trimmed before any snapshot")
        } catch is StreamGapError {
            // The record is incomplete and no snapshot holds the rest: the read model is all there is.
        }
        let k = partition.keys
        let keys = ([k.entities, k.versions, k.tombstones, k.ids] + partition.streams).map { RedisArgument($0) }
        let reply = try await pool.evaluate(Self.adoptScript, keys: keys)
        guard let parts = reply.array, parts.count == 5 else { throw RedisError(.unexpectedReply, "read model adoption answered \(reply)") }
        let cut = try StreamCut.parse(parts[4], partition: partition)
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
        let snapshot = ReadModelSnapshot(partition: partition, cut: cut, takenAt: Self.now(), states: states)
        guard try await install(snapshot, onlyIfNone: true) else {
            throw SnapshotAdoptionRefused(description: "a snapshot was taken meanwhile; later snapshots are folded from it, never copied from the read model")
        }
        return snapshot
    }

    /// KEYS: entities, versions, tombstones, ids, the 3 streams. Returns the four read-model keys and the cut.
    static let adoptScript = RedisScript(
        StreamCut.lua + """
            return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
                    redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'), stream_cut({KEYS[5], KEYS[6], KEYS[7]})}
            """)
}

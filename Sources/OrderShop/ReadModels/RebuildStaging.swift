import RedisClient

/// The read model a rebuild writes beside the live one (keys `…:rebuild:<uuid>`), and what those
/// keys hold, so that a retry after a refused swap writes only the entities its new events
/// changed instead of the whole model again.
///
/// Why: the swap is refused whenever a command appended an event after the rebuild read the
/// streams, and rewriting every entity before each swap took longer than the gap between two
/// commands under load. In 5-minute chaos runs every `rebuild all` under load gave up after 100
/// refused swaps (seed 1212), or finished only when the load stopped (seed 1211: four rebuilds
/// started at 118-168 s, all done at 300 s). Written as a delta, a retry is a few commands.
///
/// What the keys hold is exactly what a full write of the same projection gives: entities and
/// versions of every live entity, tombstones of the deleted, the ids sorted set scored by order
/// of creation among all entities (deleted ones included, so that a deletion moves no other
/// entity's score, and the next command's `INCR` of the sequence sorts after them all), the
/// sequence (entities created), and the unique index (a value belongs to the latest-created live
/// entity that has it).
struct RebuildStaging {
    let partition: EntityPartition
    /// entities, versions, tombstones, ids, sequence, unique (``ReadModelKeys/all``'s order).
    let keys: [String]
    /// Each entity's score in the ids set, as written, and the latest creation ranked.
    private var ranks: [String: Int] = [:]
    private var lastRanked: (created: StreamID, id: String)?
    /// Each live entity's value of the unique field, as written; and who has each value.
    private var uniqueValues: [String: String] = [:]
    private var holders: [String: Set<String>] = [:]
    private var written = false

    init(partition: EntityPartition, suffix: String) {
        self.partition = partition
        self.keys = partition.keys.staging(suffix)
    }

    /// Forgets what was written: the next ``write(_:changed:pool:)`` writes everything.
    mutating func reset() {
        written = false
        ranks = [:]
        lastRanked = nil
        uniqueValues = [:]
        holders = [:]
    }

    /// Brings the staging keys to `projection`. `changed`: the entities whose state may differ
    /// from the last write (every entity named by the events applied since). Writes everything
    /// the first time, or when an entity new since then was created before one already ranked
    /// (a creation arriving after its update); otherwise only what changed. Its own work is in
    /// proportion to `changed` too: sorting 20,000 entities before each swap took longer (debug
    /// build) than the 5 ms between two commands.
    mutating func write(_ projection: Projection, changed: Set<String>, pool: any RedisClientProtocol) async throws {
        let commands: [RawCommand]
        if written, rankAdded(changed, projection) {
            commands = delta(projection, changed: changed)
        } else {
            rankAll(projection)
            commands = full(projection)
        }
        for result in await pool.pipeline(commands) { _ = try result.get() }
        written = true
    }

    /// Ranks every entity by creation (deleted ones included), 1-based; in a partition of
    /// several, by the score its create gave it (``CreationSequence``). A creation without one
    /// (written by hand) ranks below zero, in creation order, each apart: a list pages by score,
    /// and two entities of one score would lose one at a page's end.
    private mutating func rankAll(_ projection: Projection) {
        if partition.count > 1 {
            ranks = projection.states.compactMapValues(\.sequence)
            let unnumbered = projection.states.filter { $0.value.sequence == nil }.map { (created: $0.value.created, id: $0.key) }
                .sorted { ($0.created, $0.id) < ($1.created, $1.id) }
            for (i, entity) in unnumbered.enumerated() { ranks[entity.id] = i - unnumbered.count }
            lastRanked = unnumbered.last
            return
        }
        let ordered = projection.states.map { (created: $0.value.created, id: $0.key) }.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
        ranks = [:]
        ranks.reserveCapacity(ordered.count)
        for (i, entity) in ordered.enumerated() { ranks[entity.id] = i + 1 }
        lastRanked = ordered.last
    }

    /// Ranks the entities of `changed` not ranked yet after the others; false when one of them
    /// was created before the latest one ranked (every rank after it would move).
    private mutating func rankAdded(_ changed: Set<String>, _ projection: Projection) -> Bool {
        if partition.count > 1 {
            // Scores from the record alone: a new one moves no other, but one written by hand
            // without a score ranks among the others so (``rankAll(_:)``): all again.
            let added = changed.filter { ranks[$0] == nil }.compactMap { id in projection.states[id].map { (id: id, state: $0) } }
            if added.contains(where: { $0.state.sequence == nil }) { return false }
            for entity in added { ranks[entity.id] = entity.state.sequence }
            return true
        }
        let added = changed.filter { ranks[$0] == nil }.compactMap { id in projection.states[id].map { (created: $0.created, id: id) } }
            .sorted { ($0.created, $0.id) < ($1.created, $1.id) }
        guard let first = added.first else { return true }
        if let lastRanked, (first.created, first.id) < (lastRanked.created, lastRanked.id) { return false }
        var next = ranks.count
        for entity in added {
            next += 1
            ranks[entity.id] = next
        }
        lastRanked = added.last
        return true
    }

    private var entities: RedisArgument { RedisArgument(keys[0]) }
    private var versions: RedisArgument { RedisArgument(keys[1]) }
    private var tombstones: RedisArgument { RedisArgument(keys[2]) }
    private var ids: RedisArgument { RedisArgument(keys[3]) }
    private var sequence: RedisArgument { RedisArgument(keys[4]) }
    private var unique: RedisArgument { RedisArgument(keys[5]) }

    private mutating func full(_ projection: Projection) -> [RawCommand] {
        let stagingKeys = keys.map { RedisArgument($0) }
        var commands = [RawCommand(["DEL"] + stagingKeys, keys: stagingKeys)]
        func chunked(_ command: String, _ key: RedisArgument, _ pairs: [(RedisArgument, RedisArgument)]) {
            for start in stride(from: 0, to: pairs.count, by: 500) {
                var c: [RedisArgument] = [RedisArgument(command), key]
                for (a, b) in pairs[start..<min(start + 500, pairs.count)] { c += [a, b] }
                commands.append(RawCommand(c, keys: [key]))
            }
        }
        let live = projection.live
        chunked("HSET", entities, live.map { (RedisArgument($0.id), RedisArgument(bytes: $0.state.json)) })
        chunked("HSET", versions, projection.states.map { (RedisArgument($0.key), RedisArgument($0.value.version)) })
        chunked("HSET", tombstones, projection.states.filter(\.value.deleted).map { (RedisArgument($0.key), RedisArgument(bytes: $0.value.json)) })
        chunked("ZADD", ids, live.map { (RedisArgument(ranks[$0.id] ?? 0), RedisArgument($0.id)) })
        commands.append(RawCommand(["SET", sequence, RedisArgument(projection.states.count)], keys: [sequence]))
        uniqueValues = [:]
        holders = [:]
        for entity in live {
            if let value = uniqueValue(of: entity.state) {
                uniqueValues[entity.id] = value
                holders[value, default: []].insert(entity.id)
            }
        }
        chunked("HSET", unique, holders.keys.sorted().compactMap { value in owner(of: value).map { (RedisArgument(value), RedisArgument($0)) } })
        return commands
    }

    private mutating func delta(_ projection: Projection, changed: Set<String>) -> [RawCommand] {
        var commands: [RawCommand] = []
        var affectedValues: Set<String> = []
        for id in changed.sorted() {
            guard let state = projection.states[id] else { continue }
            let key = RedisArgument(id)
            commands.append(RawCommand(["HSET", versions, key, RedisArgument(state.version)], keys: [versions]))
            if state.deleted {
                commands.append(RawCommand(["HDEL", entities, key], keys: [entities]))
                commands.append(RawCommand(["HSET", tombstones, key, RedisArgument(bytes: state.json)], keys: [tombstones]))
                commands.append(RawCommand(["ZREM", ids, key], keys: [ids]))
            } else {
                commands.append(RawCommand(["HSET", entities, key, RedisArgument(bytes: state.json)], keys: [entities]))
                commands.append(RawCommand(["HDEL", tombstones, key], keys: [tombstones]))
                commands.append(RawCommand(["ZADD", ids, RedisArgument(ranks[id] ?? 0), key], keys: [ids]))
            }
            let old = uniqueValues[id]
            let new = state.deleted ? nil : uniqueValue(of: state)
            guard old != new else { continue }
            if let old {
                holders[old]?.remove(id)
                affectedValues.insert(old)
            }
            uniqueValues[id] = new
            if let new {
                holders[new, default: []].insert(id)
                affectedValues.insert(new)
            }
        }
        for value in affectedValues.sorted() {
            if let owner = owner(of: value) {
                commands.append(RawCommand(["HSET", unique, RedisArgument(value), RedisArgument(owner)], keys: [unique]))
            } else {
                holders[value] = nil
                commands.append(RawCommand(["HDEL", unique, RedisArgument(value)], keys: [unique]))
            }
        }
        commands.append(RawCommand(["SET", sequence, RedisArgument(projection.states.count)], keys: [sequence]))
        return commands
    }

    /// The latest-created live entity with `value`.
    private func owner(of value: String) -> String? {
        holders[value]?.max { (ranks[$0] ?? 0, $0) < (ranks[$1] ?? 0, $1) }
    }

    private func uniqueValue(of state: Projection.State) -> String? {
        guard let field = partition.type.uniqueField,
            case .object(let o)? = try? JSONCoding.decode(JSONValue.self, from: state.json), case .string(let value)? = o[field]
        else { return nil }
        return value
    }
}

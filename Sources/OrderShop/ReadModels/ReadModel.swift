import RedisClient

/// Queries answered from the read models in Redis (the article's "queries via RESP").
///
/// The read models are written by the same scripts that append the events, so a query always
/// sees every command that has answered, whichever process asks.
///
/// With a `confirmation` (`--confirm-replicas`), the queries the HTTP routes answer (``list(_:)``,
/// ``one(_:id:)``, ``unbilledOrders()``, ``report()``) answer only once the replicas hold what
/// they read, as a command's refusal does (a barrier write, then `WAIT`); else
/// ``ShopError/unconfirmedRead(acknowledged:wanted:)``. Why: right after a 503 "may have been
/// applied" the client is told to read the entity, and a read of the primary alone shows a
/// write a failover can still lose.
public struct ReadModel: Sendable {
    public let pool: any RedisClientProtocol
    public let confirmation: ReplicaConfirmation?
    /// How each type's read model is spread over partitions (``ShopLayout``).
    public let layout: ShopLayout

    public init(pool: any RedisClientProtocol, confirmation: ReplicaConfirmation? = nil, layout: ShopLayout = .single) {
        self.pool = pool
        self.confirmation = confirmation
        self.layout = layout
    }

    /// All live entities of a type as a JSON array, in creation order.
    ///
    /// Read in pages of ``pageSize`` (``pages(of:_:)``), so that Redis serves other commands
    /// between them: as one script, a list held Redis's thread for all of it (trial K:
    /// `GET /orders` 150-162 ms at 60,000 orders, `/orders/unbilled` 667 ms at 28,000, every
    /// service stalled meanwhile). An entity created or deleted while the list is read may be in
    /// it or not; one that lives throughout is in it once, also across a rebuild.
    ///
    /// A type spread over partitions is read partition by partition, and the entities merged by
    /// their scores (``CreationSequence``: creation order across partitions too).
    public func list(_ type: EntityType) async throws -> [UInt8] {
        try await merged(type) { page in page.map { ($0.score, $0.json) } }
    }

    /// What `select` keeps of each page of every partition of `type`, in creation order: one
    /// partition's as read, several partitions' merged by their scores (``CreationSequence``).
    private func merged(
        _ type: EntityType, _ select: ([(id: String, score: Double, json: RESPValue)]) async throws -> [(score: Double, json: RESPValue)]
    ) async throws -> [UInt8] {
        var scored: [(score: Double, json: RESPValue)] = []
        for partition in layout.partitions(type) {
            var items: [(score: Double, json: RESPValue)] = []
            try await pages(of: partition, start: { items = [] }) { page in items += try await select(page) }
            scored += items
        }
        if layout.partitions(of: type) > 1 { scored.sort { $0.score < $1.score } }
        return Self.jsonArray(scored.map(\.json))
    }

    /// Entities per page of a list: a page's script reads this many (about 1 ms of Redis's time
    /// for orders of a few products).
    static let pageSize = 500

    /// Reads one partition's live entities page by page, in creation order (their score in the
    /// ids set, which no command changes, and no id gets twice: a create refuses an id that ever
    /// existed), each page one short script, and hands each page to `body`,
    /// which collects into what the list started (`start` is called before the first page).
    /// A rebuild's swap may renumber the scores: when the read model's generation changes
    /// between two pages, the list starts again (`start` once more), at most
    /// ``maximumRestarts`` times.
    func pages(
        of partition: EntityPartition, start: () -> Void, _ body: ([(id: String, score: Double, json: RESPValue)]) async throws -> Void
    ) async throws {
        let k = partition.keys
        let keys = [RedisArgument(k.ids), RedisArgument(k.entities), RedisArgument(k.generation)]
        for _ in 0...Self.maximumRestarts {
            start()
            var after = "-inf"
            var generation: String?
            while true {
                let reply = try await query(Scripts.page, in: partition, keys: keys, arguments: [RedisArgument(after), RedisArgument(Self.pageSize)])
                guard let parts = reply.array, parts.count >= 3, let now = parts[0].string, let read = parts[2].int else {
                    throw RedisError(.unexpectedReply, "list page answered \(reply)")
                }
                if let generation, generation != now { break }
                generation = now
                var page: [(id: String, score: Double, json: RESPValue)] = []
                page.reserveCapacity(read)
                var index = 3
                while index + 2 < parts.count {
                    if let id = parts[index].string, let score = parts[index + 1].string.flatMap(Double.init) { page.append((id, score, parts[index + 2])) }
                    index += 3
                }
                if !page.isEmpty { try await body(page) }
                guard read == Self.pageSize, let last = parts[1].string else { return }
                after = "(" + last
            }
        }
        throw ShopError.unavailable("the \(partition) read model was rebuilt \(Self.maximumRestarts + 1) times while it was listed; retry")
    }

    /// How often a list starts again after a rebuild's swap before it answers 503.
    static let maximumRestarts = 3

    /// One live entity's JSON, or nil when there is none (never created, or deleted).
    public func one(_ type: EntityType, id: String) async throws -> [UInt8]? {
        let partition = layout.partition(type, id: id)
        let key = RedisArgument(partition.keys.entities)
        guard confirmation != nil else { return try await pool.send(RawCommand(["HGET", key, RedisArgument(id)], keys: [key], readOnly: true)).bytes }
        return try await query(Scripts.one, in: partition, keys: [key], arguments: [RedisArgument(id)]).bytes
    }

    /// Live orders that have no billing, as a JSON array, in creation order.
    ///
    /// Page by page (``pages(of:_:)``): each page of orders, then which of them have a billing
    /// (the billings' unique index, in its own slot: it may be on another node). A billing made
    /// while the list is read leaves its order in it or not. Before, the billed ids were all
    /// read at once and passed to one script over every order (trial K: 667 ms of Redis's time at
    /// 28,000 orders, 132 ms more for the ids).
    public func unbilledOrders() async throws -> [UInt8] {
        try await merged(.order) { page in
            // Each billing lives in its order's partition (``EventStore/placement(_:key:)``).
            var billed = [Bool](repeating: false, count: page.count)
            let byPartition = Dictionary(grouping: page.indices) { layout.partition(of: .billing, id: page[$0].id) }
            for (p, indices) in byPartition {
                let billings = layout.partition(.billing, p)
                let reply =
                    try await query(
                        Scripts.present, in: billings, keys: [RedisArgument(billings.keys.unique)], arguments: indices.map { RedisArgument(page[$0].id) }
                    ).array ?? []
                guard reply.count == indices.count else { throw RedisError(.unexpectedReply, "billed check answered \(reply.count) of \(indices.count)") }
                for (index, isBilled) in zip(indices, reply) { billed[index] = isBilled.int != 0 }
            }
            return zip(page, billed).filter { !$0.1 }.map { ($0.0.score, $0.0.json) }
        }
    }

    /// Runs a query script; with ``confirmation``, answers only once the replicas hold what it
    /// read (`type`'s replica barrier, then `WAIT`).
    private func query(_ script: RedisScript, in partition: EntityPartition, keys: [RedisArgument], arguments: [RedisArgument] = []) async throws
        -> RESPValue
    {
        guard let confirmation else { return try await pool.evaluate(script, keys: keys, arguments: arguments) }
        let confirmed = try await pool.evaluate(
            script, keys: keys, arguments: arguments, confirming: confirmation, barrier: RedisArgument(partition.keys.replicaBarrier),
            wrote: { _ in false })
        guard confirmed.isConfirmed else { throw ShopError.unconfirmedRead(acknowledged: confirmed.acknowledgedBy, wanted: confirmation.replicas) }
        return confirmed.reply
    }

    /// `{"products": [...], "inventory": [...], "customers": [...], "orders": [...], "billings": [...]}`.
    public func report() async throws -> [UInt8] {
        let order: [EntityType] = [.product, .inventory, .customer, .order, .billing]
        var out: [UInt8] = Array("{".utf8)
        for (i, type) in order.enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out += Array("\"\(type.plural)\":".utf8)
            out += try await list(type)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// How many live entities a type has.
    public func count(_ type: EntityType) async throws -> Int {
        var total = 0
        for partition in layout.partitions(type) {
            let key = RedisArgument(partition.keys.ids)
            total += try await pool.send(RawCommand(["ZCARD", key], keys: [key], readOnly: true)).int ?? 0
        }
        return total
    }

    /// An entity whether live or deleted (its last state), for mails about things that are gone
    /// meanwhile; nil when Redis has never seen it.
    public func lookup<E: ShopEntity>(_ type: E.Type, id: String) async throws -> (entity: E, deleted: Bool)? {
        let k = layout.partition(E.type, id: id).keys
        let reply = try await pool.evaluate(
            Scripts.lookup, keys: [RedisArgument(k.entities), RedisArgument(k.tombstones)], arguments: [RedisArgument(id)])
        guard let parts = reply.array, parts.count == 2, let json = parts[0].bytes else { return nil }
        return (try JSONCoding.decode(E.self, from: json), parts[1].string == "deleted")
    }

    /// The version of an entity's latest change, live or deleted.
    public func version(_ type: EntityType, id: String) async throws -> Int? {
        let key = RedisArgument(layout.partition(type, id: id).keys.versions)
        return try await pool.send(RawCommand(["HGET", key, RedisArgument(id)], keys: [key], readOnly: true)).int
    }

    /// Joins JSON documents (bulk strings) into a JSON array without decoding them.
    static func jsonArray(_ items: [RESPValue]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "[")]
        out.reserveCapacity(items.count * 96 + 2)
        var first = true
        for item in items {
            guard let bytes = item.bytes else { continue }
            if !first { out.append(UInt8(ascii: ",")) }
            out += bytes
            first = false
        }
        out.append(UInt8(ascii: "]"))
        return out
    }
}

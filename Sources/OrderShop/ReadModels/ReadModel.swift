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

    public init(pool: any RedisClientProtocol, confirmation: ReplicaConfirmation? = nil) {
        self.pool = pool
        self.confirmation = confirmation
    }

    /// All live entities of a type as a JSON array, in creation order.
    public func list(_ type: EntityType) async throws -> [UInt8] {
        let k = type.keys
        let reply = try await query(Scripts.all, of: type, keys: [RedisArgument(k.ids), RedisArgument(k.entities)])
        return Self.jsonArray(reply.array ?? [])
    }

    /// One live entity's JSON, or nil when there is none (never created, or deleted).
    public func one(_ type: EntityType, id: String) async throws -> [UInt8]? {
        let key = RedisArgument(type.keys.entities)
        guard confirmation != nil else { return try await pool.send(RawCommand(["HGET", key, RedisArgument(id)], keys: [key], readOnly: true)).bytes }
        return try await query(Scripts.one, of: type, keys: [key], arguments: [RedisArgument(id)]).bytes
    }

    /// Live orders that have no billing, as a JSON array.
    ///
    /// Two reads, each in its type's slot (they may be on two nodes): the billed order ids, then
    /// the orders without them. A billing made between the two shows its order as unbilled still,
    /// as if the query had come just before it.
    public func unbilledOrders() async throws -> [UInt8] {
        let billed = try await query(Scripts.fields, of: .billing, keys: [RedisArgument(EntityType.billing.keys.unique)]).array ?? []
        let o = EntityType.order.keys
        return Self.jsonArray(try await query(Scripts.unbilled, of: .order, keys: [RedisArgument(o.ids), RedisArgument(o.entities)], arguments: billed.map {
            RedisArgument(bytes: $0.bytes ?? [])
        }).array ?? [])
    }

    /// Runs a query script; with ``confirmation``, answers only once the replicas hold what it
    /// read (`type`'s replica barrier, then `WAIT`).
    private func query(_ script: RedisScript, of type: EntityType, keys: [RedisArgument], arguments: [RedisArgument] = []) async throws -> RESPValue {
        guard let confirmation else { return try await pool.evaluate(script, keys: keys, arguments: arguments) }
        let confirmed = try await pool.evaluate(
            script, keys: keys, arguments: arguments, confirming: confirmation, barrier: RedisArgument(type.keys.replicaBarrier), wrote: { _ in false })
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
        let key = RedisArgument(type.keys.ids)
        return try await pool.send(RawCommand(["ZCARD", key], keys: [key], readOnly: true)).int ?? 0
    }

    /// An entity whether live or deleted (its last state), for mails about things that are gone
    /// meanwhile; nil when Redis has never seen it.
    public func lookup<E: ShopEntity>(_ type: E.Type, id: String) async throws -> (entity: E, deleted: Bool)? {
        let k = E.type.keys
        let reply = try await pool.evaluate(
            Scripts.lookup, keys: [RedisArgument(k.entities), RedisArgument(k.tombstones)], arguments: [RedisArgument(id)])
        guard let parts = reply.array, parts.count == 2, let json = parts[0].bytes else { return nil }
        return (try JSONCoding.decode(E.self, from: json), parts[1].string == "deleted")
    }

    /// The version of an entity's latest change, live or deleted.
    public func version(_ type: EntityType, id: String) async throws -> Int? {
        let key = RedisArgument(type.keys.versions)
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

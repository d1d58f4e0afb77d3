import Foundation
import RedisClient
import Tracing

/// The event store: appends an entity's event to `events:{<type>}_<action>` and updates the read
/// model in the same Lua script, so that both happen or neither does, and a command's effect is
/// visible to every query as soon as it has answered.
///
/// Each entry has the original's fields `event_id` (a UUID) and `entity` (the whole entity as
/// JSON; for a deletion its last state), and `entity_id`, `version` (1 on creation, +1 per
/// change), `time` (epoch milliseconds), `trace_id`, and for stock moved by an order, `cause`.
public struct EventStore: Sendable {
    public let pool: any RedisClientProtocol
    /// When set, a command that wrote answers only after this many replicas have its writes
    /// (`WAIT` on the script's connection); else ``ShopError/unconfirmed(acknowledged:wanted:)``.
    public let confirmation: ReplicaConfirmation?

    /// The chaos harness's mode: an order change waits this long between reserving its stock
    /// and making the change (``OrderSteps``), so that a SIGKILL of the order service finds
    /// changes between their steps. Zero otherwise.
    public let orderStepPause: Duration

    /// How each type's events and read model are spread over partitions (``ShopLayout``).
    public let layout: ShopLayout

    /// Deliberate defects for chaos runs (`ordershop rebuild --planted-bug ...`).
    public enum PlantedBug: String, Sendable, CaseIterable {
        /// Rebuilds and snapshots take an entry with an `entity_id` as that entity's state
        /// whatever its `entity` holds (what they did before ``RecordedEvent/decode(_:action:)``
        /// checked it): a malformed entry is then served by every query of its type.
        case rebuildFoldsMalformed = "rebuild-folds-malformed"
        /// The rebuild's swap does not check that no event was appended since it read the
        /// streams: a command's event that lands between the read and the swap is missing from
        /// the read model swapped in, and queries serve its entity's old state (or none).
        case rebuildSwapsBlindly = "rebuild-swaps-blindly"
        /// Rebuilds fold the changes of an id never created as that entity's state (what
        /// ``Projection`` did before its rule): an `_updated` entry XADDed for an id no command
        /// made is served by every query of its type after a rebuild.
        case rebuildFoldsUncreated = "rebuild-folds-uncreated"
    }

    /// A planted defect, for the chaos harness only; nil otherwise.
    public var plantedBug: PlantedBug? = nil
    /// A planted defect of the order changes, for the chaos harness only; nil otherwise.
    public var orderPlantedBug: OrderChangePlantedBug? = nil
    /// A planted defect for the chaos harness only (`ordershop serve customer --planted-bug
    /// customers-misplaced`): a create's entities are stored in the partition after the one
    /// their ids were drawn into, where no query of one of them looks.
    public var misplacesCreations = false

    public init(
        pool: any RedisClientProtocol, confirmation: ReplicaConfirmation? = nil, orderStepPause: Duration = .zero, layout: ShopLayout = .single
    ) {
        self.pool = pool
        self.confirmation = confirmation
        self.orderStepPause = orderStepPause
        self.layout = layout
    }

    /// What a successful command appended.
    public struct Appended: Sendable, Hashable {
        /// The stream entry ids of the entities' own events, in the order of the input.
        public var entryIDs: [String]
        /// A create retried with its `Idempotency-Key`: the ids the first request made (it
        /// appended nothing now); nil when this command made them.
        public var replayedIDs: [String]? = nil
        /// The ids this command made, when not those of the entities it was given: a keyed
        /// create of orders whose first attempt fixed them (``OrderScripts/claim``).
        public var madeIDs: [String]? = nil
    }

    /// A create's `Idempotency-Key`: a retry with the same key and body within ``ttl`` answers
    /// the ids the first request made, and creates nothing (the same key with another body: 422).
    ///
    /// Why: a create whose answer was lost (a timeout, a dropped connection, a 503 "may have
    /// been applied" with `--confirm-replicas`) cannot be retried blindly, as its ids are made
    /// by the server: the retry would create the entities (and for orders, take the stock)
    /// twice. With the key, retrying is always safe.
    public struct CreateKey: Sendable, Hashable {
        /// How long a key is remembered.
        public static let ttl: Duration = .seconds(24 * 3600)
        /// The longest key accepted.
        public static let maxBytes = 255

        public var key: String
        /// Identifies the request's body, so that a key reused for another body is refused.
        public var digest: String

        /// The key of a request with this body; nil for a key that is empty or too long.
        public init?(key: String, body: [UInt8]) {
            guard !key.isEmpty, key.utf8.count <= Self.maxBytes else { return nil }
            self.key = key
            // FNV-1a, 64 bits: stable across processes (Swift's Hasher is seeded per process).
            // It tells a reused key from a retry, not an attacker's forgery from a body: the
            // client that reuses its own key is the only one it could mislead.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in body {
                hash ^= UInt64(byte)
                hash &*= 0x100_0000_01b3
            }
            digest = String(hash, radix: 16) + ":" + String(body.count)
        }

        /// Where the key's record lives: in the partition its create writes, beside its read model.
        func record(in partition: EntityPartition) -> String { partition.keys.idempotencyPrefix + key }

        /// The scripts' two arguments (``Scripts/idempotencyPrelude``).
        static func arguments(_ key: CreateKey?) -> [RedisArgument] {
            [RedisArgument(key?.digest ?? ""), RedisArgument(ttl.components.seconds * 1000)]
        }
    }

    // MARK: Commands

    /// Creates entities, all or none. Orders take their stock in the same step. With a `key`
    /// seen before (and the same body), creates nothing and answers the first request's ids
    /// (``Appended/replayedIDs``).
    @discardableResult
    public func create<E: ShopEntity>(_ entities: [E], trace: String, key: CreateKey? = nil) async throws -> Appended {
        precondition(!entities.isEmpty)
        if let orders = entities as? [Order] { return try await OrderSteps(store: self).create(orders, trace: trace, key: key) }
        let type = E.type
        var partition = try placement(entities, key: key)
        do {
            try await requireReferences(entities)
        } catch {
            // A retry with its key answers what the first request made, even if what it
            // references is gone since: the key's record is looked up only then, not on every
            // keyed create (one round trip fewer on the common path).
            guard let key, try await pool.send(EXISTS(RedisArgument(key.record(in: partition)))) > 0 else { throw error }
        }
        var entities = entities
        if partition.count > 1 {
            for i in entities.indices { entities[i].id = layout.newID(of: type, inPartition: partition.partition) }
            if misplacesCreations { partition = layout.partition(type, (partition.partition + 1) % partition.count) }
        }
        let k = partition.keys
        let first = try await CreationSequence.draw(entities.count, of: type, in: partition, pool: pool)
        var argv: [RedisArgument] = [
            RedisArgument(Self.now()), RedisArgument(trace), RedisArgument(entities.count), RedisArgument(first.map { "\($0)" } ?? ""),
        ]
        for e in entities {
            argv += [
                RedisArgument(e.id), RedisArgument(RandomUUID.string()), RedisArgument(bytes: e.json), RedisArgument(e.uniqueValue ?? ""),
            ]
        }
        argv += CreateKey.arguments(key)
        let keys: [RedisArgument] = [k.entities, k.versions, k.ids, k.sequence, partition.stream(.created), k.unique, idempotencyRecord(partition, key)]
            .map { RedisArgument($0) }
        let reply = try await run("create", Scripts.create, in: partition, keys: keys, arguments: argv)
        var appended = try Self.appended(reply, type: type)
        if partition.count > 1, appended.replayedIDs == nil { appended.madeIDs = entities.map(\.id) }
        return appended
    }

    /// The partition a create's batch goes to, all of it (so that it stays one script: all or
    /// none). A type that references another (a billing its order, a stock record its product)
    /// goes to the partition of what it references, so that the unique index of its references is checked in one slot: a
    /// batch whose references lie in several partitions is refused. Else, with an
    /// `Idempotency-Key`, the key's partition (a retry finds the key's record there); else any.
    func placement<E: ShopEntity>(_ entities: [E], key: CreateKey?) throws -> EntityPartition {
        let count = layout.partitions(of: E.type)
        guard count > 1 else { return layout.partition(E.type, 0) }
        if let reference = E.type.reference {
            let partitions = Set(entities.map { ShopLayout.partition(ofID: $0.referenceValue ?? "", among: count) })
            guard partitions.count == 1, let partition = partitions.first else {
                let first = entities.first?.referenceValue ?? ""
                let other = entities.first { ShopLayout.partition(ofID: $0.referenceValue ?? "", among: count) != ShopLayout.partition(ofID: first, among: count) }
                throw ShopError.badRequest(
                    "the \(E.type.plural) of \(reference.type)s \(first) and \(other?.referenceValue ?? "") are kept in different partitions of this shop, so one request cannot make them all or none; send them in separate requests",
                    field: "body")
            }
            return layout.partition(E.type, partition)
        }
        if let key { return layout.partition(E.type, ShopLayout.partition(ofID: key.key, among: count)) }
        return layout.partition(E.type, Int.random(in: 0..<count))
    }

    /// Replaces a live entity (404 when there is none).
    @discardableResult
    public func update<E: ShopEntity>(_ entity: E, trace: String) async throws -> Appended {
        if let order = entity as? Order { return try await OrderSteps(store: self).update(order, trace: trace) }
        let type = E.type
        let partition = layout.partition(type, id: entity.id)
        let k = partition.keys
        try await requireReferences([entity])
        if partition.count > 1, let reference = entity.referenceValue, layout.partition(of: type, id: reference) != partition.partition {
            // An id no entity has is a 404, as the script would say.
            let key = RedisArgument(k.entities)
            guard try await pool.send(RawCommand(["HEXISTS", key, RedisArgument(entity.id)], keys: [key], readOnly: true)).int == 1 else {
                throw ShopError.notFound(type, entity.id)
            }
            // "a stock record", "a billing" (it said "a inventory": a trial).
            let noun = type == .inventory ? "stock record" : type.rawValue
            throw ShopError.badRequest(
                "a \(noun) stays in the partition of the \(type.reference?.type.rawValue ?? "entity") it was made for; make a new \(noun) instead",
                field: type.reference?.field)
        }
        let keys: [RedisArgument] = [k.entities, k.versions, partition.stream(.updated), k.unique].map { RedisArgument($0) }
        let argv: [RedisArgument] = [
            RedisArgument(entity.id), RedisArgument(RandomUUID.string()), RedisArgument(bytes: entity.json),
            RedisArgument(Self.now()), RedisArgument(trace), RedisArgument(type.uniqueField ?? ""), RedisArgument(entity.uniqueValue ?? ""),
        ]
        let reply = try await run("update", Scripts.update, in: partition, keys: keys, arguments: argv)
        return try Self.appended(reply, type: type, id: entity.id)
    }

    /// Deletes a live entity (404 when there is none). Deleting an order returns its stock.
    @discardableResult
    public func delete(_ type: EntityType, id: String, trace: String) async throws -> Appended {
        if type == .order { return try await OrderSteps(store: self).delete(id: id, trace: trace) }
        let partition = layout.partition(type, id: id)
        let k = partition.keys
        let keys: [RedisArgument] = [k.entities, k.versions, k.ids, k.tombstones, partition.stream(.deleted), k.unique].map { RedisArgument($0) }
        let argv: [RedisArgument] = [
            RedisArgument(id), RedisArgument(RandomUUID.string()), RedisArgument(Self.now()), RedisArgument(trace),
            RedisArgument(type.uniqueField ?? ""),
        ]
        let reply = try await run("delete", Scripts.delete, in: partition, keys: keys, arguments: argv)
        return try Self.appended(reply, type: type, id: id)
    }

    // MARK: Checks before a command

    /// Throws 400 for the first entity whose reference (a stock record's product, a billing's
    /// order) is not a live entity. A read before the command's own script, which may then run
    /// on another node: what it references can go in between, which leaves a stock record of a
    /// deleted product or a billing of a deleted order, as a deletion after the create would.
    func requireReferences<E: ShopEntity>(_ entities: [E]) async throws {
        guard let reference = E.type.reference else { return }
        try await requireLive(reference.type, Set(entities.compactMap(\.referenceValue)), refusal: "reference", of: E.type)
    }

    /// Throws the refusal `{refusal, id}` of a command of `owner` (as the scripts answer it, see
    /// ``appended(_:type:id:)``) for the first of `ids` that is not a live entity of `type`.
    func requireLive(_ type: EntityType, _ ids: Set<String>, refusal: String, of owner: EntityType) async throws {
        guard !ids.isEmpty else { return }
        // Each partition's ids in one script (one partition: all of them, as always).
        let byPartition = Dictionary(grouping: ids.sorted()) { layout.partition(of: type, id: $0) }
        for p in byPartition.keys.sorted() {
            let partition = layout.partition(type, p)
            let keys = [RedisArgument(partition.keys.entities)]
            let arguments = byPartition[p, default: []].map { RedisArgument($0) }
            var reply = try await pool.evaluate(Scripts.firstMissing, keys: keys, arguments: arguments)
            // A refusal rests on what it read: with `--confirm-replicas`, only once the replicas
            // have it (the entity's unconfirmed deletion may yet be lost), as the scripts' refusals.
            if reply.string != nil, confirmation != nil {
                reply = try await runConfirmed(Scripts.firstMissing, in: partition, keys: keys, arguments: arguments, wrote: { _ in false })
            }
            if let missing = reply.string {
                _ = try Self.appended(.array([.bulkString(Array(refusal.utf8)), .bulkString(Array(missing.utf8))]), type: owner)
            }
        }
    }

    // MARK: Running scripts

    /// The create's idempotency record; without a key, a name of the partition's slot that the
    /// script never touches (a script's keys are fixed in number).
    func idempotencyRecord(_ partition: EntityPartition, _ key: CreateKey?) -> String {
        key?.record(in: partition) ?? partition.keys.idempotencyPlaceholder
    }

    /// A script whose writes (or, when it wrote nothing, the state it read) must be on the
    /// replicas (with `--confirm-replicas`) before what follows relies on them: a keyed create's
    /// claim of its ids (a replayed answer is a 200), a reservation's abort before its units
    /// are returned. `wrote`: whether a reply wrote (a 503 then says "may have been applied",
    /// else "not applied"). `partition`: whose slot the keys are in (its replica barrier).
    func runConfirmed(
        _ script: RedisScript, in partition: EntityPartition, keys: [RedisArgument], arguments: [RedisArgument],
        wrote: @escaping @Sendable (RESPValue) -> Bool = { _ in true }, answersEarlierWrite: @escaping @Sendable (RESPValue) -> Bool = { _ in false }
    ) async throws -> RESPValue {
        try await pool.runCommandScript(
            script, keys: keys, arguments: arguments, confirmation: confirmation, barrier: RedisArgument(partition.keys.replicaBarrier), wrote: wrote,
            answersEarlierWrite: answersEarlierWrite)
    }

    /// Runs one command script in a span of its own, with the span's trace context as the
    /// script's last two arguments (see ``Scripts``): the events it appends carry it.
    /// `partition`: whose slot the keys are in (its replica barrier confirms a refusal).
    func run(_ name: String, _ script: RedisScript, in partition: EntityPartition, keys: [RedisArgument], arguments: [RedisArgument]) async throws
        -> RESPValue
    {
        try await withSpan("script \(name)", ofKind: .client) { span in
            if span.isRecording {
                span.updateAttributes { attributes in
                    attributes["db.system.name"] = "redis"
                    attributes["db.operation.name"] = "EVALSHA"
                    attributes["db.stored_procedure.name"] = name
                }
            }
            let trace = OutgoingTrace.fields()
            var argv = arguments
            argv.append(RedisArgument(trace.traceparent))
            argv.append(RedisArgument(trace.tracestate))
            // Every command script (and step) answers {'ok', ...} when it wrote, and a refusal
            // otherwise. A keyed create's {'replayed', ...} wrote nothing (its barrier makes WAIT
            // cover the first attempt) but answers what that attempt wrote: unconfirmed, it "may
            // have been applied". As a refusal ("not applied") a client could take it for a
            // create that never happened and make it again under a new key, while it was on the
            // primary all along (a trial: 18-31 such answers per failover).
            return try await pool.runCommandScript(
                script, keys: keys, arguments: argv, confirmation: confirmation, barrier: RedisArgument(partition.keys.replicaBarrier),
                wrote: { $0.array?.first?.string == "ok" }, answersEarlierWrite: { $0.array?.first?.string == "replayed" })
        }
    }

    // MARK: Replies

    /// Turns a script's reply into the entry ids, or into the ShopError it stands for.
    static func appended(_ reply: RESPValue, type: EntityType, id: String? = nil) throws -> Appended {
        guard let parts = reply.array, let tag = parts.first?.string else {
            throw RedisError(.unexpectedReply, "event store script answered \(reply)")
        }
        let s = parts.dropFirst().map { $0.string ?? "" }
        func at(_ i: Int) -> String { i < s.count ? s[i] : "" }
        switch tag {
        case "ok":
            // update/delete answer {ok, entry id, version}; create answers {ok, entry ids...}
            return Appended(entryIDs: id == nil ? s : [at(0)])
        case "replayed":
            return Appended(entryIDs: [], replayedIDs: Array(s))
        case "keyreused":
            throw ShopError(
                status: 422, message: "this Idempotency-Key was used in the last 24 hours for a request with another body; use a new key for a new request",
                field: "Idempotency-Key")
        case "notfound":
            throw ShopError.notFound(type, id ?? "")
        case "exists":
            throw ShopError.conflict("\(type) \(at(0)) already exists", field: "id")
        case "unique":
            let field = type.uniqueField ?? "id"
            throw ShopError.conflict("\(field) \(at(0)) already has \(type == .inventory ? "a stock record" : "a \(type)") (\(at(1)))", field: field)
        case "uniqueinbatch":
            // Named the batch's own new id as the holder before: an id that never came to exist.
            let field = type.uniqueField ?? "id"
            throw ShopError.badRequest("\(field) \(at(0)) appears more than once in this request; each \(type) needs its own", field: field)
        case "reference":
            let ref = type.reference
            throw ShopError.badRequest("no \(ref?.type.rawValue ?? "entity") with id \(at(0))", field: ref?.field)
        case "customer":
            throw ShopError.badRequest("no customer with id \(at(0))", field: "customer_id")
        case "product":
            throw ShopError.badRequest("no product with id \(at(0)) (never created, or deleted)", field: "product_ids")
        case "stock":
            throw ShopError.conflict("out of stock: product \(at(0)) has \(at(1)) units, the order needs \(at(2))", field: "product_ids")
        default:
            throw RedisError(.unexpectedReply, "event store script answered \(reply)")
        }
    }

    /// Epoch milliseconds, the `time` field of every event.
    static func now() -> Int { Int(Date().timeIntervalSince1970 * 1000) }
}

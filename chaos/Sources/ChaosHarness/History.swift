import AsyncHTTPClient
import Foundation
import NIOCore
import OrderShop
import RedisClient
import StreamWorker

/// Everything the checker judges, read after the drain: the commands the clients sent and what
/// Redis and the services hold. A plain value, so that the checker is a pure function of it and
/// can be tested on synthetic histories (see `Tests/ChaosHarnessTests`).
public struct History: Sendable {
    /// One mail in `mail:sent`.
    public struct Mail: Sendable, Hashable {
        public var key: String
        /// welcome, goodbye, ... or nil when the text matches no kind.
        public var kind: String?
        /// The address it went to (nil: not known, not checked).
        public var to: String?
        public init(key: String, kind: String?, to: String? = nil) {
            self.key = key
            self.kind = kind
            self.to = to
        }
    }

    /// A (stream, group) after the drain.
    public struct Group: Sendable, Codable, Hashable {
        public var stream: String
        public var group: String
        public var pending: Int
        /// nil: unknown (counts as not drained).
        public var lag: Int?
        public init(stream: String, group: String, pending: Int, lag: Int?) {
            self.stream = stream
            self.group = group
            self.pending = pending
            self.lag = lag
        }
    }

    /// One dead letter.
    public struct Letter: Sendable, Hashable {
        public var originalID: String
        public var reason: String
        public var error: String
        /// The entry's `chaos_injection` marker, when the harness injected it.
        public var marker: String?
        /// The entry's `replayed_from`: it was dead-lettered again after a `dlq replay`.
        public var replayedFrom: String?
        public init(originalID: String, reason: String, error: String, marker: String? = nil, replayedFrom: String? = nil) {
            self.originalID = originalID
            self.reason = reason
            self.error = error
            self.marker = marker
            self.replayedFrom = replayedFrom
        }
    }

    public var records: [CommandRecord]
    /// Every entry of every entity stream, by stream.
    public var entries: [String: [StreamEntry]]
    public var mails: [Mail]
    /// Per subscription (``History/key(_:_:)``): event id -> applications the runtime committed
    /// (the ``AppliedLedger``).
    public var applied: [String: [String: Int]]
    /// Per subscription: event id -> applications for which msg answered `duplicate`.
    public var msgRepeats: [String: [String: Int]]
    public var groups: [Group]
    /// Per subscription: its dead letters.
    public var deadLetters: [String: [Letter]]
    /// Per entity type: what the services serve, by id.
    public var served: [EntityType: [String: JSONValue]]
    /// Per entity type: a fresh replay of its streams, by id.
    public var replayed: [EntityType: [String: JSONValue]]
    /// Per entity type: ids whose value in the read model (`{T}_entities`, read from Redis, not
    /// through the services) is not a JSON object with that id, and what it holds.
    public var unreadableEntities: [EntityType: [String: String]] = [:]
    /// A shop in partitions (``ShopLayout``): read-model entities stored in another partition
    /// than their id's, and keys of the one-partition layout that exist (what they are).
    public var misplacedKeys: [String] = []
    /// Streams whose entries were removed (trimmed) before the harness copied them: the history
    /// is incomplete there (stream -> entries missing).
    public var incomplete: [String: Int] = [:]
    /// Order changes whose stock reservation is still open after the drain (``OrderSteps``):
    /// stock taken (or owed back) for a change that was never decided.
    public var openReservations = 0
    /// Order changes a reaper aborted (``OrderStepKeys/reaperAborts(in:)``, summed over the order
    /// partitions), after their process died or stalled between the steps. Not the decisions a
    /// keyed create aborts itself when a later stock partition refuses it (in partitions, most of
    /// the aborted decisions of a run: counting those, a run whose order faults left no change
    /// between its steps would not be VOID).
    public var abortedOrderChanges = 0
    /// The shop's partitions (``ShopLayout``): each partition stream is a subscription of its own.
    public var partitions = 1
    public var layout: ShopLayout { ShopLayout(partitions: partitions) }

    public init(
        records: [CommandRecord] = [], entries: [String: [StreamEntry]] = [:], mails: [Mail] = [], applied: [String: [String: Int]] = [:],
        msgRepeats: [String: [String: Int]] = [:], groups: [Group] = [], deadLetters: [String: [Letter]] = [:],
        served: [EntityType: [String: JSONValue]] = [:], replayed: [EntityType: [String: JSONValue]] = [:]
    ) {
        self.records = records
        self.entries = entries
        self.mails = mails
        self.applied = applied
        self.msgRepeats = msgRepeats
        self.groups = groups
        self.deadLetters = deadLetters
        self.served = served
        self.replayed = replayed
    }

    /// The key of a subscription in the per-subscription maps.
    public static func key(_ stream: String, _ group: String) -> String { "\(stream)|\(group)" }

    /// What a service's 503 says of a command Redis took but replicas did not confirm
    /// (`--confirm-replicas`): its `"outcome"`.
    public static let unconfirmedOutcome = "may have been applied"
    /// What the message of that 503 says when the replicas did not confirm (``ShopError/unconfirmed(acknowledged:wanted:)``),
    /// as opposed to an answer lost or late (a timeout, a dropped connection), which says
    /// "may have been applied" too but tells nothing of replication.
    public static let unconfirmedByReplicas = "replicas asked for confirmed it"
    /// What a service's 503 says of a command Redis refused for lack of memory (``ShopError``).
    public static let outOfMemory = "Redis is out of memory"
    /// What the 409 of an order that would take more units than there are says
    /// (``ShopError/conflict(_:field:)``, from the stock check of the order's first step).
    public static let outOfStock = "out of stock"
    /// The order changes' open stock reservations (``OrderSteps``), one sorted set per stock
    /// partition: empty once the shop is idle.
    public static func openReservationKeys(in layout: ShopLayout) -> [String] { layout.partitions(.inventory).map(OrderStepKeys.open(in:)) }

    /// How many stock reservations' parts are open, over every stock partition.
    static func openReservations(pool: any RedisClientProtocol, layout: ShopLayout) async throws -> Int {
        var open = 0
        for key in openReservationKeys(in: layout) { open += try await pool.send(ZCARD(RedisArgument(key))) }
        return open
    }
    /// The error of a command record whose 2xx answer the load dropped on purpose, to retry the
    /// create with its `Idempotency-Key` (``LoadGenerator/keyedCreate(_:body:type:items:rng:)``).
    public static let droppedAnswer = "answer dropped by the harness (a client that lost it retries with its Idempotency-Key)"
    /// Field of an entry the harness injected as malformed (unique value per injection).
    public static let injectionField = "chaos_injection"
    /// Field of the update the harness appends for an id never created, before each rebuild
    /// (``FaultInjector/appendUncreatedUpdate()``). Unlike an injection it is a well-formed
    /// event to the services and to ``ReplayOracle``; only the command count leaves it out.
    public static let uncreatedField = "chaos_uncreated"
    /// Field of an entry the harness appended as a publisher's retry: the original entry's id.
    public static let duplicateField = "chaos_duplicate_of"
    /// Field the runtime's `dlq replay` adds to a replayed entry: the original's id.
    public static let replayedField = "replayed_from"
}

/// Reads a ``History`` from Redis and the services.
struct HistoryCollector {
    let pool: any RedisClientProtocol
    let http: HTTPClient
    let gateway: String
    let layout: ShopLayout

    func collect(records: [CommandRecord], archive: HistoryArchive) async throws -> History {
        var h = History(records: records)
        h.partitions = layout.partitions
        var current: [String: [StreamEntry]] = [:]
        for type in EntityType.allCases {
            for partition in layout.partitions(type) {
                for stream in partition.streams { current[stream] = try await readAll(stream) }
            }
        }
        h.entries = await archive.merged(with: current)
        for (stream, list) in h.entries {
            // Entries ever added (Redis 7 XINFO STREAM); nothing but trim removes entity events.
            // (A stream never written to does not exist: nothing to compare.)
            guard !list.isEmpty, let fields = try? await pool.send(RawCommand(["XINFO", "STREAM", RedisArgument(stream)], keys: [RedisArgument(stream)], readOnly: true)).array else { continue }
            var i = 0
            while i + 1 < fields.count {
                if fields[i].string == "entries-added", let added = fields[i + 1].int, added > list.count { h.incomplete[stream] = added - list.count }
                i += 2
            }
        }
        h.openReservations = try await History.openReservations(pool: pool, layout: layout)
        for partition in layout.partitions(.order) {
            let key = RedisArgument(OrderStepKeys.reaperAborts(in: partition))
            h.abortedOrderChanges += Int(try await pool.send(RawCommand(["GET", key], keys: [key], readOnly: true)).string ?? "0") ?? 0
        }
        h.mails = try await MailLog(pool: pool).all().map { History.Mail(key: $0.key, kind: $0.kind?.rawValue, to: $0.to) }
        let inspector = GroupInspector(client: pool)
        for sub in WorkerStreams.subscriptions(in: layout) {
            let key = History.key(sub.stream, sub.group)
            h.applied[key] = try await sumHashes(matching: AppliedLedger.appliedPattern(stream: sub.stream, group: sub.group))
            h.msgRepeats[key] = try await sumHashes(matching: AppliedLedger.msgRepeatsPattern(stream: sub.stream, group: sub.group))
            let status = try await inspector.groupStatus(stream: sub.stream, group: sub.group)
            h.groups.append(History.Group(stream: sub.stream, group: sub.group, pending: status.pending, lag: status.lag))
            let letters = try await DeadLetters(client: pool, stream: sub.stream, group: sub.group).list(count: 100_000)
            h.deadLetters[key] = letters.map {
                History.Letter(
                    originalID: $0.originalID, reason: $0.reason, error: $0.error, marker: $0.fields[History.injectionField],
                    replayedFrom: $0.fields[History.replayedField])
            }
        }
        // The replay is ours, of the whole history (trimmed entries included), not the store's:
        // nor its fold (``ReplayOracle``, not the `Projection` that rebuild and snapshot use).
        for type in EntityType.allCases {
            var entries: [EventAction: [StreamEntry]] = [:]
            for action in EventAction.allCases { entries[action] = h.entries.entries(of: type, action, in: layout) }
            h.replayed[type] = ReplayOracle.live(entries)
            let stored = try await storedEntities(type)
            h.unreadableEntities[type] = stored.unreadable
            h.misplacedKeys += stored.misplaced
            h.served[type] = try await list(type, stored: stored.readable, storedUnreadable: !stored.unreadable.isEmpty)
        }
        return h
    }

    private func readAll(_ stream: String) async throws -> [StreamEntry] {
        var out: [StreamEntry] = []
        var start = "-"
        while true {
            let page = try await pool.send(XRANGE(RedisArgument(stream), start: start, end: "+", count: 1000))
            out += page
            guard page.count == 1000, let last = page.last else { return out }
            start = "(" + last.id
        }
    }

    /// Every hash whose name matches a pattern, summed per field.
    private func sumHashes(matching pattern: String) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for name in try await keys(matching: pattern) {
            let fields = try await pool.send(RawCommand(["HGETALL", RedisArgument(name)], keys: [RedisArgument(name)], readOnly: true)).throwingServerError().array ?? []
            var i = 0
            while i + 1 < fields.count {
                if let field = fields[i].string { out[field, default: 0] += fields[i + 1].int ?? 0 }
                i += 2
            }
        }
        return out
    }

    /// Every key matching a pattern: SCAN on the one server, or on every primary of a cluster
    /// (each holds only its own slots' keys; the map is refreshed first, after the failovers).
    private func keys(matching pattern: String) async throws -> [String] {
        func scan(_ send: (RawCommand) async throws -> RESPValue) async throws -> [String] {
            var out: [String] = []
            var cursor = "0"
            repeat {
                let reply = try await send(RawCommand(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", 1000], readOnly: true))
                    .throwingServerError()
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { throw ChaosError("SCAN answered \(reply)") }
                cursor = next
                out += (parts[1].array ?? []).compactMap(\.string)
            } while cursor != "0"
            return out
        }
        guard let cluster = pool as? RedisClusterClient else { return try await scan { try await pool.send($0) } }
        try await cluster.connect()
        var out: [String] = []
        for address in cluster.shards.filter({ !$0.slots.isEmpty }).compactMap({ $0.primary.flatMap { cluster.address(of: $0) } }) {
            let connection = try RedisConnection(configuration: cluster.configuration.configuration(for: address))
            do {
                out += try await scan { try await connection.send($0) }
            } catch {
                await connection.close()
                throw error
            }
            await connection.close()
        }
        return out
    }

    /// GET /<plural> through the gateway, by id. A 503 is asked again for up to a minute: with
    /// `--confirm-replicas` a query answers only once the replica holds what it shows, and after
    /// a failover the new replica may still be resyncing.
    /// The read model's stored entities, read from Redis: those that are a JSON object with
    /// their id, and the others (id -> the start of what is stored).
    private func storedEntities(_ type: EntityType) async throws -> (readable: [String: JSONValue], unreadable: [String: String], misplaced: [String]) {
        var fields: [RESPValue] = []
        var misplaced: [String] = []
        for partition in layout.partitions(type) {
            let key = RedisArgument(partition.keys.entities)
            let stored = try await pool.send(RawCommand(["HGETALL", key], keys: [key], readOnly: true)).throwingServerError().array ?? []
            for i in stride(from: 0, to: stored.count - 1, by: 2) {
                if let id = stored[i].string, layout.partition(of: type, id: id) != partition.partition { misplaced.append("\(type) \(id) in \(partition.keys.entities)") }
            }
            fields += stored
        }
        // A shop in partitions keeps nothing under the one-partition names (a process started
        // without --partitions would write there).
        if layout.partitions(of: type) > 1 {
            for name in [type.keys.entities] + type.streams {
                let key = RedisArgument(name)
                if try await pool.send(RawCommand(["EXISTS", key], keys: [key], readOnly: true)).int ?? 0 > 0 { misplaced.append("\(name) exists") }
            }
        }
        var readable: [String: JSONValue] = [:]
        var unreadable: [String: String] = [:]
        var i = 0
        while i + 1 < fields.count {
            defer { i += 2 }
            guard let id = fields[i].string, let value = fields[i + 1].bytes else { continue }
            if let json = try? JSONCoding.decode(JSONValue.self, from: value), json["id"]?.stringValue == id {
                readable[id] = json
            } else {
                unreadable[id] = String(decoding: value.prefix(80), as: UTF8.self)
            }
        }
        return (readable, unreadable, misplaced)
    }

    /// What the gateway serves for a type. A body that is not JSON (a read model holding an
    /// unreadable entity makes one) stands for the stored entities that are readable: the
    /// unreadable ones are the checker's violation then, not an error of the run. With every
    /// stored entity readable, a body that is not JSON is the gateway's fault and an error of
    /// the run: standing for what Redis holds, it let a gateway that cut or garbled its lists
    /// pass "read models = replay" (a review).
    private func list(_ type: EntityType, stored: [String: JSONValue], storedUnreadable: Bool) async throws -> [String: JSONValue] {
        var attempt = 0
        var response = try await http.execute(HTTPClientRequest(url: gateway + "/" + type.plural), timeout: .seconds(60))
        var body = try await response.body.collect(upTo: 256 << 20)
        while response.status.code == 503 && attempt < 60 {
            attempt += 1
            try await Task.sleep(for: .seconds(1))
            response = try await http.execute(HTTPClientRequest(url: gateway + "/" + type.plural), timeout: .seconds(60))
            body = try await response.body.collect(upTo: 256 << 20)
        }
        guard response.status.code == 200 else { throw ChaosError("GET /\(type.plural) answered \(response.status.code): \(String(buffer: body).prefix(200))") }
        guard let json = try? JSONCoding.decode(JSONValue.self, from: body.readableBytesView), let items = json.arrayValue else {
            guard storedUnreadable else {
                throw ChaosError("GET /\(type.plural) answered 200 with a body that is not a JSON list, though every stored \(type.rawValue) is readable: \(String(buffer: body).prefix(200))")
            }
            return stored
        }
        var out: [String: JSONValue] = [:]
        for item in items { if let id = item["id"]?.stringValue { out[id] = item } }
        return out
    }
}

/// Copies of the entity streams, taken before each `ordershop trim`: retention may remove
/// entries from Redis, never from the history the checker judges. The harness reads every entity
/// stream as a consumer group of its own (`chaos-archive`) and acknowledges an entry only once it
/// holds a copy, so that a trim, which never drops an entry some group still needs, cannot remove
/// an entry the harness has not seen (as an archiver in production would). At the end the copies
/// are merged with what the streams still hold, and the count is compared with each stream's
/// `entries-added`, so that an entry missing anyway is reported, not overlooked.
actor HistoryArchive {
    static let group = "chaos-archive"
    let pool: any RedisClientProtocol
    /// Replicated and cluster topologies: replicas that must hold what the archive copies before it keeps it.
    let confirmingReplicas: Int
    /// Every partition stream of every entity stream (``ShopLayout``).
    let streams: [String]
    private var entries: [String: [String: StreamEntry]] = [:]

    init(pool: any RedisClientProtocol, confirmingReplicas: Int = 0, layout: ShopLayout) {
        self.pool = pool
        self.confirmingReplicas = confirmingReplicas
        self.streams = EntityType.allCases.flatMap { layout.partitions($0).flatMap(\.streams) }
    }

    /// One page of the archive's group. With ``confirmingReplicas``, the page counts only once
    /// the replica has it: a copy taken from a primary cut off from its replica held entries
    /// the failover then lost, and the history judged them missing from everything downstream
    /// (seen: 7 "never applied" events, 8 read-model entities, 10 stocks in one run). A write of
    /// the archive's own (a fence) on the reading connection, then `WAIT`: the replication
    /// stream is ordered, so the fence confirmed means the entries read before it are there.
    private nonisolated func page(_ stream: String, after: String) async throws -> [StreamEntry] {
        let confirmingReplicas = self.confirmingReplicas
        return try await pool.withConnection(forKeys: [RedisArgument(stream)]) { connection in
            let batches = try await connection.send(
                XREADGROUP(group: Self.group, consumer: "harness", streams: [(stream, after)], count: 1000))
            let page = batches.flatMap(\.entries)
            guard confirmingReplicas > 0, let last = page.last else { return page }
            // In the stream's slot (its hash tag), so that a cluster node takes it on this connection.
            _ = try await connection.send(SET(RedisArgument(stream + ":chaos-archive-fence"), RedisArgument(last.id)))
            let acknowledged = try await connection.send(WAIT(replicas: confirmingReplicas, timeout: .seconds(2)))
            guard acknowledged >= confirmingReplicas else {
                throw ChaosError("the replica has not confirmed the entries copied from \(stream) (cut off?); the copy is retried")
            }
            return page
        }
    }

    /// Creates the archive's group on every entity stream (from the beginning).
    func start() async throws {
        for stream in streams {
            do {
                let reply = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: Self.group, id: "0"))
                if case .error(let message) = reply { throw ChaosError(message) }
            } catch where "\(error)".contains("BUSYGROUP") {
                continue  // already there (a restarted run on kept data)
            }
        }
    }

    /// Copies what each stream gained since the last copy, then acknowledges it. Safe to call
    /// again after it failed: it first re-reads what the archive was delivered and did not
    /// acknowledge (an XREADGROUP whose reply was lost in a Redis restart), then the new entries.
    func copy() async throws {
        for stream in streams {
            var after = "0"
            while true {
                let page = try await page(stream, after: after)
                guard let last = page.last else { break }
                for e in page { entries[stream, default: [:]][e.id] = e }
                _ = try await pool.send(XACK(RedisArgument(stream), group: RedisArgument(Self.group), ids: page.map(\.id)))
                after = last.id
            }
            while true {
                let page = try await page(stream, after: ">")
                guard !page.isEmpty else { break }
                for e in page { entries[stream, default: [:]][e.id] = e }
                _ = try await pool.send(XACK(RedisArgument(stream), group: RedisArgument(Self.group), ids: page.map(\.id)))
            }
        }
    }

    /// The copies merged with `current` (what the streams hold now), in entry-id order.
    func merged(with current: [String: [StreamEntry]]) -> [String: [StreamEntry]] {
        var out: [String: [StreamEntry]] = [:]
        for stream in Set(current.keys).union(entries.keys) {
            var byID = entries[stream] ?? [:]
            for e in current[stream] ?? [] { byID[e.id] = e }
            out[stream] = byID.values.sorted { (StreamID($0.id) ?? .zero) < (StreamID($1.id) ?? .zero) }
        }
        return out
    }
}

import Foundation
import RedisClient

/// One stream entry handed to a handler, with what the handler needs to act on it once.
public struct Delivery: Sendable {
    /// The source stream.
    public let stream: String
    /// The consumer group delivering it.
    public let group: String
    /// This worker's consumer name.
    public let consumer: String
    /// The stream entry id.
    public let id: String
    /// The entry's fields, in order.
    public let fields: [StreamField]
    /// Redis's own delivery counter for this entry in this group (1 on the first delivery).
    public let deliveryCount: Int

    public init(stream: String, group: String, consumer: String, id: String, fields: [StreamField], deliveryCount: Int) {
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.id = id
        self.fields = fields
        self.deliveryCount = deliveryCount
    }

    /// The `event_id` field, else the entry id. Two entries with the same event id (a publisher
    /// that retried an append) are one event: only the first is applied.
    public var eventID: String { string("event_id") ?? "\(stream)/\(id)" }

    /// Why an entry's `event_id` cannot identify its event (nil when it can, or when the entry
    /// has none: then its stream and entry id do): it is empty or white space only. Every such
    /// entry would share one idempotency marker and one downstream key (`crm:`), so all but the
    /// first would be taken for duplicates and acked without being handled; the runtime
    /// dead-letters them instead (found by feeding a worker `event_id ''`: three mails of four lost).
    ///
    /// An `event_id` that is not UTF-8 is refused too: its text (the marker, the key) reads each
    /// bad byte as U+FFFD, so `\xff` and `\xfe` would be one event.
    public static func eventIDProblem(in fields: [StreamField]) -> String? {
        guard let field = fields.first(where: { $0.name == "event_id" }) else { return nil }
        let blank = field.value.allSatisfy { $0 == UInt8(ascii: " ") || (0x09...0x0d).contains($0) }
        if blank { return "event_id is \(field.value.isEmpty ? "empty" : "blank"): it cannot tell this event from others for deduplication" }
        if String(validating: field.value, as: UTF8.self) == nil {
            return "event_id is not UTF-8: its bytes read as U+FFFD, and it cannot tell this event from others for deduplication"
        }
        return nil
    }

    /// `<group>:<eventID>`: pass it to any external side effect (a mail, a payment) so that the
    /// receiver can deduplicate a redelivery.
    public var idempotencyKey: String { "\(group):\(eventID)" }

    /// The first value of a field, as bytes.
    public subscript(field: String) -> [UInt8]? {
        for f in fields where f.name == field { return f.value }
        return nil
    }

    /// The first value of a field, as UTF-8 text.
    public func string(_ field: String) -> String? {
        self[field].map { String(decoding: $0, as: UTF8.self) }
    }

    /// Decodes a JSON field. A missing field or invalid JSON throws ``MalformedEvent``, so the
    /// entry goes to the dead letters at once instead of being retried.
    public func decodeJSON<T: Decodable>(_ type: T.Type, field: String = "entity") throws -> T {
        guard let bytes = self[field] else { throw MalformedEvent("missing field '\(field)'") }
        do {
            return try sharedJSONDecoder.decode(T.self, from: Data(bytes))
        } catch {
            throw MalformedEvent("field '\(field)' is not a valid \(T.self): \(error)")
        }
    }
}

/// One decoder for every delivery: `decode` keeps no state between calls, and making a
/// decoder per entry showed up in the worker drain profile.
private let sharedJSONDecoder = JSONDecoder()

/// What a handler asks to commit atomically with the acknowledgement.
public struct HandlerOutcome: Sendable {
    /// The handler's own Redis writes, applied in the same atomic step as the XACK and, in
    /// idempotent settle mode, the idempotency marker, so that a redelivery never applies them
    /// twice. If one gets an error reply, the entry is dead-lettered ("effects failed", with
    /// the error and how many of its effects were applied before it); the others of its batch
    /// are settled as usual.
    public var effects: [[RedisArgument]]

    /// Handled; nothing else to write.
    public static let done = HandlerOutcome(effects: [])

    /// Handled; apply these Redis commands atomically with the acknowledgement.
    public static func done(effects: [[RedisArgument]]) -> HandlerOutcome { HandlerOutcome(effects: effects) }
}

/// Thrown by a handler for an entry that can never succeed (missing fields, invalid JSON):
/// it goes to the dead letters at once, with this reason.
public struct MalformedEvent: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// A handler for one subscription. Any error other than ``MalformedEvent`` leaves the entry
/// pending; it is retried with backoff and dead-lettered after the maximum deliveries.
public typealias StreamHandler = @Sendable (Delivery) async throws -> HandlerOutcome

/// A handler for a whole batch of entries at once: one call (and one task) per batch instead of
/// one per entry, for handlers that do CPU work and no I/O of their own (decode, validate,
/// compute effects). It returns one result per delivery, in order: each is settled, retried or
/// dead-lettered on its own exactly as a ``StreamHandler``'s would be. Handlers that wait on
/// I/O should stay per entry, so that ``WorkerConfiguration/maxInFlight`` of them overlap.
public typealias StreamBatchHandler = @Sendable ([Delivery]) async -> [Result<HandlerOutcome, any Error>]

/// A handler bound to a stream and a consumer group.
public struct Subscription: Sendable {
    /// Where a group that does not exist yet starts.
    public enum Start: Sendable {
        /// From the first entry of the stream: a worker deployed late still sees earlier events.
        case beginning
        /// Only entries added after the group is created.
        case newEntriesOnly

        var groupID: String {
            switch self {
            case .beginning: "0"
            case .newEntriesOnly: "$"
            }
        }
    }

    public var stream: String
    public var group: String
    public var start: Start
    /// How many partitions the stream has (``PartitionedStream``): the worker consumes each
    /// partition stream as a subscription of its own (a group, two readers, a reclaimer, a
    /// settler and a replay reader per partition, so three blocking connections and the pool's
    /// share per partition), with handler slots and read-ahead shared by all. 1: a plain stream.
    public var partitions: Int = 1
    /// Earlier partition counts of the stream whose partition streams are still consumed, while
    /// a change of layout is under way (see ``PartitionedStream``: changing the partition count).
    public var formerPartitions: [Int] = []
    /// Handles one entry (a retry, or every entry of a per-entry subscription).
    public var handler: StreamHandler
    /// Handles a batch of entries in one call, when set (see ``StreamBatchHandler``).
    public var batchHandler: StreamBatchHandler?

    /// A subscription whose handler sees one entry per call; up to
    /// ``WorkerConfiguration/maxInFlight`` calls run at once.
    public init(stream: String, group: String, start: Start = .beginning, partitions: Int = 1, handler: @escaping StreamHandler) {
        self.stream = stream
        self.group = group
        self.start = start
        self.partitions = partitions
        self.handler = handler
        self.batchHandler = nil
    }

    /// A subscription whose handler sees the entries of a read in one call (see
    /// ``StreamBatchHandler``). A retried entry comes back alone, in a batch of one.
    public init(stream: String, group: String, start: Start = .beginning, partitions: Int = 1, batchHandler: @escaping StreamBatchHandler) {
        self.stream = stream
        self.group = group
        self.start = start
        self.partitions = partitions
        self.batchHandler = batchHandler
        self.handler = { delivery in
            let results = await batchHandler([delivery])
            guard results.count == 1 else { throw BatchResultMismatch(deliveries: 1, results: results.count) }
            return try results[0].get()
        }
    }
}

extension Subscription {
    /// One subscription per partition stream (of the current layout, then of each former one
    /// still being drained), each with the same group, start and handlers.
    var perPartition: [Subscription] {
        var streams: [String] = []
        for count in [partitions] + formerPartitions {
            for stream in PartitionedStream(stream, partitions: count).streams where !streams.contains(stream) { streams.append(stream) }
        }
        return streams.map { partitionStream in
            var one = self
            one.stream = partitionStream
            one.partitions = 1
            one.formerPartitions = []
            return one
        }
    }
}

/// A batch handler returned a number of results other than the number of deliveries it got:
/// every entry of that batch is retried.
public struct BatchResultMismatch: Error, Sendable, CustomStringConvertible {
    public let deliveries: Int
    public let results: Int
    public var description: String { "batch handler returned \(results) results for \(deliveries) deliveries" }
}

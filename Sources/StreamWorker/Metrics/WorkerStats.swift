import Metrics
import Synchronization

/// Counters of one worker process, readable in tests and by `/metrics` (mirrored to
/// swift-metrics with stream and group dimensions).
public final class WorkerStats: Sendable {
    /// The kinds of events counted.
    public enum Counter: String, CaseIterable, Sendable {
        /// Entries handed to this worker (read or reclaimed).
        case delivered
        /// Entries handled and acknowledged (effects applied once).
        case processed
        /// Handler errors.
        case failed
        /// Failed entries re-delivered for another attempt.
        case retried
        /// Entries whose idempotency marker existed: acked, not applied again.
        case duplicates
        /// Entries taken over from other consumers by XAUTOCLAIM.
        case reclaimed
        /// Settles refused because another consumer owned the entry by then (and retries of a
        /// failed entry whose claim was refused for that reason: a zombie's entry waiting for its
        /// retry is refused there, not at a settle).
        case foreignSettlesRefused = "foreign_settles_refused"
        /// Entries another consumer had already settled when this one tried.
        case alreadySettled = "already_settled"
        /// Entries moved to the dead letters.
        case deadLettered = "dead_lettered"
        /// Pending entries that no longer existed in the stream (trimmed or deleted).
        case lostToTrimming = "lost_to_trimming"
        /// Consumer groups recreated after NOGROUP.
        case groupsRecreated = "groups_recreated"
    }

    private let values = Mutex([Int](repeating: 0, count: Counter.allCases.count))

    public init() {}

    public subscript(_ counter: Counter) -> Int {
        values.withLock { $0[counter.index] }
    }

    func add(_ counter: Counter, _ n: Int = 1, metrics: SubscriptionMetrics) {
        guard n > 0 else { return }
        values.withLock { $0[counter.index] += n }
        metrics.counters[counter.index].increment(by: n)
    }

    /// All counters by name.
    public var snapshot: [String: Int] {
        Dictionary(uniqueKeysWithValues: Counter.allCases.map { ($0.rawValue, self[$0]) })
    }
}

extension WorkerStats.Counter {
    var index: Int { Self.indexes[self]! }
    private static let indexes = Dictionary(uniqueKeysWithValues: allCases.enumerated().map { ($1, $0) })
}

/// The swift-metrics handles of one (stream, group), made once so that counting costs no lookup.
///
/// Dimensions: `stream` and `group`; a partition stream (``PartitionedStream/parse(_:)``) is
/// labelled with its logical stream (the base name) and `partition` (its index), so that
/// `sum by (stream, group)` (over pods: `max by (stream, partition, group)` first, since every
/// worker reports the group-wide gauges) adds a logical stream's partitions up. A plain stream
/// keeps its two labels, no `partition`: existing series and queries stay as they are. A group's
/// replay stream of a partition is labelled `replay:<logical stream>:<group>` and its partition.
struct SubscriptionMetrics: Sendable {
    let counters: [Metrics.Counter]
    let handlerDuration: Metrics.Timer
    let pending: Gauge
    let lag: Gauge
    let oldestPendingAge: Gauge
    let consumers: Gauge
    let deadLetterLength: Gauge

    /// `origin`: for a replay stream's runner, the stream it replays into.
    init(stream: String, group: String, origin: String? = nil) {
        let dimensions = Self.dimensions(stream: stream, group: group, origin: origin)
        counters = WorkerStats.Counter.allCases.map {
            Metrics.Counter(label: "stream_worker_\($0.rawValue)_total", dimensions: dimensions)
        }
        handlerDuration = Metrics.Timer(label: "stream_worker_handler_duration", dimensions: dimensions, preferredDisplayUnit: .seconds)
        pending = Gauge(label: "stream_worker_group_pending", dimensions: dimensions)
        lag = Gauge(label: "stream_worker_group_lag", dimensions: dimensions)
        oldestPendingAge = Gauge(label: "stream_worker_group_oldest_pending_age_seconds", dimensions: dimensions)
        consumers = Gauge(label: "stream_worker_group_consumers", dimensions: dimensions)
        deadLetterLength = Gauge(label: "stream_worker_dead_letter_length", dimensions: dimensions)
    }

    static func dimensions(stream: String, group: String, origin: String? = nil) -> [(String, String)] {
        if let origin, let partition = PartitionedStream.parse(origin) {
            return [("stream", "replay:\(partition.name):\(group)"), ("group", group), ("partition", "\(partition.partition)")]
        }
        guard origin == nil, let partition = PartitionedStream.parse(stream) else { return [("stream", stream), ("group", group)] }
        return [("stream", partition.name), ("group", group), ("partition", "\(partition.partition)")]
    }
}

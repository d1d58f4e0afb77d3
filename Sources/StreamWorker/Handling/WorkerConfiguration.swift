import Foundation
import RedisClient

/// How acknowledgements are committed.
public enum SettleMode: String, Sendable, CaseIterable {
    /// Batched XACK; a handler's effects, if any, are applied with the XACK of an entry this
    /// consumer still owns, in one script. No markers. At-least-once: a redelivered entry is
    /// handled again and its effects applied again.
    case plain
    /// One atomic step per batch: ownership check, idempotency marker, the handler's own Redis
    /// effects, and XACK. A redelivered event is acked as a duplicate and not applied again.
    case idempotent
}

/// Exponential backoff with jitter and a cap.
public struct Backoff: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration
    public var multiplier: Double

    /// Defaults: 100 ms, doubling, capped at 5 minutes.
    public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(300), multiplier: Double = 2) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
    }

    /// The delay after the `attempt`-th failure (1-based): initial × multiplier^(attempt-1),
    /// capped, then spread over [50 %, 100 %] so that retries of many entries do not align.
    public func delay(attempt: Int) -> Duration {
        let base = initial.seconds * pow(multiplier, Double(max(0, attempt - 1)))
        let capped = min(base, maximum.seconds)
        return .seconds(capped * Double.random(in: 0.5...1.0))
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// A deliberate defect, for the chaos harness to show that its checker catches it. Each breaks
/// one guarantee of ``StreamWorker``, at the place that keeps it. Never set in production.
public enum PlantedBug: String, Sendable, CaseIterable {
    /// The intake acknowledges entries as soon as they are read, before handling. Breaks "an
    /// entry is acknowledged only after its handler succeeded": a crash mid-handler loses them.
    case ackBeforeHandling = "ack-before-handling"
    /// The settle applies and acks without checking that this consumer still owns the entry.
    /// Breaks "a stalled consumer that wakes up can neither apply nor ack entries reclaimed by
    /// another": with the marker written by whichever settles first, a late settle of a paused
    /// worker acks an entry whose new owner is still handling it (and, without markers,
    /// applies it twice).
    case noOwnerCheck = "no-owner-check"
    /// The pre-check and the settle ignore the idempotency markers. Breaks "effects are committed
    /// once": an entry redelivered after its effects were applied (its worker died between the
    /// settle and the reply, or stalled past its lease) is applied again.
    case noMarkerCheck = "no-marker-check"
    /// The settle sends XACK in one call and the effects with the marker in a second one.
    /// Breaks "effects are committed atomically with the XACK": a crash or a lost connection
    /// between the two calls leaves the entry acked and its effects never applied.
    case ackBeforeEffects = "ack-before-effects"
    /// The lease keeper never refreshes. Breaks "a live, slow handler is never stolen": a
    /// handler that runs longer than the lease has its entry reclaimed by another consumer and
    /// handled twice (external side effects run twice; Redis effects are still applied once).
    case noLeaseRefresh = "no-lease-refresh"
}

/// Settings of a worker process. Every value has a production default.
public struct WorkerConfiguration: Sendable {
    /// A stable consumer name. nil: `<host>-<pid>-<random>`, a new consumer per process. With a
    /// stable name, the worker first re-reads its own pending entries before new ones.
    public var consumerName: String?
    /// Handlers in flight at most, over all subscriptions of the process.
    public var maxInFlight: Int
    /// Entries per XREADGROUP.
    public var readCount: Int
    /// Entries read ahead of the handlers, over all subscriptions of the process: they wait in
    /// memory for a free handler slot, so that a handler that finishes starts on its next entry
    /// at once instead of waiting for a read round trip (what makes I/O-bound handlers scale).
    /// Their leases are kept like those of running handlers; on shutdown they are handled within
    /// the drain deadline like the rest; a killed worker's prefetched entries are reclaimed one
    /// lease later like its running ones. Each reader, and the reclaimer, reserves room for what
    /// it reads before reading, at most `prefetch / (readers + 1)`. Default: the larger of
    /// `maxInFlight` and `readCount × (readers + 1)` for each stream the process reads, each
    /// partition of a partitioned stream counting as one, at most ``defaultPrefetchLimit``
    /// entries unless one stream needs more (``StreamWorker`` works it out; its
    /// ``StreamWorker/configuration`` shows the figure used). So a worker reading P partitions
    /// holds up to 300 × P entries read ahead by default, shared by all of them (a busy
    /// partition may use the room idle ones leave).
    public var prefetch: Int { didSet { prefetchIsDefault = false } }
    /// Whether ``prefetch`` is the default (not given, not set since).
    private var prefetchIsDefault: Bool
    /// Concurrent XREADGROUP loops per subscription, each on a connection of its own. With
    /// one, the next read waits for the previous reply to be received and parsed; with two,
    /// one reply is parsed while the next is on its way (measured: plain drain 101k to 139k
    /// events/s). Each reader holds one connection to Redis.
    public var readers: Int
    /// How long XREADGROUP blocks waiting for entries.
    public var block: Duration
    /// The lease: the entries of a worker that stopped refreshing them become claimable by
    /// others this long after its last refresh. At least 1 s.
    public var lease: Duration
    /// Deliveries (Redis's counter) after which an entry that keeps failing (with an error other
    /// than ``DeliveryError``) goes to the dead letters.
    public var maxDeliveries: Int
    /// Delay before a failed entry is retried, growing with its delivery count.
    public var retryBackoff: Backoff
    /// How long an entry whose handler reports ``DeliveryError/unavailable`` (its downstream is
    /// down) is retried before it goes to the dead letters, counted from its first such failure
    /// in this worker. Such retries do not count against ``maxDeliveries``. Default 24 h: a
    /// downstream restarted, redeployed or down for hours loses nothing.
    public var unavailableRetryWindow: Duration
    /// How long the circuit breaker stays open after a downstream was found unavailable, growing
    /// with each failed probe: 1 s doubling to 30 s by default. The cap is how long a worker may
    /// sit idle after its downstream is back: with 5 minutes, a 300-s replicated chaos run whose
    /// msg was down three times for 38-79 s (seed 1303) took 194 s to drain after the load,
    /// waiting out open periods. A probe every 30 s per subscription costs a down downstream
    /// nothing.
    public var unavailableBackoff: Backoff
    /// How long an idempotency marker is kept.
    public var idempotencyTTL: Duration
    public var settleMode: SettleMode
    /// How many handled entries a settle gathers under sustained load, and how long it waits
    /// for them: see ``SettleBatching``. Default: up to 400 entries for up to 5 ms.
    public var settleBatching: SettleBatching
    /// On shutdown: how long handlers in flight may run before they are abandoned (left pending
    /// for another worker).
    public var drainDeadline: Duration
    /// Consumers idle this long that hold no pending entries are removed from the group, by any
    /// running worker of the group (one script: checked and removed atomically). A live worker's
    /// readers touch their consumer every `block` (1 s), so only the names of processes that are
    /// gone reach this; a worker that could not leave the group on exit (Redis was down, or it
    /// was killed) is removed this long after its last read. 10 minutes: long enough for any
    /// pause of a live worker (a stalled network, a breaker holding its readers back), short
    /// enough that `ordershop status` and XINFO do not list dead consumers for an hour.
    public var removeIdleConsumersAfter: Duration
    /// How often per-group gauges (pending, lag, oldest pending age) are refreshed.
    public var inspectionInterval: Duration
    /// A deliberate defect for chaos runs (nil: none).
    public var plantedBug: PlantedBug?
    /// On replicated Redis: entries go to handlers only once this many replicas have them
    /// (`WAIT` on the reading connection after each XREADGROUP and XAUTOCLAIM, which are writes
    /// replicated after the entries they return). Without it a worker may act on an entry that
    /// a failover then loses (seen in chaos: 29 mails for events the promoted replica never
    /// had). While the replicas do not confirm, the entries wait, pending to this consumer.
    public var replicaConfirmation: ReplicaConfirmation?

    public init(
        consumerName: String? = nil,
        maxInFlight: Int = 64,
        readCount: Int = 100,
        prefetch: Int? = nil,
        readers: Int = 2,
        block: Duration = .seconds(1),
        lease: Duration = .seconds(5),
        maxDeliveries: Int = 5,
        retryBackoff: Backoff = Backoff(),
        unavailableRetryWindow: Duration = .seconds(24 * 3600),
        unavailableBackoff: Backoff = Backoff(initial: .seconds(1), maximum: .seconds(30)),
        idempotencyTTL: Duration = .seconds(7 * 24 * 3600),
        settleMode: SettleMode = .idempotent,
        settleBatching: SettleBatching = SettleBatching(),
        drainDeadline: Duration = .seconds(10),
        removeIdleConsumersAfter: Duration = .seconds(600),
        inspectionInterval: Duration = .seconds(5),
        plantedBug: PlantedBug? = nil
    ) {
        self.consumerName = consumerName
        self.maxInFlight = max(1, maxInFlight)
        self.readCount = max(1, readCount)
        self.readers = max(1, readers)
        // Default: the larger of a full set of handlers and a full read for every reader and
        // the reclaimer (each reserves its share of this room before it reads). Smaller, reads
        // shrink as handlers get faster (measured: a fifth less drain throughput at min(256, 100)).
        self.prefetch = max(1, prefetch ?? Self.defaultPrefetch(maxInFlight: self.maxInFlight, readCount: self.readCount, readers: self.readers, streams: 1))
        self.prefetchIsDefault = prefetch == nil
        self.block = block
        self.lease = max(lease, .seconds(1))
        self.maxDeliveries = max(1, maxDeliveries)
        self.retryBackoff = retryBackoff
        self.unavailableRetryWindow = unavailableRetryWindow
        self.unavailableBackoff = unavailableBackoff
        self.idempotencyTTL = idempotencyTTL
        self.settleMode = settleMode
        self.settleBatching = settleBatching
        self.drainDeadline = drainDeadline
        self.removeIdleConsumersAfter = removeIdleConsumersAfter
        self.inspectionInterval = inspectionInterval
        self.plantedBug = plantedBug
    }

    /// The read-ahead of a process that reads `streams` streams (partitions counted one by
    /// one): ``prefetch`` when given, else a full read for every reader and the reclaimer of
    /// each stream. One default for the process starved partitions: a worker reading a stream
    /// of 6 partitions has 18 readers and reclaimers, each reserving a read's worth before
    /// reading, and its handled entries reached the settlers in smaller batches (`bench worker
    /// --cluster`, 6 partitions on 3 primaries: ~215 entries per settle with 1,000 entries of
    /// read-ahead for the six, ~460 with 6,000, and Redis CPU per event 5-10 % lower: BENCHMARKS.md,
    /// 2026-12-05). Capped at ``defaultPrefetchLimit`` so that a stream of hundreds of
    /// partitions does not hold hundreds of thousands of entries by default.
    func prefetch(forStreams streams: Int) -> Int {
        prefetchIsDefault ? Self.defaultPrefetch(maxInFlight: maxInFlight, readCount: readCount, readers: readers, streams: streams) : prefetch
    }

    /// The default read-ahead: a read for every reader and the reclaimer of each of `streams`,
    /// at most ``defaultPrefetchLimit`` in all but never less than one stream's reads, and at
    /// least a full set of handlers.
    private static func defaultPrefetch(maxInFlight: Int, readCount: Int, readers: Int, streams: Int) -> Int {
        let perStream = readCount * (readers + 1)
        // (The stream count is bounded first only so that the product cannot overflow.)
        let allStreams = perStream * min(max(1, streams), defaultPrefetchLimit)
        return max(1, maxInFlight, perStream, min(defaultPrefetchLimit, allStreams))
    }

    /// The most entries the default ``prefetch`` reads ahead, whatever the number of streams
    /// (33 partitions' worth at the default read count and readers; one stream's worth when
    /// that is more); a `prefetch` given is not capped.
    public static let defaultPrefetchLimit = 10_000

    /// `<host>-<pid>-<random>`: unique per process, readable in XINFO CONSUMERS.
    public static func generatedConsumerName() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"
        let random = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        return "\(host)-\(getpid())-\(random)"
    }
}

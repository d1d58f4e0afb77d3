import Logging
import ServiceLifecycle
import Synchronization

/// The dashboard's charts: per group, entries added to its stream and entries it acknowledged
/// per second, and its backlog (lag plus pending), over the last minutes. Kept in memory only
/// (a restarted dashboard starts empty): a sample of counters every ``interval``, rates from
/// the difference of two samples.
public final class RateHistory: Sendable {
    /// One group's chart: `points` are `[time, added/s, acked/s, backlog]`, oldest first.
    public struct Series: Sendable, Codable, Equatable {
        public var stream: String
        public var group: String
        public var points: [[Double]]
    }

    private struct Counters {
        var added: Int?
        var read: Int?
        var pending: Int
        var backlog: Int
    }

    private struct Sample {
        var time: Double
        var groups: [String: Counters]
    }

    private struct GroupKey: Hashable {
        var stream: String
        var group: String
    }

    public let interval: Duration
    /// How many samples are kept: `window` divided by `interval`.
    public let capacity: Int
    private let samples = Mutex<[Sample]>([])

    public init(interval: Duration = .seconds(5), window: Duration = .seconds(600)) {
        self.interval = interval
        self.capacity = max(2, Int(window / interval))
    }

    /// Adds a snapshot's counters (the oldest sample goes once there are ``capacity``). A
    /// snapshot that could not read every node is left out: a logical stream summed over the
    /// partitions it did read would fall, then jump back at the next full one, a rate spike that
    /// never happened. The rate across the gap is taken over the time between its two samples.
    public func record(_ snapshot: OperationsSnapshot) {
        guard snapshot.unread == nil else { return }
        var groups: [String: Counters] = [:]
        for stream in snapshot.streams {
            for g in stream.groups {
                groups[Self.name(stream.name, g.status.group)] = Counters(
                    added: stream.entriesAdded, read: g.entriesRead, pending: g.status.pending,
                    backlog: (g.status.lag ?? 0) + g.status.pending)
            }
        }
        samples.withLock {
            $0.append(Sample(time: snapshot.time, groups: groups))
            if $0.count > capacity { $0.removeFirst($0.count - capacity) }
        }
    }

    /// The charts, one per group seen in the latest sample. Acknowledged entries are counted as
    /// entries first delivered (`entries-read`) less the growth of the pending list: redeliveries
    /// and replays are not counted. A counter Redis does not report (before 7.0) gives no rate.
    public func series() -> [Series] {
        let samples = samples.withLock { $0 }
        guard let latest = samples.last else { return [] }
        var out: [Series] = []
        for key in latest.groups.keys.sorted() {
            var points: [[Double]] = []
            for (before, after) in zip(samples, samples.dropFirst()) {
                guard let a = before.groups[key], let b = after.groups[key], after.time > before.time else { continue }
                let seconds = after.time - before.time
                var added = 0.0, acked = 0.0
                if let from = a.added, let to = b.added { added = Double(max(0, to - from)) / seconds }
                if let from = a.read, let to = b.read { acked = Double(max(0, (to - from) - (b.pending - a.pending))) / seconds }
                points.append([after.time, added, acked, Double(b.backlog)])
            }
            let (stream, group) = Self.split(key)
            out.append(Series(stream: stream, group: group, points: points))
        }
        return out
    }

    // Stream names may hold any character but NUL-free group names are what Redis allows in
    // practice; a NUL separates the two in the dictionary key.
    private static func name(_ stream: String, _ group: String) -> String { stream + "\u{0}" + group }
    private static func split(_ key: String) -> (String, String) {
        let parts = key.split(separator: "\u{0}", maxSplits: 1, omittingEmptySubsequences: false)
        return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
    }
}

/// Samples the streams into a ``RateHistory`` every ``RateHistory/interval`` until cancelled or
/// the group shuts down. A failed reading (Redis away) is logged and skipped: the chart shows
/// a gap, not a stopped dashboard.
public struct RateSampler: Service {
    let reader: OperationsReader
    let history: RateHistory
    let logger: Logger

    public init(reader: OperationsReader, history: RateHistory, logger: Logger) {
        self.reader = reader
        self.history = history
        self.logger = logger
    }

    public func run() async throws {
        // Ends on cancellation (the sleep throws) or on the group's graceful shutdown (which
        // cancels it): either is a normal end, not a failure of the service.
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        history.record(try await reader.read())
                    } catch is CancellationError {
                        return
                    } catch {
                        logger.warning("dashboard sample failed: \(error)")
                    }
                    try await Task.sleep(for: history.interval)
                }
            }
        } catch is CancellationError {
            return
        }
    }
}

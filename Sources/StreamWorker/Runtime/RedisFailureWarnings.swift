import Synchronization

/// Failed reads, reclaims and lease refreshes, each logged at most once per interval for the
/// whole worker, with how many were left out: while Redis is away (or a replica) every reader of
/// every subscription retries with its backoff, and a worker of four subscriptions logged 459
/// lines in a 62-s failover (a user-style trial).
final class RedisFailureWarnings: Sendable {
    let reads = RateLimitedWarning()
    let reclaims = RateLimitedWarning()
    let leases = RateLimitedWarning()
    /// Readers whose last read failed.
    private let failingReaders = Mutex(0)

    /// A reader's read failed after it had read (or started).
    func readerFailing() {
        failingReaders.withLock { $0 += 1 }
    }

    /// A failing reader reads again (or ended); true when no reader of the worker is failing now.
    func readerRecovered() -> Bool {
        failingReaders.withLock { count in
            count = max(0, count - 1)
            return count == 0
        }
    }
}

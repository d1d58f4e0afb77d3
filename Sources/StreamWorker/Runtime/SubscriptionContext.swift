import Logging
import RedisClient

/// What every part of one subscription's runtime shares: who it is, where it runs, what it
/// holds, and the signal that starts the drain.
struct SubscriptionContext: Sendable {
    let subscription: Subscription
    let consumer: String
    let configuration: WorkerConfiguration
    let client: any RedisClientProtocol
    let stats: WorkerStats
    let metrics: SubscriptionMetrics
    let logger: Logger
    /// The ids this consumer holds (see ``HeldEntries``).
    let held: HeldEntries
    /// Fired when the worker starts draining: reading and reclaiming stop, retries give up.
    let drain: ShutdownSignal
    /// For the runner of a group's replay stream: the stream its entries come from. The
    /// entries keep that identity (markers, dead letters, what the handler sees).
    let origin: String?
    /// Opens while the handlers' downstream is unavailable (see ``CircuitBreaker``).
    let breaker: CircuitBreaker
    /// Failed handler attempts, logged at most once per interval.
    let failureWarnings: RateLimitedWarning
    /// Failed Redis calls of the reading side, shared by every runner of a worker.
    var redisWarnings = RedisFailureWarnings()

    /// The stream read (the subscription's, or its replay stream).
    var stream: String { subscription.stream }
    /// The stream the entries belong to: markers and dead letters are this stream's.
    var identityStream: String { origin ?? subscription.stream }
    var group: String { subscription.group }
    var streamKey: RedisArgument { RedisArgument(subscription.stream) }

    /// The id an entry had in ``identityStream``.
    func identityID(of entry: StreamEntry) -> String {
        guard origin != nil else { return entry.id }
        return entry.string("replayed_from") ?? entry.id
    }

    func count(_ counter: WorkerStats.Counter, _ n: Int = 1) {
        stats.add(counter, n, metrics: metrics)
    }

    /// The delay before retrying a Redis call after its `attempt`-th failure (1-based).
    func redisBackoff(attempt: Int) -> Duration {
        Self.redisRetry.delay(attempt: attempt)
    }

    /// 100 ms doubling to 2 s, with jitter: a restarted server or a failed-over cluster primary is
    /// found again within about 2 s of coming back, and many workers do not retry in lockstep.
    private static let redisRetry = Backoff(initial: .milliseconds(100), maximum: .seconds(2))
}

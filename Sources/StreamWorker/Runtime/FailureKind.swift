import RedisClient

/// What a failed Redis call means for the runtime. The one place that decides whether to retry,
/// to give up on an entry, or to stop: every part of the runtime classifies its errors here.
enum FailureKind: Sendable, Equatable {
    /// The calling task was cancelled: stop.
    case cancelled
    /// The connection failed. `mayHaveRun` is false when the command certainly did not run
    /// (``RedisError/commandDidNotRun``), true when its outcome is unknown. Every runtime call is
    /// safe to repeat (ownership and markers are checked in the scripts), so both are retried
    /// after a backoff; the flag is for the logs.
    case connectionLost(mayHaveRun: Bool)
    /// A server that is restarting, loading, failing over or busy: retried, never blamed on an
    /// entry.
    case transientServer
    /// NOGROUP: the stream or the group was deleted.
    case groupMissing
    /// Any other error reply (a script error, a handler effect against a key of the wrong type):
    /// the same call fails the same way again.
    case serverError
    /// Anything else (an unexpected reply shape, a non-Redis error).
    case other

    /// Server errors that pass (a restarting, busy or failing-over server; a Redis Cluster moving
    /// a slot; a server out of memory until keys expire or are trimmed; a primary whose replicas
    /// are not acknowledging `min-replicas-to-write`). None says anything about the entry: a
    /// settle failing with one is retried, never dead-lettered. MOVED and ASK reach the runtime
    /// when a redirect was not followed (a reader's own connection, or a client that gave up after
    /// too many redirects): the command did not run.
    /// The settle script re-raises these when an effect meets one (``WorkerScripts/settle``).
    static let transientCodes: Set<String> = [
        "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "READONLY", "OOM", "NOREPLICAS", "MOVED", "ASK",
    ]

    init(_ error: any Error) {
        if error is CancellationError {
            self = .cancelled
            return
        }
        guard let error = error as? RedisError else {
            self = .other
            return
        }
        switch error.code {
        case .cancelled: self = .cancelled
        case .noGroup: self = .groupMissing
        case let code where code.isServerError:
            self = Self.transientCodes.contains(code.name) ? .transientServer : .serverError
        case .unexpectedReply, .invalidConfiguration: self = .other
        default: self = .connectionLost(mayHaveRun: !error.commandDidNotRun)
        }
    }

    /// Worth the same call again after a backoff.
    var isRetryable: Bool {
        switch self {
        case .connectionLost, .transientServer: true
        case .cancelled, .groupMissing, .serverError, .other: false
        }
    }
}

/// What a handler's error means for its entry (the handler's side of the same decision).
enum HandlerFailure: Sendable {
    /// The entry can never succeed: dead letters at once.
    case invalid(reason: String)
    /// A downstream is unavailable: retried within the retry window, through the breaker.
    case unavailable(reason: String)
    /// Anything else: retried with backoff up to the maximum deliveries.
    case failed

    init(_ error: any Error) {
        switch error {
        case let malformed as MalformedEvent: self = .invalid(reason: "malformed: \(malformed.reason)")
        case DeliveryError.invalid(let reason): self = .invalid(reason: "invalid: \(reason)")
        case DeliveryError.unavailable(let reason): self = .unavailable(reason: reason)
        default:
            // A handler's own Redis calls that lost their connection or met a restarting
            // server: Redis is the downstream that is unavailable.
            switch FailureKind(error) {
            case .connectionLost, .transientServer: self = .unavailable(reason: "\(error)")
            case .cancelled, .groupMissing, .serverError, .other: self = .failed
            }
        }
    }
}

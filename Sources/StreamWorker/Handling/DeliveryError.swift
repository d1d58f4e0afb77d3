/// Errors a handler throws to say why an entry failed, so that the runtime retries it the
/// right way. Any other error is retried with ``WorkerConfiguration/retryBackoff`` up to
/// ``WorkerConfiguration/maxDeliveries``.
public enum DeliveryError: Error, Sendable, CustomStringConvertible {
    /// A downstream the handler needs is unavailable (connection refused, 503, a timeout): not
    /// the entry's fault. The entry is retried for as long as
    /// ``WorkerConfiguration/unavailableRetryWindow`` (24 h by default), and the subscription's
    /// circuit breaker opens: its handlers pause, and one probe at a time tries the downstream,
    /// with a backoff growing to ``WorkerConfiguration/unavailableBackoff``'s cap, until one
    /// succeeds. Such retries do not count against the maximum deliveries.
    case unavailable(String)
    /// The entry can never succeed (its content was refused: a 4xx, a failed validation): it
    /// goes to the dead letters at once, like ``MalformedEvent``.
    case invalid(String)

    public var description: String {
        switch self {
        case .unavailable(let reason): "unavailable: \(reason)"
        case .invalid(let reason): "invalid: \(reason)"
        }
    }
}

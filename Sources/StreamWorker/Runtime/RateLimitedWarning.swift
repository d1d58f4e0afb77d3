import Logging
import Synchronization

/// A warning logged at most once per interval; the next one says how many were left out. For
/// failures that repeat once per entry (a downstream that is down fails every handler call).
final class RateLimitedWarning: Sendable {
    private struct State {
        var last: ContinuousClock.Instant?
        var suppressed = 0
        /// Failures since the last ``passed(_:_:)`` (logged or not).
        var failures = 0
    }
    private let state = Mutex(State())
    let interval: Duration

    init(interval: Duration = .seconds(5)) { self.interval = interval }

    func log(_ logger: Logger, _ message: @autoclosure () -> Logger.Message, metadata: Logger.Metadata) {
        let suppressed = state.withLock { s -> Int? in
            s.failures += 1
            let now = ContinuousClock.now
            if let last = s.last, now - last < interval {
                s.suppressed += 1
                return nil
            }
            s.last = now
            defer { s.suppressed = 0 }
            return s.suppressed
        }
        guard let suppressed else { return }
        var metadata = metadata
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        logger.warning(message(), metadata: metadata)
    }

    /// The failing thing works again: says so at info, once after a run of failures (with how
    /// many there were), so that the log shows when an outage ended and not only that it began.
    func passed(_ logger: Logger, _ message: @autoclosure () -> Logger.Message) {
        let failures = state.withLock { s -> Int in
            defer {
                s.failures = 0
                s.suppressed = 0
                s.last = nil
            }
            return s.failures
        }
        if failures > 0 { logger.info(message(), metadata: ["failures": "\(failures)"]) }
    }
}

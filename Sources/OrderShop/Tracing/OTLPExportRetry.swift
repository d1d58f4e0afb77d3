import Foundation

/// What the exporter does with a collector that asks it to come back later: OTLP/HTTP's
/// retryable answers (429, 502, 503, 504) are retried with the same batch, after the
/// `Retry-After` the collector gave (seconds, or an HTTP date), else after an exponential
/// backoff with jitter, as the specification asks (opentelemetry.io/docs/specs/otlp, "Retryable
/// Response Codes" and "OTLP/HTTP Throttling"; swift-otel's exporter does the same).
///
/// Why: the exporter sent the next batch at once and counted the refused one as not exported,
/// so a collector that throttled (429) was sent every batch of the round anyway and lost them
/// all. While it waits, ended spans go on queuing; a queue that fills drops new spans, counted
/// and logged (``OTLPSpanExporter``), so a collector that stays away costs bounded memory.
struct OTLPExportRetry: Sendable {
    /// Requests per batch, the first included.
    var maxAttempts = 5
    var baseDelay: Duration = .seconds(1)
    /// The longest wait, whatever `Retry-After` says: a collector asking for an hour would
    /// stop the export of every span meanwhile.
    var maxDelay: Duration = .seconds(30)

    /// Whether an answer with this status may be sent again.
    static func isRetryable(_ status: UInt) -> Bool {
        [429, 502, 503, 504].contains(status)
    }

    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 requests made), or nil when the
    /// batch has had its attempts. `retryAfter`: the collector's `Retry-After`, if it gave one.
    func delay(afterAttempt attempt: Int, retryAfter: Duration?) -> Duration? {
        guard attempt < maxAttempts else { return nil }
        if let retryAfter { return min(max(retryAfter, .zero), maxDelay) }
        let exponential = baseDelay * (1 << min(attempt - 1, 30))
        let capped = min(exponential, maxDelay)
        // ±10 %, so that processes throttled together do not come back together.
        return capped * Double.random(in: 0.9...1.1)
    }

    /// A `Retry-After` value: delay-seconds, or an HTTP date (RFC 9110 §10.2.3) from `now`;
    /// nil for anything else.
    static func retryAfter(_ value: String?, now: Date = Date()) -> Duration? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
        if let seconds = Int(value) { return seconds >= 0 ? .seconds(seconds) : nil }
        let format = DateFormatter()
        format.locale = Locale(identifier: "en_US_POSIX")
        format.timeZone = TimeZone(identifier: "GMT")
        format.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = format.date(from: value) else { return nil }
        return .milliseconds(max(0, Int(date.timeIntervalSince(now) * 1000)))
    }
}

import Foundation

/// Where a group's idempotency markers live: the event ids settled during one period of length
/// TTL are the fields of one hash, `idem:<stream>:<group>:<n>` with n = now / TTL.
///
/// Why hashes and not a key per marker: the settle checks and writes the markers of a whole
/// batch with a constant number of Redis calls (two HMGET and one HSET) instead of a `SET NX PX`
/// per event, and a field costs Redis less memory than a key with an expiry. Measured on the
/// idempotent drain: a key per marker spent more of Redis's single thread in the settle
/// script's per-event calls than in reading the stream.
///
/// A marker written in period n is looked up in periods n and n+1 and expires with its hash at
/// the end of period n+1: it lives at least one TTL and at most two. The hash of period n-1 is
/// unlinked when period n+1 starts (freed off Redis's main thread; an expiring hash of millions
/// of fields would otherwise be freed on it), its expiry being the backstop.
struct IdempotencyMarkers: Sendable {
    let stream: String
    let group: String
    /// The period in milliseconds (the TTL, at least one second).
    let period: Int64

    init(stream: String, group: String, ttl: Duration) {
        self.stream = stream
        self.group = group
        self.period = max(1000, Int64(ttl.seconds * 1000))
    }

    /// The hashes to use at `nowMs` (milliseconds since 1970).
    struct Buckets: Sendable {
        /// Written to and looked up.
        var current: String
        /// Looked up: markers of the previous period are still within their TTL.
        var previous: String
        /// Past its TTL entirely: unlinked.
        var stale: String
        /// When `current` may expire (ms since 1970): the end of the next period.
        var expireAtMs: Int64
    }

    func buckets(nowMs: Int64 = Int64(Date().timeIntervalSince1970 * 1000)) -> Buckets {
        let n = nowMs / period
        return Buckets(
            current: StreamKeys.markerBucket(stream: stream, group: group, bucket: n),
            previous: StreamKeys.markerBucket(stream: stream, group: group, bucket: n - 1),
            stale: StreamKeys.markerBucket(stream: stream, group: group, bucket: n - 2),
            expireAtMs: (n + 2) * period)
    }
}

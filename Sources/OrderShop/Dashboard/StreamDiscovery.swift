import Synchronization

/// The stream names each node's SCAN found, kept for ``maxAge``: the rate charts' sampler reads
/// the streams every few seconds, and finding them is a walk over every key of the node.
///
/// Why: `SCAN ... TYPE stream` filters on the server, after walking the keyspace; OrderShop
/// keeps a key per mail sent (msg's idempotency record), so the walk grows with the mails.
/// Measured with an idle `ordershop up` on a Redis of 1,000,000 keys, 61 s: 11,000 SCAN calls
/// taking 6.5 s of Redis's thread (a walk per 5-s sample); with the names kept for a minute,
/// 1,240 calls and 0.74 s. A stream made meanwhile joins the charts at the next walk; a stream
/// deleted meanwhile is skipped (and the node walked again at the next sample). The page itself
/// (a person looking) finds the streams at every read.
final class StreamDiscovery: Sendable {
    let maxAge: Duration
    private let found = Mutex<[String: (names: [String], at: ContinuousClock.Instant)]>([:])

    init(maxAge: Duration) {
        self.maxAge = maxAge
    }

    /// The names found on `node` less than ``maxAge`` ago, else what `scan` finds now.
    func names(on node: String, scan: () async throws -> [String]) async throws -> [String] {
        let now = ContinuousClock.now
        if let kept = found.withLock({ $0[node] }), now - kept.at < maxAge { return kept.names }
        let names = try await scan()
        found.withLock { $0[node] = (names, now) }
        return names
    }

    /// Forgets what `node` had: a stream on the list is gone.
    func forget(_ node: String) {
        _ = found.withLock { $0.removeValue(forKey: node) }
    }
}

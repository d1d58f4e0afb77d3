/// How long a drain bench waits before its next look at the group (XINFO GROUPS): half the
/// time the rest of the drain should take at the rate so far, at least 1 ms and at most 50 ms.
///
/// Why not every millisecond: the look is the bench's own load on the Redis it measures. A
/// 200,000-event drain was polled ~600 times on one node; on the 3-primary cluster each poll
/// asks every partition (six XINFO GROUPS over three servers), which added three wake-ups per
/// poll to the Redis CPU the cluster figure charges to the workers. The last stretch is still
/// looked at every millisecond, so the end of the drain is seen as precisely as before.
enum DrainPolling {
    static let shortest = Duration.milliseconds(1)
    static let longest = Duration.milliseconds(50)

    /// `remaining`: entries not yet read or not yet acked; `done`: the others; `elapsed`: since
    /// the drain was released.
    static func pause(remaining: Int, done: Int, elapsed: Duration) -> Duration {
        guard remaining > 0, done > 0 else { return remaining > 0 ? longest : shortest }
        let rest = elapsed * (Double(remaining) / Double(done))
        return min(longest, max(shortest, rest / 2))
    }
}

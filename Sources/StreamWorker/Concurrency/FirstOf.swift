/// What `operation` returns, or `fallback` when `deadline` comes first; the other is cancelled.
/// For a look that should not hold its caller long (a probe at start-up, a wait for a failover
/// that may not come). The call returns once the cancelled operation has ended: an operation
/// that is in a part that ignores cancellation (a Redis command waits for its own timeout, 5 s
/// by default) holds it until then, so the deadline is a lower bound.
public func first<T: Sendable>(
    of operation: @escaping @Sendable () async -> T, orAt deadline: ContinuousClock.Instant, else fallback: T
) async -> T {
    await withTaskGroup(of: T.self) { group in
        group.addTask { await operation() }
        group.addTask {
            // One timer, no loop: cancelled (the operation came first), it ends at once.
            try? await Task.sleep(until: deadline)
            return fallback
        }
        let first = await group.next() ?? fallback
        group.cancelAll()
        return first
    }
}

/// What `operation` returns, or `fallback` when `deadline` comes first; the other is cancelled.
/// For a look that must not hold its caller (a probe at start-up, a wait for a failover that may
/// not come): the operation ends on cancellation, its result then dropped.
public func first<T: Sendable>(
    of operation: @escaping @Sendable () async -> T, orAt deadline: ContinuousClock.Instant, else fallback: T
) async -> T {
    await withTaskGroup(of: T.self) { group in
        group.addTask { await operation() }
        group.addTask {
            try? await Task.sleep(until: deadline)
            return fallback
        }
        let first = await group.next() ?? fallback
        group.cancelAll()
        return first
    }
}

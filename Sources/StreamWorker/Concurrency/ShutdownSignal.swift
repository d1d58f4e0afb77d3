import Synchronization

/// A one-shot signal that tasks await (the start of a drain): loops that must stop when it fires
/// wait on it instead of polling a flag. Waiting ends when the signal fires or when the waiting
/// task is cancelled.
final class ShutdownSignal: Sendable {
    private struct State {
        var fired = false
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    init() {}

    var isFired: Bool { state.withLock { $0.fired } }

    /// Fires the signal; true the first time.
    @discardableResult
    func fire() -> Bool {
        let (first, waiters) = state.withLock { s -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard !s.fired else { return (false, []) }
            s.fired = true
            defer { s.waiters = [:] }
            return (true, Array(s.waiters.values))
        }
        for waiter in waiters { waiter.resume() }
        return first
    }

    /// Returns once the signal fired, or at once when the task is cancelled.
    func wait() async {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.fired || Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Sleeps for `duration` unless the signal fires first. True when the whole duration
    /// passed; false when the signal fired. Throws `CancellationError` when the task is
    /// cancelled, so that a loop built on it ends.
    func sleep(for duration: Duration) async throws -> Bool {
        if isFired { return false }
        let slept = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await Task.sleep(for: duration)
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                await self.wait()
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        try Task.checkCancellation()
        return slept && !isFired
    }

    /// Runs `body`, cancelling it when the signal fires: nil when the signal fired first (or
    /// had fired already). For calls that may wait long on an unreachable server (connecting
    /// with retries), so that a drain does not wait for them.
    func untilFired<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T? {
        if isFired { return nil }
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                await self.wait()
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }
}

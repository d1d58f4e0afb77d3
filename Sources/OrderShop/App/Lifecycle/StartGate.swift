import Synchronization

/// Opens once a number of things have happened (every listener of a process is bound, say), and
/// lets tasks wait for that: a worker starts reading only once its endpoints listen, so that a
/// process whose port is taken never joins a consumer group and has nothing to drain.
public final class StartGate: Sendable {
    private struct State {
        var remaining: Int
        var waiters: [UInt64: CheckedContinuation<Void, any Error>] = [:]
        var nextID: UInt64 = 0
    }
    private let state: Mutex<State>

    /// A gate that opens after `count` calls of ``arrive()`` (at once for 0).
    public init(waitingFor count: Int) {
        state = Mutex(State(remaining: max(0, count)))
    }

    public var isOpen: Bool { state.withLock { $0.remaining == 0 } }

    /// One of the awaited things happened; the last one opens the gate. Returns whether this
    /// call opened it (true for exactly one call).
    @discardableResult
    public func arrive() -> Bool {
        let released = state.withLock { s -> [CheckedContinuation<Void, any Error>]? in
            guard s.remaining > 0 else { return nil }
            s.remaining -= 1
            guard s.remaining == 0 else { return nil }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in released ?? [] { waiter.resume() }
        return released != nil
    }

    /// Returns once the gate is open; throws `CancellationError` when the task is cancelled first.
    public func wait() async throws {
        let id = state.withLock { s in
            s.nextID += 1
            return s.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Checked under the lock: a cancellation after this point finds the waiter in the map.
                let outcome = state.withLock { s -> Bool? in
                    if s.remaining == 0 { return true }
                    if Task.isCancelled { return false }
                    s.waiters[id] = continuation
                    return nil
                }
                switch outcome {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}

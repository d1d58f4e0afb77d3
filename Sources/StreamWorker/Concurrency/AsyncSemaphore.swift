import Synchronization

/// Counts handlers in flight across a process. Waiting never blocks a thread, and a task
/// cancelled while it waits leaves the queue at once (`CancellationError`), taking nothing.
final class AsyncSemaphore: Sendable {
    private struct Waiter {
        var id: UInt64
        var count: Int
        var continuation: CheckedContinuation<Bool, Never>
    }
    private struct State {
        var available: Int
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 0

        /// Hands free permits to the waiters at the head of the queue, in order.
        mutating func wake() -> [CheckedContinuation<Bool, Never>] {
            var woken: [CheckedContinuation<Bool, Never>] = []
            while let first = waiters.first, first.count <= available {
                available -= first.count
                woken.append(first.continuation)
                waiters.removeFirst()
            }
            return woken
        }
    }
    private let state: Mutex<State>

    init(_ permits: Int) { state = Mutex(State(available: permits)) }

    /// Permits free right now.
    var available: Int { state.withLock { $0.available } }

    /// Waits until at least `minimum` permits are free, then takes as many as are free up to
    /// `maximum`, and returns how many it took: a reader reserves room for what it reads
    /// before it reads, so that readers side by side never read more than there is room for.
    func acquire(atLeast minimum: Int, upTo maximum: Int) async throws(CancellationError) -> Int {
        let maximum = max(1, maximum)
        let minimum = min(max(1, minimum), maximum)
        let now = state.withLock { s -> Int in
            guard s.available >= minimum else { return 0 }
            return Self.takeUpTo(maximum, from: &s)
        }
        if now > 0 { return now }
        try await acquire(minimum)
        return minimum + state.withLock { Self.takeUpTo(maximum - minimum, from: &$0) }
    }

    /// Takes as many permits as are free, up to `maximum`, without waiting; 0 when none are
    /// (or others wait).
    func tryAcquire(upTo maximum: Int) -> Int {
        state.withLock { Self.takeUpTo(maximum, from: &$0) }
    }

    private static func takeUpTo(_ maximum: Int, from s: inout State) -> Int {
        guard s.waiters.isEmpty, maximum > 0 else { return 0 }
        let n = min(s.available, maximum)
        s.available -= n
        return n
    }

    /// Takes `count` permits, waiting (in FIFO order) until they are free.
    func acquire(_ count: Int) async throws(CancellationError) {
        guard count > 0 else { return }
        // Fast path without suspending: a continuation, even one resumed at once, costs a trip
        // through the executor's queue, and the dispatcher takes a permit per entry.
        if state.withLock({ Self.take(count, from: &$0) }) { return }
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        let granted = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let ready = state.withLock { s -> Bool? in
                    if Self.take(count, from: &s) { return true }
                    if Task.isCancelled { return false }
                    s.waiters.append(Waiter(id: id, count: count, continuation: continuation))
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            // Leave the queue; the waiters behind may fit in what is free now.
            let (cancelled, woken) = state.withLock { s -> (CheckedContinuation<Bool, Never>?, [CheckedContinuation<Bool, Never>]) in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return (nil, []) }
                let waiter = s.waiters.remove(at: index)
                return (waiter.continuation, s.wake())
            }
            cancelled?.resume(returning: false)
            for c in woken { c.resume(returning: true) }
        }
        if !granted { throw CancellationError() }
    }

    /// Takes `count` permits if they are free and nobody waits before us.
    private static func take(_ count: Int, from s: inout State) -> Bool {
        guard s.waiters.isEmpty, s.available >= count else { return false }
        s.available -= count
        return true
    }

    func release(_ count: Int) {
        guard count > 0 else { return }
        let ready = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
            s.available += count
            return s.wake()
        }
        for c in ready { c.resume(returning: true) }
    }
}

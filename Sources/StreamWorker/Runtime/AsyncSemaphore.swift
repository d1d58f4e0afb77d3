import Synchronization

/// Counts handlers in flight across a process. Waiting never blocks a thread.
final class AsyncSemaphore: Sendable {
    private struct Waiter {
        var count: Int
        var continuation: CheckedContinuation<Void, Never>
    }
    private struct State {
        var available: Int
        var waiters: [Waiter] = []
    }
    private let state: Mutex<State>

    init(_ permits: Int) { state = Mutex(State(available: permits)) }

    /// Permits free right now.
    var available: Int { state.withLock { $0.available } }

    /// Waits until at least `minimum` permits are free, then takes as many as are free up to
    /// `maximum`, and returns how many it took: a reader reserves room for what it reads
    /// before it reads, so that readers side by side never read more than there is room for.
    func acquire(atLeast minimum: Int, upTo maximum: Int) async -> Int {
        let maximum = max(1, maximum)
        let minimum = min(max(1, minimum), maximum)
        let now = state.withLock { s -> Int in
            guard s.available >= minimum else { return 0 }
            return Self.takeUpTo(maximum, from: &s)
        }
        if now > 0 { return now }
        await acquire(minimum)
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
    func acquire(_ count: Int) async {
        guard count > 0 else { return }
        // Fast path without suspending: a continuation, even one resumed at once, costs a trip
        // through the executor's queue, and the dispatcher takes a permit per entry.
        if state.withLock({ Self.take(count, from: &$0) }) { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if Self.take(count, from: &s) { return true }
                s.waiters.append(Waiter(count: count, continuation: continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Takes `count` permits if they are free and nobody waits before us.
    private static func take(_ count: Int, from s: inout State) -> Bool {
        guard s.waiters.isEmpty, s.available >= count else { return false }
        s.available -= count
        return true
    }

    func release(_ count: Int) {
        guard count > 0 else { return }
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.available += count
            var woken: [CheckedContinuation<Void, Never>] = []
            while let first = s.waiters.first, first.count <= s.available {
                s.available -= first.count
                woken.append(first.continuation)
                s.waiters.removeFirst()
            }
            return woken
        }
        for c in ready { c.resume() }
    }
}

/// A queue whose consumer takes everything that accumulated since its last take, so that work
/// finished while a round trip was in progress goes out together in the next one.
final class BatchQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiter: CheckedContinuation<[Element], Never>?
        var finished = false
    }
    private let state = Mutex(State())

    func append(_ element: Element) {
        let waiter: CheckedContinuation<[Element], Never>? = state.withLock { s in
            guard let w = s.waiter else {
                s.items.append(element)
                return nil
            }
            s.waiter = nil
            return w
        }
        waiter?.resume(returning: [element])
    }

    func append(contentsOf elements: [Element]) {
        guard !elements.isEmpty else { return }
        let (waiter, items): (CheckedContinuation<[Element], Never>?, [Element]) = state.withLock { s in
            s.items.append(contentsOf: elements)
            guard let w = s.waiter else { return (nil, []) }
            s.waiter = nil
            defer { s.items = [] }
            return (w, s.items)
        }
        waiter?.resume(returning: items)
    }

    /// Everything queued, waiting for at least one element; empty once finished and drained.
    func next() async -> [Element] {
        // Fast path without suspending when something is queued (see AsyncSemaphore.acquire).
        if let queued = state.withLock({ Self.takeItems(from: &$0) }) { return queued }
        return await withCheckedContinuation { (continuation: CheckedContinuation<[Element], Never>) in
            let ready: [Element]? = state.withLock { s in
                if let queued = Self.takeItems(from: &s) { return queued }
                if s.finished { return [] }
                s.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Everything queued, or nil when nothing is.
    private static func takeItems(from s: inout State) -> [Element]? {
        guard !s.items.isEmpty else { return nil }
        defer { s.items = [] }
        return s.items
    }

    /// No more elements will come; a waiting ``next()`` returns empty.
    func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<[Element], Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.items.isEmpty ? s.waiter : nil
        }
        waiter?.resume(returning: [])
    }

    var isEmpty: Bool { state.withLock { $0.items.isEmpty } }
}

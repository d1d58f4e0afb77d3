import Synchronization

/// A queue with one consumer that takes everything that accumulated since its last take, so that work
/// finished while a round trip was in progress goes out together in the next one.
final class BatchQueue<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiter: CheckedContinuation<[Element], Never>?
        /// How many items wake the waiter: 1 for ``next()``, more while ``next(filling:within:)`` lingers.
        var waiterNeeds = 1
        /// The current linger's time is up (or its task was cancelled).
        var lingerOver = false
        var finished = false

        /// The waiter and everything queued, when the queue holds what the waiter needs.
        mutating func wakeable() -> (CheckedContinuation<[Element], Never>, [Element])? {
            guard let w = waiter, items.count >= waiterNeeds else { return nil }
            waiter = nil
            defer { items = [] }
            return (w, items)
        }
    }
    private let state = Mutex(State())

    func append(_ element: Element) {
        let wake = state.withLock { s in
            s.items.append(element)
            return s.wakeable()
        }
        if let (waiter, items) = wake { waiter.resume(returning: items) }
    }

    func append(contentsOf elements: [Element]) {
        guard !elements.isEmpty else { return }
        let wake = state.withLock { s in
            s.items.append(contentsOf: elements)
            return s.wakeable()
        }
        if let (waiter, items) = wake { waiter.resume(returning: items) }
    }

    /// Everything queued, waiting for at least one element; empty once finished and drained,
    /// and at once when the task is cancelled (what is queued stays queued).
    func next() async -> [Element] {
        await take().items
    }

    /// Like ``next()``, but under sustained load gathers up to `target` elements: when
    /// elements were already queued as the consumer came back for them (it was busy with the
    /// previous batch: elements keep coming faster than it takes them) and fewer than `target`,
    /// it waits up to `linger` more for the rest. A consumer that found the queue empty returns
    /// with the first element, as ``next()`` does, so light load waits for nothing. Ends at once
    /// when the queue is finished or the task is cancelled, with what it has.
    func next(filling target: Int, within linger: Duration) async -> [Element] {
        let (first, wasQueued) = await take()
        guard wasQueued, first.count < target, !Task.isCancelled, linger > .zero else { return first }
        return first + (await gather(target - first.count, within: linger))
    }

    /// Everything queued and whether it was queued before this call (no wait).
    private func take() async -> (items: [Element], wasQueued: Bool) {
        // Fast path without suspending when something is queued (see AsyncSemaphore.acquire).
        if let queued = state.withLock({ Self.takeItems(from: &$0) }) { return (queued, true) }
        let items = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[Element], Never>) in
                let ready: [Element]? = state.withLock { s in
                    if let queued = Self.takeItems(from: &s) { return queued }
                    if s.finished || Task.isCancelled { return [] }
                    s.waiter = continuation
                    s.waiterNeeds = 1
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            // A plain waiter exists only while nothing is queued: it returns empty.
            wakeWaiter { _ in }
        }
        return (items, false)
    }

    /// Waits until `count` elements are queued, or `linger` has passed, or the queue is
    /// finished, or the task is cancelled; then takes what is queued (maybe nothing).
    private func gather(_ count: Int, within linger: Duration) async -> [Element] {
        state.withLock { $0.lingerOver = false }
        return await withTaskGroup(of: Void.self) { timer in
            timer.addTask {
                // One timer per linger, not a loop: cancelled (the batch filled up, or the
                // consumer's task was cancelled), it ends at once, and either way it releases
                // the waiter, so the consumer never waits past `linger`.
                try? await Task.sleep(for: linger)
                self.endLinger()
            }
            let items = await withCheckedContinuation { (continuation: CheckedContinuation<[Element], Never>) in
                let ready: [Element]? = state.withLock { s in
                    if s.items.count >= count || s.finished || s.lingerOver {
                        defer { s.items = [] }
                        return s.items
                    }
                    s.waiter = continuation
                    s.waiterNeeds = count
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
            timer.cancelAll()
            return items
        }
    }

    private func endLinger() {
        wakeWaiter { $0.lingerOver = true }
    }

    /// Makes `change` (one that ends any wait), then wakes the waiter, whatever it needs, with
    /// everything queued.
    private func wakeWaiter(after change: (inout State) -> Void) {
        let wake = state.withLock { s -> (CheckedContinuation<[Element], Never>, [Element])? in
            change(&s)
            guard let w = s.waiter else { return nil }
            s.waiter = nil
            defer { s.items = [] }
            return (w, s.items)
        }
        if let (waiter, items) = wake { waiter.resume(returning: items) }
    }

    /// Everything queued, or nil when nothing is.
    private static func takeItems(from s: inout State) -> [Element]? {
        guard !s.items.isEmpty else { return nil }
        defer { s.items = [] }
        return s.items
    }

    /// No more elements will come: a waiting ``next()`` returns empty, a lingering one with
    /// what is queued.
    func finish() {
        wakeWaiter { $0.finished = true }
    }

    var isEmpty: Bool { state.withLock { $0.items.isEmpty } }
}

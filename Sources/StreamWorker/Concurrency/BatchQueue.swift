import Synchronization

/// A queue with one consumer that takes everything that accumulated since its last take, so that work
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

    /// Everything queued, waiting for at least one element; empty once finished and drained,
    /// and at once when the task is cancelled (what is queued stays queued).
    func next() async -> [Element] {
        // Fast path without suspending when something is queued (see AsyncSemaphore.acquire).
        if let queued = state.withLock({ Self.takeItems(from: &$0) }) { return queued }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[Element], Never>) in
                let ready: [Element]? = state.withLock { s in
                    if let queued = Self.takeItems(from: &s) { return queued }
                    if s.finished || Task.isCancelled { return [] }
                    s.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<[Element], Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: [])
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

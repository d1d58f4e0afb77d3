import Synchronization

/// Hands entries to a fixed set of long-lived handler tasks ("lanes") instead of a task per
/// entry: a lane that finishes an entry takes the next without suspending while any are
/// queued, so CPU-bound handlers run through a read batch the way a batch handler does.
///
/// Wake-ups are paced: at most one woken lane is on its way at a time; a lane that starts
/// wakes the next if entries are still queued. Handlers that compute keep two or three lanes
/// busy (one per core, one on its way) and pay no wake-up per entry; handlers that wait on I/O
/// suspend, and the wake-ups cascade until every queued entry has a lane.
final class LaneQueue<Element: Sendable>: Sendable {
    private enum Handoff: Sendable {
        case woken(Element)
        case ready(Element)
        case finished
    }

    private struct State {
        var items: [Element] = []
        var head = 0
        var idle: [CheckedContinuation<Handoff, Never>] = []
        /// A lane was woken and has not started yet.
        var wakePending = false
        var finished = false

        var queued: Int { items.count - head }

        mutating func pop() -> Element? {
            guard head < items.count else { return nil }
            let item = items[head]
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return item
        }

        /// Wakes an idle lane with the next entry, unless one is already on its way.
        mutating func wakeOne() -> (CheckedContinuation<Handoff, Never>, Element)? {
            guard !wakePending, queued > 0, let lane = idle.popLast(), let item = pop() else { return nil }
            wakePending = true
            return (lane, item)
        }
    }
    private let state = Mutex(State())

    func append(contentsOf elements: [Element]) {
        guard !elements.isEmpty else { return }
        let wake = state.withLock { s in
            s.items.append(contentsOf: elements)
            return s.wakeOne()
        }
        if let (lane, item) = wake { lane.resume(returning: .woken(item)) }
    }

    /// The next entry for a lane; nil once finished and empty.
    func next() async -> Element? {
        if let item = state.withLock({ $0.pop() }) { return item }
        let handoff = await withCheckedContinuation { (continuation: CheckedContinuation<Handoff, Never>) in
            let (ready, alsoFinished): (Handoff?, [CheckedContinuation<Handoff, Never>]) = state.withLock { s in
                if let item = s.pop() { return (.ready(item), []) }
                if s.finished {
                    // The last entry is gone: every idle lane ends too.
                    defer { s.idle = [] }
                    return (.finished, s.idle)
                }
                s.idle.append(continuation)
                return (nil, [])
            }
            for lane in alsoFinished { lane.resume(returning: .finished) }
            if let ready { continuation.resume(returning: ready) }
        }
        switch handoff {
        case .woken(let item):
            // This lane was the one on its way: the next idle lane may be woken now.
            let wake = state.withLock { s in
                s.wakePending = false
                return s.wakeOne()
            }
            if let (lane, next) = wake { lane.resume(returning: .woken(next)) }
            return item
        case .ready(let item):
            return item
        case .finished:
            return nil
        }
    }

    /// No more entries will come: idle lanes get nil once the queue is empty.
    func finish() {
        let idle = state.withLock { s -> [CheckedContinuation<Handoff, Never>] in
            s.finished = true
            guard s.queued == 0 else { return [] }
            defer { s.idle = [] }
            return s.idle
        }
        for lane in idle { lane.resume(returning: .finished) }
    }
}

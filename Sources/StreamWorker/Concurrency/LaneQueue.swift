import Synchronization

/// Hands entries to a fixed set of long-lived handler tasks ("lanes") instead of a task per
/// entry: a lane that finishes its entries takes the next without suspending while any are
/// queued, so CPU-bound handlers run through a read batch the way a batch handler does.
///
/// Wake-ups are paced: at most one woken lane is on its way at a time; a lane that starts
/// wakes the next if entries are still queued. Handlers that compute keep two or three lanes
/// busy (one per core, one on its way) and pay no wake-up per entry; handlers that wait on I/O
/// suspend, and the wake-ups cascade until every queued entry has a lane.
final class LaneQueue<Element: Sendable>: Sendable {
    private enum Handoff: Sendable {
        case woken([Element])
        case ready([Element])
        case finished
    }

    private struct Idle {
        var id: UInt64
        var continuation: CheckedContinuation<Handoff, Never>
    }

    private struct State {
        var items: [Element] = []
        var head = 0
        var idle: [Idle] = []
        var nextLane: UInt64 = 0
        /// A lane was woken and has not started yet.
        var wakePending = false
        var finished = false

        var queued: Int { items.count - head }

        /// Up to `limit` entries from the head of the queue (empty when none are queued).
        mutating func pop(upTo limit: Int) -> [Element] {
            let n = min(limit, queued)
            guard n > 0 else { return [] }
            let taken = Array(items[head..<head + n])
            head += n
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 1024 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return taken
        }

        /// Wakes an idle lane with the next entries, unless one is already on its way.
        mutating func wakeOne(upTo limit: Int) -> (CheckedContinuation<Handoff, Never>, [Element])? {
            guard !wakePending, queued > 0, let lane = idle.popLast() else { return nil }
            wakePending = true
            return (lane.continuation, pop(upTo: limit))
        }
    }
    private let state = Mutex(State())
    /// The most entries a lane takes at once: 1 for per-entry handlers, a chunk for batch ones.
    let chunk: Int

    init(chunk: Int) { self.chunk = max(1, chunk) }

    func append(contentsOf elements: [Element]) {
        guard !elements.isEmpty else { return }
        let wake = state.withLock { s in
            s.items.append(contentsOf: elements)
            return s.wakeOne(upTo: chunk)
        }
        if let (lane, items) = wake { lane.resume(returning: .woken(items)) }
    }

    /// The next entries for a lane (at most ``chunk``); nil once finished and empty, or when
    /// the lane's task is cancelled.
    func next() async -> [Element]? {
        let queued = state.withLock { $0.pop(upTo: chunk) }
        if !queued.isEmpty { return queued }
        let id = state.withLock { s -> UInt64 in
            s.nextLane &+= 1
            return s.nextLane
        }
        let handoff = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Handoff, Never>) in
                let (ready, alsoFinished): (Handoff?, [Idle]) = state.withLock { s in
                    let items = s.pop(upTo: chunk)
                    if !items.isEmpty { return (.ready(items), []) }
                    if Task.isCancelled { return (.finished, []) }
                    if s.finished {
                        // The last entry is gone: every idle lane ends too.
                        defer { s.idle = [] }
                        return (.finished, s.idle)
                    }
                    s.idle.append(Idle(id: id, continuation: continuation))
                    return (nil, [])
                }
                for lane in alsoFinished { lane.continuation.resume(returning: .finished) }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let lane = state.withLock { s -> Idle? in
                guard let index = s.idle.firstIndex(where: { $0.id == id }) else { return nil }
                return s.idle.remove(at: index)
            }
            lane?.continuation.resume(returning: .finished)
        }
        switch handoff {
        case .woken(let items):
            // This lane was the one on its way: the next idle lane may be woken now.
            let wake = state.withLock { s in
                s.wakePending = false
                return s.wakeOne(upTo: chunk)
            }
            if let (lane, next) = wake { lane.resume(returning: .woken(next)) }
            return items
        case .ready(let items):
            return items
        case .finished:
            return nil
        }
    }

    /// No more entries will come: idle lanes get nil once the queue is empty.
    func finish() {
        let idle = state.withLock { s -> [Idle] in
            s.finished = true
            guard s.queued == 0 else { return [] }
            defer { s.idle = [] }
            return s.idle
        }
        for lane in idle { lane.continuation.resume(returning: .finished) }
    }
}

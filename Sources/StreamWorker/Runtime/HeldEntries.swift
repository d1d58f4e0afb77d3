import RedisClient
import Synchronization

/// The ids one subscription's consumer holds: read or reclaimed and not yet settled, released
/// or abandoned (waiting for a handler, handling, waiting to retry or to settle). The lease
/// keeper refreshes exactly these; the intake skips entries already held (a slow reclaim of our
/// own); the settle's ownership check is split into runs around them.
final class HeldEntries: Sendable {
    private let ids = Mutex(Set<StreamID>())

    var count: Int { ids.withLock { $0.count } }

    /// Marks the entries held and returns those that were not held yet.
    func take(_ entries: [StreamEntry]) -> [(StreamEntry, StreamID)] {
        let parsed = entries.map { ($0, StreamID($0.id) ?? .zero) }
        return ids.withLock { held in parsed.filter { held.insert($0.1).inserted } }
    }

    func contains(_ id: StreamID) -> Bool { ids.withLock { $0.contains(id) } }

    func release(_ released: some Sequence<StreamID>) {
        ids.withLock { held in
            for id in released { held.remove(id) }
        }
    }

    /// Everything held, in stream order.
    func sorted() -> [StreamID] { ids.withLock { Array($0) }.sorted() }

    /// Splits ids in ascending order into runs with none of the other held ids in between, and
    /// returns where each run ends (1-based indexes, for the settle script's ownership check:
    /// one XPENDING range per run returns little besides the run itself).
    func runEnds(of sorted: [StreamID]) -> [Int] {
        let mine = Set(sorted)
        let others = ids.withLock { held in held.filter { !mine.contains($0) } }.sorted()
        var ends: [Int] = []
        var next = 0
        for i in sorted.indices.dropLast() {
            while next < others.count && others[next] <= sorted[i] { next += 1 }
            // Another held id lies between this one and the next: the run ends here.
            if next < others.count && others[next] < sorted[i + 1] { ends.append(i + 1) }
        }
        if !sorted.isEmpty { ends.append(sorted.count) }
        return ends
    }
}

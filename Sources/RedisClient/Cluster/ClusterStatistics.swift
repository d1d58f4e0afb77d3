import Synchronization

/// What a ``RedisClusterClient`` has done so far: redirects followed, retries, refreshes.
public struct ClusterStatistics: Sendable, Hashable {
    /// MOVED replies followed (the slot's owner changed).
    public var moved = 0
    /// ASK replies followed (ASKING + the command on the importing node).
    public var ask = 0
    /// TRYAGAIN, CLUSTERDOWN, MASTERDOWN and LOADING replies waited out.
    public var busyRetries = 0
    /// Commands re-sent after a connection to a node was refused or dropped before they were written.
    public var nodeRetries = 0
    /// Topology refreshes that completed.
    public var refreshes = 0
}

final class ClusterCounters: Sendable {
    let moved = Atomic<Int>(0)
    let ask = Atomic<Int>(0)
    let busyRetries = Atomic<Int>(0)
    let nodeRetries = Atomic<Int>(0)
    let refreshes = Atomic<Int>(0)

    var snapshot: ClusterStatistics {
        ClusterStatistics(
            moved: moved.load(ordering: .relaxed), ask: ask.load(ordering: .relaxed),
            busyRetries: busyRetries.load(ordering: .relaxed), nodeRetries: nodeRetries.load(ordering: .relaxed),
            refreshes: refreshes.load(ordering: .relaxed))
    }
}

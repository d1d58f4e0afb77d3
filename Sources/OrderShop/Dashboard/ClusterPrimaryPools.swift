import RedisClient
import Synchronization

/// A small pool per primary of a Redis Cluster, as the cluster says they are now: for the
/// operations view, which reads each node's own keys (SCAN, then XINFO per stream) and so must
/// ask every primary. The primaries are asked for anew on every read (`CLUSTER SHARDS`, one
/// round trip), so a failover moves the view to the promoted node at its next read: the
/// cluster client's own map was no help, as a MOVED corrects it one slot at a time and its
/// full refresh may come 30 s later (a test saw the promoted node only after 30 s). A pool
/// is made the first time a node is a primary and kept until ``shutdown()``.
public final class ClusterPrimaryPools: Sendable {
    private let client: RedisClusterClient
    private let pools = Mutex<[ClusterNodeAddress: RedisConnectionPool]>([:])

    public init(client: RedisClusterClient) {
        self.client = client
    }

    /// The primaries now, each with its pool and its address (how the view names it).
    func current() async throws -> [(name: String, pool: RedisConnectionPool)] {
        let shards = try await client.send(CLUSTERSHARDS())
        let primaries = Set(shards.filter { !$0.slots.isEmpty }.compactMap { $0.primary.flatMap { client.address(of: $0) } })
        return try primaries.sorted { $0.description < $1.description }.map { address in
            let pool = try pools.withLock { pools in
                if let pool = pools[address] { return pool }
                let pool = try RedisConnectionPool(configuration: client.configuration.configuration(for: address), maximumConnections: 2)
                pools[address] = pool
                return pool
            }
            return (address.description, pool)
        }
    }

    /// Closes every pool made.
    public func shutdown() async {
        for pool in pools.withLock({ Array($0.values) }) { await pool.shutdown() }
    }
}

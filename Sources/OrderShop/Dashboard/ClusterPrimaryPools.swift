import RedisClient
import Synchronization

/// A small pool per primary of a Redis Cluster, as the cluster says they are now: for the
/// operations view, which reads each node's own keys (SCAN, then XINFO per stream) and so must
/// ask every primary. The primaries are asked for anew on every read (`CLUSTER SHARDS`, or
/// `CLUSTER SLOTS` before Redis 7.0: one round trip to some node), so a failover moves the view
/// to the promoted node at its next read: the cluster client's own map was no help, as a MOVED
/// corrects it one slot at a time and its full refresh may come 30 s later (a test saw the
/// promoted node only after 30 s). The node asked may lag behind the cluster for a moment
/// after a failover; ``OperationsReader`` then finds the old primary answering MOVED for its
/// streams and reads them through the cluster client, which follows MOVED. A pool is made when a node becomes a primary and closed when it no longer is.
public final class ClusterPrimaryPools: Sendable {
    /// The cluster client the primaries are found through; it also reads a stream whose slot is being moved.
    let client: RedisClusterClient
    private let pools = Mutex<[ClusterNodeAddress: RedisConnectionPool]>([:])
    private let failed = Mutex<[String]>([])

    /// The shards of the last ``current()`` whose primary the cluster marks failed (or
    /// loading) and no replica has replaced: each as its address, slots and health. While
    /// one is, a cluster that requires full coverage (Redis's default) refuses every command
    /// with CLUSTERDOWN, and this is what an operator needs to be told.
    var failedPrimaries: [String] { failed.withLock { $0 } }

    public init(client: RedisClusterClient) {
        self.client = client
    }

    /// The primaries now, each with its pool and its address (how the view names it).
    func current() async throws -> [(name: String, pool: RedisConnectionPool)] {
        let shards: [ClusterShardDescription]
        // Asked of every primary at once, the first answer taken: one frozen primary (asked
        // alone, a third of the reads) failed the whole view after the command timeout (503
        // on the dashboard), while `status` named that node and showed the others.
        do {
            shards = try await client.sendToFirstAnswering(CLUSTERSHARDS())
        } catch let error as RedisError where CLUSTERSHARDS.isUnsupported(error) {
            shards = try await client.sendToFirstAnswering(CLUSTERSLOTS())
        }
        let primaries = Set(shards.filter { !$0.slots.isEmpty }.compactMap { $0.primary.flatMap { client.address(of: $0) } })
        failed.withLock { failed in
            failed = shards.compactMap { shard in
                guard !shard.slots.isEmpty, let primary = shard.primary, primary.health != "online" else { return nil }
                let address = client.address(of: primary)?.description ?? primary.id
                return "\(address) (slots \(shard.slots.map(\.description).joined(separator: ",")), \(primary.health))"
            }
        }
        // New primaries' pools are made outside the lock (a TLS context reads its files).
        let known = pools.withLock { Set($0.keys) }
        var made: [ClusterNodeAddress: RedisConnectionPool] = [:]
        do {
            for address in primaries.subtracting(known) {
                // One connect attempt per command (the cluster's node configuration): a primary
                // that is down is shown as not read at once.
                made[address] = try RedisConnectionPool(configuration: client.configuration.configuration(for: address), maximumConnections: 2)
            }
        } catch {
            for pool in made.values { await pool.shutdown() }
            throw error
        }
        let (chosen, unused) = pools.withLock { pools -> ([(String, RedisConnectionPool)], [RedisConnectionPool]) in
            var unused: [RedisConnectionPool] = []
            for (address, pool) in made {
                if pools[address] == nil { pools[address] = pool } else { unused.append(pool) }
            }
            // A node that is no longer a primary: its pool goes (its reads would answer MOVED).
            for address in Set(pools.keys).subtracting(primaries) { unused.append(pools.removeValue(forKey: address)!) }
            return (primaries.sorted { $0.description < $1.description }.compactMap { a in pools[a].map { (a.description, $0) } }, unused)
        }
        for pool in unused { await pool.shutdown() }
        return chosen
    }

    /// Closes every pool made.
    public func shutdown() async {
        for pool in pools.withLock({ pools in defer { pools = [:] }; return Array(pools.values) }) { await pool.shutdown() }
    }
}

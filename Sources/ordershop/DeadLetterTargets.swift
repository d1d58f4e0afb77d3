import ArgumentParser
import Foundation
import OrderShop
import RedisClient
import StreamWorker

/// The dead letters `ordershop dlq` works on: a plain stream's, or, for a logical stream spread
/// over partitions (``PartitionedStream``), every partition's (each partition's dead letters
/// and replay stream live in its own slot, on whichever node holds it).
struct DeadLetterTargets {
    /// One stream's dead letters; `partition` nil for a plain stream.
    struct Target {
        var partition: PartitionedStream.Partition?
        var deadLetters: DeadLetters
    }

    let targets: [Target]
    private let pools: [RedisConnectionPool]
    /// On a Redis Cluster, what the targets' commands go through.
    private let cluster: RedisClusterClient?

    /// The partitions of `stream` found on every node (restricted to `partition` when given);
    /// with none, `stream` as a plain stream, as before partitions. A partition stream's own
    /// name works too (that partition alone). A plain stream of the same name as a partitioned
    /// one (its layout before it was partitioned) is included while it has the group. Streams
    /// whose group does not exist (``DeadLetters/requireGroup(orDeadLetters:)``) are left out;
    /// when none has it the first refusal is thrown.
    static func resolve(
        _ redis: RedisOptions, stream: String, group: String, partition: Int?, orDeadLetters: Bool
    ) async throws -> DeadLetterTargets {
        let configuration = try redis.configuration()
        // On a cluster, each target's commands go through a cluster client, routed by the slot
        // its keys share: a node's own pool answered ASK or MOVED while that slot was being
        // moved, and a trial's `dlq list` then said the stream had no consumer groups.
        let cluster = try await usesRedisCluster(configuration) ? try await RedisNodePools.connected(try RedisClusterConfiguration(configuration)) : nil
        // The nodes to list partitions on: the primaries that client found (discovered once).
        let pools: [RedisConnectionPool]
        do {
            pools = try cluster.map { try RedisNodePools.primaries(of: $0) } ?? [RedisConnectionPool(configuration: configuration, maximumConnections: 2)]
        } catch {
            await cluster?.shutdown()
            throw error
        }
        let started = ContinuousClock.now
        // Taken before any routed read refreshes the map (the dead node then serves no slots).
        let takeovers = cluster.map(Self.takeoverSlots) ?? [:]
        do {
            var found: [Target] = []
            // Nodes whose partitions could not be listed (a dead primary not yet replaced, a
            // frozen one): read again through the node that serves their slots once the holder
            // of the plain name is known (below), else named and left out.
            var unread: [(node: RedisConnectionPool, error: RedisError)] = []
            func add(_ partitions: [PartitionedStream.Partition], from node: RedisConnectionPool) {
                // A partition whose slot is being moved may be listed by two nodes: once.
                for p in partitions where !found.contains(where: { $0.partition == p }) {
                    found.append(Target(partition: p, deadLetters: DeadLetters(client: cluster ?? node, stream: p.stream, group: group)))
                }
            }
            if PartitionedStream.parse(stream) == nil {
                for node in pools {
                    // A node that cannot be read is not the end of the command: it failed even
                    // for a plain stream held by another node (a trial's `dlq list` while an
                    // unrelated primary was dead).
                    do {
                        add(try await GroupInspector(client: node).partitions(of: stream), from: node)
                    } catch let error as RedisError where pools.count > 1 && !error.code.isServerError {
                        unread.append((node, error))
                    }
                }
            }
            let holder: (any RedisClientProtocol)? = partition != nil ? nil : try await holder(of: stream, group: group, pools: pools, cluster: cluster, partitionsFound: !found.isEmpty)
            if PartitionedStream.parse(stream) == nil {
                for (node, error) in unread {
                    // After a failover the promoted replica serves the dead node's slots: read
                    // there (trials H and I: a complete list came with a note that partitions
                    // had been left out). Waits for the promotion within the cluster's retry
                    // window, counted from the start (the holder's read may have waited already).
                    if let cluster, case .tcp(let host, let port) = node.configuration.endpoint,
                        let slot = takeovers[ClusterNodeAddress(host: host, port: port)],
                        let promoted = await Self.serving(slot, insteadOf: ClusterNodeAddress(host: host, port: port), cluster: cluster, until: started + cluster.configuration.retryWindow)
                    {
                        // Its targets go through the cluster client: the pool only lists.
                        let partitions = try? await GroupInspector(client: promoted).partitions(of: stream)
                        await promoted.shutdown()
                        if let partitions {
                            add(partitions, from: promoted)
                            continue
                        }
                    }
                    FileHandle.standardError.write(
                        Data("note: \(node.configuration.endpoint) not read (\(error.code)): partitions of \(stream) it holds, if any, are left out\n".utf8))
                }
                found.sort { ($0.partition!.partitions, $0.partition!.partition) < ($1.partition!.partitions, $1.partition!.partition) }
            }
            if let partition {
                let numbers = found.compactMap { $0.partition?.partition }
                found = found.filter { $0.partition?.partition == partition }
                // Not a ValidationError: thrown from `run`, it came with the top-level usage (a trial).
                guard !found.isEmpty else {
                    let has = numbers.isEmpty ? "it is not spread over partitions" : "it has partitions " + numbers.map(String.init).joined(separator: ", ")
                    throw CleanExit.message("\(stream) has no partition \(partition) (\(has))", exitCode: 1)
                }
            } else if let node = holder {
                // The plain stream of that name: alone, or beside its partitions.
                let plain = DeadLetters(client: node, stream: stream, group: group)
                found.insert(Target(partition: PartitionedStream.parse(stream), deadLetters: plain), at: 0)
            } else if found.isEmpty {
                throw DeadLetters.NoSuchGroup(stream: stream, group: group, groups: [])
            }
            var kept: [Target] = []
            var refusal: (any Error)?
            for target in found {
                do {
                    try await target.deadLetters.requireGroup(orDeadLetters: orDeadLetters)
                    kept.append(target)
                } catch let missing as DeadLetters.NoSuchGroup {
                    refusal = refusal ?? missing
                }
            }
            if kept.isEmpty, let refusal { throw refusal }
            return DeadLetterTargets(targets: kept, pools: pools, cluster: cluster)
        } catch {
            for pool in pools { await pool.shutdown() }
            await cluster?.shutdown()
            throw error
        }
    }

    /// What holds the plain stream `stream` or its group's dead letters: the cluster client when
    /// they exist on a cluster, else the one server; nil when none does.
    ///
    /// With partitions found, a plain stream's node that cannot be read (dead, frozen) is named
    /// on stderr and the partitions are worked on: its name's slot is unrelated to theirs.
    private static func holder(
        of stream: String, group: String, pools: [RedisConnectionPool], cluster: RedisClusterClient?, partitionsFound: Bool
    ) async throws -> (any RedisClientProtocol)? {
        guard let cluster else { return try await OperationsReader(nodes: pools).holder(of: stream, group: group) }
        do {
            return try await OperationsReader.holder(of: stream, group: group, routedBy: cluster)
        } catch let error as RedisError where partitionsFound && !error.code.isServerError {
            let node = cluster.primary(for: HashSlot(key: stream)).map { "\($0)" } ?? "its node"
            FileHandle.standardError.write(Data("note: \(node) not read (\(error.code)): a plain stream \(stream) beside the partitions, if any, is left out\n".utf8))
            return nil
        }
    }

    /// Per primary of the map as first discovered, the first slot it serves, for the shards
    /// whose replica could take over (one that is not failed); a shard without one is not
    /// waited for.
    private static func takeoverSlots(_ cluster: RedisClusterClient) -> [ClusterNodeAddress: HashSlot] {
        var slots: [ClusterNodeAddress: HashSlot] = [:]
        for shard in cluster.shards {
            guard let primary = shard.primary, let address = cluster.address(of: primary),
                let range = shard.slots.first, let slot = HashSlot(rawValue: range.lowerBound),
                shard.nodes.contains(where: { $0.role == .replica && $0.health != "fail" })
            else { continue }
            slots[address] = slot
        }
        return slots
    }

    /// A pool for the node that serves `slot` now, when it is no longer `dead` (its replica was
    /// promoted), found by a routed read of a key in that slot, which waits for the promotion
    /// until `deadline`; nil when none took over by then.
    private static func serving(
        _ slot: HashSlot, insteadOf dead: ClusterNodeAddress, cluster: RedisClusterClient, until deadline: ContinuousClock.Instant
    ) async -> RedisConnectionPool? {
        let key = HashSlot.firstName("dlq-probe-", slottedIn: Int(slot.rawValue)..<Int(slot.rawValue) + 1)
        let answered = await first(of: { (try? await cluster.send(EXISTS(RedisArgument(key)))) != nil }, orAt: deadline, else: false)
        guard answered, let now = cluster.primary(for: slot), now != dead else { return nil }
        return try? RedisConnectionPool(configuration: cluster.configuration.configuration(for: now), maximumConnections: 2)
    }

    /// Whether any target is a partition (the output then names them).
    var partitioned: Bool { targets.contains { $0.partition != nil } }

    /// ``OperatorText/replicaNote(_:read:)`` for the one server (not a cluster's primaries).
    func replicaNote() async -> String? {
        guard cluster == nil, pools.count == 1 else { return nil }
        return await OperatorText.replicaNote(pools[0], read: "these dead letters are")
    }

    func shutdown() async {
        for pool in pools { await pool.shutdown() }
        await cluster?.shutdown()
    }
}

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

    /// The partitions of `stream` found on every node (restricted to `partition` when given);
    /// with none, `stream` as a plain stream, as before partitions. A partition stream's own
    /// name works too (that partition alone). A plain stream of the same name as a partitioned
    /// one (its layout before it was partitioned) is included while it has the group. Streams
    /// whose group does not exist (``DeadLetters/requireGroup(orDeadLetters:)``) are left out;
    /// when none has it the first refusal is thrown.
    static func resolve(
        _ redis: RedisOptions, stream: String, group: String, partition: Int?, orDeadLetters: Bool
    ) async throws -> DeadLetterTargets {
        let pools = try await RedisNodePools.primaries(try redis.configuration())
        do {
            var found: [Target] = []
            if PartitionedStream.parse(stream) == nil {
                for node in pools {
                    // A node that cannot be read (a dead primary not yet replaced, a frozen one)
                    // is named and left out: it failed the command even for a plain stream held
                    // by another node (a trial's `dlq list` while an unrelated primary was dead).
                    let partitions: [PartitionedStream.Partition]
                    do {
                        partitions = try await GroupInspector(client: node).partitions(of: stream)
                    } catch let error as RedisError where pools.count > 1 && !error.code.isServerError {
                        FileHandle.standardError.write(
                            Data("note: \(node.configuration.endpoint) not read (\(error.code)): partitions of \(stream) it holds, if any, are left out\n".utf8))
                        continue
                    }
                    for p in partitions {
                        found.append(Target(partition: p, deadLetters: DeadLetters(client: node, stream: p.stream, group: group)))
                    }
                }
                found.sort { ($0.partition!.partitions, $0.partition!.partition) < ($1.partition!.partitions, $1.partition!.partition) }
            }
            if let partition {
                found = found.filter { $0.partition?.partition == partition }
                guard !found.isEmpty else { throw ValidationError("\(stream) has no partition \(partition)") }
            } else if let node = try await OperationsReader(nodes: pools).holder(of: stream, group: group) {
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
            return DeadLetterTargets(targets: kept, pools: pools)
        } catch {
            for pool in pools { await pool.shutdown() }
            throw error
        }
    }

    /// Whether any target is a partition (the output then names them).
    var partitioned: Bool { targets.contains { $0.partition != nil } }

    func shutdown() async {
        for pool in pools { await pool.shutdown() }
    }
}

import RedisClient
import StreamWorker

/// Retention for the event streams, which are the system of record: an entry is trimmed only
/// when the latest snapshot of its entity type covers it and no consumer group still needs it.
///
/// A trim takes a snapshot of the type first (so what it removes is folded into the snapshot),
/// and refuses, trimming nothing of that type, when the snapshot cannot be taken (a stream
/// already lacks entries after the latest snapshot). A read model can then always be rebuilt
/// from the latest snapshot plus the entries after it.
public struct EventRetention: Sendable {
    public let pool: any RedisClientProtocol
    /// A deliberate defect of the trim, for the chaos harness only; nil otherwise.
    public var plantedBug: StreamRetention.PlantedBug?

    public init(pool: any RedisClientProtocol, plantedBug: StreamRetention.PlantedBug? = nil) {
        self.pool = pool
        self.plantedBug = plantedBug
    }

    /// What a trim did to one partition of an entity type.
    public struct Result: Sendable {
        /// The partition of the entity type trimmed (``ShopLayout``).
        public var partition: EntityPartition
        public var type: EntityType { partition.type }
        /// The snapshot the trim kept everything after.
        public var snapshot: StreamCut
        /// One per stream, in ``EventAction`` order.
        public var streams: [StreamRetention.Result]
        /// Entries the trim's snapshot left out as malformed: a stream no worker reads has no
        /// dead letters, so once trimmed they are nowhere else (empty for ``trim(_:after:maxLength:without:)``).
        public var malformed: [MalformedEntry] = []
        /// Ids whose changes the snapshot left out, never created (``Projection/uncreated``):
        /// like ``malformed``, their last trace once the streams are trimmed.
        public var uncreated: [String] = []
        /// The groups' replay streams that exist (`dlq replay` copies letters there), each
        /// trimmed to what its group has not yet acknowledged.
        public var replays: [StreamRetention.Result] = []
    }

    /// Snapshots an entity type, then trims each of its streams to the oldest entry that the
    /// snapshot does not cover or some group still needs (and to `maxLength` when that cuts
    /// neither). Safe while the shop runs, and across a failover (``trim(_:after:maxLength:)``).
    ///
    /// `without`: workers this shop does not run (or no longer runs): their groups are not
    /// waited for (``trim(_:after:maxLength:without:)``).
    public func trim(_ partition: EntityPartition, maxLength: Int? = nil, without absent: Set<WorkerName> = []) async throws -> Result {
        let store = EventStore(pool: pool)
        let taken = try await store.takeSnapshot(partition)
        // A concurrent snapshot may be newer than ours; either covers what it says.
        let cut = try await store.latestSnapshot(partition)?.cut ?? taken.cut
        var result = try await trim(partition, after: cut, maxLength: maxLength, without: absent)
        result.malformed = taken.malformed
        result.uncreated = taken.uncreated
        return result
    }

    /// Trims `type`'s streams to what `cut` covers, and never past what the snapshot on the
    /// node that trims covers: each stream's trim reads the snapshot's position itself
    /// (``StreamRetention/CoverageRecord``, the snapshot in the stream's slot). Why: a failover
    /// between the snapshot and the trim can lose the snapshot (replication is asynchronous);
    /// trimming to the lost snapshot's cut on the promoted replica would remove entries that only
    /// an older snapshot plus those entries can rebuild.
    ///
    /// A stream one of the shop's workers reads is not trimmed until that worker's group exists
    /// (``WorkerName/streams``): a worker started for the first time after a trim makes its group
    /// from the first entry left, and the mails of what was trimmed would never go. A stream
    /// none of them reads (`events:{inventory}_updated`, the largest: one entry per order) is
    /// trimmed to what the snapshot covers; it was never trimmed before (trial H: 7,060 entries).
    func trim(_ partition: EntityPartition, after cut: StreamCut, maxLength: Int? = nil, without absent: Set<WorkerName> = []) async throws -> Result {
        var results: [StreamRetention.Result] = []
        for (index, position) in cut.positions.enumerated() {
            let floor = StreamID(milliseconds: position.lastID.milliseconds, sequence: position.lastID.sequence + 1)
            let record = StreamRetention.CoverageRecord(key: partition.keys.snapshot, field: "position", index: index + 1)
            results.append(
                try await StreamRetention(client: pool, plantedBug: plantedBug).trim(
                    stream: position.stream, maxLength: maxLength, keepingFrom: floor, coveredBy: record,
                    requiredGroups: WorkerName.groups(reading: position.stream, except: absent)))
        }
        return Result(partition: partition, snapshot: cut, streams: results, replays: try await trimReplays(cut.positions.map(\.stream)))
    }

    /// Trims each group's replay stream of `streams` to the oldest entry its group still needs
    /// (pending, or not yet delivered); a replay stream whose group does not exist is kept.
    /// Why: a replayed letter stayed there once acknowledged, dead-lettered again or purged, and
    /// nothing removed it (a trial: 50,412 entries, 217 MB, after every dead letter was purged
    /// and every stream trimmed). The snapshot has nothing to do with them: they are copies of
    /// entries of the event streams, or of entries no snapshot takes.
    func trimReplays(_ streams: [String]) async throws -> [StreamRetention.Result] {
        var results: [StreamRetention.Result] = []
        for stream in streams {
            for group in WorkerName.groups(reading: stream) {
                let replay = StreamKeys.replay(stream: stream, group: group)
                guard try await pool.send(EXISTS(RedisArgument(replay))) > 0 else { continue }
                results.append(try await StreamRetention(client: pool).trim(stream: replay, requiredGroups: [group]))
            }
        }
        return results
    }
}

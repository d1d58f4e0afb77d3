import Foundation
import RedisClient

extension EventStore {
    /// The events of an entity type as its three streams hold them now (after the given entry
    /// ids, one per stream in ``EventAction`` order; all when nil), with the last entry id read
    /// from each. Entries trimmed away are not here: for the state, use ``replay(_:)``.
    public func events(_ partition: EntityPartition, after: [String]? = nil, pageSize: Int = 1000) async throws -> (events: [RecordedEvent], lastIDs: [String]) {
        var events: [RecordedEvent] = []
        var lastIDs: [String] = []
        for (i, action) in EventAction.allCases.enumerated() {
            let stream = partition.stream(action)
            var last = after?[i] ?? "0-0"
            var start = last == "0-0" ? "-" : "(" + last
            while true {
                let page = try await pool.send(XRANGE(RedisArgument(stream), start: start, end: "+", count: pageSize))
                for entry in page {
                    if let e = RecordedEvent(entry, action: action) { events.append(e) }
                    last = entry.id
                }
                if page.count < pageSize { break }
                start = "(" + last
            }
            lastIDs.append(last)
        }
        return (events, lastIDs)
    }

    /// The state of an entity type replayed from its record: the latest snapshot plus every
    /// event after it. Throws ``StreamGapError`` when a stream lacks entries after the snapshot.
    public func replay(_ partition: EntityPartition) async throws -> Projection {
        let base = try await latestSnapshot(partition)
        let cut = try await StreamCut.read(partition, pool: pool)
        var projection = Projection(base: base?.states ?? [:])
        for e in Projection.ordered(try await events(partition, after: base?.cut ?? .origin(partition), upTo: cut).events) { projection.apply(e) }
        return projection
    }

    /// What a rebuild did.
    public struct RebuildReport: Sendable, Hashable, CustomStringConvertible {
        public var partition: EntityPartition
        public var type: EntityType { partition.type }
        /// Events read from the streams (after the snapshot, when there is one).
        public var events: Int
        public var live: Int
        public var deleted: Int
        public var ignored: Int
        /// Swaps refused because a command appended an event meanwhile (the new events were then read and applied).
        public var retries: Int
        /// The snapshot the rebuild started from, nil when it replayed the streams from their start.
        public var snapshot: StreamCut? = nil
        /// Entries read that were not well-formed events (``RecordedEvent/decode(_:action:)``):
        /// left out of the read model, and named here so that an operator can find them.
        public var malformed: [MalformedEntry] = []
        /// Ids with changes but no creation in the record read (``Projection/uncreated``): left
        /// out, as the commands never served them.
        public var uncreated: [String] = []

        public var description: String {
            "\(partition): \(snapshot == nil ? "" : "snapshot + ")\(events) events -> \(live) live, \(deleted) deleted, \(ignored) ignored (repeated or late)"
                + (retries > 0 ? ", \(retries) retries" : "")
                + (malformed.isEmpty ? "" : ", \(malformed.count) malformed entries left out: " + malformed.prefix(5).map(\.description).joined(separator: "; ")
                    + (malformed.count > 5 ? "; ..." : ""))
                + (uncreated.isEmpty ? "" : ", " + ReadModelSnapshot.uncreatedNote(uncreated))
        }
    }

    /// Rebuilds an entity type's read model from the latest snapshot and the events after it.
    ///
    /// Refuses with a ``StreamGapError`` naming the stream when a stream lacks entries it needs
    /// (trimmed past the snapshot): it never builds from part of the record. The new read model
    /// is written beside the live one and swapped in by a script that first checks that no event
    /// was appended meanwhile (else it reads the new events, writes what they changed, and tries
    /// again: see ``RebuildStaging``), so commands may keep running during a rebuild and nothing
    /// they wrote is lost. A snapshot installed while it reads (a concurrent `trim`) makes it
    /// start over from that snapshot.
    public func rebuild(_ partition: EntityPartition, maxAttempts: Int = 100) async throws -> RebuildReport {
        var staging = RebuildStaging(partition: partition, suffix: RandomUUID.string())
        do {
            return try await rebuild(partition, into: &staging, maxAttempts: maxAttempts)
        } catch {
            // The staging keys of a rebuild that failed are of no use; a swap renamed them away.
            _ = try? await pool.send(DEL(keys: staging.keys.map { RedisArgument($0) }))
            throw error
        }
    }

    private func rebuild(_ partition: EntityPartition, into staging: inout RebuildStaging, maxAttempts: Int) async throws -> RebuildReport {
        var base = try await latestSnapshot(partition)
        var from = base?.cut ?? .origin(partition)
        var projection = rebuildProjection(base: base?.states ?? [:])
        var read = 0
        var malformed: [MalformedEntry] = base?.malformed ?? []
        // Swaps refused for an event appended meanwhile (not the starts over from a newer
        // snapshot: the chaos harness reads this as the race met).
        var refusedSwaps = 0
        for _ in 0..<maxAttempts {
            let cut = try await StreamCut.read(partition, pool: pool)
            let new: (events: [RecordedEvent], malformed: [MalformedEntry])
            do {
                new = try await events(partition, after: from, upTo: cut)
            } catch let gap as StreamGapError {
                // Trimmed meanwhile past a newer snapshot: start over from it; otherwise refuse.
                guard let latest = try await latestSnapshot(partition), latest.cut != base?.cut else { throw gap }
                base = latest
                from = latest.cut
                projection = rebuildProjection(base: latest.states)
                staging.reset()
                read = 0
                malformed = latest.malformed
                continue
            }
            read += new.events.count + new.malformed.count
            malformed += new.malformed
            var changed: Set<String> = []
            for e in Projection.ordered(new.events) where projection.apply(e) { changed.insert(e.entityID) }
            from = cut
            try await staging.write(projection, changed: changed, pool: pool)
            let keys = (partition.streams + partition.keys.all + staging.keys + [partition.keys.generation]).map { RedisArgument($0) }
            // With --confirm-replicas the swap counts only once the replicas have it: a failover
            // could otherwise undo a rebuild reported done (the live read model, as commands
            // kept it, would stay), and an operator who rebuilt to repair it would not know.
            let reply: RESPValue
            do {
                reply = try await runConfirmed(
                    plantedBug == .rebuildSwapsBlindly ? Self.plantedBlindSwapScript : Self.swapScript, in: partition, keys: keys,
                    arguments: cut.positions.map { RedisArgument($0.entriesAdded) } + [RedisArgument(RandomUUID.string())],
                    wrote: { $0.array?.first?.string == "ok" })
            } catch var unconfirmed as ShopError where unconfirmed.outcome == "may have been applied" {
                // The command's advice (an Idempotency-Key, reading the entity) is a client's;
                // an operator's is to run the rebuild again, which is safe at any time.
                unconfirmed.message = "the rebuild of \(partition) may have been applied: its swap ran on the primary, but the replicas did not confirm it in time, so a failover could undo it; run the rebuild again once they are back"
                throw unconfirmed
            }
            if reply.array?.first?.string == "ok" {
                let deleted = projection.states.values.filter(\.deleted).count
                return RebuildReport(
                    partition: partition, events: read, live: projection.states.count - deleted, deleted: deleted,
                    ignored: projection.ignored, retries: refusedSwaps, snapshot: base?.cut, malformed: malformed,
                    uncreated: projection.uncreated.keys.sorted())
            }
            refusedSwaps += 1
        }
        throw RedisError(.transactionAborted, "\(partition) events kept arriving; rebuild gave up after \(maxAttempts) attempts")
    }

    /// The fold a rebuild starts from `base` with (its planted bug's, in a chaos run).
    private func rebuildProjection(base: [String: Projection.State]) -> Projection {
        var projection = Projection(base: base)
        projection.foldsUncreated = plantedBug == .rebuildFoldsUncreated
        return projection
    }

    /// KEYS: the 3 streams, the 6 live keys, the 6 staging keys, the generation
    /// (``ReadModelKeys/generation``, set by the swap to ARGV[4], a new UUID: a counter's value
    /// could come again after a failover lost a swap, a review). ARGV: each stream's entries-added
    /// when it was read (it grows with every append and trimming does not lower it).
    static let swapScript = swapScript(checksForNewEvents: true)

    /// ``swapScript`` without its check for events appended since the read
    /// (``PlantedBug/rebuildSwapsBlindly``, for the chaos harness only).
    static let plantedBlindSwapScript = swapScript(checksForNewEvents: false)

    private static func swapScript(checksForNewEvents: Bool) -> RedisScript {
        RedisScript(
        """
        for i = 1, \(checksForNewEvents ? 3 : 0) do
          local added = 0
          if redis.call('EXISTS', KEYS[i]) == 1 then
            local info = redis.call('XINFO', 'STREAM', KEYS[i])
            for j = 1, #info, 2 do if info[j] == 'entries-added' then added = info[j + 1] end end
          end
          if tostring(added) ~= ARGV[i] then return {'moved', KEYS[i]} end
        end
        for i = 1, 6 do
          local live, staged = KEYS[3 + i], KEYS[9 + i]
          if redis.call('EXISTS', staged) == 1 then redis.call('RENAME', staged, live) else redis.call('DEL', live) end
        end
        redis.call('SET', KEYS[16], ARGV[4])
        return {'ok'}
        """)
    }
}

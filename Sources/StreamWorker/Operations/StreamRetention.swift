import RedisClient

/// Retention that never drops an entry a group still needs.
public struct StreamRetention: Sendable {
    /// What a trim did.
    public struct Result: Sendable, Codable, Equatable {
        public var stream: String
        public var removed: Int
        /// Entries from this id on were kept.
        public var keptFrom: String
        /// A MAXLEN cap was asked for that would have removed needed entries; it was not applied.
        public var capRefused: Bool
        public var groups: Int
        /// A group the trim required (`requiredGroups`) that does not exist: nothing was trimmed.
        public var missingGroup: String?
    }

    let client: any RedisClientProtocol
    /// A deliberate defect, for the chaos harness only (`ordershop trim --planted-bug`); nil
    /// otherwise.
    public var plantedBug: PlantedBug?

    public init(client: any RedisClientProtocol, plantedBug: PlantedBug? = nil) {
        self.client = client
        self.plantedBug = plantedBug
    }

    /// A deliberate defect of the trim, for the chaos harness to show that its checker catches
    /// it. Never set in production.
    public enum PlantedBug: String, Sendable, CaseIterable {
        /// The trim ignores what the groups still need (their pending entries and those not yet
        /// delivered) and cuts to the application's floor alone: the event-sourcing shortcut
        /// "trim what the snapshot covers". Breaks "retention never drops needed entries": an
        /// entry a killed worker held, or one its group had not read yet, is gone before any
        /// consumer applied it.
        case trimIgnoresGroups = "trim-ignores-groups"
    }

    /// Where an application records how far its own state covers a stream (a snapshot's
    /// position): a hash field in the stream's hash slot whose value is stream ids separated by
    /// spaces, `index` (from 1) naming this stream's: the last entry the state covers.
    public struct CoverageRecord: Sendable, Equatable {
        public var key: String
        public var field: String
        public var index: Int

        public init(key: String, field: String, index: Int) {
            self.key = key
            self.field = field
            self.index = index
        }
    }

    /// Trims to the smallest id any group still needs (oldest pending, or next undelivered),
    /// and to `maxLength` when that cuts no needed entry. Without `requiredGroups` a stream with
    /// no groups is not trimmed. With `keepingFrom`, entries from that id on are kept too (an
    /// application's own floor, such as the position its latest snapshot covers).
    ///
    /// With `requiredGroups` (an application that knows who reads the stream), the stream is not
    /// trimmed while one of those groups does not exist (its reader has not started yet, and its
    /// group will be made from the first entry: ``Result/missingGroup`` names it); a stream that
    /// no group reads and none is required for is trimmed to `keepingFrom` and `coveredBy`
    /// alone (nothing without `keepingFrom`): it grew without bound before.
    ///
    /// With `coveredBy`, entries after the id that record holds are kept too, the record read by
    /// the trim itself: a floor the caller computed from a write that a failover then lost (a
    /// snapshot taken on the old primary, not yet on the replica that took over) cannot cut
    /// entries that no surviving state covers. A missing record keeps every entry.
    public func trim(
        stream: String, maxLength: Int? = nil, keepingFrom floor: StreamID? = nil, coveredBy record: CoverageRecord? = nil, requiredGroups: [String]? = nil
    ) async throws -> Result {
        var keys = [RedisArgument(stream)]
        var arguments = [RedisArgument(maxLength ?? 0), RedisArgument(floor.map { "\($0)" } ?? ""), RedisArgument(requiredGroups?.count ?? -1)]
        arguments += (requiredGroups ?? []).map { RedisArgument($0) }
        if let record {
            keys.append(RedisArgument(record.key))
            arguments += [RedisArgument(record.field), RedisArgument(record.index)]
        }
        let script = plantedBug == .trimIgnoresGroups ? WorkerScripts.plantedTrimIgnoringGroups : WorkerScripts.safeTrim
        let reply = try await client.evaluate(script, keys: keys, arguments: arguments)
        let parts = reply.array ?? []
        guard parts.count == 5 else { throw RedisError(.unexpectedReply, "trim script returned \(reply)") }
        let missing = parts[4].string ?? ""
        return Result(
            stream: stream, removed: parts[0].int ?? 0, keptFrom: parts[1].string ?? "0-0", capRefused: parts[2].int == 1,
            groups: parts[3].int ?? 0, missingGroup: missing.isEmpty ? nil : missing)
    }
}

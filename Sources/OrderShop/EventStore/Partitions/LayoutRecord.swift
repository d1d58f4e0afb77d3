import RedisClient

extension ShopLayout {
    /// The key that records the layout of the shop in a Redis: its partition count, as text.
    /// Absent: one partition (a shop made before layouts were recorded, or no shop yet).
    public static let recordKey = "ordershop:layout"

    /// The layout of the shop in this Redis, as recorded there (one partition when nothing is):
    /// what the operations commands (`rebuild`, `snapshot`, `trim`) work through.
    public static func recorded(in pool: any RedisClientProtocol) async throws -> ShopLayout {
        do {
            return ShopLayout(partitions: try await recordedCount(in: pool) ?? 1)
        } catch let error as RedisError where error.isACLRefusal {
            // A user whose ACL predates the record (every one of a shop in one partition): its
            // commands then meet Redis's own answer on the keys they touch, which names the user.
            return .single
        }
    }

    /// Checks that the shop in this Redis is laid out as this process was told (`--partitions`),
    /// and records a layout of several partitions where none is yet, before the process serves
    /// or consumes anything. Throws ``LayoutMismatch`` when Redis holds a shop laid out in
    /// another count: the process would read and write keys no other process of the shop uses
    /// (entities "missing", events never consumed).
    ///
    /// One partition records nothing (its Redis users' ACLs predate the record); a shop of one
    /// partition is recognised by its read model (any type's versions hash). Two processes that
    /// start at once on an empty Redis, one of each, are not told apart.
    public func claim(in pool: any RedisClientProtocol) async throws {
        let recorded: Int?
        do {
            recorded = try await Self.recordedCount(in: pool)
        } catch let error as RedisError where error.isACLRefusal && partitions == 1 {
            // A user whose ACL predates the record: a shop of one partition, as it always was.
            return
        }
        if let recorded {
            guard recorded == partitions else { throw LayoutMismatch(recorded: recorded, given: partitions) }
            return
        }
        guard partitions > 1 else { return }
        for type in Self.spreadTypes {
            let key = RedisArgument(type.keys.versions)
            if try await pool.send(RawCommand(["EXISTS", key], keys: [key], readOnly: true)).int ?? 0 > 0 {
                throw LayoutMismatch(recorded: 1, given: partitions)
            }
        }
        let key = RedisArgument(Self.recordKey)
        _ = try await pool.send(RawCommand(["SET", key, RedisArgument(partitions), "NX"], keys: [key]))
        let now = try await Self.recordedCount(in: pool) ?? 0
        guard now == partitions else { throw LayoutMismatch(recorded: now, given: partitions) }
    }

    /// The recorded partition count, nil when none is.
    private static func recordedCount(in pool: any RedisClientProtocol) async throws -> Int? {
        let key = RedisArgument(recordKey)
        guard let text = try await pool.send(RawCommand(["GET", key], keys: [key], readOnly: true)).string else { return nil }
        guard let count = Int(text), (1...maximumPartitions).contains(count) else {
            throw RedisError(.unexpectedReply, "\(recordKey) holds '\(LogText.escaped(text, limit: 40))', not a partition count of 1 to \(maximumPartitions)")
        }
        return count
    }
}

/// A process was told another partition count than the shop in its Redis has (``ShopLayout/claim(in:)``).
public struct LayoutMismatch: Error, Sendable, CustomStringConvertible {
    public let recorded: Int
    public let given: Int

    public var description: String {
        "the shop in this Redis has its entities in \(recorded) partition\(recorded == 1 ? "" : "s") (\(recorded == 1 ? "its read model is there" : "\(ShopLayout.recordKey) = \(recorded)")), and this process was started with --partitions \(given): start it with --partitions \(recorded) (or ORDERSHOP_PARTITIONS); a shop's partition count cannot change while it holds data"
    }
}

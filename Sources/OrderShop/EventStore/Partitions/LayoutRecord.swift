import RedisClient

extension ShopLayout {
    /// The key that records the layout of the shop in a Redis: its partition count, as text.
    /// Absent: one partition (a shop made before layouts were recorded, or no shop yet).
    public static let recordKey = "ordershop:layout"

    /// The layout of the shop in this Redis, as recorded there (one partition when nothing is):
    /// what the operations commands (`rebuild`, `snapshot`, `trim`) and the demo work through.
    ///
    /// A user whose ACL does not let it read the record (every user of a shop in one partition:
    /// their ACLs predate it) is answered by what Redis holds: a shop of one partition when its
    /// read model or nothing is there; a shop in partitions (its creation counters) is refused,
    /// with Redis's answer: a command that took it for one partition would work on keys no
    /// process of the shop uses.
    public static func recorded(in pool: any RedisClientProtocol) async throws -> ShopLayout {
        let count: Int?
        do {
            count = try await recordedCount(in: pool)
        } catch let refusal as RedisError where refusal.isACLRefusal {
            guard try await !holdsPartitions(pool, otherwise: refusal) else { throw refusal }
            return .single
        }
        if let count {
            try await refuseMixed(count, in: pool)
            return ShopLayout(partitions: count)
        }
        guard try await !holdsPartitions(pool, otherwise: nil) else { throw LayoutRecordMissing() }
        return .single
    }

    /// Checks that the shop in this Redis is laid out as this process was told (`--partitions`),
    /// and records a layout of several partitions where none is yet.
    ///
    /// `mayRecord` false (the gateway, a worker: their Redis users in deploy/redis/users.acl may
    /// only read the record, since an ACL cannot require NX, and a user that could set it could
    /// set another count, which every process would refuse at its next start): waits until a
    /// service has recorded it, calling `waiting` once first. A service whose user is refused the
    /// write waits the same way. A worker checks before it
    /// joins a group, a service while it starts listening (it may answer its first requests
    /// meanwhile). Throws ``LayoutMismatch`` when Redis holds a shop laid out otherwise: the
    /// process would read and write keys no other process of the shop uses (entities "missing",
    /// events never consumed).
    ///
    /// One partition records nothing (its Redis users' ACLs predate the record). A shop of one
    /// partition is recognised by its read model or its event streams, a shop in partitions
    /// whose record is gone (a failover lost it) by its creation counters
    /// (``CreationSequence/counter(_:)``). Two processes that start at once on an empty Redis,
    /// one of each, are not told apart.
    public func claim(in pool: any RedisClientProtocol, mayRecord: Bool = true, waiting: @Sendable () -> Void = {}) async throws {
        let recorded: Int?
        do {
            recorded = try await Self.recordedCount(in: pool)
        } catch let refusal as RedisError where refusal.isACLRefusal && partitions == 1 {
            // A user whose ACL predates the record: a shop of one partition, unless Redis holds
            // one in partitions. A user that may not look either is left to the checks of what
            // it does (``KeyAccessProbe`` names the key).
            if (try? await Self.holdsPartitions(pool, otherwise: refusal)) == true { throw LayoutMismatch(recorded: nil, given: partitions) }
            return
        }
        if let recorded {
            guard recorded == partitions else { throw LayoutMismatch(recorded: recorded, given: partitions) }
            try await Self.refuseMixed(recorded, in: pool)
            return
        }
        guard partitions > 1 else {
            if try await Self.holdsPartitions(pool, otherwise: nil) { throw LayoutMismatch(recorded: nil, given: partitions) }
            return
        }
        if try await Self.anyExists(EntityType.allCases.flatMap { [$0.keys.versions, $0.stream(.created)] }, in: pool) {
            throw LayoutMismatch(recorded: 1, given: partitions)
        }
        // A shop in partitions whose record is gone: recorded again only by a process of its
        // count (its partitions' names carry the count, so another count's are not there).
        if try await Self.holdsPartitions(pool, otherwise: nil),
            try await !Self.anyExists(EntityType.allCases.flatMap { partitions($0).map(\.keys.versions) }, in: pool)
        {
            throw LayoutMismatch(recorded: nil, given: partitions)
        }
        let key = RedisArgument(Self.recordKey)
        var set = false
        if mayRecord {
            do {
                _ = try await pool.send(RawCommand(["SET", key, RedisArgument(partitions), "NX"], keys: [key]))
                set = true
            } catch let refusal as RedisError where refusal.isACLRefusal {}
        }
        if !set, try await Self.recordedCount(in: pool) == nil {
            waiting()
            while try await Self.recordedCount(in: pool) == nil { try await Task.sleep(for: .milliseconds(250)) }
        }
        let now = try await Self.recordedCount(in: pool) ?? 0
        guard now == partitions else { throw LayoutMismatch(recorded: now, given: partitions) }
    }

    /// Throws ``LayoutMixed`` when a shop recorded in `count` partitions (more than one) holds
    /// keys of one partition: the version before stock records and orders were spread (d5314b6
    /// to ba00244) kept them under one partition's names, where no process looks now (and an
    /// operations command would rebuild, snapshot or trim empty partitions beside them).
    private static func refuseMixed(_ count: Int, in pool: any RedisClientProtocol) async throws {
        guard count > 1 else { return }
        if let found = try await firstExisting(EntityType.allCases.map(\.keys.versions), in: pool) { throw LayoutMixed(partitions: count, found: found) }
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

    /// Whether Redis holds a shop in partitions: one of its creation counters. `otherwise`: the
    /// error to throw when the user may not look either (else Redis's own).
    private static func holdsPartitions(_ pool: any RedisClientProtocol, otherwise: RedisError?) async throws -> Bool {
        do {
            return try await anyExists(EntityType.allCases.map(CreationSequence.counter), in: pool)
        } catch let error as RedisError where error.isACLRefusal {
            throw otherwise ?? error
        }
    }

    /// Whether any of `names` exists (one EXISTS each: they lie in different slots).
    private static func anyExists(_ names: [String], in pool: any RedisClientProtocol) async throws -> Bool {
        try await firstExisting(names, in: pool) != nil
    }

    /// The first of `names` that exists.
    private static func firstExisting(_ names: [String], in pool: any RedisClientProtocol) async throws -> String? {
        for name in names {
            let key = RedisArgument(name)
            if try await pool.send(RawCommand(["EXISTS", key], keys: [key], readOnly: true)).int ?? 0 > 0 { return name }
        }
        return nil
    }
}

/// Redis holds a shop in partitions (its creation counters) without the record of how many.
public struct LayoutRecordMissing: Error, Sendable, CustomStringConvertible {
    public var description: String {
        "the shop in this Redis has its entities in partitions (its creation counters are there) but no record of how many (\(ShopLayout.recordKey): a failover may have lost it); start one of its services or workers with its --partitions, which records it again"
    }
}

/// A process was told another partition count than the shop in its Redis has (``ShopLayout/claim(in:)``).
public struct LayoutMismatch: Error, Sendable, CustomStringConvertible {
    /// The shop's count; nil for a shop in partitions whose record is gone.
    public let recorded: Int?
    public let given: Int

    public var description: String {
        guard let recorded else {
            return "the shop in this Redis has its entities in partitions (its creation counters are there) but no record of how many (\(ShopLayout.recordKey): a failover may have lost it), and this process was started with --partitions \(given): start it with the shop's --partitions, which records it again"
        }
        return "the shop in this Redis has its entities in \(recorded) partition\(recorded == 1 ? "" : "s") (\(recorded == 1 ? "its read model or event streams are there" : "\(ShopLayout.recordKey) = \(recorded)")), and this process was started with --partitions \(given): start it with --partitions \(recorded) (or ORDERSHOP_PARTITIONS); a shop's partition count cannot change while it holds data"
    }
}

/// A shop recorded in partitions holds entities under the names of one partition too: an
/// earlier version kept its stock records and orders there (``ShopLayout/claim(in:)``).
public struct LayoutMixed: Error, Sendable, CustomStringConvertible {
    public let partitions: Int
    /// The one-partition key found.
    public let found: String

    public var description: String {
        "the shop in this Redis is recorded in \(partitions) partitions (\(ShopLayout.recordKey)) but holds \(found), a key of one partition: a version before stock records and orders were spread kept them there, where this version does not look; start this shop on an empty Redis (or with the version that made it)"
    }
}

import RedisClient

/// The state of one consumer group on one stream.
public struct GroupStatus: Sendable, Codable, Equatable {
    public struct Consumer: Sendable, Codable, Equatable {
        public var name: String
        public var pending: Int
        public var idleMilliseconds: Int
    }

    public var stream: String
    public var group: String
    public var length: Int
    public var lastID: String
    /// Entries not yet delivered to the group. When Redis cannot tell (its `lag` is nil after
    /// deletions), counted from the last-delivered id; nil only if that fails too. Never a
    /// silent zero.
    public var lag: Int?
    /// True when ``lag`` was counted by us (Redis reported nil).
    public var lagCounted: Bool
    public var pending: Int
    public var oldestPendingID: String?
    /// Seconds since the oldest pending entry was added to the stream.
    public var oldestPendingAge: Double?
    public var consumers: [Consumer]
    /// Length of the group's dead-letter stream.
    public var deadLetters: Int
}

/// Reads stream and group state: for `ordershop status`, the workers' gauges, and the checks
/// of the chaos harness.
public struct GroupInspector: Sendable {
    let pool: RedisConnectionPool

    public init(pool: RedisConnectionPool) { self.pool = pool }

    /// Streams whose names match a glob (SCAN ... TYPE stream).
    public func streams(matching pattern: String = "*") async throws -> [String] {
        var cursor = "0"
        var names: Set<String> = []
        repeat {
            let reply = try await pool.send(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", "1000", "TYPE", "stream"])
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { break }
            cursor = next
            for name in parts[1].array ?? [] { if let n = name.string { names.insert(n) } }
        } while cursor != "0"
        return names.filter { !$0.hasPrefix("dlq:") }.sorted()
    }

    /// Every group of a stream.
    public func status(stream: String) async throws -> [GroupStatus] {
        let groups = try await pool.send(XINFOGROUPS(RedisArgument(stream)))
        var out: [GroupStatus] = []
        for g in groups { out.append(try await groupStatus(stream: stream, group: g.name)) }
        return out
    }

    /// One group of a stream.
    public func groupStatus(stream: String, group: String) async throws -> GroupStatus {
        let key = RedisArgument(stream)
        let info = try await pool.send(XINFOSTREAM(key))
        guard let g = try await pool.send(XINFOGROUPS(key)).first(where: { $0.name == group }) else {
            throw RedisError(.noGroup, "NOGROUP no group \(group) on \(stream)")
        }
        var lag = g.lag
        var counted = false
        if lag == nil {
            // Redis does not know (entries were deleted): count what follows the last-delivered id.
            let after = try await pool.send(XRANGE(key, start: "(" + g.lastDeliveredID, end: "+", count: 100_000))
            lag = after.count
            counted = true
        }
        let oldest = try await pool.send(XPENDINGDetail(key, group: group, count: 1)).first
        var age: Double?
        if let oldest, let id = StreamID(oldest.id) {
            let time = try await pool.send(["TIME"]).array ?? []
            if time.count == 2, let s = time[0].int, let us = time[1].int {
                age = max(0, Double(s) + Double(us) / 1e6 - Double(id.milliseconds) / 1000)
            }
        }
        let consumers = try await pool.send(XINFOCONSUMERS(key, group: group)).map {
            GroupStatus.Consumer(name: $0.name, pending: $0.pending, idleMilliseconds: $0.idleMilliseconds)
        }
        let dlq = try await pool.send(XLEN(RedisArgument(StreamKeys.deadLetter(stream: stream, group: group))))
        return GroupStatus(
            stream: stream, group: group, length: info.length, lastID: info.lastGeneratedID, lag: lag, lagCounted: counted,
            pending: g.pending, oldestPendingID: oldest?.id, oldestPendingAge: age, consumers: consumers, deadLetters: dlq)
    }
}

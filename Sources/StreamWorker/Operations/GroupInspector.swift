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
    /// Entries not yet delivered to the group: zero when the group's last-delivered id is the
    /// stream's last id, counted exactly from the last-delivered id when few, Redis's own
    /// figure otherwise (see ``GroupInspector/lag(key:group:streamLastID:)``). Never a silent zero.
    public var lag: Int?
    /// True when ``lag`` was counted by us rather than taken from Redis.
    public var lagCounted: Bool
    public var pending: Int
    public var oldestPendingID: String?
    /// Seconds since the oldest pending entry was added to the stream.
    public var oldestPendingAge: Double?
    public var consumers: [Consumer]
    /// Length of the group's dead-letter stream.
    public var deadLetters: Int
    /// For a logical stream spread over partitions (``PartitionedStream``), how many of its
    /// partition streams have the group: the figures above are then over all of them
    /// (``merging(_:stream:)``). Nil for a plain stream.
    public var partitions: Int? = nil
}

/// Reads stream and group state: for `ordershop status`, the workers' gauges, and the checks
/// of the chaos harness.
public struct GroupInspector: Sendable {
    let client: any RedisClientProtocol

    public init(client: any RedisClientProtocol) { self.client = client }

    /// Streams whose names match a glob (SCAN ... TYPE stream), on one server. A Redis Cluster
    /// client sends the keyless SCAN to one primary, which lists only its own keys: inspect a
    /// cluster with an inspector per primary (as `ordershop status` does).
    public func streams(matching pattern: String = "*") async throws -> [String] {
        var cursor = "0"
        var names: Set<String> = []
        repeat {
            let reply = try await client.send(
                RawCommand(["SCAN", RedisArgument(cursor), "MATCH", RedisArgument(pattern), "COUNT", "1000", "TYPE", "stream"], readOnly: true))
            guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { break }
            cursor = next
            for name in parts[1].array ?? [] { if let n = name.string { names.insert(n) } }
        } while cursor != "0"
        return names.filter { !$0.hasPrefix("dlq:") }.sorted()
    }

    /// The partition streams of the logical stream `name` (its base: braces do not matter) on
    /// this server, by partition: every stream that ``PartitionedStream/parse(_:)`` takes for a
    /// partition of it, of any partition count (two while a stream moves from P to P'
    /// partitions). One node's keys only, as ``streams(matching:)``.
    public func partitions(of name: String) async throws -> [PartitionedStream.Partition] {
        let base = PartitionedStream(name).base
        let glob = base.map { "*?[]\\".contains($0) ? "\\\($0)" : "\($0)" }.joined() + ":*"
        return try await streams(matching: glob).compactMap { PartitionedStream.parse($0) }.filter { $0.name == base }
            .sorted { ($0.partitions, $0.partition) < ($1.partitions, $1.partition) }
    }

    /// Every group of a stream.
    public func status(stream: String) async throws -> [GroupStatus] {
        let groups = try await client.send(XINFOGROUPS(RedisArgument(stream)))
        var out: [GroupStatus] = []
        for g in groups { out.append(try await groupStatus(stream: stream, group: g.name)) }
        return out
    }

    /// One group of a stream. `countingDeadLetters` false: its dead letters are not counted (0),
    /// for a group's replay stream, whose letters go to the stream's own dead letters (and whose
    /// workers' users may not name `dlq:replay:...`, a key no one writes).
    public func groupStatus(stream: String, group: String, countingDeadLetters: Bool = true) async throws -> GroupStatus {
        let key = RedisArgument(stream)
        let info = try await client.send(XINFOSTREAM(key))
        guard let g = try await client.send(XINFOGROUPS(key)).first(where: { $0.name == group }) else {
            throw RedisError(.noGroup, "NOGROUP no group \(group) on \(stream)")
        }
        let (lag, counted) = try await lag(key: key, group: g, streamLastID: info.lastGeneratedID)
        let oldest = try await client.send(XPENDINGDetail(key, group: group, count: 1)).first
        var age: Double?
        if let oldest, let id = StreamID(oldest.id) {
            // The clock of the node that holds the stream (routed by its key on a cluster).
            let time = try await client.send(RawCommand(["TIME"], keys: [key], readOnly: true)).array ?? []
            if time.count == 2, let s = time[0].int, let us = time[1].int {
                age = max(0, Double(s) + Double(us) / 1e6 - Double(id.milliseconds) / 1000)
            }
        }
        let consumers = try await client.send(XINFOCONSUMERS(key, group: group)).map {
            GroupStatus.Consumer(name: $0.name, pending: $0.pending, idleMilliseconds: $0.idleMilliseconds)
        }
        let dlq = countingDeadLetters ? try await client.send(XLEN(RedisArgument(StreamKeys.deadLetter(stream: stream, group: group)))) : 0
        return GroupStatus(
            stream: stream, group: group, length: info.length, lastID: info.lastGeneratedID, lag: lag, lagCounted: counted,
            pending: g.pending, oldestPendingID: oldest?.id, oldestPendingAge: age, consumers: consumers, deadLetters: dlq)
    }

    /// How many entries follow the group's last-delivered id.
    ///
    /// Redis's `lag` (entries-added minus the group's entries-read) cannot be taken as it is:
    /// it is nil after deletions, and Redis 7.0 rebuilds a group's last-delivered id from the
    /// AOF (XCLAIM ... LASTID) without its entries-read counter (redis/redis#10569, #12898), so
    /// after a restart it can report a lag of hundreds for a group that has read everything
    /// (seen in a chaos run on 7.0.15: last-delivered id equal to the stream's last id, lag 1200).
    /// So: a group at the stream's last id has lag 0; a small lag is counted exactly (one
    /// bounded XRANGE); a large one is Redis's figure (an over-estimate at worst), or, when Redis
    /// has none, counted on up to 100,000.
    func lag(key: RedisArgument, group g: XINFOGROUPS.Group, streamLastID: String) async throws -> (Int, Bool) {
        let delivered = StreamID(g.lastDeliveredID) ?? .zero
        if let last = StreamID(streamLastID), delivered >= last { return (0, true) }
        let exactLimit = 1_000
        let next = try await client.send(XRANGE(key, start: "(" + g.lastDeliveredID, end: "+", count: exactLimit + 1))
        guard next.count > exactLimit, let counted = next.last?.id else { return (next.count, true) }
        if let lag = g.lag { return (max(lag, next.count), false) }
        let rest = try await client.send(XRANGE(key, start: "(" + counted, end: "+", count: 100_000 - next.count))
        return (next.count + rest.count, true)
    }
}

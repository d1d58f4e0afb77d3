/// `CLUSTER SHARDS` (Redis 7.0+): the shards, each with its slot ranges and nodes.
public struct CLUSTERSHARDS: RedisCommand {
    public init() {}
    public var isReadOnly: Bool { true }
    public var arguments: [RedisArgument] { ["CLUSTER", "SHARDS"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [ClusterShardDescription] {
        try ClusterShardDescription.decodeShards(reply)
    }

    /// Whether `error` is a server saying it has no `CLUSTER SHARDS` (before Redis 7.0): ask
    /// ``CLUSTERSLOTS`` then.
    public static func isUnsupported(_ error: RedisError) -> Bool {
        error.code == .err && error.message.lowercased().contains("unknown subcommand")
    }
}

/// `CLUSTER SLOTS` (deprecated in 7.0, the fall-back for older servers): slot ranges with their primary and replicas.
public struct CLUSTERSLOTS: RedisCommand {
    public init() {}
    public var isReadOnly: Bool { true }
    public var arguments: [RedisArgument] { ["CLUSTER", "SLOTS"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [ClusterShardDescription] {
        try ClusterShardDescription.decodeSlots(reply)
    }
}

/// `CLUSTER KEYSLOT key`: the slot the server computes for a key.
public struct CLUSTERKEYSLOT: RedisCommand {
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var isReadOnly: Bool { true }
    public var arguments: [RedisArgument] { ["CLUSTER", "KEYSLOT", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let slot = reply.int else { throw unexpected(reply, "integer") }
        return slot
    }
}

/// `CLUSTER INFO`: `cluster_state`, `cluster_slots_assigned`, ... as `key: value` pairs.
public struct CLUSTERINFO: RedisCommand {
    public init() {}
    public var isReadOnly: Bool { true }
    public var arguments: [RedisArgument] { ["CLUSTER", "INFO"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> [String: String] {
        try INFO().decode(reply)
    }
}

/// `ASKING`: the next command on this connection may touch a slot this node is importing.
public struct ASKING: RedisCommand {
    public init() {}
    public var arguments: [RedisArgument] { ["ASKING"] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> String {
        guard let s = reply.string else { throw unexpected(reply, "status") }
        return s
    }
}

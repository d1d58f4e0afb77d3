/// One node as `CLUSTER SHARDS` (or `CLUSTER SLOTS`) describes it.
public struct ClusterNodeDescription: Sendable, Hashable {
    public enum Role: String, Sendable, Hashable {
        case primary, replica
    }
    public var id: String
    /// The address the node announces (`ip`, or `endpoint`), possibly empty ("same host as the one you asked").
    public var ip: String
    /// The host name announced with `cluster-announce-hostname` (Redis 7.0), when set.
    public var hostname: String?
    /// Plain-text port, when the node serves one.
    public var port: Int?
    /// TLS port, when the node serves TLS.
    public var tlsPort: Int?
    public var role: Role
    /// `online`, `failed` or `loading` (CLUSTER SHARDS only; `online` from CLUSTER SLOTS).
    public var health: String

    public init(id: String, ip: String, hostname: String? = nil, port: Int?, tlsPort: Int? = nil, role: Role, health: String = "online") {
        self.id = id
        self.ip = ip
        self.hostname = hostname
        self.port = port
        self.tlsPort = tlsPort
        self.role = role
        self.health = health
    }
}

/// One shard: its slot ranges and its nodes (one primary, any replicas).
public struct ClusterShardDescription: Sendable, Hashable {
    public var slots: [HashSlotRange]
    public var nodes: [ClusterNodeDescription]

    public init(slots: [HashSlotRange], nodes: [ClusterNodeDescription]) {
        self.slots = slots
        self.nodes = nodes
    }

    /// The shard's primary: the one that is online when a failed one is still listed as primary.
    public var primary: ClusterNodeDescription? {
        nodes.first { $0.role == .primary && $0.health == "online" } ?? nodes.first { $0.role == .primary }
    }

    /// Parses `CLUSTER SHARDS` (RESP2: flat `name, value` arrays).
    static func decodeShards(_ reply: RESPValue) throws(RedisError) -> [ClusterShardDescription] {
        guard let shards = reply.array else { throw unexpected(reply, "CLUSTER SHARDS array") }
        var result: [ClusterShardDescription] = []
        for shard in shards {
            let fields = try keyValuePairs(shard)
            let bounds = (fields["slots"]?.array ?? []).compactMap(\.int)
            guard bounds.count % 2 == 0 else { throw unexpected(shard, "slot ranges in pairs") }
            let ranges = stride(from: 0, to: bounds.count, by: 2).map { HashSlotRange(bounds[$0], bounds[$0 + 1]) }
            var nodes: [ClusterNodeDescription] = []
            for node in fields["nodes"]?.array ?? [] {
                let n = try keyValuePairs(node)
                let hostname = n["hostname"]?.string.flatMap { $0.isEmpty ? nil : $0 }
                let role: ClusterNodeDescription.Role = n["role"]?.string == "master" ? .primary : .replica
                let ip = n["ip"]?.string ?? n["endpoint"]?.string ?? ""
                nodes.append(
                    ClusterNodeDescription(
                        id: n["id"]?.string ?? "", ip: ip == "?" ? "" : ip, hostname: hostname,
                        port: n["port"]?.int.flatMap { $0 > 0 ? $0 : nil }, tlsPort: n["tls-port"]?.int.flatMap { $0 > 0 ? $0 : nil },
                        role: role, health: n["health"]?.string ?? "online"))
            }
            result.append(ClusterShardDescription(slots: ranges, nodes: nodes))
        }
        return result
    }

    /// Parses `CLUSTER SLOTS`: `[start, end, [ip, port, id, {hostname}], replica...]` per range.
    /// The port is the one of the connection's kind (the TLS port over TLS).
    static func decodeSlots(_ reply: RESPValue) throws(RedisError) -> [ClusterShardDescription] {
        guard let ranges = reply.array else { throw unexpected(reply, "CLUSTER SLOTS array") }
        var byPrimary: [String: Int] = [:]
        var result: [ClusterShardDescription] = []
        for range in ranges {
            guard let parts = range.array, parts.count >= 3, let start = parts[0].int, let end = parts[1].int else {
                throw unexpected(range, "[start, end, primary, ...]")
            }
            var nodes: [ClusterNodeDescription] = []
            for (index, node) in parts.dropFirst(2).enumerated() {
                guard let n = node.array, n.count >= 2, let port = n[1].int else { throw unexpected(node, "[ip, port, id, ...]") }
                var hostname: String?
                if n.count > 3, let extra = n[3].array {
                    var i = 0
                    while i + 1 < extra.count {
                        if extra[i].string == "hostname", let h = extra[i + 1].string, !h.isEmpty { hostname = h }
                        i += 2
                    }
                }
                let ip = n[0].string ?? ""
                nodes.append(
                    ClusterNodeDescription(
                        id: n.count > 2 ? (n[2].string ?? "") : "", ip: ip == "?" ? "" : ip, hostname: hostname, port: port,
                        role: index == 0 ? .primary : .replica))
            }
            let key = nodes.first?.id ?? "\(start)"
            if let existing = byPrimary[key] {
                result[existing].slots.append(HashSlotRange(start, end))
            } else {
                byPrimary[key] = result.count
                result.append(ClusterShardDescription(slots: [HashSlotRange(start, end)], nodes: nodes))
            }
        }
        return result
    }
}

/// A host and port a client connects to.
public struct ClusterNodeAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `host:port` as MOVED and ASK replies give it; an empty host means `fallbackHost`.
    init?(redirectTarget text: Substring, fallbackHost: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.init(host: host.isEmpty ? fallbackHost : host, port: port)
    }
}

/// Which primary serves each slot: the client's routing table.
struct SlotMap: Sendable, Equatable {
    private(set) var primaries: [ClusterNodeAddress] = []
    /// Per slot, an index into ``primaries``, or -1 when no node serves it.
    private var owner = [Int16](repeating: -1, count: HashSlot.count)
    /// The shards as last discovered (for status output); MOVED updates only the slot table.
    private(set) var shards: [ClusterShardDescription] = []
    /// Every listed node the cluster does not mark failed, with slots or without: a refresh keeps
    /// their pools (a node being given its first slots is reached through ASK before it serves any).
    private(set) var liveNodes: Set<ClusterNodeAddress> = []

    init() {}

    /// A map from discovered shards; `address` turns a node description into where to connect.
    init(shards: [ClusterShardDescription], address: (ClusterNodeDescription) -> ClusterNodeAddress?) {
        // Redis 7.0 may also list a node on its own, without slots, while it is described in its
        // primary's shard: keep each node once, in the shard that has slots.
        let inShardsWithSlots = Set(shards.filter { !$0.slots.isEmpty }.flatMap { $0.nodes.map(\.id) })
        self.shards = shards.filter { !$0.slots.isEmpty || $0.nodes.contains { !inShardsWithSlots.contains($0.id) } }
        // Only shards with slots give primaries: a primary that died and was replaced stays
        // listed, failed, in a shard of its own without slots until the cluster forgets it (a
        // node added and not yet given slots looks the same). Counted as a primary, it failed
        // every health probe and got keyless commands at random (a user-style trial).
        liveNodes = Set(shards.flatMap(\.nodes).filter { $0.health != "fail" }.compactMap(address))
        for shard in shards where !shard.slots.isEmpty {
            guard let primary = shard.primary, let a = address(primary) else { continue }
            let index = indexOf(a)
            for range in shard.slots where range.lowerBound >= 0 && range.upperBound < HashSlot.count {
                for slot in range.lowerBound...range.upperBound { owner[slot] = Int16(index) }
            }
        }
    }

    var isEmpty: Bool { primaries.isEmpty }
    var coversAllSlots: Bool { !owner.contains(-1) }

    func primary(for slot: HashSlot) -> ClusterNodeAddress? {
        let index = owner[Int(slot.rawValue)]
        return index < 0 ? nil : primaries[Int(index)]
    }

    /// MOVED: the slot is served by `address` from now on.
    mutating func assign(_ slot: HashSlot, to address: ClusterNodeAddress) {
        owner[Int(slot.rawValue)] = Int16(indexOf(address))
    }

    private mutating func indexOf(_ address: ClusterNodeAddress) -> Int {
        if let i = primaries.firstIndex(of: address) { return i }
        primaries.append(address)
        return primaries.count - 1
    }

    static func == (lhs: SlotMap, rhs: SlotMap) -> Bool {
        // Equal routing: the same primary for every slot.
        guard lhs.owner.count == rhs.owner.count else { return false }
        for slot in 0..<HashSlot.count {
            let l = lhs.owner[slot] < 0 ? nil : lhs.primaries[Int(lhs.owner[slot])]
            let r = rhs.owner[slot] < 0 ? nil : rhs.primaries[Int(rhs.owner[slot])]
            if l != r { return false }
        }
        return true
    }
}

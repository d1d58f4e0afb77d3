import Foundation
import RedisClient
import StreamWorker

/// Every logical stream with its groups, consumers and dead letters, at one moment: what the
/// dashboard shows and `ordershop status` prints (one reader, so both show the same figures).
///
/// A stream spread over partitions (``PartitionedStream``) is one logical stream, named by its
/// base (``PartitionedStream/Partition/name``), with its figures over all partitions
/// (``GroupStatus/merging(_:stream:)``) and each partition in ``Stream/partitions``.
public struct OperationsSnapshot: Sendable, Codable, Equatable {
    public struct Stream: Sendable, Codable, Equatable {
        public var name: String
        public var length: Int
        /// Entries ever added (Redis 7's `entries-added`): the rate charts' "added" counter.
        public var entriesAdded: Int?
        public var groups: [Group]
        /// A logical stream's partition streams, each with its own groups and dead letters, by
        /// partition (a plain stream of the same name, the layout before partitioning, first);
        /// nil for a plain stream. Its own groups' dead-letter lists are then empty: each
        /// partition lists its own, which names the partition stream to replay or purge.
        public var partitions: [Stream]? = nil
        /// The node that holds the stream, when there are several (a Redis Cluster's primaries).
        public var node: String? = nil
    }

    public struct Group: Sendable, Codable, Equatable {
        public var status: GroupStatus
        /// Redis 7's `entries-read`: the rate charts' "delivered" counter.
        public var entriesRead: Int?
        /// The first ``OperationsReader/deadLetterLimit`` dead letters (``GroupStatus/deadLetters`` counts them all).
        public var deadLetters: [DeadLetters.Letter]
    }

    /// A node's memory and what it does when full (`INFO memory`).
    ///
    /// Why shown: a full Redis refuses every write (noeviction, which the shop requires,
    /// ``EvictionPolicyCheck``): every command answers 503 and the workers stop settling. The
    /// operator sees it coming here, before the shop stops.
    public struct NodeMemory: Sendable, Codable, Equatable {
        /// The node, when there are several.
        public var node: String?
        /// `used_memory` less `mem_not_counted_for_evict` (what Redis compares with maxmemory), bytes.
        public var used: Int
        /// `maxmemory`, bytes; 0: no limit.
        public var maximum: Int
        /// `maxmemory_policy`.
        public var policy: String

        /// From `INFO memory`'s fields; nil when it lacks them.
        init?(node: String?, info: [String: String]) {
            guard let total = info["used_memory"].flatMap(Int.init), let maximum = info["maxmemory"].flatMap(Int.init),
                let policy = info["maxmemory_policy"]
            else { return nil }
            // As Redis counts it against maxmemory: without replication and AOF buffers (a review).
            let used = total - (info["mem_not_counted_for_evict"].flatMap(Int.init) ?? 0)
            (self.node, self.used, self.maximum, self.policy) = (node, used, maximum, policy)
            summary = ""
            summary = said
        }

        /// ``said`` as it was at the reading (kept, so that the dashboard's page shows the same words).
        public var summary: String

        /// At or above 90 % of its limit: writes will soon be refused.
        public var isNearlyFull: Bool { maximum > 0 && used >= maximum / 10 * 9 }

        /// One line for `status` and the dashboard, with what needs doing when something does.
        var said: String {
            func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1_048_576) }
            var text = (node.map { "\($0): " } ?? "") + mb(used) + " used"
            text += maximum > 0 ? " of \(mb(maximum)) (\(used * 100 / maximum) %)" : ", no maxmemory"
            text += ", maxmemory-policy \(policy)"
            if EvictionPolicyCheck.evicts(policy) { text += ": EVICTS KEYS, set noeviction (events lost or applied twice otherwise)" }
            if isNearlyFull { text += ": NEARLY FULL, at the limit every write is refused (503): raise maxmemory, or trim the streams" }
            return text
        }
    }

    /// A node of several that could not be read: its streams are missing from ``streams``, and a
    /// logical stream with partitions there is summed over the others only.
    public struct UnreadNode: Sendable, Codable, Equatable {
        public var node: String
        public var error: String
    }

    /// Unix time of the reading, in seconds.
    public var time: Double
    public var streams: [Stream]
    /// The nodes not read (a primary down and not yet replaced); nil when every node was read.
    public var unread: [UnreadNode]? = nil
    /// Each node's memory, in node order, of the nodes that said it (INFO may be refused).
    public var memory: [NodeMemory]? = nil

    /// Every group, in stream and group order (`ordershop status --json`); a partitioned
    /// stream's groups over all its partitions.
    public var groups: [GroupStatus] { streams.flatMap { $0.groups.map(\.status) } }
}

extension OperationsSnapshot.Stream {
    /// Streams as read from Redis gathered into logical streams: the partitions of one logical
    /// stream (and a plain stream of its name) into one, the others as they are.
    static func logical(_ read: [Self]) -> [Self] {
        var byName: [String: [(order: (Int, Int), stream: Self)]] = [:]
        for stream in read {
            if let p = PartitionedStream.parse(stream.name) {
                byName[p.name, default: []].append(((p.partitions, p.partition), stream))
            } else {
                byName[stream.name, default: []].append(((1, 0), stream))
            }
        }
        return byName.map { name, members in
            let partitions = members.sorted { $0.order < $1.order }.map(\.stream)
            guard partitions.count > 1 || partitions[0].name != name else { return partitions[0] }
            return merging(partitions, name: name)
        }.sorted { $0.name < $1.name }
    }

    /// One logical stream over its partitions.
    private static func merging(_ partitions: [Self], name: String) -> Self {
        let added = partitions.map(\.entriesAdded)
        let groupNames = Set(partitions.flatMap { $0.groups.map(\.status.group) }).sorted()
        let groups = groupNames.map { group in
            let members = partitions.compactMap { $0.groups.first { $0.status.group == group } }
            let read = members.map(\.entriesRead)
            return OperationsSnapshot.Group(
                status: GroupStatus.merging(members.map(\.status), stream: name)!,
                entriesRead: read.contains(nil) ? nil : read.reduce(0) { $0 + ($1 ?? 0) }, deadLetters: [])
        }
        return .init(
            name: name, length: partitions.reduce(0) { $0 + $1.length },
            entriesAdded: added.contains(nil) ? nil : added.reduce(0) { $0 + ($1 ?? 0) }, groups: groups, partitions: partitions)
    }
}

/// Reads an ``OperationsSnapshot`` from every node that holds streams: the one server, or each
/// primary of a Redis Cluster (a keyless SCAN lists one node's keys only; a stream, its dead
/// letters and its replay stream share a hash tag, so the node that holds a stream answers for
/// all three).
public struct OperationsReader: Sendable {
    /// The nodes it reads: fixed, or a cluster's primaries as they are at each read.
    private enum Nodes: Sendable {
        case fixed([any RedisClientProtocol], names: [String]?)
        case clusterPrimaries(ClusterPrimaryPools)
    }

    private let source: Nodes
    public let match: String
    public let deadLetterLimit: Int
    /// Whether to list dead letters (`status` only counts them).
    public let listsDeadLetters: Bool
    /// Where the sampler keeps the streams it found (``countsOnly``); nil: SCAN at every read.
    private let discovery: StreamDiscovery?

    /// Reads `nodes`, each shown (``OperationsSnapshot/Stream/node``) by its name in
    /// `nodeNames` when there are several.
    public init(
        nodes: [any RedisClientProtocol], nodeNames: [String]? = nil, match: String = "*", deadLetterLimit: Int = 50,
        listsDeadLetters: Bool = true
    ) {
        self.init(source: .fixed(nodes, names: nodeNames), match: match, deadLetterLimit: deadLetterLimit, listsDeadLetters: listsDeadLetters)
    }

    /// Reads every primary of a Redis Cluster, those of the moment (a failover moves it to the
    /// promoted node).
    public init(clusterPrimaries: ClusterPrimaryPools, match: String = "*", deadLetterLimit: Int = 50, listsDeadLetters: Bool = true) {
        self.init(source: .clusterPrimaries(clusterPrimaries), match: match, deadLetterLimit: deadLetterLimit, listsDeadLetters: listsDeadLetters)
    }

    private init(source: Nodes, match: String, deadLetterLimit: Int, listsDeadLetters: Bool, discovery: StreamDiscovery? = nil) {
        self.source = source
        self.match = match
        self.deadLetterLimit = deadLetterLimit
        self.listsDeadLetters = listsDeadLetters
        self.discovery = discovery
    }

    /// The same reader for sampling: without the dead-letter lists (counts only), and finding
    /// each node's streams at most once a minute (``StreamDiscovery``).
    public var countsOnly: OperationsReader { countsOnly(rediscoveringAfter: .seconds(60)) }

    /// ``countsOnly``, finding each node's streams again after `maxAge`.
    func countsOnly(rediscoveringAfter maxAge: Duration) -> OperationsReader {
        OperationsReader(
            source: source, match: match, deadLetterLimit: deadLetterLimit, listsDeadLetters: false, discovery: StreamDiscovery(maxAge: maxAge))
    }

    /// The nodes to read now, and how each is shown (nil: one node, not named).
    private func nodes() async throws -> (nodes: [any RedisClientProtocol], names: [String]?) {
        switch source {
        case .fixed(let nodes, let names): return (nodes, names)
        case .clusterPrimaries(let pools):
            let primaries = try await pools.current()
            return (primaries.map(\.pool), primaries.map(\.name))
        }
    }

    public func read() async throws -> OperationsSnapshot {
        guard case .clusterPrimaries(let pools) = source else { return try await read(try await nodes(), routing: nil) }
        do {
            return try await read(try await nodes(), routing: pools.client)
        } catch let error as RedisError where error.code == .clusterDown && !pools.failedPrimaries.isEmpty {
            // Every node refused: name the shard that is down (a user-style trial's `status`
            // said only "CLUSTERDOWN The cluster is down", and never which node).
            throw RedisError(
                .clusterDown,
                "\(error.message): no primary serves \(pools.failedPrimaries.joined(separator: "; ")) and no replica has taken over; "
                    + "until one does, every node refuses commands (the nodes' cluster-require-full-coverage)",
                underlying: error)
        }
    }

    /// Reads every node, all at once (a node slow to refuse does not hold the others up). When
    /// one of several fails, the others are still shown, with that node in
    /// ``OperationsSnapshot/unread``: while a primary is down and its replica not yet promoted
    /// (seconds, the cluster's node timeout), the view is what an operator looks at. It throws
    /// when no node could be read.
    ///
    /// `routing`: a cluster's client, through which a stream is read when the node that listed it
    /// answers ASK (its slot is being moved and the stream has gone to the importing node) or
    /// MOVED (the importing node listed it; or the node was demoted by a failover the primaries'
    /// list had not caught up with).
    private func read(
        _ view: (nodes: [any RedisClientProtocol], names: [String]?), routing: RedisClusterClient?
    ) async throws -> OperationsSnapshot {
        let (nodes, nodeNames) = view
        let results = await withTaskGroup(of: NodeRead.self) { group in
            for (index, node) in nodes.enumerated() {
                let nodeName = nodes.count > 1 ? nodeNames?[index] : nil
                group.addTask {
                    let result: Result<[OperationsSnapshot.Stream], any Error>
                    do { result = .success(try await read(node, named: nodeName, routing: routing)) } catch { result = .failure(error) }
                    // Not read when a stream could not be: the node is then listed as not read.
                    var memory: OperationsSnapshot.NodeMemory?
                    if case .success = result { memory = await Self.memory(of: node, named: nodeName) }
                    return NodeRead(index: index, result: result, memory: memory)
                }
            }
            var results = [NodeRead?](repeating: nil, count: nodes.count)
            for await read in group { results[read.index] = read }
            return results.compactMap { $0 }
        }
        let memory = results.compactMap(\.memory)
        // A cancelled read ends as cancelled: the client reports it as a RedisError per node,
        // which would otherwise read as nodes not read.
        try Task.checkCancellation()
        var streams: [OperationsSnapshot.Stream] = []
        var seen = Set<String>()
        var unread: [OperationsSnapshot.UnreadNode] = []
        var firstError: (any Error)?
        for (index, result) in results.map(\.result).enumerated() {
            switch result {
            case .success(let read):
                // During a slot's move, the source's SCAN and the target's can both list a
                // stream (each read at its own moment): it is shown once.
                for stream in read where seen.insert(stream.name).inserted { streams.append(stream) }
            case .failure(let error):
                guard nodes.count > 1, !(error is CancellationError) else { throw error }
                firstError = firstError ?? error
                unread.append(.init(node: nodeNames?[index] ?? "node \(index + 1)", error: "\(error)"))
            }
        }
        if let firstError, unread.count == nodes.count {
            // Every node, each with its error: a cluster that lost a shard has the lost node's
            // refused connection (which names it) beside the others' CLUSTERDOWN, and either
            // alone says too little. The code: CLUSTERDOWN when a node said so (``read()`` then
            // adds the shards without a primary), else the first node's.
            let clusterDown = results.contains { read in
                if case .failure(let error as RedisError) = read.result { return error.code == .clusterDown }
                return false
            }
            let code = clusterDown ? .clusterDown : (firstError as? RedisError)?.code ?? .io
            throw RedisError(code, "no node could be read: " + unread.map { "\($0.node): \($0.error)" }.joined(separator: "; "), underlying: firstError)
        }
        return OperationsSnapshot(
            time: Date().timeIntervalSince1970, streams: OperationsSnapshot.Stream.logical(streams), unread: unread.isEmpty ? nil : unread,
            memory: memory.isEmpty ? nil : memory)
    }

    /// A node's `INFO memory`; nil when it refuses INFO (an ACL without it) or cannot say.
    private static func memory(of node: any RedisClientProtocol, named nodeName: String?) async -> OperationsSnapshot.NodeMemory? {
        guard let info = try? await node.send(INFO(section: "memory")) else { return nil }
        return OperationsSnapshot.NodeMemory(node: nodeName, info: info)
    }

    /// One node's read, as a child task of ``read(_:)`` returns it. A struct, and the result
    /// made before the `return`: with the tuple `(Int, Result<[Stream], any Error>)` returned
    /// from inside `do { return (index, .success(try await ...)) } catch { ... }`, the release
    /// build (Swift 6.3.1, -O) handed the loop a garbage index (140543884916368) for the second
    /// node's read, and `ordershop up --cluster` trapped at its first dashboard sample; the
    /// debug build, which the tests run, read it right. (A 25-line program with that shape
    /// crashes the same way at -O, 3 runs of 3; returning a value made before the `return`
    /// does not: `scripts/taskgroup-tuple-repro.swift`.)
    private struct NodeRead: Sendable {
        var index: Int
        var result: Result<[OperationsSnapshot.Stream], any Error>
        var memory: OperationsSnapshot.NodeMemory?
    }

    /// The streams of one node, as read from it.
    private func read(_ node: any RedisClientProtocol, named nodeName: String?, routing: RedisClusterClient?) async throws -> [OperationsSnapshot.Stream] {
        var streams: [OperationsSnapshot.Stream] = []
        let inspector = GroupInspector(client: node)
        let names =
            if let discovery {
                try await discovery.names(on: nodeName ?? "") { try await inspector.streams(matching: match) }
            } else {
                try await inspector.streams(matching: match)
            }
        for name in names {
            do {
                do {
                    streams.append(try await read(stream: name, on: node, inspector: inspector, named: nodeName))
                } catch let error as RedisError where error.code == .ask || error.code == .moved {
                    // Its slot is being moved (a user-style trial's `status` exited 1 with "not
                    // read: ... ASK 6651" for the whole node): through the cluster client, and
                    // named by the node that serves its slot now.
                    guard let client = routing else { throw error }
                    let holder = client.primary(for: HashSlot(key: name))?.description ?? nodeName
                    streams.append(try await read(stream: name, on: client, inspector: GroupInspector(client: client), named: nodeName == nil ? nil : holder))
                }
            } catch let error as RedisError where error.isNoSuchKey {
                // Deleted since it was found (kept by the sampler, or between SCAN and XINFO).
                discovery?.forget(nodeName ?? "")
            }
        }
        return streams
    }

    /// One stream of a node: its length and groups.
    private func read(
        stream name: String, on node: any RedisClientProtocol, inspector: GroupInspector, named nodeName: String?
    ) async throws -> OperationsSnapshot.Stream {
        let key = RedisArgument(name)
        let info = try await node.send(XINFOSTREAM(key))
        let read = Dictionary(try await node.send(XINFOGROUPS(key)).map { ($0.name, $0.entriesRead) }) { a, _ in a }
        var groups: [OperationsSnapshot.Group] = []
        for status in try await inspector.status(stream: name) {
            let letters =
                listsDeadLetters && status.deadLetters > 0
                ? try await DeadLetters(client: node, stream: name, group: status.group).list(count: deadLetterLimit).map(Self.clipped) : []
            groups.append(.init(status: status, entriesRead: read[status.group] ?? nil, deadLetters: letters))
        }
        return .init(
            name: name, length: info.length, entriesAdded: info.entriesAdded,
            groups: groups.sorted { $0.status.group < $1.status.group }, node: nodeName)
    }

    /// The longest field value a snapshot keeps of a dead letter; `ordershop dlq list` shows
    /// whole entries.
    static let deadLetterFieldLimit = 512

    /// Fields of a dead letter kept in the dashboard's state: the first by name.
    static let deadLetterFieldCount = 64

    /// The longest reason and error a snapshot keeps of a dead letter: the page shows them.
    /// Uncut, a reason and an error quoting an entity id of 200 KB made each poll 20 MB with 60
    /// such letters, and froze the page 15-19 s at each refresh (a trial).
    static let deadLetterTextLimit = 2_048

    /// A letter with at most ``deadLetterFieldCount`` fields (the number left out said), each
    /// value cut to ``deadLetterFieldLimit`` bytes (and its length said). Whole, 60 letters of
    /// 200-KB entities made each `/api/state` 10 MB, fetched by every open dashboard every 2 s
    /// (a trial), though the page shows none of the fields; cut per field only, one entry of
    /// 3,500 fields made it 1.8 MB (a review).
    static func clipped(_ letter: DeadLetters.Letter) -> DeadLetters.Letter {
        var letter = letter
        if letter.fields.count > deadLetterFieldCount {
            let kept = letter.fields.keys.sorted().prefix(deadLetterFieldCount)
            letter.omittedFields = letter.fields.count - kept.count
            letter.fields = Dictionary(uniqueKeysWithValues: kept.map { ($0, letter.fields[$0]!) })
        }
        for (name, value) in letter.fields where value.utf8.count > deadLetterFieldLimit {
            letter.fields[name] = value.clipped(toBytes: deadLetterFieldLimit)
        }
        letter.reason = shown(letter.reason)
        letter.error = shown(letter.error)
        letter.originalID = shown(letter.originalID)
        return letter
    }

    /// Text of a letter as the page shows it: at most ``deadLetterTextLimit`` bytes, and the
    /// characters that reorder text (bidirectional overrides and isolates) written as
    /// `\u{202e}`: an id with U+202E turned the rest of a reason around on the page (a trial).
    static func shown(_ text: String) -> String {
        let text = text.clipped(toBytes: deadLetterTextLimit)
        guard text.unicodeScalars.contains(where: LogText.reordersText) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if LogText.reordersText(scalar) { out += LogText.written(scalar) } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    /// On a cluster, the cluster client when the stream or its dead letters exist: routed by
    /// the slot they share, it follows a move of that slot (a node's own pool answered ASK or
    /// MOVED during one, and the stream was "not found").
    public static func holder(of stream: String, group: String, routedBy client: RedisClusterClient) async throws -> (any RedisClientProtocol)? {
        // One key per EXISTS: while the slot is being moved the two can be on different nodes,
        // and a command on both is refused (TRYAGAIN) until the move ends.
        for key in [stream, StreamKeys.deadLetter(stream: stream, group: group)] {
            if try await client.send(EXISTS(RedisArgument(key))) > 0 { return client }
        }
        return nil
    }

    /// The node that holds a stream or its group's dead letters (on a cluster, the cluster
    /// client, see ``holder(of:group:routedBy:)``); nil when none of several does (the one server
    /// when there is one).
    public func holder(of stream: String, group: String) async throws -> (any RedisClientProtocol)? {
        if case .clusterPrimaries(let pools) = source { return try await Self.holder(of: stream, group: group, routedBy: pools.client) }
        return await holder(of: stream, group: group, among: try await nodes().nodes)
    }

    private func holder(of stream: String, group: String, among nodes: [any RedisClientProtocol]) async -> (any RedisClientProtocol)? {
        guard nodes.count > 1 else { return nodes.first }
        let keys = [RedisArgument(stream), RedisArgument(StreamKeys.deadLetter(stream: stream, group: group))]
        for node in nodes {
            // A primary that does not own the slot answers MOVED: not this one.
            if let n = try? await node.send(EXISTS(keys)), n > 0 { return node }
        }
        return nil
    }
}

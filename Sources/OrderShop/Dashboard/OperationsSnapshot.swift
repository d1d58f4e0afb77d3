import Foundation
import RedisClient
import StreamWorker

/// Every stream with its groups, consumers and dead letters, at one moment: what the dashboard
/// shows and `ordershop status` prints (one reader, so both show the same figures).
public struct OperationsSnapshot: Sendable, Codable, Equatable {
    public struct Stream: Sendable, Codable, Equatable {
        public var name: String
        public var length: Int
        /// Entries ever added (Redis 7's `entries-added`): the rate charts' "added" counter.
        public var entriesAdded: Int?
        public var groups: [Group]
    }

    public struct Group: Sendable, Codable, Equatable {
        public var status: GroupStatus
        /// Redis 7's `entries-read`: the rate charts' "delivered" counter.
        public var entriesRead: Int?
        /// The first ``OperationsReader/deadLetterLimit`` dead letters (``GroupStatus/deadLetters`` counts them all).
        public var deadLetters: [DeadLetters.Letter]
    }

    /// Unix time of the reading, in seconds.
    public var time: Double
    public var streams: [Stream]

    /// Every group, in stream and group order (`ordershop status --json`).
    public var groups: [GroupStatus] { streams.flatMap { $0.groups.map(\.status) } }
}

/// Reads an ``OperationsSnapshot`` from every node that holds streams: the one server, or each
/// primary of a Redis Cluster (a keyless SCAN lists one node's keys only; a stream, its dead
/// letters and its replay stream share a hash tag, so the node that holds a stream answers for
/// all three).
public struct OperationsReader: Sendable {
    public let nodes: [any RedisClientProtocol]
    public let match: String
    public let deadLetterLimit: Int
    /// Whether to list dead letters (`status` only counts them).
    public let listsDeadLetters: Bool

    public init(nodes: [any RedisClientProtocol], match: String = "*", deadLetterLimit: Int = 50, listsDeadLetters: Bool = true) {
        self.nodes = nodes
        self.match = match
        self.deadLetterLimit = deadLetterLimit
        self.listsDeadLetters = listsDeadLetters
    }

    /// The same reader without the dead-letter lists (counts only): for sampling.
    public var countsOnly: OperationsReader {
        OperationsReader(nodes: nodes, match: match, deadLetterLimit: deadLetterLimit, listsDeadLetters: false)
    }

    public func read() async throws -> OperationsSnapshot {
        var streams: [OperationsSnapshot.Stream] = []
        for node in nodes {
            let inspector = GroupInspector(client: node)
            for name in try await inspector.streams(matching: match) {
                let key = RedisArgument(name)
                let info = try await node.send(XINFOSTREAM(key))
                let read = Dictionary(try await node.send(XINFOGROUPS(key)).map { ($0.name, $0.entriesRead) }) { a, _ in a }
                var groups: [OperationsSnapshot.Group] = []
                for status in try await inspector.status(stream: name) {
                    let letters =
                        listsDeadLetters && status.deadLetters > 0
                        ? try await DeadLetters(client: node, stream: name, group: status.group).list(count: deadLetterLimit) : []
                    groups.append(.init(status: status, entriesRead: read[status.group] ?? nil, deadLetters: letters))
                }
                streams.append(.init(name: name, length: info.length, entriesAdded: info.entriesAdded, groups: groups.sorted { $0.status.group < $1.status.group }))
            }
        }
        return OperationsSnapshot(time: Date().timeIntervalSince1970, streams: streams.sorted { $0.name < $1.name })
    }

    /// The node that holds a stream (or, for a group since removed, its dead letters); the first
    /// node when none does, so that the caller's own check names what is missing.
    public func node(holding stream: String, group: String) async -> any RedisClientProtocol {
        guard nodes.count > 1 else { return nodes[0] }
        let keys = [RedisArgument(stream), RedisArgument(StreamKeys.deadLetter(stream: stream, group: group))]
        for node in nodes {
            // A primary that does not own the slot answers MOVED: not this one.
            if let n = try? await node.send(RawCommand(["EXISTS"] + keys, keys: keys, readOnly: true)).int, n > 0 { return node }
        }
        return nodes[0]
    }
}

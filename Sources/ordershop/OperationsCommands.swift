import ArgumentParser
import Foundation
import OrderShop
import RedisClient
import StreamWorker

/// `ordershop status`: per stream and group, the state a person on call needs.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every stream's groups: length, last id, lag, pending, oldest pending age, consumers, dead letters."
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "Streams to show (a glob).") var match: String = "*"
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() async throws {
        var all: [GroupStatus] = []
        var streamsWithoutGroups: [(String, Int)] = []
        // Every primary of a Redis Cluster, or the one server.
        for pool in try await RedisNodePools.primaries(try redis.configuration()) {
            let inspector = GroupInspector(client: pool)
            for stream in try await inspector.streams(matching: match) {
                let groups = try await inspector.status(stream: stream)
                if groups.isEmpty {
                    streamsWithoutGroups.append((stream, try await pool.send(XLEN(RedisArgument(stream)))))
                }
                all += groups
            }
            await pool.shutdown()
        }
        all.sort { ($0.stream, $0.group) < ($1.stream, $1.group) }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(all), as: UTF8.self))
            return
        }
        let header = ["STREAM", "GROUP", "LENGTH", "LAST ID", "LAG", "PENDING", "OLDEST", "DLQ", "CONSUMERS (pending/idle)"]
        var rows: [[String]] = [header]
        for s in all {
            let lag = s.lag.map { "\($0)\(s.lagCounted ? "*" : "")" } ?? "?"
            let age = s.oldestPendingAge.map { String(format: "%.1fs", $0) } ?? "-"
            let consumers = s.consumers.map { "\($0.name) (\($0.pending)/\(String(format: "%.1fs", Double($0.idleMilliseconds) / 1000)))" }
                .joined(separator: ", ")
            rows.append([s.stream, s.group, "\(s.length)", s.lastID, lag, "\(s.pending)", age, "\(s.deadLetters)", consumers.isEmpty ? "-" : consumers])
        }
        for (stream, length) in streamsWithoutGroups {
            rows.append([stream, "-", "\(length)", "", "", "", "", "", "(no groups)"])
        }
        printTable(rows)
        if all.contains(where: \.lagCounted) { print("* lag counted by ordershop (Redis reported none after deletions)") }
    }
}

/// `ordershop dlq list|replay|purge STREAM GROUP`.
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect, replay or purge a group's dead letters.",
        subcommands: [List.self, Replay.self, Purge.self]
    )

    struct Target: ParsableArguments {
        @OptionGroup var redis: RedisOptions
        @Argument(help: "Source stream.") var stream: String
        @Argument(help: "Consumer group.") var group: String

        /// The dead letters, on the one server or the primary of the stream's slot in a Redis Cluster.
        /// Refuses a stream or group that does not exist: a typo would list nothing, or replay into
        /// a replay stream no worker reads, and say it succeeded. `orDeadLetters`: dead letters kept
        /// for a group since removed may still be listed and purged.
        func deadLetters(orDeadLetters: Bool) async throws -> (any RedisClientProtocol, DeadLetters) {
            let client = try await connectRedis(try redis.configuration(), maximumConnections: 2)
            let dlq = DeadLetters(client: client, stream: stream, group: group)
            do {
                try await requireGroup(client, dlq: dlq, orDeadLetters: orDeadLetters)
            } catch {
                await client.shutdown()
                throw error
            }
            return (client, dlq)
        }

        private func requireGroup(_ client: any RedisClientProtocol, dlq: DeadLetters, orDeadLetters: Bool) async throws {
            let groups: [String]
            do {
                groups = try await client.send(XINFOGROUPS(RedisArgument(stream))).map(\.name)
            } catch let error as RedisError where error.message.lowercased().contains("no such key") {
                groups = []
            }
            if groups.contains(group) { return }
            if orDeadLetters, try await client.send(XLEN(RedisArgument(dlq.key))) > 0 { return }
            throw NoSuchGroup(stream: stream, group: group, groups: groups)
        }
    }

    struct NoSuchGroup: Error, CustomStringConvertible {
        let stream: String, group: String, groups: [String]
        var description: String {
            groups.isEmpty
                ? "stream \(stream) has no consumer groups (or does not exist); nothing done"
                : "stream \(stream) has no consumer group \(group) (its groups: \(groups.joined(separator: ", "))); nothing done"
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters with their reasons.")
        @OptionGroup var target: Target
        @Option(help: "At most this many.") var count: Int = 100
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let (client, dlq) = try await target.deadLetters(orDeadLetters: true)
            let letters = try await dlq.list(count: count)
            await client.shutdown()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(letters), as: UTF8.self))
                return
            }
            var rows = [["DLQ ID", "ORIGINAL ID", "DELIVERIES", "REASON", "EVENT ID"]]
            for l in letters { rows.append([l.id, l.originalID, "\(l.deliveryCount)", l.reason, l.fields["event_id"] ?? "-"]) }
            printTable(rows)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-deliver dead letters to their group only (its replay stream, read by its workers), as the same events, and remove them, atomically.")
        @OptionGroup var target: Target
        @Option(name: .customLong("id"), help: "Dead-letter ids to replay (default: all).") var ids: [String] = []

        func run() async throws {
            let (client, dlq) = try await target.deadLetters(orDeadLetters: false)
            let added = try await dlq.replay(ids: ids.isEmpty ? nil : ids)
            await client.shutdown()
            print("replayed \(added.count) entries to \(dlq.replayKey) (group \(target.group) only)")
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters.")
        @OptionGroup var target: Target
        @Option(name: .customLong("id"), help: "Dead-letter ids to delete (default: all).") var ids: [String] = []

        func run() async throws {
            let (client, dlq) = try await target.deadLetters(orDeadLetters: true)
            let removed = try await dlq.purge(ids: ids.isEmpty ? nil : ids)
            await client.shutdown()
            print("purged \(removed) dead letters")
        }
    }
}

/// `ordershop trim`: retention that keeps every entry the latest snapshot does not cover or a group still needs.
struct TrimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trim",
        abstract: "Snapshot each entity type, then trim its event streams to what the snapshot covers and no group still needs.",
        discussion: """
            Never removes an entry newer than the latest snapshot of its entity type, nor one a consumer group still needs \
            (pending, or not yet delivered). An entity type whose snapshot cannot be taken (a stream already lacks entries) is \
            not trimmed, and the command exits non-zero. Safe while the shop runs.
            """
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: EntitySelection.help) var entity: String = "all"
    @Option(help: "Keep at most this many entries per stream, unless that would drop entries the snapshot does not cover or a group still needs.")
    var maxlen: Int?

    func validate() throws { _ = try EntitySelection.types(entity) }

    func run() async throws {
        var rows = [["STREAM", "GROUPS", "REMOVED", "KEPT FROM", "NOTE"]]
        defer { printTable(rows) }
        try await EntitySelection.run(try EntitySelection.types(entity), redis: redis, verb: "trim") { type, pool in
            let result = try await EventRetention(pool: pool).trim(type, maxLength: maxlen)
            for (r, position) in zip(result.streams, result.snapshot.positions) {
                var note = r.groups == 0 ? "no groups: not trimmed" : "snapshot covers \(position.lastID)"
                if r.capRefused {
                    note = "--maxlen \(maxlen ?? 0) refused: it would drop entries the snapshot does not cover or a group still needs"
                    FileHandle.standardError.write(Data("warning: \(r.stream): \(note)\n".utf8))
                }
                rows.append([r.stream, "\(r.groups)", "\(r.removed)", r.keptFrom, note])
            }
        }
    }
}

/// Prints rows as an aligned table.
func printTable(_ rows: [[String]]) {
    guard let width = rows.map(\.count).max() else { return }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    for row in rows {
        print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}

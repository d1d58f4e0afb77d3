import ArgumentParser
import Foundation
import OrderShop
import RedisClient
import StreamWorker

/// `ordershop status`: per stream and group, the state a person on call needs; with `--watch`,
/// refreshed in place until Ctrl-C.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every stream's groups: length, last id, lag, pending, oldest pending age, consumers, dead letters."
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "Streams to show (a glob).") var match: String = "*"
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "Clear the screen and print the figures again every --interval seconds, until Ctrl-C.") var watch = false
    @Option(help: "Seconds between two refreshes with --watch.") var interval: Double = 2

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be above 0") }
    }

    func run() async throws {
        // Every primary of a Redis Cluster, or the one server.
        let pools = try await RedisNodePools.primaries(try redis.configuration())
        let reader = OperationsReader(nodes: pools, match: match, listsDeadLetters: false)
        do {
            if watch { try await refresh(reader) } else { print(try await render(reader.read()), terminator: "") }
        } catch {
            for pool in pools { await pool.shutdown() }
            throw error
        }
        for pool in pools { await pool.shutdown() }
    }

    /// Prints the figures again and again; ends with the process (Ctrl-C) or when the task is
    /// cancelled (the sleep throws then). A failed reading (Redis away) is shown, not fatal.
    private func refresh(_ reader: OperationsReader) async throws {
        while true {
            let text: String
            do {
                text = try await render(reader.read())
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                text = "cannot read the streams: \(error)\n"
            }
            // Home, clear the screen, then the whole frame in one write (no flicker of half a table).
            FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + "ordershop status, every \(interval) s (Ctrl-C stops)\n\n" + text).utf8))
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    private func render(_ snapshot: OperationsSnapshot) throws -> String {
        let all = snapshot.groups
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return String(decoding: try encoder.encode(all), as: UTF8.self) + "\n"
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
        for stream in snapshot.streams where stream.groups.isEmpty {
            rows.append([stream.name, "-", "\(stream.length)", "", "", "", "", "", "(no groups)"])
        }
        var text = formatTable(rows)
        if all.contains(where: \.lagCounted) { text += "* lag counted by ordershop (Redis reported none after deletions)\n" }
        return text
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

        /// The dead letters, on the one server or the primary of the stream's slot in a Redis Cluster;
        /// a stream or group that does not exist is refused (``DeadLetters/requireGroup(orDeadLetters:)``).
        func deadLetters(orDeadLetters: Bool) async throws -> (any RedisClientProtocol, DeadLetters) {
            let client = try await connectRedis(try redis.configuration(), maximumConnections: 2)
            let dlq = DeadLetters(client: client, stream: stream, group: group)
            do {
                try await dlq.requireGroup(orDeadLetters: orDeadLetters)
            } catch {
                await client.shutdown()
                throw error
            }
            return (client, dlq)
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
    print(formatTable(rows), terminator: "")
}

/// Rows as an aligned table, a line each.
func formatTable(_ rows: [[String]]) -> String {
    guard let width = rows.map(\.count).max() else { return "" }
    var widths = [Int](repeating: 0, count: width)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    return rows.map { row in
        row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  ") + "\n"
    }.joined()
}

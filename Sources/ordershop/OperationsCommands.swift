import ArgumentParser
import Foundation
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
        let pool = try RedisConnectionPool(configuration: try redis.configuration(), maximumConnections: 2)
        let inspector = GroupInspector(pool: pool)
        var all: [GroupStatus] = []
        var streamsWithoutGroups: [(String, Int)] = []
        for stream in try await inspector.streams(matching: match) {
            let groups = try await inspector.status(stream: stream)
            if groups.isEmpty {
                streamsWithoutGroups.append((stream, try await pool.send(XLEN(RedisArgument(stream)))))
            }
            all += groups
        }
        await pool.shutdown()
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

        func deadLetters() throws -> (RedisConnectionPool, DeadLetters) {
            let pool = try RedisConnectionPool(configuration: try redis.configuration(), maximumConnections: 2)
            return (pool, DeadLetters(pool: pool, stream: stream, group: group))
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters with their reasons.")
        @OptionGroup var target: Target
        @Option(help: "At most this many.") var count: Int = 100
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            let (pool, dlq) = try target.deadLetters()
            let letters = try await dlq.list(count: count)
            await pool.shutdown()
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
            let (pool, dlq) = try target.deadLetters()
            let added = try await dlq.replay(ids: ids.isEmpty ? nil : ids)
            await pool.shutdown()
            print("replayed \(added.count) entries to \(dlq.replayKey) (group \(target.group) only)")
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters.")
        @OptionGroup var target: Target
        @Option(name: .customLong("id"), help: "Dead-letter ids to delete (default: all).") var ids: [String] = []

        func run() async throws {
            let (pool, dlq) = try target.deadLetters()
            let removed = try await dlq.purge(ids: ids.isEmpty ? nil : ids)
            await pool.shutdown()
            print("purged \(removed) dead letters")
        }
    }
}

/// `ordershop trim`: retention that never drops an entry some group still needs.
struct TrimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trim",
        abstract: "Trim streams to the oldest entry any group still needs (optionally capped by --maxlen when safe)."
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "Streams to trim (a glob).") var match: String = "events:*"
    @Option(help: "Keep at most this many entries, unless that would drop entries a group still needs.") var maxlen: Int?

    func run() async throws {
        let pool = try RedisConnectionPool(configuration: try redis.configuration(), maximumConnections: 2)
        let retention = StreamRetention(pool: pool)
        var rows = [["STREAM", "GROUPS", "REMOVED", "KEPT FROM", "NOTE"]]
        for stream in try await GroupInspector(pool: pool).streams(matching: match) {
            let r = try await retention.trim(stream: stream, maxLength: maxlen)
            var note = ""
            if r.groups == 0 { note = "no groups: not trimmed" }
            if r.capRefused {
                note = "--maxlen \(maxlen ?? 0) refused: it would drop entries a group still needs"
                FileHandle.standardError.write(Data("warning: \(stream): \(note)\n".utf8))
            }
            rows.append([stream, "\(r.groups)", "\(r.removed)", r.keptFrom, note])
        }
        await pool.shutdown()
        printTable(rows)
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

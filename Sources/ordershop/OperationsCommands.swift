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
        abstract: "Show every stream's groups: length, last id, lag, pending, oldest pending age, consumers, dead letters.",
        discussion: """
            A stream spread over partitions is shown as one logical stream under its base name (without braces), with its \
            number of partitions: length, lag, pending and dead letters summed over them, the oldest pending age and last \
            id the worst of any. --partitions adds a row per partition (with its node on a Redis Cluster). \
            On a Redis Cluster with a primary down (not yet replaced), it prints what the other primaries hold, names the \
            node on stderr and exits 1.
            """
    )

    @OptionGroup var redis: RedisOptions
    @Option(help: "Streams to show (a glob).") var match: String = "*"
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Flag(help: "Also show each partition of a partitioned stream.") var partitions = false
    @Flag(help: "Clear the screen and print the figures again every --interval seconds, until Ctrl-C.") var watch = false
    @Option(parsing: .number, help: "Seconds between two refreshes with --watch.") var interval: Double = 2

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be above 0") }
        // Each frame clears the screen first: JSON with those codes in it is neither (a trial).
        if watch && json { throw ValidationError("--watch draws a screen; --json prints once: give one of them (repeat --json yourself, e.g. with watch(1))") }
    }

    func run() async throws {
        try await OperatorText.namingRedis(redis) { try await show() }
    }

    private func show() async throws {
        var configuration = try redis.configuration()
        if watch {
            // A watch outlives outages: each reading tries to connect once, so a Redis that is
            // away is shown at the next refresh (it kept the last table for the 5-s reconnect
            // window, and redrew every ~7 s), and one that is not there yet is shown and waited
            // for (it exited 1). Both found by a user-style trial.
            configuration.reconnect.retryWindow = .zero
        }
        let cluster = try await watch ? waitingForRedis { try await usesRedisCluster(configuration) } : usesRedisCluster(configuration)
        if cluster { return try await onCluster(try RedisClusterConfiguration(configuration)) }
        let pool = try RedisConnectionPool(configuration: configuration, maximumConnections: 2)
        let reader = OperationsReader(nodes: [pool], match: match, listsDeadLetters: false)
        do {
            if watch {
                try await refresh(reader)
            } else {
                try await printOnce(reader)
                // A server that is a replica (the URL still names a demoted primary) is read like
                // any other, and said so: its figures can lag the primary's (a trial found the
                // whole table printed without a word).
                if let note = await OperatorText.replicaNote(pool, read: "these figures are") { FileHandle.standardError.write(Data(note.utf8)) }
                if let note = await OperatorText.clusterNodeNote(pool, read: "these streams are") { FileHandle.standardError.write(Data(note.utf8)) }
            }
        } catch {
            await pool.shutdown()
            throw error
        }
        await pool.shutdown()
    }

    /// One reading, printed; exits 1 when a node could not be read (what was read is printed).
    private func printOnce(_ reader: OperationsReader) async throws {
        let snapshot = try await reader.read()
        print(try render(snapshot), terminator: "")
        if snapshot.unread != nil {
            FileHandle.standardError.write(Data(Self.unreadLines(snapshot).utf8))
            throw ExitCode(1)
        }
    }

    /// A line per node not read (a primary down, its replica not yet promoted).
    static func unreadLines(_ snapshot: OperationsSnapshot) -> String {
        (snapshot.unread ?? []).map { "not read: \($0.node): \($0.error); its streams are missing above\n" }.joined()
    }

    /// On a Redis Cluster: the primaries of the moment at every reading (a failover moves the
    /// figures to the promoted node), through a cluster client whose topology upkeep runs beside
    /// it, which also reads a stream whose slot is being moved (``OperationsReader``).
    private func onCluster(_ configuration: RedisClusterConfiguration) async throws {
        let client = try await watch ? waitingForRedis { try await RedisNodePools.connected(configuration) } : RedisNodePools.connected(configuration)
        let primaries = ClusterPrimaryPools(client: client)
        let reader = OperationsReader(clusterPrimaries: primaries, match: match, listsDeadLetters: false)
        let outcome: Result<Void, any Error>
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.run() }
                defer { group.cancelAll() }
                if watch { try await refresh(reader) } else { try await printOnce(reader) }
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        await primaries.shutdown()
        await client.shutdown()
        try outcome.get()
    }

    /// Prints the figures again and again; ends with the process (Ctrl-C) or when the task is
    /// cancelled (the sleep throws then). A failed reading (Redis away) is shown, not fatal.
    private func refresh(_ reader: OperationsReader) async throws {
        while true {
            let text: String
            do {
                let snapshot = try await reader.read()
                text = try render(snapshot) + Self.unreadLines(snapshot)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                text = "cannot read the streams: \(error)\n"
            }
            draw(text)
            try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
        }
    }

    /// One frame of `--watch`: home, clear the screen, then the whole frame in one write (no
    /// flicker of half a table).
    private func draw(_ text: String) {
        FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + "ordershop status, every \(interval) s (Ctrl-C stops)\n\n" + text).utf8))
    }

    /// `attempt` again every `--interval` while Redis cannot be reached, each failure drawn as a
    /// frame; any other error (a refused password, a wrong CA) ends the command.
    private func waitingForRedis<T>(_ attempt: () async throws -> T) async throws -> T {
        while true {
            do {
                return try await attempt()
            } catch let error as RedisError where Self.isOutage(error) {
                draw("cannot reach Redis: \(error)\n(trying again every \(interval) s)\n")
                try await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            }
        }
    }

    /// Errors of a Redis that is away, restarting or failing over (a connection cut mid-read, a
    /// cluster healing), not of a wrong setting.
    static func isOutage(_ error: RedisError) -> Bool {
        error.isTransient || error.code == .outcomeUnknown || [.clusterDown, .masterDown, .tryAgain].contains(error.code)
    }

    /// A name from Redis (a stream, a group, a consumer) as the table prints it: control and
    /// text-reordering characters escaped, as `dlq list` does. A stream named with ESC [2J
    /// cleared the operator's terminal, and CR LF forged a line of the table (a trial).
    private func shown(_ name: String) -> String { LogText.escaped(name, limit: 200) }

    private func render(_ snapshot: OperationsSnapshot) throws -> String {
        // Each logical stream's groups, then (with --partitions) each partition's.
        var all: [(status: GroupStatus, partition: OperationsSnapshot.Stream?)] = []
        var streamsWithoutGroups: [OperationsSnapshot.Stream] = []
        for stream in snapshot.streams {
            for group in stream.groups {
                all.append((group.status, nil))
                guard partitions else { continue }
                for p in stream.partitions ?? [] {
                    if let g = p.groups.first(where: { $0.status.group == group.status.group }) { all.append((g.status, p)) }
                }
            }
            if stream.groups.isEmpty { streamsWithoutGroups.append(stream) }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return String(decoding: try encoder.encode(all.map(\.status)), as: UTF8.self) + "\n"
        }
        let header = ["STREAM", "GROUP", "LENGTH", "LAST ID", "LAG", "PENDING", "OLDEST", "DLQ", "PARTITIONS", "CONSUMERS (pending/idle)"]
        var rows: [[String]] = [header]
        for (s, partition) in all {
            let lag = s.lag.map { "\($0)\(s.lagCounted ? "*" : "")" } ?? "?"
            let age = s.oldestPendingAge.map { String(format: "%.1fs", $0) } ?? "-"
            let consumers = s.consumers.map { "\(shown($0.name)) (\($0.pending)/\(String(format: "%.1fs", Double($0.idleMilliseconds) / 1000)))" }
                .joined(separator: ", ")
            // A logical stream: how many partitions; a partition: its number, and its node.
            let parts =
                partition.map { p in
                    let number = PartitionedStream.parse(p.name).map { "#\($0.partition)/\($0.partitions)" } ?? "#-"
                    return number + (p.node.map { "@\($0)" } ?? "")
                } ?? s.partitions.map { "\($0)" } ?? "-"
            rows.append([
                (partition == nil ? "" : "  ") + shown(s.stream), shown(s.group), "\(s.length)", s.lastID, lag, "\(s.pending)", age, "\(s.deadLetters)", parts,
                consumers.isEmpty ? "-" : consumers,
            ])
        }
        for stream in streamsWithoutGroups {
            rows.append([shown(stream.name), "-", "\(stream.length)", "", "", "", "", "", stream.partitions.map { "\($0.count)" } ?? "-", "(no groups)"])
        }
        var text = formatTable(rows)
        if all.contains(where: \.status.lagCounted) { text += "* lag counted by ordershop from the entries, not taken from Redis (whose figure is missing after deletions and can be wrong after an AOF restart)\n" }
        for memory in snapshot.memory ?? [] { text += "Redis memory: \(memory.summary)\n" }
        return text
    }
}

/// `ordershop dlq list|replay|purge STREAM GROUP`: a plain stream's dead letters, or those of
/// every partition of a logical stream (``DeadLetterTargets``; `--partition N` for one).
struct DeadLetterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Inspect, replay or purge a group's dead letters.",
        discussion: """
            STREAM may be a logical stream spread over partitions (its name, braces or not): the command then works on \
            every partition's dead letters, each replayed to its own partition's replay stream (--partition N: that \
            partition only). --id applies to each partition's dead letters.
            """,
        subcommands: [List.self, Replay.self, Purge.self]
    )

    struct Target: ParsableArguments {
        @OptionGroup var redis: RedisOptions
        @Argument(help: "Source stream (a plain stream, a logical stream spread over partitions, or one partition stream).")
        var stream: String
        @Argument(help: "Consumer group.") var group: String
        @Option(parsing: .number, help: "Only this partition of a partitioned stream.") var partition: Int?

        func validate() throws {
            // An empty name was looked for (a trial's `dlq list '' crm`: "stream  has no consumer groups").
            if stream.isEmpty { throw ValidationError("STREAM must not be empty") }
            if group.isEmpty { throw ValidationError("GROUP must not be empty") }
            if let partition, partition < 0 { throw ValidationError("--partition must not be negative") }
        }

        /// The dead letters, on the one server or the primaries of a Redis Cluster; a stream or
        /// group that does not exist is refused (``DeadLetters/requireGroup(orDeadLetters:)``).
        func deadLetters(orDeadLetters: Bool) async throws -> DeadLetterTargets {
            try await OperatorText.namingRedis(redis) {
                try await DeadLetterTargets.resolve(redis, stream: stream, group: group, partition: partition, orDeadLetters: orDeadLetters)
            }
        }
    }

    /// One partition's dead letters, for `dlq list --json` on a partitioned stream.
    struct PartitionLetters: Encodable {
        var stream: String
        var partition: Int?
        var letters: [DeadLetters.Letter]
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List dead letters with their reasons.")
        @OptionGroup var target: Target
        @Option(parsing: .number, help: "At most this many (over all partitions).") var count: Int = 100
        @Flag(help: "Print JSON.") var json = false

        func validate() throws {
            guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        }

        func run() async throws {
            let targets = try await target.deadLetters(orDeadLetters: true)
            var listed: [PartitionLetters] = []
            var left = count
            var total = 0
            do {
                for t in targets.targets {
                    total += try await t.deadLetters.client.send(XLEN(RedisArgument(t.deadLetters.key)))
                    guard left > 0 else { continue }
                    let letters = try await t.deadLetters.list(count: left)
                    left -= letters.count
                    listed.append(PartitionLetters(stream: t.deadLetters.stream, partition: t.partition?.partition, letters: letters))
                }
            } catch {
                await targets.shutdown()
                throw OperatorText.readable(error, redis: target.redis)
            }
            if let note = await targets.replicaNote() { FileHandle.standardError.write(Data(note.utf8)) }
            // The list stopped at --count: said, with how many there are (a trial's group held
            // 17,802 and the command printed its 100 without a word).
            let shown = listed.reduce(0) { $0 + $1.letters.count }
            if shown < total { FileHandle.standardError.write(Data("note: \(shown) of \(total) dead letters listed (--count for more)\n".utf8)) }
            await targets.shutdown()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                let data = targets.partitioned ? try encoder.encode(listed) : try encoder.encode(listed.flatMap(\.letters))
                print(String(decoding: data, as: UTF8.self))
                return
            }
            // LAST ERROR: what the handler said, where the reason does not (a letter that used up
            // its deliveries reads "failed 5 deliveries"; why was only in --json).
            // None: said in words (a bare header read like a failed listing, a trial).
            guard shown > 0 else {
                print("no dead letters of \(LogText.escaped(target.stream, limit: 200)) \(LogText.escaped(target.group, limit: 200))"
                    + (targets.targets.count > 1 ? " in its \(targets.targets.count) partitions" : ""))
                return
            }
            var rows = [(targets.partitioned ? ["PARTITION", "STREAM"] : []) + ["DLQ ID", "ORIGINAL ID", "DELIVERIES", "REASON", "EVENT ID", "LAST ERROR"]]
            for p in listed {
                for l in p.letters {
                    let named = targets.partitioned ? [p.partition.map { "\($0)" } ?? "-", p.stream] : []
                    // One terminal-safe line each (an event's text may be in either).
                    let error = l.error.isEmpty || l.error == l.reason ? "-" : LogText.escaped(l.error, limit: 160)
                    rows.append(named + [l.id, l.originalID, "\(l.deliveryCount)", LogText.escaped(l.reason, limit: 300), l.fields["event_id"].map { $0.isEmpty ? "(empty)" : LogText.escaped($0, limit: 100) } ?? "-", error])
                }
            }
            printTable(rows)
        }
    }

    struct Replay: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-deliver dead letters to their group only (its replay stream, read by its workers), as the same events, and remove them (in calls of 500, each atomic).")
        @OptionGroup var target: Target
        @Option(name: .customLong("id"), help: "Dead-letter ids to replay (default: all).") var ids: [String] = []
        @OptionGroup var confirm: ConfirmationOptions

        func validate() throws {
            do { try DeadLetters.requireValid(ids) } catch { throw ValidationError("--id: \(error)") }
        }

        func run() async throws {
            let confirmation = try confirm.confirmation()
            let targets = try await target.deadLetters(orDeadLetters: false)
            var total = 0
            var lines: [String] = []
            var replayedLines: [String] = []
            var cut: [String] = []
            do {
                try await ConfirmationPrecheck.require(
                    confirmation, on: targets.targets.map(\.deadLetters.client), at: try target.redis.configuration(), verb: "dlq replay",
                    keys: targets.targets.map(\.deadLetters.key))
                for var t in targets.targets {
                    t.deadLetters.confirmation = confirmation
                    let replayed = try await t.deadLetters.replay(ids: ids.isEmpty ? nil : ids)
                    total += replayed.found
                    cut += replayed.cut
                    let line = "replayed \(replayed.ids.count) entries to \(t.deadLetters.replayKey) (group \(target.group) only)"
                    lines.append(line)
                    if !replayed.ids.isEmpty { replayedLines.append(line) }
                }
            } catch {
                // What the partitions before the failed one did is done: say so before the error.
                if !lines.isEmpty { print(lines.joined(separator: "\n")) }
                await targets.shutdown()
                throw OperatorText.readable(error, redis: target.redis)
            }
            await targets.shutdown()
            // An --id not found: where those found went, if any, then the error, which says how
            // many were replayed (a trial got the error and then "replayed 0 entries to ...").
            do {
                try DeadLetterIDs.requireAllFound(ids, found: total, verb: "replayed", target: target)
            } catch {
                if !replayedLines.isEmpty { print(replayedLines.joined(separator: "\n")) }
                throw error
            }
            if targets.targets.count > 1 { lines.append("replayed \(total - cut.count) entries over \(targets.targets.count) partitions") }
            print(lines.joined(separator: "\n"))
            // Left where they are, and said: the command did not do all it was asked.
            if let refusal = DeadLetters.Replayed.explanation(cut: cut) { throw CleanExit.message(refusal, exitCode: 1) }
        }
    }

    struct Purge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete dead letters.")
        @OptionGroup var target: Target
        @Option(name: .customLong("id"), help: "Dead-letter ids to delete (default: all).") var ids: [String] = []
        @OptionGroup var confirm: ConfirmationOptions

        func validate() throws {
            do { try DeadLetters.requireValid(ids) } catch { throw ValidationError("--id: \(error)") }
        }

        func run() async throws {
            let confirmation = try confirm.confirmation()
            let targets = try await target.deadLetters(orDeadLetters: true)
            var removed = 0
            do {
                try await ConfirmationPrecheck.require(
                    confirmation, on: targets.targets.map(\.deadLetters.client), at: try target.redis.configuration(), verb: "dlq purge",
                    keys: targets.targets.map(\.deadLetters.key))
                for var t in targets.targets {
                    t.deadLetters.confirmation = confirmation
                    removed += try await t.deadLetters.purge(ids: ids.isEmpty ? nil : ids)
                }
            } catch {
                if removed > 0 { print("purged \(removed) dead letters before the error") }
                await targets.shutdown()
                throw OperatorText.readable(error, redis: target.redis)
            }
            await targets.shutdown()
            // An --id not found: the error alone, which says how many were purged (a trial got
            // "purged 0 dead letters" and then the error).
            try DeadLetterIDs.requireAllFound(ids, found: removed, verb: "purged", target: target)
            print("purged \(removed) dead letters" + (targets.targets.count > 1 ? " over \(targets.targets.count) partitions" : ""))
        }
    }
}

/// The `--id` of `dlq replay` and `dlq purge`.
enum DeadLetterIDs {
    /// Fails (exit 1) when fewer letters were found than distinct `ids` were given: a replay of an
    /// id that is not (or no longer) a dead letter said "replayed 0 entries" and exited 0, as if
    /// done (an operator who mistyped the id, or whom a colleague beat to it, must learn it).
    static func requireAllFound(_ ids: [String], found: Int, verb: String, target: DeadLetterCommand.Target) throws {
        let given = DeadLetters.normalized(ids).count
        guard given > 0, found < given else { return }
        throw CleanExit.message(
            "\(given - found) of the \(given) --id given are not dead letters of \(target.stream) \(target.group) (see `ordershop dlq list`); "
                + "\(found) \(verb)", exitCode: 1)
    }
}

/// `ordershop trim`: retention that keeps every entry the latest snapshot does not cover or a group still needs.
struct TrimCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trim",
        abstract: "Snapshot each entity type, then trim its event streams to what the snapshot covers and no group still needs.",
        discussion: """
            Never removes an entry newer than the latest snapshot of its entity type, nor one a consumer group still needs \
            (pending, or not yet delivered). A stream the CRM or billing worker reads is not trimmed until that worker's \
            group exists (a worker started for the first time makes it from the first entry left); --without-worker NAME \
            for a worker this shop does not run. A stream no worker reads is trimmed to what the snapshot covers. An entity \
            type whose snapshot cannot be taken (a stream already lacks entries) is not trimmed, and the command exits \
            non-zero. Safe while the shop runs.
            """
    )

    @OptionGroup var redis: RedisOptions
    @Argument(help: EntitySelection.help) var entity: String = "all"
    @Option(parsing: .number, help: "Keep at most this many entries per stream, unless that would drop entries the snapshot does not cover or a group still needs.")
    var maxlen: Int?
    @Option(name: .customLong("without-worker"), help: "A worker this shop does not run (crm or billing; repeatable): its group is not waited for.")
    var withoutWorkers: [String] = []
    /// A deliberate defect for the chaos harness (``StreamRetention/PlantedBug``).
    @Option(name: .customLong("planted-bug"), help: .hidden) var plantedBug: String?

    func validate() throws {
        _ = try EntitySelection.types(entity)
        if let maxlen, maxlen < 0 { throw ValidationError("--maxlen must not be negative") }
        _ = try absentWorkers()
        if let plantedBug, StreamRetention.PlantedBug(rawValue: plantedBug) == nil {
            throw ValidationError(
                "unknown planted bug '\(plantedBug)'; this build knows " + StreamRetention.PlantedBug.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }

    private func absentWorkers() throws -> Set<WorkerName> {
        Set(try withoutWorkers.map { name in
            guard let worker = WorkerName(rawValue: name) else {
                throw ValidationError("--without-worker: unknown worker '\(name)'; one of \(WorkerName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return worker
        })
    }

    func run() async throws {
        var rows = [["STREAM", "GROUPS", "REMOVED", "KEPT FROM", "NOTE"]]
        // What was trimmed before a failure is printed; nothing at all, not a bare header.
        defer { if rows.count > 1 { printTable(rows) } }
        let absent = try absentWorkers()
        try await EntitySelection.run(try EntitySelection.types(entity), redis: redis, verb: "trim") { type, pool in
            let retention = EventRetention(pool: pool, plantedBug: plantedBug.flatMap(StreamRetention.PlantedBug.init(rawValue:)))
            let result = try await retention.trim(type, maxLength: maxlen, without: absent)
            if !result.malformed.isEmpty {
                // Left out of the snapshot; a stream no worker reads has no dead letters, so this
                // line is their last trace once they are trimmed.
                FileHandle.standardError.write(Data(
                    ("warning: \(type): \(result.malformed.count) malformed entries left out of the snapshot (gone once their stream is trimmed)"
                        + (result.malformed.count > 5 ? "; the first 5: " : ": ")
                        + result.malformed.prefix(5).map { LogText.escaped($0.description, limit: 300) }.joined(separator: "; ") + "\n").utf8))
            }
            if !result.uncreated.isEmpty {
                // Left out of the snapshot, as the malformed entries above.
                FileHandle.standardError.write(Data(
                    "warning: \(type): \(ReadModelSnapshot.uncreatedNote(result.uncreated)) (gone once their stream is trimmed)\n".utf8))
            }
            for (r, position) in zip(result.streams, result.snapshot.positions) {
                var note = "snapshot covers \(position.lastID)"
                if let missing = r.missingGroup {
                    note = "group \(missing) does not exist yet: not trimmed until its worker has started once (--without-worker if it never runs)"
                } else if r.groups == 0 {
                    note += "; no group reads it"
                }
                if r.capRefused {
                    note = "--maxlen \(maxlen ?? 0) refused: it would drop entries the snapshot does not cover or a group still needs"
                    FileHandle.standardError.write(Data("warning: \(r.stream): \(note)\n".utf8))
                }
                rows.append([r.stream, "\(r.groups)", "\(r.removed)", r.keptFrom, note])
            }
            for r in result.replays {
                let note = r.missingGroup.map { "group \($0) does not exist: kept" } ?? "a group's replay stream: what it has acknowledged"
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

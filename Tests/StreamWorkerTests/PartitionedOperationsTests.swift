import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// `ordershop status` and `ordershop dlq` on a logical stream spread over partitions on a real
/// 3-primary Redis Cluster, as an operator runs them (the built executable).
@Suite("Partitioned streams: status and dead letters", .serialized)
struct PartitionedOperationsTests {
    @Test("status shows a partitioned stream once: length, lag, pending, dead letters summed, the oldest pending of any partition; --partitions each partition on its node")
    func statusOverPartitions() async throws {
        let ordershop = try ordershopExecutable()
        try await withWorkerCluster { cluster, client in
            let events = PartitionedStream("ledger", partitions: 3)
            let (s0, s1, s2) = (events.streams[0], events.streams[1], events.streams[2])
            // Explicit ids, far apart in time: partition 0 holds the oldest entries, 1 the newest.
            let ids = [s0: (1_000_000, 5), s1: (200_000_000, 3), s2: (100_000_000, 4)]
            for (stream, (milliseconds, count)) in ids {
                for seq in 1...count {
                    try await client.send(XADD(RedisArgument(stream), id: "\(milliseconds)-\(seq)", fields: [StreamField("event_id", "\(stream)/\(seq)")]))
                }
                try await client.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0"))
            }
            // A consumer reads without acknowledging: 2 pending in partition 0, 1 in partition 2.
            _ = try await client.send(XREADGROUP(group: "g", consumer: "c1", streams: [(s0, ">")], count: 2))
            _ = try await client.send(XREADGROUP(group: "g", consumer: "c1", streams: [(s2, ">")], count: 1))
            try await client.send(XADD(RedisArgument(StreamKeys.deadLetter(stream: s0, group: "g")), fields: [StreamField("dlq.reason", "x")]))
            for _ in 0..<2 { try await client.send(XADD(RedisArgument(StreamKeys.deadLetter(stream: s1, group: "g")), fields: [StreamField("dlq.reason", "x")])) }

            let plain = try await runChild(ordershop, ["status", "--json", "--url", cluster.url])
            #expect(plain.status == 0, "\(plain.output)")
            let logical = try decodeStatus(plain.output)
            #expect(logical.map(\.stream) == ["ledger"], "\(plain.output)")
            let ledger = try #require(logical.first)
            #expect(ledger.group == "g")
            #expect(ledger.partitions == 3)
            #expect(ledger.length == 12)
            #expect(ledger.lag == 9)  // 3 + 3 + 3 not yet delivered
            #expect(ledger.pending == 3)
            #expect(ledger.deadLetters == 3)
            #expect(ledger.lastID == "200000000-3")
            #expect(ledger.oldestPendingID == "1000000-1")
            #expect(ledger.consumers.map(\.name) == ["c1"] && ledger.consumers.first?.pending == 3, "\(ledger.consumers)")

            let detailed = try await runChild(ordershop, ["status", "--json", "--partitions", "--url", cluster.url])
            #expect(detailed.status == 0, "\(detailed.output)")
            let rows = try decodeStatus(detailed.output)
            try #require(rows.map(\.stream) == ["ledger", s0, s1, s2], "\(detailed.output)")
            let parts = Array(rows.dropFirst())
            #expect(parts.map(\.pending) == [2, 0, 1])
            #expect(parts.map(\.lag) == [3, 3, 3])
            // Read in one reading: the logical age is the oldest partition's, far older than partition 2's.
            let ages = parts.compactMap(\.oldestPendingAge)
            #expect(ages.count == 2 && rows[0].oldestPendingAge == ages.max(), "\(rows)")
            #expect((rows[0].oldestPendingAge ?? 0) > (parts[2].oldestPendingAge ?? 0) + 90_000)

            let table = try await runChild(ordershop, ["status", "--partitions", "--url", cluster.url])
            #expect(table.status == 0, "\(table.output)")
            let lines = table.output.split(separator: "\n")
            let columns = try #require(lines.first { $0.hasPrefix("ledger ") }).split(separator: " ")
            // STREAM GROUP LENGTH LAST-ID LAG PENDING OLDEST DLQ PARTITIONS CONSUMERS
            // The lag was counted (an asterisk): Redis's own is unknown after the explicit ids.
            #expect(columns.count > 8 && Array(columns[..<6]) == ["ledger", "g", "12", "200000000-3", "9*", "3"], "\(table.output)")
            #expect(columns.count > 8 && columns[7] == "3" && columns[8] == "3", "\(table.output)")
            // Each partition's row names its number and the primary that holds it.
            for (p, stream) in events.streams.enumerated() {
                let node = try #require(client.primary(for: HashSlot(key: stream)))
                let row = lines.first { $0.contains(stream) }
                #expect(row?.contains("#\(p)/3@127.0.0.1:\(node.port)") == true, "\(table.output)")
            }
        }
    }

    @Test("dlq list, replay and purge a logical stream's dead letters in every partition (or one with --partition); replayed ones are applied once")
    func deadLettersAcrossPartitions() async throws {
        let ordershop = try ordershopExecutable()
        try await withWorkerCluster { cluster, client in
            try await client.connect()
            let events = PartitionedStream("accounts", partitions: 3)
            let keys = (0..<60).map { "acct-\($0)" }
            // Two entities of partition 0 and two of partition 1 fail as invalid while poisoned.
            let poisoned = Set([0, 1].flatMap { p in keys.filter { events.partition(forKey: $0) == p }.prefix(2) })
            let poison = Atomic<Bool>(true)
            let handler: StreamHandler = { delivery in
                let key = delivery.string("key") ?? ""
                if poisoned.contains(key) && poison.load(ordering: .acquiring) { throw DeliveryError.invalid("poisoned \(key)") }
                return .done(effects: [["HINCRBY", RedisArgument(effectsKey(delivery.stream)), RedisArgument(delivery.eventID), "1"]])
            }
            func publishEach(_ keys: [String], round: Int) async throws {
                let commands = keys.map { events.add(key: $0, fields: [StreamField("event_id", "\($0)/\(round)"), StreamField("key", $0)]) }
                for result in await client.pipeline(commands) { _ = try result.get() }
            }
            func applied() async throws -> [String: Int] {
                var all: [String: Int] = [:]
                for stream in events.streams { all.merge(try await effectCounts(client, effectsKey(stream))) { $0 + $1 } }
                return all
            }
            func deadLetterCounts() async throws -> [Int] {
                var counts: [Int] = []
                for stream in events.streams { counts.append(try await DeadLetters(client: client, stream: stream, group: "g").list().count) }
                return counts
            }
            try await publishEach(keys, round: 0)
            let worker = RunningWorker(
                pool: client, configuration: WorkerConfiguration(lease: .seconds(2)),
                subscriptions: [Subscription(stream: "accounts", group: "g", partitions: 3, handler: handler)])
            let settled = await eventually {
                guard try await applied().count == keys.count - poisoned.count else { return false }
                return try await deadLetterCounts() == [2, 2, 0]
            }
            if !settled { Issue.record("applied \(try await applied().count), dead letters \(try await deadLetterCounts())") }

            // Listed across partitions, each with its partition named.
            let list = try await runChild(ordershop, ["dlq", "list", "accounts", "g", "--url", cluster.url])
            #expect(list.status == 0, "\(list.output)")
            for key in poisoned {
                let p = events.partition(forKey: key)
                let row = list.output.split(separator: "\n").first { $0.contains("\(key)/0") }
                #expect(row?.hasPrefix("\(p) ") == true && row?.contains(events.streams[p]) == true, "\(list.output)")
            }

            // The downstream is fixed; partition 1 first, alone: partition 0's stay.
            poison.store(false, ordering: .releasing)
            let one = try await runChild(ordershop, ["dlq", "replay", "accounts", "g", "--partition", "1", "--url", cluster.url])
            #expect(one.status == 0, "\(one.output)")
            #expect(one.output.contains("replayed 2 entries to \(StreamKeys.replay(stream: events.streams[1], group: "g"))"), "\(one.output)")
            #expect(await eventually { try await applied().count == keys.count - 2 })
            #expect(try await deadLetterCounts() == [2, 0, 0])
            // A partition the stream has not got: said in one line, with the ones it has, and
            // not with the top-level usage (a trial).
            let beyond = try await runChild(ordershop, ["dlq", "list", "accounts", "g", "--partition", "3", "--url", cluster.url])
            #expect(beyond.status == 1, "\(beyond.output)")
            #expect(beyond.output.contains("accounts has no partition 3 (it has partitions 0, 1, 2)"), "\(beyond.output)")
            #expect(!beyond.output.contains("ordershop <subcommand>"), "\(beyond.output)")
            let all = try await runChild(ordershop, ["dlq", "replay", "accounts", "g", "--url", cluster.url])
            #expect(all.status == 0, "\(all.output)")
            #expect(all.output.contains("replayed 2 entries over 3 partitions"), "\(all.output)")
            #expect(await eventually { try await applied().count == keys.count })
            #expect(try await deadLetterCounts() == [0, 0, 0])

            // Poisoned again: new dead letters in partitions 0 and 1, purged one partition, then all.
            poison.store(true, ordering: .releasing)
            try await publishEach(Array(poisoned), round: 1)
            #expect(await eventually { try await deadLetterCounts() == [2, 2, 0] })
            let purgeOne = try await runChild(ordershop, ["dlq", "purge", "accounts", "g", "--partition", "0", "--url", cluster.url])
            #expect(purgeOne.status == 0 && purgeOne.output.contains("purged 2 dead letters"), "\(purgeOne.output)")
            #expect(try await deadLetterCounts() == [0, 2, 0])
            let purgeAll = try await runChild(ordershop, ["dlq", "purge", "accounts", "g", "--url", cluster.url])
            #expect(purgeAll.status == 0 && purgeAll.output.contains("purged 2 dead letters over 3 partitions"), "\(purgeAll.output)")
            #expect(try await deadLetterCounts() == [0, 0, 0])
            try await worker.stop()

            let counts = try await applied()
            #expect(counts.count == keys.count, "\(counts.count)")
            #expect(counts.values.allSatisfy { $0 == 1 }, "applied twice: \(counts.filter { $0.value != 1 })")
        }
    }
}

/// `ordershop status --json`'s groups (the JSON array in the output).
private func decodeStatus(_ output: String) throws -> [GroupStatus] {
    guard let start = output.firstIndex(of: "["), let end = output.lastIndex(of: "]") else {
        throw TestSupportError("no JSON array in: \(output)")
    }
    return try JSONDecoder().decode([GroupStatus].self, from: Data(output[start...end].utf8))
}

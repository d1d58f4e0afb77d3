import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// `ordershop dlq` as a user types it: a stream or group that does not exist is refused, naming
/// it and the groups there are, instead of "replayed 0 entries" into a replay stream no worker
/// reads (what a typo in the group gave before).
@Suite struct DeadLetterCommandTests {
    @Test func aStreamOrGroupThatDoesNotExistIsRefused() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(XGROUPCREATE(RedisArgument("events:{order}_created"), group: "billing", id: "0", makeStream: true))
            let url = "redis://127.0.0.1:\(server.port)"

            let typo = try await runChild(ordershop, ["dlq", "replay", "events:{order}_created", "biling", "--url", url])
            #expect(typo.status != 0, "\(typo.output)")
            #expect(typo.output.contains("no consumer group biling"), "\(typo.output)")
            #expect(typo.output.contains("its groups: billing"), "\(typo.output)")

            let missing = try await runChild(ordershop, ["dlq", "list", "events:{order}_crated", "billing", "--url", url])
            #expect(missing.status != 0, "\(missing.output)")
            #expect(missing.output.contains("events:{order}_crated has no consumer groups"), "\(missing.output)")

            // Neither created anything.
            let replays = try await pool.send(RawCommand(["KEYS", "replay:*"], keys: [])).array ?? []
            #expect(replays.isEmpty, "created \(replays)")

            // An id that is not a stream id: refused before anything runs, saying what an id looks like.
            for verb in ["replay", "purge"] {
                let garbage = try await runChild(ordershop, ["dlq", verb, "events:{order}_created", "billing", "--id", "1-0", "--id", "nonsense", "--url", url])
                #expect(garbage.status != 0, "\(garbage.output)")
                #expect(garbage.output.contains("--id: not dead-letter ids") && garbage.output.contains("'nonsense'"), "\(garbage.output)")
                #expect(!garbage.output.contains("'1-0'"), "\(garbage.output)")
            }

            let right = try await runChild(ordershop, ["dlq", "replay", "events:{order}_created", "billing", "--url", url])
            #expect(right.status == 0, "\(right.output)")
            #expect(right.output.contains("replayed 0 entries"), "\(right.output)")
            // None to list: said in words (a bare header before).
            let none = try await runChild(ordershop, ["dlq", "list", "events:{order}_created", "billing", "--url", url])
            #expect(none.status == 0 && none.output.contains("no dead letters of events:{order}_created billing"), "\(none.output)")
            #expect(!none.output.contains("DLQ ID"), "\(none.output)")

            // An id that is not a dead letter (mistyped, or replayed by someone else): said, and
            // exit 1 (before: "replayed 0 entries", exit 0). One letter there, found and replayed.
            let letters = DeadLetters(client: pool, stream: "events:{order}_created", group: "billing")
            let letter = try #require(try await pool.send(XADD(RedisArgument(letters.key), fields: [StreamField("original_id", "1-1"), StreamField("reason", "test")])))
            for verb in ["replay", "purge"] {
                let absent = try await runChild(ordershop, ["dlq", verb, "events:{order}_created", "billing", "--id", "1-1", "--url", url])
                #expect(absent.status == 1, "\(absent.output)")
                #expect(absent.output.contains("1 of the 1 --id given are not dead letters of events:{order}_created billing"), "\(absent.output)")
                // The error alone (a replay printed it and then "replayed 0 entries to ...").
                #expect(!absent.output.contains("purged 0 dead letters") && !absent.output.contains("replayed 0 entries"), "\(absent.output)")
            }
            let found = try await runChild(ordershop, ["dlq", "replay", "events:{order}_created", "billing", "--id", "\(letter)", "--url", url])
            #expect(found.status == 0 && found.output.contains("replayed 1 entries"), "\(found.output)")
            await pool.shutdown()
        }
    }

    /// A trial named a stream and a group with terminal escapes and CR LF: `status` printed them
    /// raw, so the operator's terminal was cleared and recoloured and a table line forged.
    @Test func statusEscapesNamesFromRedis() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = RedisArgument("evil\u{1b}[2J\u{1b}[31mstream\r\nX")
            try await pool.send(XADD(stream, fields: [StreamField("a", "b")]))
            _ = try await pool.send(XGROUPCREATE(stream, group: "g\u{1b}[5m", id: "0"))
            let status = try await runChild(ordershop, ["status", "--url", "redis://127.0.0.1:\(server.port)"])
            #expect(status.status == 0, "\(status.output)")
            #expect(!status.output.contains("\u{1b}") && !status.output.contains("\r"), "\(status.output.debugDescription)")
            #expect(status.output.contains("evil\\u{1b}[2J\\u{1b}[31mstream\\u{d}\\u{a}X") && status.output.contains("g\\u{1b}[5m"), "\(status.output)")
            await pool.shutdown()
        }
    }

    /// A dead letter that keeps 3,000 of its entry's fields was replayed as it was (3,000 fields
    /// under the entry's id, taken by the handler for the event): README only warned. Now the
    /// replay leaves it, says why and exits 1; the other letters are replayed.
    @Test func aLetterCutShortIsNotReplayed() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{order}_created"
            _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "billing", id: "0", makeStream: true))
            let letters = DeadLetters(client: pool, stream: stream, group: "billing")
            let cut = try #require(
                try await pool.send(
                    XADD(
                        RedisArgument(letters.key),
                        fields: [StreamField("event_id", "wide"), StreamField("dlq.reason", "wide"), StreamField("dlq.omitted_fields", "17000")])))
            let whole = try #require(try await pool.send(XADD(RedisArgument(letters.key), fields: [StreamField("event_id", "e1"), StreamField("dlq.reason", "bug")])))
            let url = "redis://127.0.0.1:\(server.port)"
            let replay = try await runChild(ordershop, ["dlq", "replay", stream, "billing", "--url", url])
            #expect(replay.status == 1, "\(replay.output)")
            #expect(replay.output.contains("replayed 1 entries"), "\(replay.output)")
            #expect(replay.output.contains("1 dead letters not replayed (\(cut))") && replay.output.contains("keeps only part of its entry's fields"), "\(replay.output)")
            #expect(try await letters.list().map(\.id) == [cut])
            let replayed = try await pool.send(XRANGE(RedisArgument(letters.replayKey)))
            #expect(replayed.map { $0.string("event_id") } == ["e1"] && replayed.first?.string("replayed_from") == whole, "\(replayed)")
            // Listed with what it lacks; purged as any other.
            #expect(try await letters.list().first?.cutFields == 17_000)
            // A list cut short by --count says how many there are.
            _ = try await pool.send(XADD(RedisArgument(letters.key), fields: [StreamField("event_id", "e2"), StreamField("dlq.reason", "bug")]))
            let some = try await runChild(ordershop, ["dlq", "list", stream, "billing", "--count", "1", "--url", url])
            #expect(some.status == 0 && some.output.contains("note: 1 of 2 dead letters listed (--count for more)"), "\(some.output)")
            let all = try await runChild(ordershop, ["dlq", "list", stream, "billing", "--url", url])
            #expect(all.status == 0 && !all.output.contains("note:"), "\(all.output)")
            // An empty event_id (dead-lettered for it) is said so; its cell was blank and the
            // row's columns looked shifted (a trial).
            let blank = try #require(try await pool.send(XADD(RedisArgument(letters.key), fields: [StreamField("event_id", ""), StreamField("dlq.reason", "empty event_id")])))
            let listed = try await runChild(ordershop, ["dlq", "list", stream, "billing", "--url", url])
            let row = listed.output.split(separator: "\n").first { $0.contains(blank) } ?? ""
            #expect(row.contains("empty event_id") && row.contains("(empty)"), "\(listed.output)")
            _ = try await letters.purge(ids: [blank])
            _ = try await letters.purge(ids: [try #require(try await letters.list().last?.id)])
            let purge = try await runChild(ordershop, ["dlq", "purge", stream, "billing", "--id", cut, "--url", url])
            #expect(purge.status == 0, "\(purge.output)")
            #expect(try await letters.list().isEmpty)
            await pool.shutdown()
        }
    }

    /// The operations commands say which Redis they could not use, without its password and
    /// without the client's code names (they printed "connectionRefused: connection refused by
    /// H:P", or Redis's bare "WRONGPASS ...": trial H).
    @Test func operationsNameTheRedisTheyCannotUse() async throws {
        let ordershop = try builtProduct("ordershop")
        let refusing = "redis://127.0.0.1:\(try LocalRedisServer.freePort())"
        var options = LocalRedisServer.Options()
        options.password = "the-right-one"
        try await withRedisServer(options) { server in
            let wrongPassword = "redis://:guessed-secret@127.0.0.1:\(server.port)"
            // trim stands for snapshot and rebuild too (one path: EntitySelection). With
            // `?cluster=no` nothing asks Redis what it is first (a review: trim then said
            // "trim customer failed: WRONGPASS ...; run it again").
            let commands: [(command: [String], suffix: String)] = [
                (["status"], ""), (["trim", "customer"], ""), (["dlq", "list", "s", "g"], ""), (["trim", "customer"], "?cluster=no"),
            ]
            for (command, suffix) in commands {
                let refused = try await runChild(ordershop, command + ["--url", refusing + suffix], timeout: .seconds(60))
                #expect(refused.status == 1, "\(command): \(refused.output)")
                #expect(refused.output.contains("cannot use Redis at \(refusing): connection refused by 127.0.0.1:"), "\(command): \(refused.output)")
                #expect(!refused.output.contains("connectionRefused"), "\(command): \(refused.output)")

                let locked = try await runChild(ordershop, command + ["--url", wrongPassword + suffix], timeout: .seconds(60))
                #expect(locked.status == 1, "\(command): \(locked.output)")
                #expect(locked.output.contains("cannot use Redis at redis://:***@127.0.0.1:\(server.port)") && locked.output.contains("WRONGPASS"), "\(command): \(locked.output)")
                #expect(!locked.output.contains("guessed-secret") && !locked.output.contains("run it again"), "\(command): \(locked.output)")
            }
        }
        // A password where Redis has none, a database it has not got: Redis's plain ERR at the
        // connection's set-up was printed bare ("Error: ERR DB index is out of range": a trial).
        try await withRedisServer { server in
            for (url, named, says) in [
                ("redis://:given-anyway@127.0.0.1:\(server.port)", "redis://:***@127.0.0.1:\(server.port)", "without any password configured"),
                ("redis://127.0.0.1:\(server.port)/99", "redis://127.0.0.1:\(server.port)/99", "DB index is out of range"),
            ] {
                for command in [["status"], ["trim", "customer"], ["dlq", "list", "s", "g"]] {
                    let run = try await runChild(ordershop, command + ["--url", url], timeout: .seconds(60))
                    #expect(run.status == 1, "\(command) \(url): \(run.output)")
                    #expect(run.output.contains("cannot use Redis at \(named): ERR") && run.output.contains(says), "\(command) \(url): \(run.output)")
                    #expect(!run.output.contains("given-anyway") && !run.output.contains("run it again"), "\(command): \(run.output)")
                }
            }
        }
    }

    /// A user Redis lets in but not do the command: the operations commands name the user and
    /// the role that may (trial J: `trim` as a CRM worker's user said "run it again", `status`
    /// printed Redis's NOPERM alone).
    @Test func operationsNameTheUserRedisDoesNotAllow() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(RawCommand(["ACL", "SETUSER", "limited", "on", ">limited-pw", "~*", "+ping", "+hello", "+info", "+client|setname"], keys: []))
            let url = "redis://limited:limited-pw@127.0.0.1:\(server.port)"
            for command in [["status"], ["trim", "customer"], ["snapshot", "customer"], ["dlq", "list", "s", "g"]] {
                let refused = try await runChild(ordershop, command + ["--url", url], timeout: .seconds(60))
                #expect(refused.status == 1, "\(command): \(refused.output)")
                #expect(refused.output.contains("NOPERM") && refused.output.contains("Redis's ACL does not let user 'limited' do that"), "\(command): \(refused.output)")
                #expect(refused.output.contains("ordershop-admin") && !refused.output.contains("run it again"), "\(command): \(refused.output)")
                #expect(!refused.output.contains("limited-pw"), "\(command): \(refused.output)")
            }
            await pool.shutdown()
        }
    }

    /// `rebuild --confirm-replicas 1` on a primary without replicas is refused before it writes
    /// anything (before: it swapped the read model in, then failed with "503: ... may have been
    /// applied", an HTTP status in a command's message).
    @Test func rebuildAskedToConfirmWithoutReplicasIsRefusedFirst() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            let url = "redis://127.0.0.1:\(server.port)"
            let rebuild = try await runChild(ordershop, ["rebuild", "customer", "--confirm-replicas", "1", "--url", url], timeout: .seconds(60))
            #expect(rebuild.status == 1, "\(rebuild.output)")
            #expect(rebuild.output.contains("rebuild refused, nothing changed") && rebuild.output.contains("has 0 connected"), "\(rebuild.output)")
            #expect(!rebuild.output.contains("503"), "\(rebuild.output)")
            let keys = try await pool.send(RawCommand(["KEYS", "*"], keys: [])).array ?? []
            #expect(keys.isEmpty, "written: \(keys)")

            // dlq replay and purge the same: refused, the letter left where it was.
            _ = try await pool.send(XGROUPCREATE(RedisArgument("events:{order}_created"), group: "billing", id: "0", makeStream: true))
            let letters = DeadLetters(client: pool, stream: "events:{order}_created", group: "billing")
            _ = try await pool.send(XADD(RedisArgument(letters.key), fields: [StreamField("original_id", "1-1"), StreamField("reason", "test")]))
            for verb in ["replay", "purge"] {
                let refused = try await runChild(ordershop, ["dlq", verb, "events:{order}_created", "billing", "--confirm-replicas", "1", "--url", url], timeout: .seconds(60))
                #expect(refused.status == 1 && refused.output.contains("dlq \(verb) refused, nothing changed"), "\(refused.output)")
            }
            #expect(try await letters.list().count == 1)
            await pool.shutdown()
        }
    }

    /// The same on a Redis Cluster whose primaries have no replicas: every primary is checked
    /// (a cluster client was not checked at all, and the rebuild swapped first).
    @Test func rebuildAskedToConfirmOnAClusterWithoutReplicasIsRefusedFirst() async throws {
        let ordershop = try builtProduct("ordershop")
        var options = LocalRedisCluster.Options()
        options.replicasPerPrimary = 0
        try await withLocalCluster(options) { cluster, client in
            let rebuild = try await runChild(ordershop, ["rebuild", "customer", "--confirm-replicas", "1", "--url", cluster.url], timeout: .seconds(60))
            #expect(rebuild.status == 1, "\(rebuild.output)")
            #expect(rebuild.output.contains("rebuild refused, nothing changed") && rebuild.output.contains("has 0 connected"), "\(rebuild.output)")
            // Nothing of the customer's read model was written on its primary.
            let written = try await client.send(RawCommand(["EXISTS", "{customer}_ids", "{customer}_entities"], keys: ["{customer}_ids", "{customer}_entities"])).int
            #expect(written == 0)
        }
    }
}

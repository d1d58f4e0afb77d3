import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// `dlq replay` and `dlq purge` with `--confirm-replicas` on a real primary and replica: done
/// only once the replica has it, else an error that says it may be undone.
@Suite(.serialized) struct DeadLetterConfirmationTests {
    private func letter(_ pool: RedisConnectionPool, _ key: String, _ n: Int) async throws {
        _ = try await pool.send(
            RawCommand(
                ["XADD", RedisArgument(key), "*", "event_id", RedisArgument("e\(n)"), "dlq.original_id", RedisArgument("\(n)-0"), "dlq.reason", "test"],
                keys: [RedisArgument(key)]))
    }

    @Test("a replay or purge the replica does not confirm in time fails as outcome unknown, having run on the primary; confirmed, it succeeds")
    func unconfirmedReplayAndPurgeSaySo() async throws {
        try await withReplication { replication in
            try await replication.waitUntilReplicasAttached()
            let pool = try RedisConnectionPool(configuration: replication.configuration(0), maximumConnections: 4)
            var letters = DeadLetters(client: pool, stream: "orders", group: "billing")
            letters.confirmation = ReplicaConfirmation(replicas: 1, timeout: .seconds(1))
            for n in 1...3 { try await letter(pool, letters.key, n) }

            // Confirmed: done, and said so.
            let first = try #require(try await letters.list(count: 1).first)
            #expect(try await letters.replay(ids: [first.id]).ids.count == 1)

            replication.servers[1].signal(SIGSTOP)
            defer { replication.servers[1].signal(SIGCONT) }
            await #expect {
                try await letters.replay()
            } throws: { error in
                (error as? RedisError)?.code == .outcomeUnknown && "\(error)".contains("may undo it") && "\(error)".contains("replayed 2 entries on the primary")
            }
            // It ran on the primary: the letters are in the replay stream, not in the dead letters.
            #expect(try await letters.list().isEmpty)
            #expect(try await pool.send(XLEN(RedisArgument(letters.replayKey))) == 3)

            try await letter(pool, letters.key, 4)
            await #expect {
                try await letters.purge()
            } throws: { error in
                (error as? RedisError)?.code == .outcomeUnknown && "\(error)".contains("purged 1 dead letters on the primary")
            }
            replication.servers[1].signal(SIGCONT)
            try await letter(pool, letters.key, 5)
            #expect(try await letters.purge() == 1, "one letter was left, and the confirmed purge counts it")
            await pool.shutdown()
        }
    }
}

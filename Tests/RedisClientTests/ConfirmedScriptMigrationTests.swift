import LocalRedis
import RedisClient
import TestSupport
import Testing

/// A confirmed script (`evaluate(_:keys:arguments:confirming:...)`, what every OrderShop command
/// runs with `--confirm-replicas`) whose slot is being migrated: its keys on both sides answer
/// TRYAGAIN (it did not run) until the migration ends; it must wait that out, not give up.
@Suite(.timeLimit(.minutes(2))) struct ConfirmedScriptMigrationTests {
    /// 600 ms: about one MIGRATE batch of a busy slot. 4 s: a migration of seconds (trial I held
    /// one for 6 s; the confirmed path gave up after 12 attempts, 1.66 s, where an unconfirmed
    /// command waits the cluster's retry window).
    @Test(
        "a confirmed two-key script meets TRYAGAIN while its slot is half migrated, waits, then runs once on the new owner and is confirmed",
        arguments: [600, 4000])
    func waitsOutAMigration(milliseconds: Int) async throws {
        try await withLocalCluster { cluster, client in
            try await client.connect()
            let tag = "{migrating}"
            let (a, b) = (RedisArgument("\(tag):a"), RedisArgument("\(tag):b"))
            try await client.send(SET(a, "10"))
            try await client.send(SET(b, "20"))
            let slot = HashSlot(key: tag)
            let source = try #require(try await cluster.primaryIndex(for: slot))
            let target = try #require(try await cluster.roles().primaries.first { $0 != source })
            // Half migrated: `a` on the target, `b` still on the source.
            let migration = try await SlotMigration.begin(slot, in: cluster, from: source, to: target)
            try await migration.migrate([a])
            let script = RedisScript("return redis.call('INCR', KEYS[1]) + redis.call('INCR', KEYS[2])")
            let finishing = Task {
                try await Task.sleep(for: .milliseconds(milliseconds))
                try await migration.migrate([b])
                try await migration.finish()
            }
            let confirmed = try await client.evaluate(
                script, keys: [a, b], arguments: [], confirming: ReplicaConfirmation(replicas: 1, timeout: .seconds(2)),
                barrier: RedisArgument("\(tag):barrier"), wrote: { _ in true })
            try await finishing.value
            #expect(confirmed.reply.int == 32)
            #expect(confirmed.isConfirmed)
            // It ran once: on the new owner, after the migration.
            #expect(try await client.send(GET(a)).map { String(decoding: $0, as: UTF8.self) } == "11")
            #expect(try await client.send(GET(b)).map { String(decoding: $0, as: UTF8.self) } == "21")
            #expect(try await cluster.primaryIndex(for: slot) == target)
        }
    }
}

import Foundation
import LocalRedis
import RedisClient
import StreamWorker
import TestSupport
import Testing

/// `WorkerConfiguration.replicaConfirmation`: a worker hands an entry to its handler only once
/// the replica has it, so that no effect follows an event a failover could still lose.
@Suite(.timeLimit(.minutes(2))) struct ReplicatedReadTests {
    @Test("with a replica confirmation, an entry read while the replica is stopped waits, pending, until the replica has it")
    func entriesWaitForTheReplica() async throws {
        try await withReplication { replication in
            let pool = try RedisConnectionPool(configuration: replication.configuration(0), maximumConnections: 4)
            let handled = Recorder<String>()
            var configuration = WorkerConfiguration(block: .milliseconds(200), lease: .seconds(30))
            configuration.replicaConfirmation = ReplicaConfirmation(replicas: 1, timeout: .milliseconds(200))
            let worker = RunningWorker(
                pool: pool, configuration: configuration,
                subscriptions: [Subscription(stream: "s", group: "g") { delivery in
                    handled.append(delivery.eventID)
                    return .done
                }])
            // Before: the replica runs, entries flow.
            let first = try await publish(pool, stream: "s", count: 3)
            #expect(await eventually { handled.all.count == 3 }, "\(handled.all)")

            replication.servers[1].signal(SIGSTOP)
            let held = try await publish(pool, stream: "s", count: 2)
            // Read (pending to the worker's consumer), yet no handler saw them: the reader waits
            // for the replica. 2 s after the read is long: a handler runs within milliseconds.
            #expect(await eventually { try await pendingCount(pool, stream: "s", group: "g") == 2 })
            let handledEarly = await eventually(timeout: .seconds(2)) { handled.all.count > 3 }
            #expect(!handledEarly, "a handler saw an entry the replica did not have: \(handled.all)")

            replication.servers[1].signal(SIGCONT)
            #expect(await eventually { handled.all.count == 5 }, "\(handled.all)")
            #expect(Set(handled.all) == Set(first + held))
            try await worker.stop()
            #expect(try await pendingCount(pool, stream: "s", group: "g") == 0)
            await pool.shutdown()
        }
    }
}

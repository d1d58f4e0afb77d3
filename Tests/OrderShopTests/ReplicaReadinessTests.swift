import Logging
import LocalRedis
@testable import OrderShop
import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

/// `--confirm-replicas N` at start-up: a process waits for N replicas, and says why it gives up
/// when the primary does not get them.
@Suite(.timeLimit(.minutes(2))) struct ReplicaReadinessTests {
    @Test("a primary with the replicas asked for passes; one with fewer makes the wait give up with what it has")
    func tooFewReplicas() async throws {
        try await withReplication { replication in
            try await replication.waitUntilReplicasAttached()
            let configuration = replication.configuration(0)
            let pool = try RedisConnectionPool(configuration: configuration, maximumConnections: 2)
            try await ReplicaReadiness.wait(
                for: ReplicaConfirmation(replicas: 1, timeout: .seconds(1)), client: pool, at: configuration, patience: .seconds(5), logger: testLogger)
            let error = await #expect(throws: ReplicasMissing.self) {
                try await ReplicaReadiness.wait(
                    for: ReplicaConfirmation(replicas: 2, timeout: .seconds(1)), client: pool, at: configuration, patience: .milliseconds(300),
                    poll: .milliseconds(50), logger: testLogger)
            }
            #expect(error?.description.contains("has 1 connected") == true, "\(String(describing: error))")
            #expect(error?.description.contains("Lower --confirm-replicas or add replicas") == true, "\(String(describing: error))")
            // The replica's own endpoint is not a primary.
            let replicaPool = try RedisConnectionPool(configuration: replication.configuration(1), maximumConnections: 2)
            let notPrimary = await #expect(throws: ReplicasMissing.self) {
                try await ReplicaReadiness.wait(
                    for: ReplicaConfirmation(replicas: 1, timeout: .seconds(1)), client: replicaPool, at: replication.configuration(1),
                    patience: .milliseconds(300), poll: .milliseconds(50), logger: testLogger)
            }
            #expect(notPrimary?.description.contains("is not a primary (role slave)") == true, "\(String(describing: notPrimary))")
            // Not "add replicas": the URL is wrong (a trial was told to lower --confirm-replicas).
            #expect(notPrimary?.description.contains("Point --url at the primary") == true, "\(String(describing: notPrimary))")
            await replicaPool.shutdown()
            await pool.shutdown()
        }
    }

    @Test("more replicas than confirm each write: a warning that a failover to one of the others loses 2xx writes")
    func moreReplicasThanConfirmations() async throws {
        try await withReplication(replicas: 2) { replication in
            try await replication.waitUntilReplicasAttached()
            let configuration = replication.configuration(0)
            let pool = try RedisConnectionPool(configuration: configuration, maximumConnections: 2)
            func warnings(confirming replicas: Int) async throws -> [String] {
                let lines = LogCapture()
                try await ReplicaReadiness.wait(
                    for: ReplicaConfirmation(replicas: replicas, timeout: .seconds(1)), client: pool, at: configuration, patience: .seconds(5),
                    logger: Logger(label: "capture") { _ in lines })
                return lines.messages.filter { $0.contains("loses it") }
            }
            let one = try await warnings(confirming: 1)
            #expect(one.count == 1 && one[0].contains("has 2 replicas") && one[0].contains("Set --confirm-replicas 2"), "\(one)")
            #expect(try await warnings(confirming: 2).isEmpty)
            await pool.shutdown()
        }
    }

    @Test("the wait lasts while the replica is detached and ends when it follows the primary again")
    func waitsForTheReplica() async throws {
        try await withReplication { replication in
            try await replication.waitUntilReplicasAttached()
            let configuration = replication.configuration(0)
            let pool = try RedisConnectionPool(configuration: configuration, maximumConnections: 2)
            _ = try await replication.send(RawCommand(["REPLICAOF", "NO", "ONE"]), to: 1)
            #expect(await eventually(timeout: .seconds(60)) { (try? await replication.replicationInfo(0))?["connected_slaves"] == "0" })
            let returned = Mutex(false)
            let waiting = Task {
                try await ReplicaReadiness.wait(
                    for: ReplicaConfirmation(replicas: 1, timeout: .seconds(1)), client: pool, at: configuration, patience: .seconds(60),
                    poll: .milliseconds(50), logger: testLogger)
                returned.withLock { $0 = true }
            }
            // Still waiting while no replica is connected (ten polls later).
            try await Task.sleep(for: .milliseconds(500))
            #expect(!returned.withLock { $0 })
            try await replication.follow(replication.servers[0].port, on: 1)
            try await waiting.value
            #expect(returned.withLock { $0 })
            #expect((try await replication.replicationInfo(0))["connected_slaves"] == "1")
            await pool.shutdown()
        }
    }

    @Test("`status` and `dlq list` at a replica print what they read and say on stderr that it is a replica's; at the primary they say nothing")
    func statusNamesAReplica() async throws {
        try await withReplication { replication in
            try await replication.waitUntilReplicasAttached()
            let ordershop = try builtProduct("ordershop")
            let atReplica = try await runChild(ordershop, ["status", "--url", replication.servers[1].url])
            #expect(atReplica.status == 0, "\(atReplica.output)")
            #expect(atReplica.output.contains("answers as a replica") && atReplica.output.contains("may lag the primary"), "\(atReplica.output)")
            let atPrimary = try await runChild(ordershop, ["status", "--url", replication.servers[0].url])
            #expect(atPrimary.status == 0 && !atPrimary.output.contains("replica"), "\(atPrimary.output)")

            // `dlq list` too: a replica's dead letters, said to be (a trial found them listed without a word).
            let primary = try RedisConnectionPool(configuration: replication.configuration(0), maximumConnections: 1)
            let stream = EntityType.customer.stream(.created)
            _ = try await primary.send(XGROUPCREATE(RedisArgument(stream), group: "crm", id: "$", makeStream: true))
            _ = try await primary.send(WAIT(replicas: 1, timeout: .seconds(5)))
            await primary.shutdown()
            let listAtReplica = try await runChild(ordershop, ["dlq", "list", stream, "crm", "--url", replication.servers[1].url])
            #expect(listAtReplica.status == 0 && listAtReplica.output.contains("answers as a replica") && listAtReplica.output.contains("these dead letters are its own"), "\(listAtReplica.output)")
            let listAtPrimary = try await runChild(ordershop, ["dlq", "list", stream, "crm", "--url", replication.servers[0].url])
            #expect(listAtPrimary.status == 0 && !listAtPrimary.output.contains("replica"), "\(listAtPrimary.output)")
        }
    }

    @Test("operations commands that write, aimed at a replica, say so and where to point them; not Redis's bare READONLY with the script's sha, nor 'run it again'")
    func writingOperationsAtAReplicaSayWhatToDo() async throws {
        try await withReplication { replication in
            let primary = try RedisConnectionPool(configuration: replication.configuration(0), maximumConnections: 1)
            // A group with a dead letter, on the replica too.
            let stream = EntityType.customer.stream(.created)
            _ = try await primary.send(XGROUPCREATE(RedisArgument(stream), group: "crm", id: "$", makeStream: true))
            let letter = [StreamField("event_id", "e-1"), StreamField("dlq.original_id", "1-1"), StreamField("dlq.reason", "test")]
            _ = try await primary.send(XADD(RedisArgument(StreamKeys.deadLetter(stream: EntityType.customer.stream(.created), group: "crm")), fields: letter))
            try await replication.waitUntilReplicasAttached()
            _ = try await primary.send(WAIT(replicas: 1, timeout: .seconds(5)))
            let ordershop = try builtProduct("ordershop")
            let url = replication.servers[1].url
            for arguments in [["rebuild", "customer"], ["snapshot", "customer"], ["dlq", "replay", EntityType.customer.stream(.created), "crm"], ["dlq", "purge", EntityType.customer.stream(.created), "crm"]] {
                let run = try await runChild(ordershop, arguments + ["--url", url])
                #expect(run.status != 0, "\(arguments): \(run.output)")
                #expect(run.output.contains("answers as a replica: it wrote nothing; point --url or REDIS_URL at the primary"), "\(arguments): \(run.output)")
                #expect(!run.output.contains("@user_script") && !run.output.contains("not applied; run it again") && !run.output.contains("READONLY: READONLY"), "\(arguments): \(run.output)")
            }
            await primary.shutdown()
        }
    }
}

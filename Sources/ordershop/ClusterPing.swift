import Foundation
import RedisClient

/// `ordershop ping` against a Redis Cluster: every node of every shard, with its role, slot
/// ranges, TLS details and round trip, each reached with the client's own per-node settings.
enum ClusterPing {
    static func run(_ config: RedisConfiguration) async throws {
        var clusterConfig = try RedisClusterConfiguration(config)
        clusterConfig.retryWindow = .zero
        let client = try await RedisNodePools.discovered(clusterConfig)
        let shards = client.shards
        // Shards that serve slots: Redis 7.0 lists a primary its replica replaced as a shard of
        // its own, without slots, and ping counted it ("4 shards" on a 3-shard cluster: a
        // user-style trial). Such a node is listed below, as down.
        let serving = shards.filter { !$0.slots.isEmpty }.count
        let apart = shards.count - serving
        let others = apart == 0 ? "" : ", and \(apart) node group\(apart == 1 ? "" : "s") without slots"
        print("endpoint: \(config.redactedDescription) (Redis Cluster, \(serving) shards\(others), seeds: \(clusterConfig.seeds.map(\.description).joined(separator: ", ")))")
        var failures = 0
        var knownDown = 0
        for shard in shards.sorted(by: { ($0.slots.first?.lowerBound ?? 0) < ($1.slots.first?.lowerBound ?? 0) }) {
            let slots = shard.slots.map(\.description).joined(separator: ",")
            let count = shard.slots.reduce(0) { $0 + $1.count }
            for node in shard.nodes.sorted(by: { $0.role == .primary && $1.role != .primary }) {
                guard let address = client.address(of: node) else { continue }
                let role = node.role == .primary ? "primary" : "replica"
                var line = "  \(address.description.padding(toLength: 22, withPad: " ", startingAt: 0)) \(role.padding(toLength: 8, withPad: " ", startingAt: 0))"
                // A node without slots (a dead primary replaced, still listed) printed "slots  (0)".
                let served = slots.isEmpty ? "no slots" : "slots \(slots)"
                line += node.role == .primary ? " \(served) (\(count))" : " of \(served)"
                if let hostname = node.hostname { line += ", announced as \(hostname)" }
                if node.health != "online" { line += ", health \(node.health)" }
                do {
                    let (rtt, tls, version) = try await probe(clusterConfig.configuration(for: address))
                    line += ", redis \(version)"
                    line += tls.map { ", \($0.protocolVersion) \($0.cipher)" } ?? ", tls off"
                    line += String(format: ", rtt %.3f ms", Double(rtt.components.attoseconds) / 1e15 + Double(rtt.components.seconds) * 1e3)
                } catch let error as RedisError {
                    // A node the cluster itself marks failed that serves no slots (a replica, or
                    // a primary replaced by its replica, listed until CLUSTER FORGET) is shown but
                    // fails nothing: after any failover ping exited 1 until someone forgot the
                    // dead node (a user-style trial). A node that serves slots, or one the
                    // cluster thinks online, not answering here is a failure.
                    // (Redis 7.2 and Valkey list a replaced primary in its successor's shard:
                    // not the shard's primary there.)
                    if node.health == "fail" && (node.role == .replica || shard.slots.isEmpty || node.id != shard.primary?.id) {
                        knownDown += 1
                        line += ", down (the cluster marks it failed too\(node.role == .primary ? "; it serves no slots now: CLUSTER FORGET removes it" : "")): \(PingCommand.reason(error))"
                    } else {
                        failures += 1
                        line += ", FAILED: \(PingCommand.reason(error))"
                    }
                }
                print(line)
            }
        }
        if knownDown > 0 { FileHandle.standardError.write(Data("note: \(knownDown) node(s) the cluster marks failed did not answer; no slot depends on them\n".utf8)) }
        if failures > 0 { throw CleanExit.message("ping failed: \(failures) cluster node(s) did not answer", exitCode: 1) }
    }

    private static func probe(_ config: RedisConfiguration) async throws -> (Duration, TLSDetails?, String) {
        let connection = try RedisConnection(configuration: config)
        try await connection.connect()
        let started = ContinuousClock.now
        _ = try await connection.send(PING())
        let rtt = ContinuousClock.now - started
        let info = try await connection.send(INFO(section: "server"))
        let tls = await connection.tlsDetails
        await connection.close()
        return (rtt, tls, info["redis_version"] ?? "unknown")
    }
}

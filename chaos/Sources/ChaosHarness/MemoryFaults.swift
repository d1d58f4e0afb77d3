import Foundation
import LocalRedis
import RedisClient

/// Redis full: every primary's `maxmemory` is set below what it holds (it runs with
/// `noeviction`, which the shop requires), so it refuses every write that may grow memory, then
/// the limit is lifted. The services must answer 503 "did not run" (or, for an order change
/// whose stock was reserved, "not made") and mean it; the workers must keep their entries
/// pending and apply each once when Redis has room again.
extension Topology {
    public func fillRedis(for seconds: Double) async throws -> String {
        let servers: [LocalRedisServer]
        if let cluster {
            servers = try await cluster.roles().primaries.map { cluster.nodes[$0] }
        } else if let replication {
            servers = [replication.servers[replication.primaryIndex]]
        } else {
            servers = [redis]
        }
        func setMaxmemory(_ value: String) async throws {
            for server in servers {
                let pool = try RedisConnectionPool(configuration: server.configuration, maximumConnections: 1)
                defer { Task { await pool.shutdown() } }
                _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory", RedisArgument(value)], keys: []))
            }
        }
        try await setMaxmemory("1")
        // Lifted whatever happens meanwhile: a run left with a full Redis would fail its drain.
        await pause(seconds: seconds)
        var lifted = false
        for attempt in 1...20 {
            do {
                try await setMaxmemory("0")
                lifted = true
                break
            } catch {
                logger.warning("lifting maxmemory failed (attempt \(attempt)): \(error)")
                await pause(seconds: 0.5)
            }
        }
        guard lifted else { throw ChaosError("maxmemory could not be lifted again") }
        return "maxmemory below use on :\(servers.map { "\($0.port)" }.joined(separator: ", :")) for \(String(format: "%.1f", seconds)) s (noeviction: writes refused)"
    }
}

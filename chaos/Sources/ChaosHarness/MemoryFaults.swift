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
        /// Sets `value` on each server; the servers it could not set.
        func setMaxmemory(_ value: String, on servers: [LocalRedisServer]) async -> [LocalRedisServer] {
            var failed: [LocalRedisServer] = []
            for server in servers {
                do {
                    let pool = try RedisConnectionPool(configuration: server.configuration, maximumConnections: 1)
                    do {
                        _ = try await pool.send(RawCommand(["CONFIG", "SET", "maxmemory", RedisArgument(value)], keys: []))
                    } catch {
                        failed.append(server)
                    }
                    await pool.shutdown()
                } catch {
                    failed.append(server)
                }
            }
            return failed
        }
        let unset = await setMaxmemory("1", on: servers)
        // Lifted on every server whatever happens meanwhile (a server not limited, a cancelled
        // run: the lift runs in a task of its own), as a run left with a full Redis would fail
        // its drain for no fault of the shop's.
        await pause(seconds: seconds)
        let lift = Task {
            var left = servers
            for _ in 1...20 where !left.isEmpty {
                left = await setMaxmemory("0", on: left)
                if !left.isEmpty { await pause(seconds: 0.5) }
            }
            return left
        }
        let stuck = await lift.value
        guard stuck.isEmpty else { throw ChaosError("maxmemory could not be lifted again on :\(stuck.map { "\($0.port)" }.joined(separator: ", :"))") }
        guard unset.count < servers.count else { throw ChaosError("maxmemory could not be set on any primary") }
        // Only the servers it was set on: the note named every primary, also one it failed on.
        let limited = servers.filter { server in !unset.contains { $0.port == server.port } }
        return "maxmemory below use on :\(limited.map { "\($0.port)" }.joined(separator: ", :")) for \(String(format: "%.1f", seconds)) s (noeviction: writes refused)"
    }
}

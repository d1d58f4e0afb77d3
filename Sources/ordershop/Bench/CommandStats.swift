import Foundation
import RedisClient

/// What a Redis server spent on each command (`INFO commandstats`: calls and microseconds per
/// command), to say where a drain's Redis CPU went: how many calls of each command per event,
/// and what each call cost.
///
/// Commands a script runs (`redis.call` inside EVALSHA) are counted under their own names as
/// well as inside the EVALSHA's time: the settle script's XPENDING, HMGET, HSET, PEXPIREAT,
/// UNLINK and XACK are part of `evalsha`, not on top of it.
struct CommandStats: Sendable {
    struct Command: Sendable {
        var calls: Int = 0
        var usec: Int = 0
    }

    /// By command name as Redis reports it (`xreadgroup`, `xinfo|groups`, `evalsha`).
    var commands: [String: Command] = [:]

    /// The stats of an `INFO commandstats` reply (`cmdstat_<name>:calls=N,usec=N,...`).
    init(info: [String: String]) {
        for (key, value) in info where key.hasPrefix("cmdstat_") {
            var command = Command()
            for field in value.split(separator: ",") {
                let pair = field.split(separator: "=", maxSplits: 1)
                guard pair.count == 2, let n = Int(pair[1]) else { continue }
                if pair[0] == "calls" { command.calls = n }
                if pair[0] == "usec" { command.usec = n }
            }
            commands[String(key.dropFirst("cmdstat_".count))] = command
        }
    }

    init() {}

    /// What was spent between `earlier` and this snapshot, commands without calls left out.
    func since(_ earlier: CommandStats) -> CommandStats {
        var out = CommandStats()
        for (name, now) in commands {
            let before = earlier.commands[name] ?? Command()
            let delta = Command(calls: now.calls - before.calls, usec: now.usec - before.usec)
            if delta.calls > 0 { out.commands[name] = delta }
        }
        return out
    }

    /// The sum of several servers' stats (a cluster's primaries).
    static func sum(_ all: [CommandStats]) -> CommandStats {
        var out = CommandStats()
        for stats in all {
            for (name, c) in stats.commands {
                out.commands[name, default: Command()].calls += c.calls
                out.commands[name, default: Command()].usec += c.usec
            }
        }
        return out
    }

    /// One server's stats right now.
    static func snapshot(_ connection: RedisConnection) async throws -> CommandStats {
        CommandStats(info: try await connection.send(INFO(section: "commandstats")))
    }

    /// Each primary's stats right now, keyed by address.
    static func snapshot(_ client: RedisClusterClient) async throws -> [ClusterNodeAddress: CommandStats] {
        var out: [ClusterNodeAddress: CommandStats] = [:]
        for (address, result) in try await client.sendToAllPrimaries(INFO(section: "commandstats")) {
            out[address] = CommandStats(info: try result.get())
        }
        return out
    }
}

import Foundation
import RedisClient

/// CPU seconds spent, to say what bounds a benchmark: the client's own process, the peer
/// (a child that has exited), and the Redis servers (`INFO cpu`).
enum CPUAccounting {
    /// User + system CPU seconds of this process so far (all its threads).
    static var ownSeconds: Double { seconds(RUSAGE_SELF.rawValue) }

    /// User + system CPU seconds of this process's children that have exited and been waited for.
    static var exitedChildrenSeconds: Double { seconds(RUSAGE_CHILDREN.rawValue) }

    private static func seconds(_ who: Int32) -> Double {
        var usage = rusage()
        getrusage(who, &usage)
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    /// Each primary's `used_cpu_user + used_cpu_sys` (seconds), keyed by address.
    static func serverSeconds(_ client: RedisClusterClient) async throws -> [ClusterNodeAddress: Double] {
        var out: [ClusterNodeAddress: Double] = [:]
        for (address, result) in try await client.sendToAllPrimaries(INFO(section: "cpu")) {
            out[address] = usedCPU(try result.get())
        }
        return out
    }

    /// `used_cpu_user + used_cpu_sys` of an `INFO cpu` reply, in seconds.
    static func usedCPU(_ info: [String: String]) -> Double {
        (Double(info["used_cpu_user"] ?? "") ?? 0) + (Double(info["used_cpu_sys"] ?? "") ?? 0)
    }
}

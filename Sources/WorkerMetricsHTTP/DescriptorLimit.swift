#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's limit on open file descriptors (`RLIMIT_NOFILE`).
///
/// Why raise it: most shells start programs with a soft limit of 1,024 and a much larger hard
/// limit (systemd's default hard limit is 524,288), and each server's connection ceiling follows
/// the soft limit (``HTTPServerLimits/maximumConnections(forDescriptorLimit:)``: 64 at 1,024).
/// The `ordershop` executable raises the soft limit to the hard one at start, as Go's runtime and
/// nginx's `worker_rlimit_nofile` do; only a privileged process could go past the hard limit,
/// and none is asked to.
public enum DescriptorLimit {
    #if canImport(Glibc)
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resource = RLIMIT_NOFILE
    #endif

    /// The soft and hard limits now; nil when they cannot be read.
    public static var current: (soft: Int, hard: Int)? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        return (clamped(limit.rlim_cur), clamped(limit.rlim_max))
    }

    /// RLIM_INFINITY is the largest value: clamped.
    private static func clamped(_ value: rlim_t) -> Int { Int(clamping: min(value, 1 << 30)) }

    /// Sets the soft limit to the hard limit. Returns the soft limit before and after (equal when
    /// it was there already or the system refused: the process then goes on with what it has).
    @discardableResult
    public static func raiseSoftLimitToHard() -> (before: Int, after: Int)? {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let before = clamped(limit.rlim_cur)
        guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
        limit.rlim_cur = limit.rlim_max
        if setrlimit(resource, &limit) != 0 {
            // macOS refuses a soft limit above OPEN_MAX (10,240) when the hard one is unlimited,
            // as launchd's is (Go's runtime caps it the same way).
            limit.rlim_cur = min(limit.rlim_max, 10_240)
            guard limit.rlim_cur > rlim_t(before), setrlimit(resource, &limit) == 0 else { return (before, before) }
        }
        return (before, clamped(limit.rlim_cur))
    }
}

import Foundation

/// The kinds of fault a run injects; each can be switched off.
public enum FaultKind: String, CaseIterable, Codable, Sendable, Comparable {
    /// SIGKILL a worker, restart it after a random delay.
    case kill
    /// SIGSTOP a worker for longer than its lease, then SIGCONT: a zombie that must not settle.
    case pause
    /// SIGTERM a worker (graceful drain), restart it after a random delay.
    case term
    /// SIGKILL redis-server (AOF, appendfsync always) and restart it.
    case redis
    /// The proxy resets every worker connection to Redis.
    case reset
    /// The proxy stops forwarding for longer than the clients' command timeouts.
    case stall
    /// The proxy delays every chunk in both directions.
    case latency
    /// A malformed event is written straight into a stream the workers read.
    case malformed

    public static func < (a: FaultKind, b: FaultKind) -> Bool { a.rawValue < b.rawValue }
}

/// A deliberate defect passed to the workers, to show the checker catching it.
public enum PlantedBugOption: String, CaseIterable, Codable, Sendable {
    /// Workers acknowledge entries as soon as they read them (a crash loses them).
    case ackBeforeHandling = "ack-before-handling"
    /// Workers settle without idempotency markers and send mails with a random key.
    case noIdempotency = "no-idempotency"
}

/// Everything a chaos run is configured with.
public struct ChaosOptions: Sendable, Codable {
    /// Seconds of load (faults happen within it).
    public var duration: Double = 90
    public var seed: UInt64 = 20_261_127
    /// The `ordershop` executable.
    public var ordershop: String = "ordershop"
    public var reportDirectory: String = "chaos-report"
    /// Worker processes per kind (crm, billing).
    public var workersPerKind: Int = 3
    /// Concurrent HTTP clients.
    public var clients: Int = 6
    /// The workers' lease (seconds); a pause lasts at least twice this.
    public var leaseSeconds: Double = 3
    public var faults: Set<FaultKind> = Set(FaultKind.allCases)
    /// Seconds between faults, on average.
    public var meanFaultInterval: Double = 5
    /// The longest wait for every group to drain after the load.
    public var drainTimeout: Double = 300
    /// HTTP timeout of one command (an answer later than this is an unknown outcome).
    public var requestTimeout: Double = 20
    public var plantedBug: PlantedBugOption?
    /// Keep the Redis data and logs after a passing run.
    public var keepData: Bool = false

    public init() {}
}

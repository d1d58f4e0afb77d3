import Foundation
import Logging
import RedisClient
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Makes a stable consumer name exclusive to one process. Redis knows a consumer only by its
/// name, so two processes started with the same name are one consumer to it: the settle's owner
/// check passes for both, and one re-reads (its pending re-read at start) entries the other is
/// still handling. Generated names are unique and need no lock.
///
/// The lock is one key, `consumer-lock:<stream>:<group>:<consumer>`, in the slot of the
/// worker's first subscription (beside that stream, through its `{tag}`), holding a token that
/// names this process (`host=<host> pid=<pid> id=<random>`), set with `NX PX <lease>`. As a
/// `Service` it takes the lock (or fails, naming the holder), calls `acquired`, refreshes it
/// every third of the lease, and deletes it on graceful shutdown, after the services listed
/// after it in the group (the worker) have drained. A lease that lapsed (the process was paused,
/// or Redis restarted) is taken again when nobody else took it; if another process holds it by
/// then, this one fails (``Lost``) and its process ends.
///
/// A holder on this host whose pid is no longer alive (killed with SIGKILL, no release; or a
/// zombie its parent has not reaped yet) or is this process's own pid (a container restarted as
/// pid 1 again) is a previous incarnation: its lock is taken over at once instead of waiting out
/// the lease.
public struct ConsumerNameLock: Service, Sendable {
    /// The name is taken by another live process.
    public struct Held: Error, CustomStringConvertible {
        public var consumer: String
        public var group: String
        public var key: String
        public var holder: String
        public var description: String {
            "consumer name '\(consumer)' of group '\(group)' is in use by the process \(holder) (lock \(key)); "
                + "start this one with another --consumer, or once that process has stopped"
        }
    }

    /// The lease lapsed and another process took the name meanwhile.
    public struct Lost: Error, CustomStringConvertible {
        public var consumer: String
        public var holder: String
        public var description: String {
            "consumer name '\(consumer)' was taken over by the process \(holder) while this one did not refresh its lease; stopping"
        }
    }

    public let key: String
    public let token: String
    public let consumer: String
    public let group: String
    private let lease: Duration
    private let pool: any RedisClientProtocol
    private let logger: Logger
    private let acquired: @Sendable () -> Void

    /// - Parameters:
    ///   - stream, group: the first subscription's (the key lives in that stream's slot).
    ///   - acquired: called once the lock is held (open the worker's start gate there).
    public init(
        stream: String, group: String, consumer: String, lease: Duration, pool: any RedisClientProtocol, logger: Logger,
        acquired: @escaping @Sendable () -> Void = {}
    ) {
        self.key = "consumer-lock:\(stream):\(group):\(consumer)"
        self.token = "host=\(Self.host) pid=\(getpid()) id=\(UUID().uuidString.prefix(8).lowercased())"
        self.consumer = consumer
        self.group = group
        self.lease = lease
        self.pool = pool
        self.logger = logger
        self.acquired = acquired
    }

    public func run() async throws {
        try await acquireWaitingOutPassingErrors()
        acquired()
        do {
            try await cancelWhenGracefulShutdown { try await keepRefreshed() }
        } catch is CancellationError where Task.isShuttingDownGracefully {
        }
        // On graceful shutdown: the services after this one have drained. On cancellation (a
        // second signal) the delete may not get through; the lease then lapses.
        try? await release()
    }

    /// 100 ms doubling to 2 s, jittered.
    private static let retryBackoff = Backoff(initial: .milliseconds(100), maximum: .seconds(2))

    /// ``acquire()``, again after ``retryBackoff`` while Redis fails for a reason that passes (out
    /// of memory, loading, failing over, a lost connection), logged once; ``Held`` and any other
    /// error end it. Why: a worker restarted into a 4.7-s `redis-full` fault exited 1 at the
    /// lock's SET (OOM), which nothing but the lock would have waited out (a CI chaos run,
    /// replicated, seed 20261128). Cancellation ends the wait.
    func acquireWaitingOutPassingErrors() async throws {
        var attempt = 0
        while true {
            do {
                try await acquire()
                if attempt > 0 { logger.info("consumer name lock \(key) taken after \(attempt) retries") }
                return
            } catch let error where FailureKind(error).isRetryable {
                attempt += 1
                if attempt == 1 { logger.warning("consumer name lock \(key) not taken yet, retrying: \(error)") }
                try await Task.sleep(for: Self.retryBackoff.delay(attempt: attempt))
            }
        }
    }

    /// Takes the lock, or throws ``Held`` naming the process that has it.
    public func acquire() async throws {
        for _ in 0..<3 {
            let set = try await pool.send(RawCommand(["SET", RedisArgument(key), RedisArgument(token), "NX", "PX", RedisArgument(Self.milliseconds(lease))], keys: [RedisArgument(key)]))
            if set.string == "OK" { return }
            guard let holder = try await pool.send(RawCommand(["GET", RedisArgument(key)], keys: [RedisArgument(key)], readOnly: true)).string else { continue }  // lapsed just now
            guard Self.isPreviousIncarnation(holder) else { throw Held(consumer: consumer, group: group, key: key, holder: holder) }
            logger.info("taking over consumer name '\(consumer)' from \(holder), an earlier process on this host that is gone")
            _ = try await pool.evaluate(
                Self.takeOverScript, keys: [RedisArgument(key)],
                arguments: [RedisArgument(holder), RedisArgument(token), RedisArgument(Self.milliseconds(lease))])
            if try await pool.send(RawCommand(["GET", RedisArgument(key)], keys: [RedisArgument(key)], readOnly: true)).string == token { return }
        }
        throw Held(consumer: consumer, group: group, key: key, holder: (try? await pool.send(RawCommand(["GET", RedisArgument(key)], keys: [RedisArgument(key)], readOnly: true)).string) ?? "unknown")
    }

    /// Refreshes the lease every third of it until cancelled; throws ``Lost`` when another process
    /// holds the key. A Redis error is logged and retried at the next beat (the lease has two more).
    func keepRefreshed() async throws {
        while true {
            try await Task.sleep(for: lease / 3)
            let reply: RESPValue
            do {
                reply = try await pool.evaluate(
                    Self.refreshScript, keys: [RedisArgument(key)], arguments: [RedisArgument(token), RedisArgument(Self.milliseconds(lease))])
            } catch let error where !Task.isCancelled {
                logger.warning("consumer name lock \(key) not refreshed: \(error)")
                continue
            }
            if let holder = reply.string, holder != "OK" { throw Lost(consumer: consumer, holder: holder) }
        }
    }

    /// Deletes the key if this process still holds it.
    public func release() async throws {
        _ = try await pool.evaluate(Self.releaseScript, keys: [RedisArgument(key)], arguments: [RedisArgument(token)])
    }

    /// Whether a holder's token names a process of this host that is gone (or this pid, reused).
    static func isPreviousIncarnation(_ holder: String) -> Bool {
        var fields: [Substring: Substring] = [:]
        for part in holder.split(separator: " ") {
            let kv = part.split(separator: "=", maxSplits: 1)
            if kv.count == 2 { fields[kv[0]] = kv[1] }
        }
        guard fields["host"].map(String.init) == Self.host, let pid = fields["pid"].flatMap({ Int32($0) }), pid > 0 else { return false }
        return pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) || Self.isZombie(pid)
    }

    /// Whether `pid` has exited and waits to be reaped by its parent: it holds nothing, but
    /// `kill(pid, 0)` still succeeds (a trial: a worker SIGKILLed under a parent that had
    /// exited could not be restarted under its name until the zombie was reaped). Linux's
    /// `/proc/<pid>/stat`, whose state follows the parenthesised command name; false elsewhere.
    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].drop { $0 == " " }.first == "Z"
    }

    static let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "host"

    static func milliseconds(_ d: Duration) -> Int64 {
        max(1, d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000)
    }

    /// KEYS: lock. ARGV: token, lease ms. Refreshes our lock, takes it again if it lapsed;
    /// returns OK, or the other holder's token.
    static let refreshScript = RedisScript(
        """
        local v = redis.call('GET', KEYS[1])
        if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return {ok = 'OK'} end
        if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return {ok = 'OK'} end
        return v
        """)

    /// KEYS: lock. ARGV: the gone holder's token, ours, lease ms. Replaces exactly that holder.
    static let takeOverScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
        return 0
        """)

    /// KEYS: lock. ARGV: token. Deletes it only while it is ours.
    static let releaseScript = RedisScript(
        """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """)
}

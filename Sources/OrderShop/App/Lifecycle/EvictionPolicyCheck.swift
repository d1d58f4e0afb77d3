import Logging
import RedisClient
import StreamWorker

/// Redis's `maxmemory-policy`, read once a process's Redis answers: a server that may evict keys
/// cannot keep OrderShop's guarantees, so a process that would use one says so in one line and
/// exits non-zero.
///
/// Why: under memory pressure an evicting server deletes keys and tells no one. `volatile-*`
/// (the default of ElastiCache, Memorystore, Azure Cache for Redis and Azure Managed Redis:
/// volatile-lru) deletes keys that have an expiry, which are exactly the records that make a
/// second delivery harmless: the workers' idempotency markers (an event handled again after a
/// crash or a reclaim is applied twice), the records of keyed creates (a retry makes the
/// entities again), msg's send-once markers (a mail goes twice), an order change's decision
/// (a stalled second step could commit after its stock went back) and the consumer-name locks. `allkeys-*` deletes any key: events,
/// entities, consumer groups. `noeviction` refuses writes instead ("OOM command not allowed"),
/// which the services answer 503 "did not run" and the workers retry: nothing is lost or doubled.
///
/// Read with `INFO memory` (the handshake's `+info` in deploy/redis/users.acl; managed services
/// that refuse `CONFIG GET` answer it), on every primary of a cluster, once at start: a policy
/// changed later, or a promoted replica's own, shows in `ordershop status` and the dashboard
/// ("EVICTS KEYS"). A server that does not say (INFO refused, a proxy that hides it, a node
/// that does not answer) is let through with a warning: the process cannot tell, and refusing
/// would stop shops on Redis that cannot be asked.
public enum EvictionPolicyCheck {
    /// What one primary answered.
    public struct Reading: Sendable {
        /// Where, as the operator named it or as the cluster announces it.
        public var node: String
        /// Its memory, policy and limit (nil when INFO lacks them), or why they could not be read.
        public var answer: Result<OperationsSnapshot.NodeMemory?, RedisError>
    }

    /// Whether a server with this policy may delete keys on its own.
    public static func evicts(_ policy: String) -> Bool { policy != "noeviction" }

    /// What a policy's evictions would break, for the refusal's line.
    static func consequence(of policy: String) -> String {
        if policy.hasPrefix("volatile-") {
            return "under memory pressure it deletes keys that expire: the workers' idempotency markers, keyed creates' records, msg's send-once markers and order changes' decisions, so events would be applied twice and mails sent twice"
        }
        return "under memory pressure it deletes any key: events, entities and consumer groups would be lost"
    }

    /// Each primary's policy (one server: the one).
    public static func readings(_ client: any RedisClientProtocol, at configuration: RedisConfiguration) async -> [Reading] {
        let command = INFO(section: "memory")
        // Read as `status` and the dashboard read it.
        func answer(_ info: [String: String]) -> OperationsSnapshot.NodeMemory? { OperationsSnapshot.NodeMemory(node: nil, info: info) }
        func failure(_ error: any Error) -> RedisError { (error as? RedisError) ?? RedisError(.io, "\(error)") }
        if let cluster = client as? RedisClusterClient {
            do {
                return try await cluster.sendToAllPrimaries(command).map { address, result in
                    Reading(node: "\(address)", answer: result.map(answer))
                }.sorted { $0.node < $1.node }
            } catch {
                return [Reading(node: configuration.redactedDescription, answer: .failure(failure(error)))]
            }
        }
        do {
            return [Reading(node: configuration.redactedDescription, answer: .success(answer(try await client.send(command))))]
        } catch {
            return [Reading(node: configuration.redactedDescription, answer: .failure(failure(error)))]
        }
    }

    /// Throws ``RedisUnusable`` when a primary's policy may evict keys. A server that does not
    /// say, refuses INFO or does not answer is logged as a warning and let through.
    public static func check(_ client: any RedisClientProtocol, at configuration: RedisConfiguration, logger: Logger) async throws {
        try check(await readings(client, at: configuration), cluster: client is RedisClusterClient, at: configuration, logger: logger)
    }

    /// ``check(_:at:logger:)`` for at most `patience`: `up` asks before anything listens, and a
    /// Redis that is not there yet is not waited for there (each worker asks again once it answers).
    public static func check(
        _ client: any RedisClientProtocol, at configuration: RedisConfiguration, within patience: Duration, logger: Logger
    ) async throws {
        let read: [Reading]? = await first(of: { await Self.readings(client, at: configuration) }, orAt: .now + patience, else: nil)
        guard let read else { return }
        try check(read, cluster: client is RedisClusterClient, at: configuration, logger: logger)
    }

    static func check(_ readings: [Reading], cluster: Bool, at configuration: RedisConfiguration, logger: Logger) throws {
        let unknown = "make sure it is noeviction, or events may be lost or applied twice under memory pressure"
        for reading in readings {
            let memory: OperationsSnapshot.NodeMemory
            switch reading.answer {
            case .success(let said?):
                memory = said
            case .success(nil):
                logger.warning("Redis does not say its maxmemory-policy: \(unknown)", metadata: ["redis": "\(reading.node)"])
                continue
            case .failure(let error):
                // Refused (an ACL without INFO), or not answering now (a primary failing over,
                // a proxy that closes on INFO): said, not silently skipped (a review).
                logger.warning(
                    "cannot read Redis's maxmemory-policy: \(unknown)", metadata: ["redis": "\(reading.node)", "error": "\(error.message)"])
                continue
            }
            let policy = memory.policy
            guard evicts(policy) else { continue }
            let limit = memory.maximum == 0 ? " (its maxmemory is 0 now: the policy acts as soon as one is set)" : ""
            throw RedisUnusable(
                redis: configuration.redactedDescription,
                error: RedisError(
                    .invalidConfiguration,
                    "\(cluster ? "its node \(reading.node)" : "it") has maxmemory-policy \(policy)\(limit): \(consequence(of: policy)); set maxmemory-policy noeviction (ElastiCache: a parameter group of your own; Azure Cache for Redis: Advanced settings; Azure Managed Redis: the database's eviction policy, NoEviction; Redis Cloud: data eviction policy \"No eviction\"; self-managed: CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
                ))
        }
    }
}

import Logging
import RedisClient

/// Redis's `maxmemory-policy`, read once a process's Redis answers: a server that may evict keys
/// cannot keep OrderShop's guarantees, so a process that would use one says so in one line and
/// exits non-zero.
///
/// Why: under memory pressure an evicting server deletes keys and tells no one. `volatile-*`
/// (the default of ElastiCache's and Azure Cache for Redis's parameter sets: volatile-lru)
/// deletes keys that have an expiry, which are exactly the records that make a second delivery
/// harmless: the workers' idempotency markers (an event handled again after a crash or a
/// reclaim is applied twice), the records of keyed creates (a retry makes the entities again)
/// and msg's send-once markers (a mail goes twice). `allkeys-*` deletes any key: events,
/// entities, consumer groups. `noeviction` refuses writes instead ("OOM command not allowed"),
/// which the services answer 503 "did not run" and the workers retry: nothing is lost or doubled.
///
/// Read with `INFO memory` (the handshake's `+info` in deploy/redis/users.acl; managed services
/// that refuse `CONFIG GET` answer it), on every primary of a cluster. A server that does not
/// say (INFO refused, a proxy that hides it) is let through with a warning: the process cannot
/// tell, and refusing would stop shops on Redis that cannot be asked.
public enum EvictionPolicyCheck {
    /// What one primary answered.
    public struct Reading: Sendable {
        /// Where, as the operator named it or as the cluster announces it.
        public var node: String
        /// `maxmemory_policy`, or why it could not be read.
        public var policy: Result<String?, RedisError>
    }

    /// Whether a server with this policy may delete keys on its own.
    public static func evicts(_ policy: String) -> Bool { policy != "noeviction" }

    /// What a policy's evictions would break, for the refusal's line.
    static func consequence(of policy: String) -> String {
        if policy.hasPrefix("volatile-") {
            return "under memory pressure it deletes keys that expire: the workers' idempotency markers, keyed creates' records and msg's send-once markers, so events would be applied twice and mails sent twice"
        }
        return "under memory pressure it deletes any key: events, entities and consumer groups would be lost"
    }

    /// Each primary's policy (one server: the one).
    public static func readings(_ client: any RedisClientProtocol, at configuration: RedisConfiguration) async -> [Reading] {
        let command = INFO(section: "memory")
        if let cluster = client as? RedisClusterClient {
            do {
                return try await cluster.sendToAllPrimaries(command).map { address, result in
                    Reading(node: "\(address)", policy: result.map { $0["maxmemory_policy"] })
                }.sorted { $0.node < $1.node }
            } catch {
                return [Reading(node: configuration.redactedDescription, policy: .failure((error as? RedisError) ?? RedisError(.io, "\(error)")))]
            }
        }
        let policy: Result<String?, RedisError>
        do {
            policy = .success(try await client.send(command)["maxmemory_policy"])
        } catch {
            policy = .failure((error as? RedisError) ?? RedisError(.io, "\(error)"))
        }
        return [Reading(node: configuration.redactedDescription, policy: policy)]
    }

    /// Throws ``RedisUnusable`` when a primary's policy may evict keys. A server that does not
    /// say, or refuses INFO, is logged as a warning and let through; an error on the way (a lost
    /// connection) is left to the process's own handling of Redis.
    public static func check(_ client: any RedisClientProtocol, at configuration: RedisConfiguration, logger: Logger) async throws {
        for reading in await readings(client, at: configuration) {
            let policy: String
            switch reading.policy {
            case .success(let said?):
                policy = said
            case .success(nil):
                logger.warning(
                    "Redis does not say its maxmemory-policy: make sure it is noeviction, or events may be lost or applied twice under memory pressure",
                    metadata: ["redis": "\(reading.node)"])
                continue
            case .failure(let error) where error.code == .noPermission || error.code.isServerError:
                logger.warning(
                    "cannot read Redis's maxmemory-policy: make sure it is noeviction, or events may be lost or applied twice under memory pressure",
                    metadata: ["redis": "\(reading.node)", "error": "\(error.message)"])
                continue
            case .failure:
                // Not reachable now: the process's own handling of Redis says so.
                continue
            }
            guard evicts(policy) else { continue }
            throw RedisUnusable(
                redis: configuration.redactedDescription,
                error: RedisError(
                    .invalidConfiguration,
                    "\(client is RedisClusterClient ? "its node \(reading.node)" : "it") has maxmemory-policy \(policy): \(consequence(of: policy)); set maxmemory-policy noeviction (ElastiCache: the parameter group; Azure Cache for Redis: Advanced settings; Redis Cloud: data eviction policy \"No eviction\"; self-managed: CONFIG SET maxmemory-policy noeviction, and in redis.conf)"
                ))
        }
    }
}

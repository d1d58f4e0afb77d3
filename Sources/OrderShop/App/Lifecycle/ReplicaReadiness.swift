import Logging
import RedisClient

/// Replicas at start-up, for a process asked to confirm its writes (`--confirm-replicas N`):
/// with fewer than N replicas connected to the primary every command would answer 503 "may
/// have been applied" and every worker would hold its entries, so the process says so before
/// it takes on work.
///
/// It waits while the primary has too few (a replica restarting, a failover whose old primary
/// has not come back as a replica yet), logging once, and gives up after `patience` with an
/// error that names what it asked for and what the primary has: more replicas asked for than
/// the deployment has cannot come right by waiting.
public enum ReplicaReadiness {
    /// What the primary reports in `INFO replication`.
    struct Replication: Equatable {
        var role: String
        var connectedReplicas: Int

        init(_ info: [String: String]) {
            role = info["role"] ?? "unknown"
            connectedReplicas = Int(info["connected_slaves"] ?? "") ?? 0
        }
    }

    /// Returns once the server `client` writes to is a primary with at least
    /// `confirmation.replicas` replicas connected. A Redis Cluster client is not checked here
    /// (each shard has its own replicas). A server that refuses `INFO` (an ACL without it) is
    /// not checked: logged once, and the confirmations say the rest. Cancellation ends the wait.
    public static func wait(
        for confirmation: ReplicaConfirmation, client: any RedisClientProtocol, at configuration: RedisConfiguration,
        patience: Duration = .seconds(60), poll: Duration = .seconds(1), logger: Logger
    ) async throws {
        try await requireWait(client: client, at: configuration)
        guard !(client is RedisClusterClient) else { return }
        let clock = ContinuousClock()
        let deadline = clock.now + patience
        var waiting = false
        while true {
            let seen: Replication
            do {
                seen = Replication(try await client.send(INFO(section: "replication")))
            } catch let error as RedisError where error.code == .noPermission {
                logger.info("cannot check the replicas before confirming writes (INFO refused)", metadata: ["error": "\(error)"])
                return
            } catch let error as RedisError where RedisReadiness.isWorthWaiting(error) {
                // Redis went away after it answered: the next round asks again.
                seen = Replication([:])
            }
            if seen.role == "master", seen.connectedReplicas >= confirmation.replicas {
                if waiting { logger.info("replicas connected", metadata: ["replicas": "\(seen.connectedReplicas)"]) }
                if let warning = unconfirmingReplicas(seen, confirmation) { logger.warning("\(warning)") }
                return
            }
            guard clock.now < deadline else {
                throw ReplicasMissing(redis: configuration.redactedDescription, asked: confirmation.replicas, seen: seen, waited: patience)
            }
            if !waiting {
                waiting = true
                logger.warning(
                    "waiting for replicas: writes are confirmed by --confirm-replicas \(confirmation.replicas)",
                    metadata: ["role": "\(seen.role)", "connected_replicas": "\(seen.connectedReplicas)"])
            }
            try await Task.sleep(for: poll)
        }
    }
}

extension ReplicaReadiness {
    /// Throws ``RedisUnusable`` when the ACL user may not run `WAIT`, which every confirmed
    /// write needs (tried for one replica and 1 ms: it changes nothing). Why: a service whose
    /// user lacked it applied every create and answered each 503 "may have been applied", and a
    /// worker held its entries, their leases renewed, until it stopped and they were
    /// dead-lettered unhandled (38 mails not sent), both with `/healthz` ok (a trial).
    ///
    /// On a Redis Cluster every primary is asked: ACL users are per node, and a keyless WAIT goes
    /// to one primary at random, so a node missing `+wait` was found only by its first write.
    static func requireWait(client: any RedisClientProtocol, at configuration: RedisConfiguration) async throws {
        let probe = WAIT(replicas: 1, timeout: .milliseconds(1))
        var refusal: (node: String?, error: RedisError)?
        if let cluster = client as? RedisClusterClient {
            // A node that does not answer (down, failing over) is left to the commands, as below.
            let answers = (try? await cluster.sendToAllPrimaries(probe)) ?? [:]
            refusal = answers.sorted { "\($0.key)" < "\($1.key)" }.lazy.compactMap { address, answer -> (String?, RedisError)? in
                guard case .failure(let error) = answer, error.code == .noPermission else { return nil }
                return ("\(address)", error)
            }.first
        } else {
            do {
                _ = try await client.send(probe)
            } catch let error as RedisError where error.code == .noPermission {
                refusal = (nil, error)
            } catch {
                // Anything else (a lost connection, a replica): the wait below and the commands say it.
            }
        }
        guard let refusal else { return }
        throw RedisUnusable.aclRefusal(
            at: configuration,
            "run WAIT" + (refusal.node.map { " at node \($0)" } ?? "")
                + ", which --confirm-replicas needs for every write (\(refusal.error.message)); give the user +wait (deploy/redis/users.acl) or run without --confirm-replicas"
        )
    }

    /// A warning when the primary has more replicas than confirm each write: `WAIT N` returns
    /// once any N of them have it, so a failover that promotes one of the others loses writes
    /// answered 2xx (a trial: two replicas, `--confirm-replicas 1`, the replica that had not
    /// confirmed promoted by hand: 5 of 914 customers answered 200 were gone). Safe only where
    /// the failover promotes the replica that is furthest along (Sentinel and Redis Cluster
    /// prefer it; a manual `REPLICAOF NO ONE` does not care).
    static func unconfirmingReplicas(_ seen: Replication, _ confirmation: ReplicaConfirmation) -> String? {
        guard seen.connectedReplicas > confirmation.replicas else { return nil }
        return "the primary has \(seen.connectedReplicas) replicas and writes are confirmed by \(confirmation.replicas) "
            + "(--confirm-replicas): a failover that promotes a replica that has not confirmed a write loses it, though it was "
            + "answered 2xx. Set --confirm-replicas \(seen.connectedReplicas), or promote only the replica furthest along "
            + "(Sentinel and Redis Cluster prefer it)"
    }
}

/// The primary has fewer replicas than writes are to be confirmed by, and did not get them.
public struct ReplicasMissing: Error, CustomStringConvertible {
    public let redis: String
    public let asked: Int
    let seen: ReplicaReadiness.Replication
    public let waited: Duration

    public var description: String {
        // A replica named as the primary is a wrong URL, not too few replicas.
        let advice = seen.role == "master" || seen.role == "unknown" ? "Lower --confirm-replicas or add replicas" : "Point --url at the primary"
        return shortage + "; every command would answer 503 'may have been applied'. " + advice
    }

    /// The server asked answered as a replica (or did not say its role): a failover may have
    /// moved the primary elsewhere.
    public var foundNoPrimary: Bool { seen.role != "master" }

    /// What is missing, without what a service would then answer.
    public var shortage: String {
        let has = seen.role == "master" ? "has \(seen.connectedReplicas) connected" : "is not a primary (role \(seen.role))"
        return "cannot confirm writes on \(asked) replica(s) (--confirm-replicas): Redis at \(redis) \(has) after \(waited)"
    }
}

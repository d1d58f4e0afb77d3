import ArgumentParser
import Foundation
import OrderShop
import RedisClient

/// `--confirm-replicas N` and `--confirm-timeout MS` (or `ORDERSHOP_CONFIRM_REPLICAS`,
/// `ORDERSHOP_CONFIRM_TIMEOUT_MS`): commands and mails answer 2xx only once N replicas have
/// their writes (`WAIT`), else 503 with `"outcome": "may have been applied"`.
struct ConfirmationOptions: ParsableArguments {
    @Option(
        name: .customLong("confirm-replicas"), parsing: .number,
        help: "Replicas that must hold a command's writes before it answers 2xx (WAIT); 503 'may have been applied' when they do not in time (default: $ORDERSHOP_CONFIRM_REPLICAS, else 0: no wait)")
    var replicas: Int?

    @Option(
        name: .customLong("confirm-timeout"), parsing: .number,
        help: "Milliseconds to wait for --confirm-replicas (default: $ORDERSHOP_CONFIRM_TIMEOUT_MS, else 1000)")
    var timeoutMilliseconds: Int?

    /// The options given are checked before the command runs, so that a bad one is refused with
    /// its command's usage (thrown from `run`, it came with the top-level usage instead).
    func validate() throws {
        if let replicas, replicas < 0 { throw ValidationError(Self.negativeReplicas(replicas)) }
        if let timeoutMilliseconds, timeoutMilliseconds <= 0 { throw ValidationError(Self.nonPositiveTimeout(timeoutMilliseconds)) }
    }

    private static func negativeReplicas(_ n: Int) -> String { "--confirm-replicas must be 0 or more, not \(n)" }
    private static func nonPositiveTimeout(_ ms: Int) -> String { "--confirm-timeout must be more than 0 ms (WAIT 0 would wait forever), not \(ms)" }

    /// The confirmation asked for, or nil for none. A bad value from the environment fails in
    /// one line naming the variable.
    func confirmation(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ReplicaConfirmation? {
        let replicas = try self.replicas ?? Self.integer(environment, "ORDERSHOP_CONFIRM_REPLICAS") ?? 0
        let timeout = try timeoutMilliseconds ?? Self.integer(environment, "ORDERSHOP_CONFIRM_TIMEOUT_MS") ?? 1000
        guard replicas >= 0 else { throw CleanExit.message("ORDERSHOP_CONFIRM_REPLICAS: " + Self.negativeReplicas(replicas), exitCode: 1) }
        guard timeout > 0 else { throw CleanExit.message("ORDERSHOP_CONFIRM_TIMEOUT_MS: " + Self.nonPositiveTimeout(timeout), exitCode: 1) }
        return replicas == 0 ? nil : ReplicaConfirmation(replicas: replicas, timeout: .milliseconds(timeout))
    }

    private static func integer(_ environment: [String: String], _ name: String) throws -> Int? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Int(text) else { throw CleanExit.message("\(name) must be a whole number, not '\(text)'", exitCode: 1) }
        return value
    }
}

/// The replicas an operations command's writes are to be confirmed by, checked before it writes.
enum ConfirmationPrecheck {
    /// Each of `clients` (the primaries a command writes to; for a cluster client, the primaries
    /// serving `keys`' slots, all of them without keys) must have the replicas `confirmation`
    /// asks for (5 s to get them back), else the command is refused before it writes, saying
    /// what is missing: a rebuild asked to confirm on a primary without replicas ran its swap,
    /// then failed saying it may have been applied.
    static func require(
        _ confirmation: ReplicaConfirmation?, on clients: [any RedisClientProtocol], at configuration: RedisConfiguration, verb: String,
        keys: [String]? = nil
    ) async throws {
        guard let confirmation else { return }
        // A cluster client is not checked by ReplicaReadiness (each shard has its own replicas).
        if clients.contains(where: { $0 is RedisClusterClient }) {
            try await requireOnCluster(confirmation, at: configuration, verb: verb, slots: keys.map { Set($0.map { HashSlot(key: $0) }) })
            return
        }
        do {
            try await wait(for: confirmation, on: clients, at: configuration, verb: verb)
        } catch let missing as ReplicasMissing {
            throw refusal(missing, verb: verb)
        }
    }

    /// The primaries that serve `slots` (nil: every primary), each on a connection of its own,
    /// asked for their replicas; found anew when one turned out to be a replica. A trial's
    /// `rebuild customer` was refused for a shard that holds no customer key and had lost its
    /// replica, and a `dlq purge` started during a `CLUSTER FAILOVER` asked the demoted node for
    /// 5 s and gave up ("is not a primary (role slave)").
    private static func requireOnCluster(_ confirmation: ReplicaConfirmation, at configuration: RedisConfiguration, verb: String, slots: Set<HashSlot>?) async throws {
        let attempts = 3
        for attempt in 1...attempts {
            let primaries = try await RedisNodePools.primaries(configuration, serving: slots)
            var failure: (any Error)?
            do {
                try await wait(for: confirmation, on: primaries, at: configuration, verb: verb)
            } catch {
                failure = error
            }
            for pool in primaries { await pool.shutdown() }
            guard let failure else { return }
            guard let missing = failure as? ReplicasMissing else { throw failure }
            if missing.foundNoPrimary, attempt < attempts { continue }
            throw refusal(missing, verb: verb)
        }
    }

    /// Each client's replicas, 5 s to get them back; throws ``ReplicasMissing`` for the first
    /// that lacks them.
    private static func wait(for confirmation: ReplicaConfirmation, on clients: [any RedisClientProtocol], at configuration: RedisConfiguration, verb: String) async throws {
        for client in clients {
            // The node's own address in the refusal, not the seed's.
            let node = (client as? RedisConnectionPool)?.configuration ?? configuration
            try await ReplicaReadiness.wait(for: confirmation, client: client, at: node, patience: .seconds(5), logger: makeLogger("ordershop.\(verb)"))
        }
    }

    private static func refusal(_ missing: ReplicasMissing, verb: String) -> CleanExit {
        CleanExit.message("\(verb) refused, nothing changed: \(missing.shortage)", exitCode: 1)
    }
}

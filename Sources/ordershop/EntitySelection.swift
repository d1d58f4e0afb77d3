import ArgumentParser
import Foundation
import OrderShop
import RedisClient

/// The `ENTITY|all` argument of `snapshot`, `trim` and `rebuild`.
enum EntitySelection {
    static let help: ArgumentHelp = "customer, product, inventory, order, billing, or all."

    static func types(_ entity: String) throws -> [EntityType] {
        if entity == "all" { return EntityType.allCases }
        guard let type = EntityType(rawValue: entity) else {
            throw ValidationError("unknown entity '\(entity)'; one of \(EntityType.allCases.map(\.rawValue).joined(separator: ", ")), all")
        }
        return [type]
    }

    /// Runs `body` for each partition of each type (one per type unless the shop's layout has
    /// several: ``ShopLayout/recorded(in:)``) on one client (a Redis Cluster's when the URL names one). A type whose stream lacks entries (``StreamGapError``),
    /// or whose read model may not be adopted (``SnapshotAdoptionRefused``), is refused, with the stream named on stderr, and the others go on; the command then exits 1.
    ///
    /// With `confirmation` (`--confirm-replicas N`) the primary must have N replicas connected
    /// (it may take 5 s to get them back) before anything is done: a rebuild asked to confirm on
    /// a primary without replicas ran its swap, then failed saying it may have been applied.
    /// A write whose confirmation does not come in time fails saying so, without the HTTP
    /// status ("503: ...") a service would answer.
    static func run(
        _ types: [EntityType], redis: RedisOptions, verb: String, confirmation: ReplicaConfirmation? = nil,
        _ body: (EntityPartition, any RedisClientProtocol) async throws -> Void
    ) async throws {
        let configuration = try redis.configuration()
        let pool = try await OperatorText.namingRedis(redis) {
            let client = try await connectRedis(configuration, maximumConnections: 2)
            // A URL that says `?cluster=yes|no` is asked nothing above: an unreachable or
            // refusing Redis was met by the first type's command, and said as that type's failure
            // ("trim customer failed: WRONGPASS ...; run it again": a review).
            do {
                // A cluster: its topology, discovered with the credentials (a keyless PING
                // goes to a random primary, which may be the one that is down: a review).
                if let cluster = client as? RedisClusterClient { try await cluster.connect() } else { _ = try await client.send(PING()) }
            } catch let error as RedisError where error.code == .noPermission {
                // An ACL user without PING: it got in, which is what this asks.
            } catch {
                await client.shutdown()
                throw error
            }
            return client
        }
        var refused: [String] = []
        do {
            // Each partition of each type (``ShopLayout``), as the shop in this Redis lays them out.
            let layout: ShopLayout
            do {
                layout = try await ShopLayout.recorded(in: pool)
            } catch let missing as LayoutRecordMissing {
                throw CleanExit.message("\(verb) refused: \(missing); nothing was changed", exitCode: 1)
            } catch let error as RedisError {
                // Said as each type's failure is (the user, the role that may), before any was tried.
                throw CleanExit.message("\(verb) failed before any type: \(OperatorText.describe(error, redis: redis)); nothing was changed", exitCode: 1)
            }
            let units = types.flatMap { layout.partitions($0) }
            try await ConfirmationPrecheck.require(confirmation, on: [pool], at: configuration, verb: verb, keys: units.map(\.keys.entities))
            for type in units {
                do {
                    try await body(type, pool)
                } catch let unconfirmed as ShopError where unconfirmed.outcome == "may have been applied" {
                    throw CleanExit.message("\(verb) \(type): \(unconfirmed.message)", exitCode: 1)
                } catch let shopError as ShopError {
                    // A service's words ("503: the command was not applied ...") named neither
                    // the command nor the type (a trial's rebuild with --confirm-replicas).
                    throw CleanExit.message("\(verb) \(type) failed\(Self.doneBefore(type, in: units, refused: refused)): \(shopError.message)", exitCode: 1)
                } catch let gap as StreamGapError {
                    refused.append("\(type)")
                    FileHandle.standardError.write(Data("\(verb) \(type) refused: \(gap)\n".utf8))
                } catch let refusal as SnapshotAdoptionRefused {
                    refused.append("\(type)")
                    FileHandle.standardError.write(Data("\(verb) \(type) refused: \(refusal)\n".utf8))
                } catch let error as RedisError {
                    // Which type, what is known of it, and what to do: a failover's READONLY
                    // ended a `rebuild all` with Redis's words alone, after three types were done.
                    let before = Self.doneBefore(type, in: units, refused: refused)
                    let outcome =
                        switch error.code {
                        case .outcomeUnknown, .timeout: "; its last write may or may not have been applied; run it again"
                        // Said by OperatorText: it wrote nothing, and where to point the command.
                        case .readOnly: ""
                        // Run again as the same user it fails the same way (trial J: a CRM
                        // worker's user running `trim` was told to run it again).
                        case .noPermission: ""
                        // Said by OperatorText: raise maxmemory first.
                        case .outOfMemory: ""
                        default: "; what it had not written is not applied; run it again"
                        }
                    throw CleanExit.message("\(verb) \(type) failed\(before): \(OperatorText.describe(error, redis: redis))\(outcome)", exitCode: 1)
                }
            }
        } catch {
            await pool.shutdown()
            throw error
        }
        await pool.shutdown()
        if !refused.isEmpty {
            throw CleanExit.message("\(verb) refused for \(refused.joined(separator: ", ")); nothing of those was changed", exitCode: 1)
        }
    }

    /// " (customer, product done before it)": what a command over several types finished
    /// before `type` failed; "" for the first.
    /// The types done before `type` failed, and those not tried after it (trial M: `trim all`
    /// failing at order named the types done and left billing's unsaid).
    private static func doneBefore(_ type: EntityPartition, in types: [EntityPartition], refused: [String]) -> String {
        let done = types.prefix { $0 != type }.map(\.description).filter { !refused.contains($0) }
        let left = types.drop { $0 != type }.dropFirst().map(\.description)
        let said = (done.isEmpty ? [] : ["\(done.joined(separator: ", ")) done before it"])
            + (refused.isEmpty ? [] : ["\(refused.joined(separator: ", ")) refused before it"])
            + (left.isEmpty ? [] : ["\(left.joined(separator: ", ")) not tried"])
        return said.isEmpty ? "" : " (\(said.joined(separator: "; ")))"
    }
}

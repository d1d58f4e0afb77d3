import ArgumentParser
import OrderShop
import RedisClient

/// `ordershop rebuild ENTITY`: rebuilds a read model from its event streams.
struct RebuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuild the read model of an entity type (or all) from its event streams.",
        discussion: "Safe while the shop runs: the new read model is swapped in only if no event arrived meanwhile (else it starts over)."
    )

    @Argument(help: "customer, product, inventory, order, billing, or all.")
    var entity: String

    @OptionGroup var redis: RedisOptions

    func validate() throws {
        guard entity == "all" || EntityType(rawValue: entity) != nil else {
            throw ValidationError("unknown entity '\(entity)'; one of \(EntityType.allCases.map(\.rawValue).joined(separator: ", ")), all")
        }
    }

    func run() async throws {
        let types = entity == "all" ? EntityType.allCases : [EntityType(rawValue: entity)!]
        let pool = try RedisConnectionPool(configuration: try redis.configuration(), maximumConnections: 2)
        let store = EventStore(pool: pool)
        do {
            for type in types { print("rebuilt \(try await store.rebuild(type))") }
        } catch {
            await pool.shutdown()
            throw error
        }
        await pool.shutdown()
    }
}

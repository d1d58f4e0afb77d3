import ArgumentParser
import OrderShop

/// `ordershop rebuild ENTITY`: rebuilds a read model from its latest snapshot and the events after it.
struct RebuildCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Rebuild the read model of an entity type (or all) from its latest snapshot and the events after it.",
        discussion: """
            Safe while the shop runs: the new read model is swapped in only if no event arrived meanwhile (else it reads them and tries again). \
            Refuses, naming the stream, when a stream lacks entries after the latest snapshot (trimmed by hand): it never rebuilds from part of the record. \
            With --confirm-replicas (or $ORDERSHOP_CONFIRM_REPLICAS) the swap must reach the replicas in time, else it fails saying the rebuild may have been applied: run it again.
            """
    )

    @Argument(help: EntitySelection.help) var entity: String
    @OptionGroup var redis: RedisOptions
    @OptionGroup var confirm: ConfirmationOptions
    /// A deliberate defect for the chaos harness (``EventStore/PlantedBug``).
    @Option(name: .customLong("planted-bug"), help: .hidden) var plantedBug: String?

    func validate() throws {
        _ = try EntitySelection.types(entity)
        if let plantedBug, EventStore.PlantedBug(rawValue: plantedBug) == nil {
            throw ValidationError("unknown planted bug '\(plantedBug)'; this build knows " + EventStore.PlantedBug.allCases.map(\.rawValue).joined(separator: ", "))
        }
    }

    func run() async throws {
        let confirmation = try confirm.confirmation()
        try await EntitySelection.run(try EntitySelection.types(entity), redis: redis, verb: "rebuild", confirmation: confirmation) { type, pool in
            var store = EventStore(pool: pool, confirmation: confirmation)
            store.plantedBug = plantedBug.flatMap(EventStore.PlantedBug.init(rawValue:))
            print("rebuilt \(try await store.rebuild(type))")
        }
    }
}

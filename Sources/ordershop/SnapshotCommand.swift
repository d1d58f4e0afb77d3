import ArgumentParser
import OrderShop

/// `ordershop snapshot ENTITY|all`: folds the latest snapshot and the events after it into a new one.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Take a snapshot of an entity type's read model (or all), folded from its events, with the stream positions it covers.",
        discussion: """
            Safe while the shop runs. `trim` takes one first; entries it covers may then be trimmed, and `rebuild` starts from it. \
            --from-read-model: for a shop whose streams were trimmed before snapshots existed (snapshot refuses, naming the stream): \
            the read model, the only record left of the trimmed events, becomes the snapshot. Refused (nothing written, exit 1) \
            for a type that has a snapshot already or whose streams still hold every event: fold those instead.
            """
    )

    @Argument(help: EntitySelection.help) var entity: String
    @Flag(help: "Take the read model as it is instead of folding events (only for streams trimmed before any snapshot existed).")
    var fromReadModel = false
    @OptionGroup var redis: RedisOptions

    func validate() throws { _ = try EntitySelection.types(entity) }

    func run() async throws {
        try await EntitySelection.run(try EntitySelection.types(entity), redis: redis, verb: "snapshot") { type, pool in
            let store = EventStore(pool: pool)
            let s = fromReadModel ? try await store.adoptReadModelAsSnapshot(type) : try await store.takeSnapshot(type)
            print("snapshot \(type): \(s.live) live, \(s.states.count - s.live) deleted, covers \(s.cut)"
                + (s.malformed.isEmpty ? "" : "; \(s.malformed.count) malformed entries left out: " + s.malformed.prefix(5).map(\.description).joined(separator: "; "))
                + (s.uncreated.isEmpty ? "" : "; " + ReadModelSnapshot.uncreatedNote(s.uncreated)))
        }
    }
}

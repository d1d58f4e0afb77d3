import StreamWorker

/// A deletion event the read model does not show: the entity is not deleted there at the event's
/// version (never created, still live, or deleted at another version). Every deletion a command
/// makes is in the read model in the same script as its event, and a deletion is final, so such
/// an event was written by hand (an XADD) or is stale: a user-style trial's hand-written
/// deletions of a customer never created, and of a live one at an old version, each got a
/// good-bye mail, where a rebuild leaves both out. Handled as a ``MissingReference``: retried,
/// since the read model may only not be visible yet (a worker reading a demoted primary for up
/// to a second after a failover), then dead-lettered with this text.
struct UnrecordedDeletion: Error, Sendable, CustomStringConvertible {
    let type: EntityType
    let id: String
    /// The event's version (nil: an older producer's event without one).
    let version: Int?
    /// What the read model holds: nil (never created), or whether deleted and at which version.
    let found: (deleted: Bool, version: Int?)?

    var description: String {
        let event = "a deletion of \(type) \(id)" + (version.map { " at version \($0)" } ?? "")
        guard let found else { return "\(event), which was never created: no command made this event" }
        let state = (found.deleted ? "deleted" : "live") + (found.version.map { " at version \($0)" } ?? "")
        return "\(event), which the read model holds \(state): no command made this event (stale, or written by hand), "
            + "unless a failover lost the deletion after this worker read it (the command was then not confirmed)"
    }

    /// Throws unless the read model holds entity `id` of `type` deleted at `version` (any
    /// version when the event has none).
    static func require<E: ShopEntity>(_ type: E.Type, id: String, version: Int?, in readModel: ReadModel) async throws {
        guard let entity = try await readModel.lookup(E.self, id: id) else {
            throw UnrecordedDeletion(type: E.type, id: id, version: version, found: nil)
        }
        let recorded = try await readModel.version(E.type, id: id)
        guard entity.deleted, version == nil || recorded == version else {
            throw UnrecordedDeletion(type: E.type, id: id, version: version, found: (entity.deleted, recorded))
        }
    }
}

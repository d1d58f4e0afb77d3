import RedisClient

/// An entry this worker holds and is about to handle.
struct WorkItem: Sendable {
    let entry: StreamEntry
    /// Redis's delivery counter for the entry, as of this delivery.
    let deliveryCount: Int
    /// Its idempotency marker (idempotent settle only): the event id, a field of the group's
    /// marker hashes. Read once: the pre-check and the settle both need it.
    let marker: String?
    /// Its idempotency marker existed when it was read: ack it without handling.
    var knownDuplicate = false
}

/// What the settler commits for an entry.
enum SettleItem: Sendable {
    /// Acknowledge (with the handler's effects and, in idempotent mode, the idempotency marker).
    case ack(id: String, marker: String?, effects: [[RedisArgument]])
    /// Move to the dead letters.
    case deadLetter(id: String, fields: [StreamField], reason: String, error: String, deliveryCount: Int)
    /// The entry was deleted from the stream while pending: acknowledge, count as lost.
    case lost(id: String)

    var id: String {
        switch self {
        case .ack(let id, _, _), .deadLetter(let id, _, _, _, _), .lost(let id): id
        }
    }
}

/// Ids in stream order (each parsed once, not once per comparison).
func sortedIDs(_ ids: some Sequence<String>) -> [String] {
    ids.map { (StreamID($0) ?? .zero, $0) }.sorted { $0.0 < $1.0 }.map(\.1)
}

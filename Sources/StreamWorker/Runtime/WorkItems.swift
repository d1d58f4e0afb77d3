import RedisClient

/// An entry this worker holds and is about to handle. Its fields travel with it through the
/// pre-check, the handler, retries and the settle (never fetched again).
struct WorkItem: Sendable {
    let entry: StreamEntry
    /// The entry id, parsed once from the reply that delivered it.
    let id: StreamID
    /// Redis's delivery counter for the entry, as of this delivery.
    let deliveryCount: Int
    /// Its idempotency marker (idempotent settle only): the event id, a field of the group's
    /// marker hashes. Read once: the pre-check and the settle both need it.
    let marker: String?
    /// Its idempotency marker existed when it was read: ack it without handling.
    var knownDuplicate = false
    /// The span of its current handling, ended with the outcome (nil until handled, and when
    /// the span does not record).
    var span: (any EventHandlingSpan)?

    init(entry: StreamEntry, id: StreamID, deliveryCount: Int, marker: String?) {
        self.entry = entry
        self.id = id
        self.deliveryCount = deliveryCount
        self.marker = marker
    }

    /// The same entry delivered once more (a retry), with Redis's new delivery count.
    func redelivered(deliveryCount: Int) -> WorkItem {
        WorkItem(entry: entry, id: id, deliveryCount: deliveryCount, marker: marker)
    }
}

/// What the settler commits for an entry.
enum SettleItem: Sendable {
    /// Acknowledge (with the handler's effects and, in idempotent mode, the idempotency marker).
    case ack(WorkItem, effects: [[RedisArgument]])
    /// Move to the dead letters.
    case deadLetter(WorkItem, reason: String, error: String)
    /// The entry was deleted from the stream while pending: acknowledge, count as lost.
    case lost(WorkItem)

    var item: WorkItem {
        switch self {
        case .ack(let item, _), .deadLetter(let item, _, _), .lost(let item): item
        }
    }
}

/// What a handler's call means for one entry.
enum HandlingOutcome: Sendable {
    case settle(SettleItem)
    /// Retry it: the item with the span of the failed handling, which the retry ends.
    case retry(WorkItem, any Error)
}

import RedisClient

/// A stream lacks entries a rebuild or snapshot needs: they were trimmed (or deleted) past the
/// latest snapshot, so the read model cannot be rebuilt from the record. Names the stream.
public struct StreamGapError: Error, Sendable, CustomStringConvertible {
    public var stream: String
    public var detail: String
    public var description: String { "\(stream): \(detail)" }
}

extension EventStore {
    /// The events of an entity type after one cut up to a later one, checked complete: each
    /// stream must hold exactly `entries-added(to) - entries-added(from)` entries in that range,
    /// else it was trimmed past `from` and a ``StreamGapError`` names it. Entries that are not
    /// well-formed events (``RecordedEvent/decode(_:action:)``) are counted as read but left out
    /// of `events`, and listed in `malformed`: a read model is never built from them.
    func events(_ type: EntityType, after from: StreamCut, upTo to: StreamCut, pageSize: Int = 1000) async throws -> (events: [RecordedEvent], malformed: [MalformedEntry]) {
        var events: [RecordedEvent] = []
        var malformed: [MalformedEntry] = []
        for (i, action) in EventAction.allCases.enumerated() {
            let (a, b) = (from.positions[i], to.positions[i])
            let needed = b.entriesAdded - a.entriesAdded
            guard needed >= 0, b.lastID >= a.lastID else {
                throw StreamGapError(
                    stream: b.stream,
                    detail: "is behind the snapshot (entries-added \(b.entriesAdded), last id \(b.lastID); the snapshot covers \(a.lastID), entries-added \(a.entriesAdded)): the stream was deleted or replaced")
            }
            var read = 0
            var start = a.lastID == .zero ? "-" : "(\(a.lastID)"
            while needed > 0 {
                let page = try await pool.send(XRANGE(RedisArgument(b.stream), start: start, end: "\(b.lastID)", count: pageSize))
                for entry in page {
                    switch plantedBug == .rebuildFoldsMalformed ? Self.plantedLenientDecode(entry, action: action) : RecordedEvent.decode(entry, action: action) {
                    case .success(let e): events.append(e)
                    case .failure(var m):
                        m.stream = b.stream
                        malformed.append(m)
                    }
                    start = "(" + entry.id
                }
                read += page.count
                if page.count < pageSize { break }
            }
            if read != needed {
                let first = b.firstID.map { "\($0)" } ?? "none (empty)"
                throw StreamGapError(
                    stream: b.stream,
                    detail: "holds \(read) of the \(needed) entries after \(a.lastID) that are needed (first entry \(first), entries-added \(b.entriesAdded); "
                        + (a.entriesAdded == 0 && a.lastID == .zero ? "no snapshot" : "the latest snapshot covers up to \(a.lastID), entries-added \(a.entriesAdded)")
                        + "): it was trimmed past the latest snapshot, so its read model cannot be rebuilt from the record")
            }
        }
        return (events, malformed)
    }

    /// ``PlantedBug/rebuildFoldsMalformed``: an entry with an `entity_id` is that entity's state,
    /// whatever its `entity` field holds.
    private static func plantedLenientDecode(_ entry: StreamEntry, action: EventAction) -> Result<RecordedEvent, MalformedEntry> {
        guard let id = entry.streamID, let json = entry["entity"], let entityID = entry.string("entity_id") else {
            return RecordedEvent.decode(entry, action: action)
        }
        return .success(RecordedEvent(
            entryID: id, action: action, eventID: entry.string("event_id") ?? entry.id, entityID: entityID, json: json,
            version: entry.string("version").flatMap { Int($0) }))
    }
}

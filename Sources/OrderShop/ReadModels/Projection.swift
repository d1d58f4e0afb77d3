import RedisClient

/// One event as read back from an entity stream.
public struct RecordedEvent: Sendable, Hashable {
    public var entryID: StreamID
    public var action: EventAction
    public var eventID: String
    public var entityID: String
    /// The entity as JSON (for a deletion, its last state).
    public var json: [UInt8]
    /// The entity's version after this change; nil for events written without one.
    public var version: Int?

    /// Decodes an entry; nil when it is not an OrderShop event (no `entity`, no id).
    public init?(_ entry: StreamEntry, action: EventAction) {
        guard let id = entry.streamID, let json = entry["entity"] else { return nil }
        let entityID: String
        if let given = entry.string("entity_id") {
            entityID = given
        } else if case .object(let o)? = try? JSONCoding.decode(JSONValue.self, from: json), case .string(let s)? = o["id"] {
            entityID = s
        } else {
            return nil
        }
        self.entryID = id
        self.action = action
        self.eventID = entry.string("event_id") ?? entry.id
        self.entityID = entityID
        self.json = json
        self.version = entry.string("version").flatMap { Int($0) }
    }

    public init(entryID: StreamID, action: EventAction, eventID: String, entityID: String, json: [UInt8], version: Int?) {
        self.entryID = entryID
        self.action = action
        self.eventID = eventID
        self.entityID = entityID
        self.json = json
        self.version = version
    }
}

/// The state of an entity type as the replay of its events: created, with updates applied, minus
/// deleted (which are kept as tombstones).
///
/// Each change carries a version; an event whose version is not above the entity's current one
/// (a repeated or late event) is ignored, so replaying in any order, or twice, gives the same state,
/// and a deletion is final.
public struct Projection: Sendable {
    public struct State: Sendable, Hashable {
        public var json: [UInt8]
        public var version: Int
        public var deleted: Bool
        /// The entry id of the creation, which orders the entities.
        public var created: StreamID
    }

    public private(set) var states: [String: State] = [:]
    /// Events skipped as repeated, late, or after the deletion.
    public private(set) var ignored = 0

    public init() {}

    /// Starts from states already folded (a snapshot's), to which later events are applied.
    public init(base: [String: State]) {
        states = base
    }

    /// Folds events. They are applied in entry-id order; an event without a version (written by
    /// an older producer) counts as the next version of its entity.
    public init(_ events: [RecordedEvent]) {
        for e in Self.ordered(events) { apply(e) }
    }

    /// Events in the order they are applied: by entry id, then version.
    public static func ordered(_ events: [RecordedEvent]) -> [RecordedEvent] {
        events.sorted(by: { ($0.entryID, $0.version ?? 0) < ($1.entryID, $1.version ?? 0) })
    }

    /// Applies one event; returns whether it changed the state.
    @discardableResult
    public mutating func apply(_ e: RecordedEvent) -> Bool {
        let current = states[e.entityID]
        let version = e.version ?? ((current?.version ?? 0) + 1)
        if let current, current.deleted || version <= current.version {
            ignored += 1
            return false
        }
        switch e.action {
        case .created:
            states[e.entityID] = State(json: e.json, version: version, deleted: false, created: current?.created ?? e.entryID)
        case .updated:
            // An update whose creation we have not seen yet (events out of order) still counts;
            // its entry id stands in for the creation until the creation arrives.
            states[e.entityID] = State(json: e.json, version: version, deleted: false, created: current?.created ?? e.entryID)
        case .deleted:
            states[e.entityID] = State(json: e.json, version: version, deleted: true, created: current?.created ?? e.entryID)
        }
        return true
    }

    /// Live entities in creation order.
    public var live: [(id: String, state: State)] {
        states.filter { !$0.value.deleted }.map { (id: $0.key, state: $0.value) }.sorted { $0.state.created < $1.state.created }
    }
}

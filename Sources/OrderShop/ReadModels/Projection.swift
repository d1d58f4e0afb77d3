import RedisClient
import StreamWorker

/// An entry of an entity stream that is not an event a read model may hold, and why.
public struct MalformedEntry: Error, Sendable, Hashable, CustomStringConvertible {
    /// The stream, when the reader knows it.
    public var stream: String?
    public var entryID: String
    public var reason: String
    public var description: String { "\(stream.map { $0 + " " } ?? "")\(entryID): \(reason)" }
}

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
    /// A creation's score in its type's creation order (`created_seq`), in a shop of several
    /// partitions (``CreationSequence``); nil otherwise.
    public var creationSequence: Int? = nil

    /// Decodes an entry; nil when it is not a well-formed OrderShop event (see ``decode(_:action:)``).
    public init?(_ entry: StreamEntry, action: EventAction) {
        guard case .success(let event) = Self.decode(entry, action: action) else { return nil }
        self = event
    }

    /// Decodes an entry, or says why it is not an event a read model may hold: the `entity`
    /// field must be a JSON object whose `id` is a string (equal to `entity_id` when the entry
    /// has one), and `version`, when present, a positive integer. Anyone with write access can
    /// XADD to a stream, and a rebuild or snapshot that folded such an entry in would serve it
    /// to every query (before this check, `entity_id` plus a broken `entity` did exactly that).
    public static func decode(_ entry: StreamEntry, action: EventAction) -> Result<RecordedEvent, MalformedEntry> {
        func malformed(_ reason: String) -> Result<RecordedEvent, MalformedEntry> {
            .failure(MalformedEntry(stream: nil, entryID: entry.id, reason: reason))
        }
        guard let id = entry.streamID else { return malformed("its entry id '\(entry.id)' is not a stream id") }
        guard let json = entry["entity"] else { return malformed("no entity field") }
        // The workers' parser and rules (``Delivery/shopEntity(_:)``): Foundation's decoder took
        // `{"id":"m3",...,"id":"m4"}`, and a rebuild then served that entity with two ids (a
        // user-style trial's XADD; the workers dead-lettered it for the duplicate key).
        let value: JSONValue
        do {
            value = try JSONValue.parse(json)
        } catch {
            return malformed("entity is not valid JSON: \(error.message)")
        }
        guard case .object(let object) = value else { return malformed("entity is not a JSON object") }
        guard case .string(let objectID)? = object["id"] else { return malformed("entity has no string id") }
        // An empty or blank event_id, which the workers dead-letter, was folded in as well.
        if let problem = Delivery.eventIDProblem(in: entry.fields) { return malformed(problem) }
        let version: Int?
        switch envelope(of: objectID, field: entry.string) {
        case .success(let v): version = v
        case .failure(let m): return malformed(m.reason)
        }
        var event = RecordedEvent(
            entryID: id, action: action, eventID: entry.string("event_id") ?? entry.id, entityID: objectID, json: json, version: version)
        if action == .created, let number = entry.string(CreationSequence.field) {
            guard let sequence = Int(number), sequence > 0 else { return malformed("\(CreationSequence.field) '\(number)' is not a positive integer") }
            event.creationSequence = sequence
        }
        return .success(event)
    }

    /// The version of an event of entity `entityID`, whose fields `field` reads, or why its
    /// `entity_id` or `version` do not fit: `entity_id`, when present, must be `entityID`, and
    /// `version`, when present, a positive integer (nil when absent). The rebuild and the workers
    /// (``Delivery/shopEntity(_:)``) hold events to the same rule.
    static func envelope(of entityID: String, field: (String) -> String?) -> Result<Int?, MalformedEntry> {
        func malformed(_ reason: String) -> Result<Int?, MalformedEntry> { .failure(MalformedEntry(stream: nil, entryID: "", reason: reason)) }
        if let given = field("entity_id"), given != entityID { return malformed("entity_id '\(given)' differs from the entity's id '\(entityID)'") }
        guard let text = field("version") else { return .success(nil) }
        guard let v = Int(text), v > 0 else { return malformed("version '\(text)' is not a positive integer") }
        return .success(v)
    }

    /// Why `json` is not the state of entity `id` (nil when it is): it must be a JSON object
    /// whose `id` is `id`.
    public static func problem(ofEntity json: [UInt8], id: String) -> String? {
        guard case .object(let object)? = try? JSONValue.parse(json) else { return "not a JSON object" }
        guard case .string(let objectID)? = object["id"] else { return "has no string id" }
        return objectID == id ? nil : "its id '\(objectID)' is not '\(id)'"
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
///
/// An entity exists only once its creation is in the record (or in the snapshot folded first):
/// changes of an id never created (an `_updated` or `_deleted` entry XADDed by hand, which the
/// commands never write: their update and delete refuse an entity the read model lacks) are held
/// apart (``uncreated``) and are in no state, as the live read model never held them. Before this
/// rule a rebuild served such an entity, `null` before it (a trial's XADD). A creation that comes
/// later in the fold (its entry id above an update's: the update was appended after it, by a
/// primary whose clock is behind, after a failover) takes them in. A snapshot's cut is one
/// instant of the three streams, and a command changes only an entity created before it, so a
/// change held apart at a cut has no creation after it either: a snapshot keeps no change held
/// apart (it names them, as `trim` does before the entries go). Only a creation XADDed by hand
/// after that snapshot (the server makes ids, as UUIDs) would then start the entity anew, where
/// a fold of the whole record takes the earlier change in.
public struct Projection: Sendable {
    public struct State: Sendable, Hashable {
        public var json: [UInt8]
        public var version: Int
        public var deleted: Bool
        /// The entry id of the creation, which orders the entities.
        public var created: StreamID
        /// The creation's score (``RecordedEvent/creationSequence``), which orders the entities
        /// of a shop of several partitions; nil in one partition.
        public var sequence: Int? = nil
    }

    /// The entities created (live and deleted).
    public private(set) var states: [String: State] = [:]
    /// Ids with changes but no creation (yet), with the state those changes make: in no read
    /// model, snapshot or count. See the type's rule.
    public private(set) var uncreated: [String: State] = [:]
    /// Events skipped as repeated, late, or after the deletion.
    public private(set) var ignored = 0
    /// ``EventStore/PlantedBug/rebuildFoldsUncreated``: changes of an id never created make it
    /// exist, as before the rule. For the chaos harness only.
    var foldsUncreated = false

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

    /// Applies one event; returns whether it changed the state of a created entity (``states``).
    @discardableResult
    public mutating func apply(_ e: RecordedEvent) -> Bool {
        // A creation takes in what was held apart for its id: it now exists, at the latest of
        // its changes (this creation included).
        var tookIn = false
        if e.action == .created, var held = uncreated.removeValue(forKey: e.entityID) {
            held.sequence = e.creationSequence
            states[e.entityID] = held
            tookIn = true
        }
        let exists = states[e.entityID] != nil
        let current = exists ? states[e.entityID] : uncreated[e.entityID]
        let version = e.version ?? ((current?.version ?? 0) + 1)
        if let current, current.deleted || version <= current.version {
            // Counted for entities only: a repeat of a change held apart is in no figure either.
            if exists { ignored += 1 }
            return tookIn
        }
        // An update whose creation we have not seen yet (events out of order) still counts;
        // its entry id stands in for the creation until the creation arrives.
        let state = State(
            json: e.json, version: version, deleted: e.action == .deleted, created: current?.created ?? e.entryID,
            sequence: exists ? current?.sequence : (e.action == .created ? e.creationSequence : nil))
        guard exists || e.action == .created || foldsUncreated else {
            uncreated[e.entityID] = state
            return false
        }
        states[e.entityID] = state
        return true
    }

    /// Live entities in creation order.
    public var live: [(id: String, state: State)] {
        states.filter { !$0.value.deleted }.map { (id: $0.key, state: $0.value) }.sorted { $0.state.created < $1.state.created }
    }
}

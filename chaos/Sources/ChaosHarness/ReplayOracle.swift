import OrderShop
import RedisClient

/// The harness's own answer to "what must a type's read model serve after the drain", from every
/// entry its three streams ever held (the checker's "read models = replay").
///
/// Written apart from ``Projection`` on purpose: `ordershop rebuild` and `ordershop snapshot` fold
/// the streams with `Projection`, and the checker used to replay them with it too, so that a
/// defect of that fold (a deletion not final, a late event rolling an entity back) would have
/// been in the rebuilt read model and in the replay it was compared with alike, and the run
/// would have passed. This oracle shares no code with it, and decides differently: not by
/// folding events in order, but per entity by the change with the highest version, which is the
/// entity's last change whatever order the three streams' entries interleave in (each command
/// writes its entity's version + 1, and a deleted entity takes no change: its version is kept).
///
/// Entries the harness injected (`chaos_injection`) are no events; nor is an entry without an
/// `entity_id`, a positive `version`, and an `entity` that is a JSON object whose `id` is that
/// `entity_id` (the services write no such entry; a rebuild must skip it).
///
/// An entity none of whose entries is a creation never existed (the commands refuse to change or
/// delete an entity they have not created): its other changes make nothing live.
public enum ReplayOracle {
    /// The live entities (id → JSON) that a type's entries imply, by action.
    public static func live(_ entries: [EventAction: [StreamEntry]]) -> [String: JSONValue] {
        // Per entity: the change with the highest version; for equal versions (a publisher's
        // duplicate, the same event again) the one appended first.
        var latest: [String: Change] = [:]
        var created: Set<String> = []
        for (action, list) in entries {
            for entry in list {
                guard let change = Change(entry, action: action) else { continue }
                if action == .created { created.insert(change.entityID) }
                if let held = latest[change.entityID], !change.supersedes(held) { continue }
                latest[change.entityID] = change
            }
        }
        var live: [String: JSONValue] = [:]
        for (id, change) in latest where change.action != .deleted && created.contains(id) { live[id] = change.entity }
        return live
    }

    /// One entity change read from an entry.
    struct Change {
        var entityID: String
        var version: Int
        var entryID: StreamID
        var action: EventAction
        var entity: JSONValue

        init?(_ entry: StreamEntry, action: EventAction) {
            guard entry[History.injectionField] == nil, let entryID = entry.streamID,
                let entityID = entry.string("entity_id"), let version = entry.string("version").flatMap({ Int($0) }), version > 0,
                let json = entry["entity"], let entity = try? JSONCoding.decode(JSONValue.self, from: json),
                case .object(let object) = entity, object["id"] == .string(entityID)
            else { return nil }
            self.entityID = entityID
            self.version = version
            self.entryID = entryID
            self.action = action
            self.entity = entity
        }

        func supersedes(_ other: Change) -> Bool {
            version != other.version ? version > other.version : entryID < other.entryID
        }
    }
}

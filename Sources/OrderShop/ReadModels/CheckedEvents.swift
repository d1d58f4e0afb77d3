import RedisClient
import StreamWorker

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
    func events(_ partition: EntityPartition, after from: StreamCut, upTo to: StreamCut, pageSize: Int = 1000) async throws -> (events: [RecordedEvent], malformed: [MalformedEntry]) {
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
                    case .success(let e):
                        // The planted bug folds in whatever has an entity_id: its shape unchecked too.
                        if plantedBug != .rebuildFoldsMalformed, let problem = partition.type.shapeProblem(e.json) {
                            malformed.append(MalformedEntry(stream: b.stream, entryID: entry.id, reason: problem))
                        } else {
                            events.append(e)
                        }
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
                let counts =
                    "(first entry \(first), entries-added \(b.entriesAdded); "
                    + (a.entriesAdded == 0 && a.lastID == .zero ? "no snapshot" : "the latest snapshot covers up to \(a.lastID), entries-added \(a.entriesAdded)")
                    + ")"
                // More entries than the counters say were added: the stream changed between
                // the reads (a trial's rebuild across a failover read the cut on one server and
                // the range on the other, and was told the stream "was trimmed").
                guard read < needed else {
                    throw StreamGapError(
                        stream: b.stream,
                        detail: "holds \(read) entries after \(a.lastID) where its counters say \(needed) were added \(counts): the stream changed while it was read (a failover between the reads; run it again), or it was replaced (then this comes again); nothing was changed")
                }
                throw StreamGapError(
                    stream: b.stream,
                    detail: "holds \(read) of the \(needed) entries after \(a.lastID) that are needed \(counts): it was trimmed past the latest snapshot, so its read model cannot be rebuilt from the record (unless a failover came between the reads: then run it again once it is over)")
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

extension EntityType {
    /// Why `json` does not have this type's shape (nil when it does): each field the entity has,
    /// of its kind (`{"id":"z"}` is no customer). A rebuild folded such an entry in before, and
    /// the read model then served it: an order for that "customer" was accepted, and its mails
    /// failed five times over before they were dead-lettered. The values' limits are a
    /// command's, not the rebuild's or the workers' (``Delivery/shopEntity(_:)``): a state the
    /// commands made past a limit (a stock returned to a record set to the maximum meanwhile,
    /// an event older than the limit) must rebuild as it stands.
    func shapeProblem(_ json: [UInt8]) -> String? {
        func problem<E: ShopEntity>(_ type: E.Type) -> String? {
            if case .failure(let problem) = E.shaped(json) { return problem.reason }
            return nil
        }
        switch self {
        case .customer: return problem(Customer.self)
        case .product: return problem(Product.self)
        case .inventory: return problem(Inventory.self)
        case .order:
            switch Order.shaped(json) {
            case .failure(let problem): return problem.reason
            // The workers' rule too: the commands never make one.
            case .success(let order): return order.productIDs.isEmpty ? Order.noProducts : nil
            }
        case .billing: return problem(Billing.self)
        }
    }
}

extension Order {
    /// Why an order event is malformed when its order has no products (the rebuild and the
    /// workers, ``Delivery/shopEntity(_:)``, say it alike).
    static let noProducts = "entity is an order of no products: field 'product_ids' is empty"
}

extension ShopEntity {
    /// `json` decoded as this type, or why it does not have its shape (``EntityType/shapeProblem(_:)``):
    /// one decode for the check and the value (a worker needs both).
    static func shaped(_ json: [UInt8]) -> Result<Self, MalformedEvent> {
        do {
            return .success(try JSONCoding.decode(Self.self, from: json))
        } catch {
            // "an order", "an inventory": the reason is read by operators (it said "a order").
            let article = "aeiou".contains(type.rawValue.first ?? "x") ? "an" : "a"
            return .failure(MalformedEvent("entity is not \(article) \(type): \(DecodingProblem(error).text)"))
        }
    }
}

/// A `DecodingError` in words, with the field it is about (nil: the whole value).
struct DecodingProblem {
    var field: String?
    var text: String

    init(_ error: any Error) {
        switch error {
        case DecodingError.keyNotFound(let key, _):
            field = key.stringValue
            text = "it has no field '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            field = path.isEmpty ? nil : path
            text = path.isEmpty ? "it is not of its kind" : "its field '\(path)' is not of its kind"
        default:
            field = nil
            text = "\(error)"
        }
    }
}


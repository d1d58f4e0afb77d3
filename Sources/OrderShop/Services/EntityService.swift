import Foundation
import Hummingbird

/// The commands of the service that owns an entity type: validate the body, then append the event
/// and update the read model in one step (``EventStore``).
struct EntityService<E: ShopEntity>: Sendable {
    /// The most objects one POST may create.
    static var maxBatch: Int { 1000 }

    let context: ShopContext

    /// `POST /customer(s)` with one object or an array: a JSON array of the new ids. With an
    /// `Idempotency-Key` seen in the last 24 hours (``EventStore/CreateKey``), the ids its first
    /// request made, with `Idempotent-Replayed: true`.
    func create(_ request: Request, _: ShopRequestContext) async throws -> Response {
        let bytes = try await request.bodyBytes()
        var key: EventStore.CreateKey?
        if let given = try IdempotencyKeyHeader.value(in: request.headers) {
            guard let valid = EventStore.CreateKey(key: given, body: bytes) else {
                throw ShopError.badRequest(
                    "the Idempotency-Key header must have 1 to \(EventStore.CreateKey.maxBytes) bytes", field: "Idempotency-Key")
            }
            key = valid
        }
        let body = try JSONValue.parse(bytes)
        let items: [(JSONValue, Int?)]
        switch body {
        case .array(let array):
            guard !array.isEmpty else { throw ShopError.badRequest("expected an object or a non-empty array of objects", field: "body") }
            guard array.count <= Self.maxBatch else { throw ShopError.badRequest("at most \(Self.maxBatch) objects per request", field: "body") }
            items = array.enumerated().map { ($1, $0) }
        default:
            items = [(body, nil)]
        }
        var entities: [E] = []
        entities.reserveCapacity(items.count)
        for (value, index) in items {
            let fields = try FieldReader(value, item: index)
            try fields.refuseUnknown(E.fieldNames, in: Self.oneEntity)
            entities.append(try E(fields: fields, id: RandomUUID.string(), current: nil))
        }
        let appended = try await context.store.create(entities, trace: request.traceID, key: key)
        guard let replayed = appended.replayedIDs else { return JSONResponse.strings(appended.madeIDs ?? entities.map(\.id)) }
        var response = JSONResponse.strings(replayed)
        response.headers[.idempotentReplayed] = "true"
        return response
    }

    /// "a customer", "an order": for messages.
    private static var oneEntity: String { ("aeiou".contains(E.type.rawValue.first!) ? "an " : "a ") + E.type.rawValue }

    /// `PUT /customer/<id>` with the full object: `true`.
    func update(_ request: Request, _: ShopRequestContext, id: String) async throws -> Response {
        let fields = try FieldReader(try await request.json())
        try fields.refuseUnknown(E.fieldNames, in: Self.oneEntity)
        try fields.checkID(matches: id)
        // Only a billing keeps a value the body may leave out (`done`); the others are replaced whole.
        let current = E.self == Billing.self ? try await context.readModel.lookup(E.self, id: id).flatMap { $0.deleted ? nil : $0.entity } : nil
        let entity = try E(fields: fields, id: id, current: current)
        try await context.store.update(entity, trace: request.traceID)
        return JSONResponse.true
    }

    /// `DELETE /customer/<id>`: `true`.
    func delete(_ request: Request, _: ShopRequestContext, id: String) async throws -> Response {
        try await context.store.delete(E.type, id: id, trace: request.traceID)
        return JSONResponse.true
    }

    func register(on router: Router<ShopRequestContext>) {
        addCommandRoutes(
            to: router, type: E.type,
            create: { try await self.create($0, $1) },
            update: { try await self.update($0, $1, id: $2) },
            delete: { try await self.delete($0, $1, id: $2) })
    }
}

import Foundation
import Hummingbird

/// The original's routes for one entity type.
public struct EntityRoutes: Sendable {
    public let type: EntityType

    public init(_ type: EntityType) { self.type = type }

    /// `GET` of all: `/customers` (`/inventory` for inventory).
    public var list: RouterPath { RouterPath(stringLiteral: "/\(type.plural)") }
    /// `POST` of one or many: `/customer` and `/customers` (`/inventory` only for inventory).
    public var create: [RouterPath] {
        type == .inventory ? ["/inventory"] : [RouterPath(stringLiteral: "/\(type.rawValue)"), RouterPath(stringLiteral: "/\(type.plural)")]
    }
    /// `GET`, `PUT` and `DELETE` of one: `/customer/:id`.
    public var item: RouterPath { RouterPath(stringLiteral: "/\(type.rawValue)/:id") }
}

/// The queries of one entity type, answered from the read model: the gateway and the owning
/// service answer them alike.
func addQueryRoutes(to router: Router<ShopRequestContext>, type: EntityType, readModel: ReadModel) {
    let routes = EntityRoutes(type)
    router.get(routes.list) { _, _ in
        JSONResponse.bytes(try await readModel.list(type))
    }
    router.get(routes.item) { _, context in
        // An id no entity can have is refused as PUT and DELETE refuse it (it answered `null`).
        let id = try validID(context)
        // The original answers `null` with 200 for an entity that does not exist (or no longer does).
        guard let json = try await readModel.one(type, id: id) else { return JSONResponse.null }
        return JSONResponse.bytes(json)
    }
    if type == .order {
        router.get("/orders/unbilled") { _, _ in JSONResponse.bytes(try await readModel.unbilledOrders()) }
    }
}

/// Registers the command routes of one entity type with the given handlers (the owner handles
/// them, the gateway forwards them).
func addCommandRoutes(
    to router: Router<ShopRequestContext>, type: EntityType,
    create: @escaping @Sendable (Request, ShopRequestContext) async throws -> Response,
    update: @escaping @Sendable (Request, ShopRequestContext, String) async throws -> Response,
    delete: @escaping @Sendable (Request, ShopRequestContext, String) async throws -> Response
) {
    let routes = EntityRoutes(type)
    for path in routes.create {
        router.post(path) { request, context in
            try requireJSONBody(request)
            return try await create(request, context)
        }
    }
    router.put(routes.item) { request, context in
        try requireJSONBody(request)
        return try await update(request, context, try validID(context))
    }
    router.delete(routes.item) { request, context in try await delete(request, context, try validID(context)) }
}

/// A command body must say it is JSON: a browser sends a cross-site form (`text/plain`,
/// `application/x-www-form-urlencoded`, `multipart/form-data`) without asking first, but never
/// `application/json` (that needs a CORS preflight, which these routes do not grant). 415 otherwise.
func requireJSONBody(_ request: Request) throws {
    // A singleton field (RFC 9110 8.3): the fields came joined by a comma, and one whose first
    // had parameters passed ("application/json; charset=utf-8, application/json").
    let given = request.headers[values: .contentType].count
    guard given <= 1 else {
        throw ShopError(status: 415, message: "Content-Type is given \(given) times; send it once, application/json", field: "Content-Type")
    }
    let value = request.headers[.contentType] ?? ""
    guard isJSONMediaType(value) else {
        throw ShopError(
            status: 415, message: value.isEmpty ? "the request has no Content-Type; send application/json" : "Content-Type \(LogText.escaped(value, limit: 100)) is not accepted; send application/json",
            field: "Content-Type")
    }
    // JSON is UTF-8 (RFC 8259 8.1), so one charset at most, and UTF-8: `charset=latin1`,
    // `charset=` and `charset=utf-8; charset=latin1` were taken (two trials).
    let charsets = charsetParameters(value)
    if charsets.count > 1 || charsets.contains(where: { !["utf-8", "utf8"].contains($0.lowercased()) }) {
        throw ShopError(
            status: 415, message: "Content-Type \(LogText.escaped(value, limit: 100)): only one charset, UTF-8, is accepted; send UTF-8",
            field: "Content-Type")
    }
    // A compressed body was read as JSON: gzip got 400 "malformed JSON at byte 0", and a plain
    // body labelled `br` was taken (a trial). RFC 9110 15.5.16: 415 for a coding not supported.
    if let coding = request.headers[.contentEncoding], !isIdentityCoding(coding) {
        throw ShopError(
            status: 415, message: "Content-Encoding \(LogText.escaped(coding, limit: 100)) is not accepted; send the body uncompressed",
            field: "Content-Encoding")
    }
}

/// The values of a Content-Type's `charset` parameters (unquoted; empty for `charset=`).
func charsetParameters(_ contentType: String) -> [String] {
    contentType.split(separator: ";", omittingEmptySubsequences: false).dropFirst().compactMap { parameter in
        let pair = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard pair.count == 2, pair[0].lowercased() == "charset" else { return nil }
        return pair[1].count >= 2 && pair[1].hasPrefix("\"") && pair[1].hasSuffix("\"") ? String(pair[1].dropFirst().dropLast()) : pair[1]
    }
}

/// Whether a Content-Encoding value is `identity` (any case, spaces around it) or empty: no coding.
func isIdentityCoding(_ value: String) -> Bool {
    let trimmed = value.trimmingCharacters(in: .whitespaces)
    return trimmed.isEmpty || trimmed.lowercased() == "identity"
}

/// Whether a Content-Type is `application/json` (any case, spaces around it, parameters such as
/// `charset` after a `;`), compared byte by byte: the split, Foundation's `trimmingCharacters`
/// and `lowercased()` it replaces took 1.6 % of `ordershop up`'s samples under POST load
/// (perf, cluster, 8 s), for a check every command makes.
func isJSONMediaType(_ value: String) -> Bool {
    let expected = Array("application/json".utf8)
    var bytes = value.utf8[...]
    if let semicolon = bytes.firstIndex(of: UInt8(ascii: ";")) { bytes = bytes[..<semicolon] }
    let isSpace: (UInt8) -> Bool = { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
    while let first = bytes.first, isSpace(first) { bytes = bytes.dropFirst() }
    while let last = bytes.last, isSpace(last) { bytes = bytes.dropLast() }
    guard bytes.count == expected.count else { return false }
    // ASCII case-insensitive: only A-Z are lowered.
    return zip(bytes, expected).allSatisfy { ($0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 | 0x20 : $0) == $1 }
}

private func validID(_ context: ShopRequestContext) throws -> String {
    let id = try pathID(context)
    guard !id.isEmpty else { throw ShopError.badRequest("invalid id: empty", field: "id") }
    guard id.utf8.count <= FieldLimits.id else { throw ShopError.badRequest("invalid id: \(id.utf8.count) bytes, at most \(FieldLimits.id)", field: "id") }
    return id
}

/// The `id` of the path, percent-decoded as a path segment is (`%2D` is `-`); a 400 naming
/// `id` for an escape that is not one. The router hands the segment over as sent: `GET
/// /customer/<id with %2D for ->` answered `null` for a customer that exists, and PUT 404.
func pathID(_ context: ShopRequestContext) throws -> String {
    let raw = try context.parameters.require("id")
    guard raw.contains("%") else { return raw }
    // By hand: Foundation's `removingPercentEncoding` here keeps "%ZZ" and a cut "%2" as they are.
    func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    let bytes = Array(raw.utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        guard bytes[i] == UInt8(ascii: "%") else {
            out.append(bytes[i])
            i += 1
            continue
        }
        guard i + 2 < bytes.count, let high = hex(bytes[i + 1]), let low = hex(bytes[i + 2]) else {
            throw ShopError.badRequest("the id in the path has a '%' that is not a percent escape (%XX)", field: "id")
        }
        out.append(high << 4 | low)
        i += 3
    }
    guard let decoded = String(validating: out, as: UTF8.self) else {
        throw ShopError.badRequest("the id in the path is not UTF-8 once its percent escapes are decoded", field: "id")
    }
    return decoded
}

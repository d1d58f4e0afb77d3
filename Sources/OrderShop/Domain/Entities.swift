import Foundation

/// One of the five entities, with the JSON shape of the original and the rules a command body must follow.
public protocol ShopEntity: Codable, Sendable, Hashable {
    static var type: EntityType { get }
    var id: String { get set }
    /// Builds the entity from a command body, validating every field; `current` is the entity a
    /// PUT replaces (nil on create).
    init(fields: FieldReader, id: String, current: Self?) throws(ShopError)
    /// The value of the type's unique field (``EntityType/uniqueField``), if it has one.
    var uniqueValue: String? { get }
    /// The id this entity references (``EntityType/reference``), if any.
    var referenceValue: String? { get }
    /// The fields in the order the original writes them.
    var jsonFields: [(String, JSONValue)] { get }
    /// The names of those fields: a command body may hold these and no others.
    static var fieldNames: [String] { get }
}

extension ShopEntity {
    public var uniqueValue: String? { nil }
    public var referenceValue: String? { nil }
    /// The entity as JSON, keys in the original's order.
    public var json: [UInt8] { JSONWriter.object(jsonFields) }
}

/// `{id, name, email}`.
public struct Customer: ShopEntity {
    public static let type = EntityType.customer
    public static let fieldNames = ["id", "name", "email"]
    public var id: String
    public var name: String
    public var email: String

    public init(id: String, name: String, email: String) {
        self.id = id
        self.name = name
        self.email = email
    }

    public init(fields f: FieldReader, id: String, current: Customer?) throws(ShopError) {
        let email = try f.email("email")
        self.init(id: id, name: try f.string("name", maxBytes: FieldLimits.name), email: email)
    }

    public var jsonFields: [(String, JSONValue)] { [("id", .string(id)), ("name", .string(name)), ("email", .string(email))] }
}

/// `{id, name, price}`; the price in euros.
public struct Product: ShopEntity {
    public static let type = EntityType.product
    public static let fieldNames = ["id", "name", "price"]
    public var id: String
    public var name: String
    public var price: JSONNumber

    public init(id: String, name: String, price: Double) {
        self.id = id
        self.name = name
        self.price = JSONNumber(price)
    }

    public init(fields f: FieldReader, id: String, current: Product?) throws(ShopError) {
        self.init(id: id, name: try f.string("name", maxBytes: FieldLimits.name), price: try f.number("price", minimum: 0, maximum: FieldLimits.price))
    }

    public var jsonFields: [(String, JSONValue)] { [("id", .string(id)), ("name", .string(name)), ("price", .number(price.value))] }
}

/// `{id, product_id, amount}`: the stock of one product.
public struct Inventory: ShopEntity {
    public static let type = EntityType.inventory
    public static let fieldNames = ["id", "product_id", "amount"]
    public var id: String
    public var productID: String
    public var amount: Int

    enum CodingKeys: String, CodingKey {
        case id
        case productID = "product_id"
        case amount
    }

    public init(id: String, productID: String, amount: Int) {
        self.id = id
        self.productID = productID
        self.amount = amount
    }

    public init(fields f: FieldReader, id: String, current: Inventory?) throws(ShopError) {
        self.init(id: id, productID: try f.string("product_id", maxBytes: FieldLimits.id), amount: try f.integer("amount", in: 0...1_000_000_000))
    }

    public var uniqueValue: String? { productID }
    public var referenceValue: String? { productID }
    public var jsonFields: [(String, JSONValue)] { [("id", .string(id)), ("product_id", .string(productID)), ("amount", .number(Double(amount)))] }
}

/// `{id, product_ids, customer_id}`: one unit of each listed product (a product listed twice is two units).
public struct Order: ShopEntity {
    public static let type = EntityType.order
    public static let fieldNames = ["id", "product_ids", "customer_id"]
    /// The most units one order may list.
    public static let maxProducts = 1000
    public var id: String
    public var productIDs: [String]
    public var customerID: String

    enum CodingKeys: String, CodingKey {
        case id
        case productIDs = "product_ids"
        case customerID = "customer_id"
    }

    public init(id: String, productIDs: [String], customerID: String) {
        self.id = id
        self.productIDs = productIDs
        self.customerID = customerID
    }

    public init(fields f: FieldReader, id: String, current: Order?) throws(ShopError) {
        let productIDs = try f.strings("product_ids", maxCount: Self.maxProducts)
        let units: [String: Int] = productIDs.reduce(into: [:]) { $0[$1, default: 0] += 1 }
        if let line = units.first(where: { $0.value > FieldLimits.unitsPerLine }) {
            throw ShopError.badRequest(
                "field 'product_ids' lists product \(line.key) \(line.value) times; at most \(FieldLimits.unitsPerLine) units of one product per order"
                    + (f.item.map { " (item \($0))" } ?? ""), field: "product_ids")
        }
        self.init(id: id, productIDs: productIDs, customerID: try f.string("customer_id", maxBytes: FieldLimits.id))
    }

    public var jsonFields: [(String, JSONValue)] {
        [("id", .string(id)), ("product_ids", .array(productIDs.map { .string($0) })), ("customer_id", .string(customerID))]
    }

    /// Units per product.
    public var units: [String: Int] { productIDs.reduce(into: [:]) { $0[$1, default: 0] += 1 } }
}

/// `{id, order_id, done}`: a payment of an order; `done` in epoch seconds.
public struct Billing: ShopEntity {
    public static let type = EntityType.billing
    public static let fieldNames = ["id", "order_id", "done"]
    public var id: String
    public var orderID: String
    public var done: Int

    enum CodingKeys: String, CodingKey {
        case id
        case orderID = "order_id"
        case done
    }

    public init(id: String, orderID: String, done: Int) {
        self.id = id
        self.orderID = orderID
        self.done = done
    }

    /// `done` may be given; otherwise it is now (on create) or kept (on update).
    public init(fields f: FieldReader, id: String, current: Billing?) throws(ShopError) {
        let done = f.has("done") ? try f.integer("done", in: 0...253_402_300_799) : (current?.done ?? Int(Date().timeIntervalSince1970))
        self.init(id: id, orderID: try f.string("order_id", maxBytes: FieldLimits.id), done: done)
    }

    public var uniqueValue: String? { orderID }
    public var referenceValue: String? { orderID }
    public var jsonFields: [(String, JSONValue)] { [("id", .string(id)), ("order_id", .string(orderID)), ("done", .number(Double(done)))] }
}

/// JSON encoding and decoding with the settings OrderShop uses everywhere.
public enum JSONCoding {
    /// Encodes a value (no escaped slashes, keys sorted). Entities use ``ShopEntity/json`` instead.
    public static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        // Our own types never fail to encode; a failure here is a programming error worth a clear message.
        do { return Array(try encoder.encode(value)) } catch { preconditionFailure("JSON encoding failed: \(error)") }
    }

    public static func decode<T: Decodable>(_ type: T.Type, from bytes: some Collection<UInt8>) throws -> T {
        try JSONDecoder().decode(type, from: Data(bytes))
    }
}

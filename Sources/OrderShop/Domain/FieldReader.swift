/// The largest values a command accepts (stated in the README). They bound what a worker builds
/// from an event: a thank-you mail lists each unit's product name, so names, units per order and
/// the mail size cap are chosen together (1,000 units x 200 bytes fits in ``mail``).
public enum FieldLimits {
    /// Any string field not listed below, in bytes of UTF-8.
    public static let text = 200
    /// Names of customers and products, in bytes of UTF-8.
    public static let name = 200
    /// E-mail addresses (RFC 5321's limit), in bytes.
    public static let email = 254
    /// Ids, in the path and in references (`product_id`, `product_ids`, ...), in bytes.
    public static let id = 200
    /// Units of one product in one order (one order line).
    public static let unitsPerLine = 100
    /// A product's price, in euros: 10^9. An order of ``Order/maxProducts`` (1,000) units at that
    /// price sums to 10^12 euros, which the mails add in decimal to the cent
    /// (``MailHandlerSupport/exactSum(_:)``). Before this bound a price of 10^300 was accepted,
    /// and every bill naming it was dead-lettered ("the prices add up to more than a number can hold").
    public static let price: Double = 1e9
    /// A mail's text, in bytes: msg refuses larger ones (413).
    public static let mail = 256 << 10
}

/// Reads the fields of one JSON object from a request body, with errors that name the field
/// (and, in a batch, the position of the object: `item 3`).
public struct FieldReader: Sendable {
    public let object: [String: JSONValue]
    /// The position in a batch (0-based), for messages.
    public let item: Int?

    public init(_ value: JSONValue, item: Int? = nil) throws(ShopError) {
        guard case .object(let o) = value else {
            throw ShopError.badRequest("expected a JSON object\(Self.suffix(item)), got \(value.kind)", field: "body")
        }
        self.object = o
        self.item = item
    }

    private static func suffix(_ item: Int?) -> String { item.map { " (item \($0))" } ?? "" }
    private var suffix: String { Self.suffix(item) }

    private func value(_ name: String) throws(ShopError) -> JSONValue {
        guard let v = object[name] else {
            throw ShopError.badRequest("missing field '\(name)'\(suffix)", field: name)
        }
        // Present, but null: said so (a trial's `"email": null` was told the field was missing).
        guard v != .null else { throw ShopError.badRequest("field '\(name)' is null\(suffix); it needs a value", field: name) }
        return v
    }

    private func wrongKind(_ name: String, _ expected: String, _ got: JSONValue) -> ShopError {
        // A number that is not the kind asked for is named ("got 1.5", not "got a number").
        let what = if case .number(let n) = got { "\(JSONNumber(n))" } else { got.kind }
        return ShopError.badRequest("field '\(name)' must be \(expected)\(suffix), got \(what)", field: name)
    }

    /// A non-empty string of at most `maxBytes` bytes of UTF-8 (see ``FieldLimits``).
    public func string(_ name: String, maxBytes: Int = FieldLimits.text) throws(ShopError) -> String {
        let v = try value(name)
        guard case .string(let s) = v else { throw wrongKind(name, "a string", v) }
        guard !s.isEmpty else { throw ShopError.badRequest("field '\(name)' must not be empty\(suffix)", field: name) }
        guard s.utf8.count <= maxBytes else {
            throw ShopError.badRequest("field '\(name)' is longer than \(maxBytes) bytes\(suffix)", field: name)
        }
        return s
    }

    /// An e-mail address: a string of at most ``FieldLimits/email`` bytes with an `@` and no
    /// white space (a customer's `email`, msg's `to`: the same rule, so that a customer's
    /// welcome mail is never refused by msg).
    public func email(_ name: String) throws(ShopError) -> String {
        let email = try string(name, maxBytes: FieldLimits.email)
        guard email.contains("@"), !email.contains(where: \.isWhitespace) else {
            throw ShopError.badRequest("field '\(name)' must be an e-mail address\(suffix)", field: name)
        }
        return email
    }

    /// A finite number, at least `minimum`.
    public func number(_ name: String, minimum: Double = -.infinity, maximum: Double = .infinity) throws(ShopError) -> Double {
        let v = try value(name)
        guard case .number(let n) = v, n.isFinite else { throw wrongKind(name, "a number", v) }
        guard n >= minimum else {
            throw ShopError.badRequest("field '\(name)' must be at least \(JSONNumber(minimum))\(suffix)", field: name)
        }
        guard n <= maximum else {
            throw ShopError.badRequest("field '\(name)' must be at most \(JSONNumber(maximum))\(suffix)", field: name)
        }
        return n
    }

    /// A whole number in `range`.
    public func integer(_ name: String, in range: ClosedRange<Int> = Int.min...Int.max) throws(ShopError) -> Int {
        let v = try value(name)
        guard case .number(let n) = v, let i = JSONNumber(n).integer else {
            // 1e20 is whole, only too large to be one exactly: said as out of range, not "not a whole number".
            if case .number(let n) = v, n.rounded() == n, range != Int.min...Int.max {
                throw ShopError.badRequest("field '\(name)' must be between \(range.lowerBound) and \(range.upperBound)\(suffix)", field: name)
            }
            throw wrongKind(name, "a whole number", v)
        }
        guard range.contains(i) else {
            throw ShopError.badRequest("field '\(name)' must be between \(range.lowerBound) and \(range.upperBound)\(suffix)", field: name)
        }
        return i
    }

    /// A non-empty array of non-empty strings, at most `maxCount` long.
    public func strings(_ name: String, maxCount: Int) throws(ShopError) -> [String] {
        let v = try value(name)
        guard case .array(let items) = v else { throw wrongKind(name, "an array of strings", v) }
        guard !items.isEmpty else { throw ShopError.badRequest("field '\(name)' must not be empty\(suffix)", field: name) }
        guard items.count <= maxCount else {
            throw ShopError.badRequest("field '\(name)' has more than \(maxCount) elements\(suffix)", field: name)
        }
        var out: [String] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard case .string(let s) = item, !s.isEmpty else { throw wrongKind(name, "an array of non-empty strings", item) }
            guard s.utf8.count <= FieldLimits.id else {
                throw ShopError.badRequest("field '\(name)' has an element longer than \(FieldLimits.id) bytes\(suffix)", field: name)
            }
            out.append(s)
        }
        return out
    }

    /// True when the field is present (and not null).
    public func has(_ name: String) -> Bool {
        if let v = object[name], v != .null { return true }
        return false
    }

    /// Throws 400 naming the first field (in sorted order) that is not one of `known`: a field
    /// the entity does not have would be dropped without a word (a client's `phone` was
    /// answered 200 and never stored), so it is refused instead, naming what the object may hold.
    public func refuseUnknown(_ known: [String], in what: String) throws(ShopError) {
        guard let unknown = object.keys.filter({ !known.contains($0) }).min() else { return }
        // The message shows it escaped, cut to 64 characters; `field` holds it as sent (the
        // JSON answer escapes it), cut the same, so that a client can match it to its key.
        let name = LogText.escaped(unknown, limit: 64)
        let field = unknown.count > 64 ? String(unknown.prefix(64)) + "…" : unknown
        throw ShopError.badRequest("unknown field '\(name)'\(suffix); \(what) has the fields \(known.joined(separator: ", "))", field: field)
    }

    /// On PUT, an `id` in the body (the original client sends the whole entity back) must be the
    /// id of the path.
    public func checkID(matches id: String) throws(ShopError) {
        guard let v = object["id"] else { return }
        // Null is refused as for any field (a trial: `"id": null` was answered 200).
        guard v != .null else { throw ShopError.badRequest("field 'id' is null; leave it out, or give the id of the path", field: "id") }
        guard case .string(let s) = v, s == id else {
            throw ShopError.badRequest("field 'id' in the body does not match the id in the path", field: "id")
        }
    }
}

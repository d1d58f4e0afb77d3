/// A strict JSON parser for request bodies (RFC 8259), whose every error names the field it is in.
///
/// Why not `JSONDecoder`: it accepts duplicate keys (the first wins, so `{"amount": 1, "amount":
/// 1000}` is read differently by different readers of the same event), and its errors (invalid
/// UTF-8, `1e309`) are `DecodingError`s without the field. Here a duplicate key, a number that
/// does not fit a double, invalid UTF-8 or a control character in a string is a 400 naming the
/// top-level field it is in (or `body` when it is in none), and nesting is limited.
struct JSONParser {
    /// Deeper nesting is refused (no request of ours nests more than 3 levels).
    static let maxDepth = 32

    private let bytes: [UInt8]
    private var i = 0
    /// The keys of the objects being read, outermost first.
    private var keys: [String] = []

    private init(_ bytes: [UInt8]) { self.bytes = bytes }

    static func parse(_ bytes: [UInt8]) throws(ShopError) -> JSONValue {
        var p = JSONParser(bytes)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        if p.i < p.bytes.count { throw p.fail("unexpected data after the JSON value at byte \(p.i)") }
        return value
    }

    /// The field an error is about: the outermost key being read (items of a top-level array
    /// are objects whose keys are the fields).
    private var field: String {
        if case .some(let first) = keys.first { return first }
        return "body"
    }

    private func fail(_ message: String) -> ShopError {
        ShopError.badRequest("malformed JSON: \(message)" + (keys.isEmpty ? "" : " (in field '\(keys.joined(separator: "."))')"), field: field)
    }

    private mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x0D || bytes[i] == 0x09 { i += 1 }
    }

    private mutating func expect(_ literal: String, _ value: JSONValue) throws(ShopError) -> JSONValue {
        let l = Array(literal.utf8)
        guard bytes.count - i >= l.count, Array(bytes[i..<i + l.count]) == l else { throw fail("invalid literal at byte \(i)") }
        i += l.count
        return value
    }

    private mutating func value(depth: Int) throws(ShopError) -> JSONValue {
        guard depth <= Self.maxDepth else { throw fail("nested deeper than \(Self.maxDepth) levels") }
        guard i < bytes.count else { throw fail("unexpected end of the body") }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw fail("unexpected character at byte \(i)")
        }
    }

    private mutating func object(depth: Int) throws(ShopError) -> JSONValue {
        var out: [String: JSONValue] = [:]
        try elements(until: UInt8(ascii: "}"), in: "an object") { (p: inout JSONParser) throws(ShopError) in
            guard p.i < p.bytes.count, p.bytes[p.i] == UInt8(ascii: "\"") else { throw p.fail("expected a key in quotes at byte \(p.i)") }
            let key = try p.string()
            p.keys.append(key)
            if out[key] != nil { throw p.fail("duplicate key '\(key)'") }
            p.skipSpace()
            guard p.i < p.bytes.count, p.bytes[p.i] == UInt8(ascii: ":") else { throw p.fail("expected ':' at byte \(p.i)") }
            p.i += 1
            p.skipSpace()
            out[key] = try p.value(depth: depth + 1)
            p.keys.removeLast()
        }
        return .object(out)
    }

    private mutating func array(depth: Int) throws(ShopError) -> JSONValue {
        var out: [JSONValue] = []
        try elements(until: UInt8(ascii: "]"), in: "an array") { (p: inout JSONParser) throws(ShopError) in out.append(try p.value(depth: depth + 1)) }
        return .array(out)
    }

    /// Reads `open element (, element)* close` (or `open close`), the opening byte at `i`.
    private mutating func elements(
        until close: UInt8, in what: String, _ element: (inout JSONParser) throws(ShopError) -> Void
    ) throws(ShopError) {
        i += 1
        skipSpace()
        if i < bytes.count, bytes[i] == close {
            i += 1
            return
        }
        while true {
            skipSpace()
            try element(&self)
            skipSpace()
            guard i < bytes.count else { throw fail("unexpected end of the body in \(what)") }
            if bytes[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard bytes[i] == close else { throw fail("expected ',' or '\(Character(Unicode.Scalar(close)))' at byte \(i)") }
            i += 1
            return
        }
    }

    private mutating func number() throws(ShopError) -> JSONValue {
        let start = i
        func digits() -> Int {
            let s = i
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        guard digits() > 0 else { throw fail("invalid number at byte \(start)") }
        if bytes[intStart] == UInt8(ascii: "0"), i - intStart > 1 { throw fail("number with a leading zero at byte \(start)") }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw fail("invalid number at byte \(start)") }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail("invalid number at byte \(start)") }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        guard let n = Double(text), n.isFinite else { throw fail("the number \(text.prefix(40)) is out of range") }
        return .number(n)
    }

    private mutating func string() throws(ShopError) -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < bytes.count else { throw fail("unterminated string") }
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "\""):
                i += 1
                guard let s = String(validating: out, as: UTF8.self) else { throw fail("a string is not valid UTF-8") }
                return s
            case UInt8(ascii: "\\"):
                i += 1
                guard i < bytes.count else { throw fail("unterminated string") }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard bytes.count - i >= 6, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw fail("a lone surrogate \\u escape")
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw fail("a lone surrogate \\u escape") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw fail("a lone surrogate \\u escape")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("an invalid \\u escape") }
                    out += Array(String(Character(u)).utf8)
                default: throw fail("an invalid escape in a string")
                }
            default:
                guard b >= 0x20 else { throw fail("a control character in a string must be escaped") }
                out.append(b)
                i += 1
            }
        }
    }

    private mutating func hex4() throws(ShopError) -> UInt32 {
        guard bytes.count - i >= 4 else { throw fail("an invalid \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("an invalid \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }
}

/// A stream entry id `ms-seq`, ordered as Redis orders them.
public struct StreamID: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public var milliseconds: UInt64
    public var sequence: UInt64

    public init(milliseconds: UInt64, sequence: UInt64) {
        self.milliseconds = milliseconds
        self.sequence = sequence
    }

    /// Parses `ms-seq` or `ms` (sequence 0). Byte by byte on purpose: ids are parsed for every
    /// settled entry, and the generic `UInt64(Substring)` path with a Character search for the
    /// dash cost more than the rest of a settle (perf, worker drain bench).
    public init?(_ text: some StringProtocol) {
        var text = String(text)
        guard let id = text.withUTF8({ Self.parse($0) }) else { return nil }
        self = id
    }

    private static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> StreamID? {
        var ms: UInt64 = 0
        var seq: UInt64 = 0
        var digits = 0
        var sawDash = false
        for byte in bytes {
            if byte == UInt8(ascii: "-") {
                guard !sawDash, digits > 0 else { return nil }
                sawDash = true
                digits = 0
                continue
            }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let digit = UInt64(byte &- UInt8(ascii: "0"))
            if sawDash {
                let (m, o1) = seq.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(digit)
                guard !o1, !o2 else { return nil }
                seq = a
            } else {
                let (m, o1) = ms.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(digit)
                guard !o1, !o2 else { return nil }
                ms = a
            }
            digits += 1
        }
        guard digits > 0 else { return nil }
        return StreamID(milliseconds: ms, sequence: seq)
    }

    /// `0-0`, before every entry.
    public static let zero = StreamID(milliseconds: 0, sequence: 0)

    public var description: String { "\(milliseconds)-\(sequence)" }

    public static func < (lhs: StreamID, rhs: StreamID) -> Bool {
        (lhs.milliseconds, lhs.sequence) < (rhs.milliseconds, rhs.sequence)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let id = StreamID(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad stream id \(text)"))
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

extension RedisArgument {
    public init(_ id: StreamID) { self.init(id.description) }
}

/// One stream entry: its id and its field/value pairs in order.
public struct StreamEntry: Sendable, Hashable {
    public var id: String
    public var fields: [StreamField]
    /// True when the entry was deleted (trimmed) but its id is still pending: XREADGROUP with an
    /// explicit id reports such entries with no fields.
    public var isDeleted: Bool

    public init(id: String, fields: [StreamField], isDeleted: Bool = false) {
        self.id = id
        self.fields = fields
        self.isDeleted = isDeleted
    }

    /// The first value of a field, as bytes.
    public subscript(field: String) -> [UInt8]? {
        for f in fields where f.name == field { return f.value }
        return nil
    }

    /// The first value of a field, as UTF-8 text.
    public func string(_ field: String) -> String? {
        self[field].map { String(decoding: $0, as: UTF8.self) }
    }

    public var streamID: StreamID? { StreamID(id) }

    static func decode(_ reply: RESPValue) throws(RedisError) -> StreamEntry {
        guard case .array(let parts) = reply, parts.count == 2, let id = parts[0].string else {
            throw unexpected(reply, "[id, fields]")
        }
        switch parts[1] {
        case .null:
            return StreamEntry(id: id, fields: [], isDeleted: true)
        case .array(let flat):
            var fields: [StreamField] = []
            fields.reserveCapacity(flat.count / 2)
            var i = 0
            while i + 1 < flat.count {
                fields.append(StreamField(name: flat[i].string ?? "", value: flat[i + 1].bytes ?? []))
                i += 2
            }
            return StreamEntry(id: id, fields: fields)
        default:
            throw unexpected(reply, "[id, fields]")
        }
    }

    /// Reads `[id, [name, value, ...]]` (fields nil: deleted) in place.
    static func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> StreamEntry {
        guard try reply.readArray() == 2 else { throw RedisError(.unexpectedReply, "expected [id, fields]") }
        let id = try reply.readString()
        guard let count = try reply.readArray() else { return StreamEntry(id: id, fields: [], isDeleted: true) }
        var fields: [StreamField] = []
        fields.reserveCapacity(count / 2)
        for _ in 0..<count / 2 {
            let name = try reply.readString()
            fields.append(StreamField(name: name, value: try reply.readBytes()))
        }
        if count % 2 == 1 { reply.skip() }
        return StreamEntry(id: id, fields: fields)
    }

    /// Reads a list of entries (nil: none) in place; nils in it (entries deleted meanwhile, in
    /// XCLAIM replies) are skipped.
    static func decodeList(from reply: inout RESPReplyCursor) throws(RedisError) -> [StreamEntry] {
        guard let count = try reply.readArray() else { return [] }
        var out: [StreamEntry] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            if reply.kind == .null {
                reply.skip()
                continue
            }
            out.append(try decode(from: &reply))
        }
        return out
    }

    static func decodeList(_ reply: RESPValue) throws(RedisError) -> [StreamEntry] {
        switch reply {
        case .null: return []
        case .array(let items):
            var out: [StreamEntry] = []
            out.reserveCapacity(items.count)
            for item in items {
                // XCLAIM/XAUTOCLAIM may report a nil in place of an entry deleted meanwhile.
                if case .null = item { continue }
                out.append(try decode(item))
            }
            return out
        default: throw unexpected(reply, "array of entries")
        }
    }
}

/// One field of a stream entry.
public struct StreamField: Sendable, Hashable {
    public var name: String
    public var value: [UInt8]

    public init(name: String, value: [UInt8]) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: String) {
        self.init(name: name, value: Array(value.utf8))
    }
}

/// How to cap a stream: by length or by smallest id, exactly or approximately (`~`, cheaper).
public struct StreamTrim: Sendable, Hashable {
    public enum Strategy: Sendable, Hashable {
        case maxLength(Int)
        case minID(StreamID)
    }
    public var strategy: Strategy
    public var approximate: Bool
    /// With `~`: the most entries one call evicts (LIMIT).
    public var limit: Int?

    public static func maxLength(_ n: Int, approximate: Bool = false, limit: Int? = nil) -> StreamTrim {
        StreamTrim(strategy: .maxLength(n), approximate: approximate, limit: limit)
    }

    public static func minID(_ id: StreamID, approximate: Bool = false, limit: Int? = nil) -> StreamTrim {
        StreamTrim(strategy: .minID(id), approximate: approximate, limit: limit)
    }

    var arguments: [RedisArgument] {
        var a: [RedisArgument]
        switch strategy {
        case .maxLength(let n): a = ["MAXLEN", approximate ? "~" : "=", RedisArgument(n)]
        case .minID(let id): a = ["MINID", approximate ? "~" : "=", RedisArgument(id)]
        }
        if let limit { a += ["LIMIT", RedisArgument(limit)] }
        return a
    }
}

/// Helpers for XINFO-style flat `[name, value, name, value...]` replies.
func keyValuePairs(_ reply: RESPValue) throws(RedisError) -> [String: RESPValue] {
    guard case .array(let flat) = reply else { throw unexpected(reply, "key/value array") }
    var result: [String: RESPValue] = [:]
    var i = 0
    while i + 1 < flat.count {
        if let key = flat[i].string { result[key] = flat[i + 1] }
        i += 2
    }
    return result
}

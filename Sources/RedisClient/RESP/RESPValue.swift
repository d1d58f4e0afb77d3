/// A RESP2 reply, decoded.
public enum RESPValue: Sendable, Hashable {
    /// A status reply such as `+OK`.
    case simpleString(String)
    /// A binary-safe bulk string.
    case bulkString([UInt8])
    /// An integer reply.
    case integer(Int64)
    /// An array reply.
    case array([RESPValue])
    /// The null bulk string or null array.
    case null
    /// An error reply nested in an array (for example inside EXEC's reply).
    case error(String)
}

extension RESPValue {
    /// The value as text, for simple and bulk strings (bulk strings are decoded as UTF-8).
    public var string: String? {
        switch self {
        case .simpleString(let s): s
        case .bulkString(let b): String(decoding: b, as: UTF8.self)
        case .integer(let i): String(i)
        default: nil
        }
    }

    /// The raw bytes of a bulk or simple string.
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let b): b
        case .simpleString(let s): Array(s.utf8)
        default: nil
        }
    }

    /// The value as an integer (integer replies, and bulk strings holding a number).
    public var int: Int? {
        switch self {
        case .integer(let i): Int(i)
        case .bulkString, .simpleString: string.flatMap { Int($0) }
        default: nil
        }
    }

    /// The elements of an array reply.
    public var array: [RESPValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Throws when this is an error reply; returns self otherwise.
    @discardableResult
    public func throwingServerError() throws(RedisError) -> RESPValue {
        if case .error(let message) = self { throw RedisError(serverReply: message) }
        return self
    }
}

extension RESPValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .simpleString(let s): s
        case .bulkString(let b): "\"\(String(decoding: b, as: UTF8.self))\""
        case .integer(let i): "(integer) \(i)"
        case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .null: "(nil)"
        case .error(let e): "(error) \(e)"
        }
    }
}

/// Shorthand for decoding failures of typed commands.
@inline(__always)
func unexpected(_ reply: RESPValue, _ expected: String) -> RedisError {
    RedisError(.unexpectedReply, "expected \(expected), got \(reply)")
}

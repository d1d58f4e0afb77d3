import CHiredis
#if canImport(Glibc)
import Glibc
#endif

/// A reply as hiredis parsed it (flat nodes in pre-order: an array, then its elements), read in
/// place. Commands with large replies (XREADGROUP, XRANGE) decode from it straight into their
/// response, on the connection's thread, without building ``RESPValue``s first: a stream entry
/// then costs its own allocations only. Valid only inside ``RedisCommand/decode(from:)``.
public struct RESPReplyCursor {
    /// What the next value is.
    public enum Kind: Sendable, Equatable {
        case bulkString, array, integer, null, simpleString, error, end
    }

    private let nodes: UnsafePointer<chiredis_node>
    private let count: Int
    private let bytes: UnsafePointer<UInt8>?
    private var position = 0

    init(nodes: UnsafePointer<chiredis_node>, count: Int, bytes: UnsafePointer<UInt8>?) {
        self.nodes = nodes
        self.count = count
        self.bytes = bytes
    }

    /// The kind of the value at the cursor.
    public var kind: Kind {
        guard position < count else { return .end }
        switch nodes[position].type {
        case REDIS_REPLY_STRING: return .bulkString
        case REDIS_REPLY_ARRAY: return .array
        case REDIS_REPLY_INTEGER: return .integer
        case REDIS_REPLY_STATUS: return .simpleString
        case REDIS_REPLY_ERROR: return .error
        default: return .null
        }
    }

    /// Reads an array's header: its element count, or nil for a null. The elements follow.
    public mutating func readArray() throws(RedisError) -> Int? {
        switch kind {
        case .array:
            defer { position += 1 }
            return Int(nodes[position].integer)
        case .null:
            position += 1
            return nil
        default:
            throw RedisError(.unexpectedReply, "expected an array, got \(kind)")
        }
    }

    /// Reads a bulk or simple string's bytes.
    public mutating func readBytes() throws(RedisError) -> [UInt8] {
        try withBytes { Array($0) }
    }

    /// Reads a bulk or simple string as UTF-8 text.
    public mutating func readString() throws(RedisError) -> String {
        try withBytes { String(decoding: $0, as: UTF8.self) }
    }

    private mutating func withBytes<T>(_ body: (UnsafeBufferPointer<UInt8>) -> T) throws(RedisError) -> T {
        switch kind {
        case .bulkString, .simpleString, .error:
            let node = nodes[position]
            position += 1
            guard node.length > 0, let bytes else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
            return body(UnsafeBufferPointer(start: bytes + node.offset, count: node.length))
        default:
            throw RedisError(.unexpectedReply, "expected a string, got \(kind)")
        }
    }

    /// True when the value at the cursor is an error reply that starts with `prefix` (its
    /// code, e.g. `READONLY`); reads nothing.
    func isError(startingWith prefix: StaticString) -> Bool {
        guard position < count, nodes[position].type == REDIS_REPLY_ERROR, let bytes else { return false }
        let node = nodes[position]
        let length = prefix.utf8CodeUnitCount
        guard node.length >= length else { return false }
        return memcmp(bytes + node.offset, prefix.utf8Start, length) == 0
    }

    /// Skips the value at the cursor (with its elements).
    public mutating func skip() {
        guard position < count else { return }
        let node = nodes[position]
        position += 1
        if node.type == REDIS_REPLY_ARRAY {
            for _ in 0..<Int(node.integer) { skip() }
        }
    }

    /// Reads the value at the cursor (with its elements) as a ``RESPValue``.
    public mutating func readValue() -> RESPValue {
        guard position < count else { return .null }
        let node = nodes[position]
        switch node.type {
        case REDIS_REPLY_ARRAY:
            position += 1
            let n = Int(node.integer)
            var elements = [RESPValue]()
            elements.reserveCapacity(n)
            for _ in 0..<n { elements.append(readValue()) }
            return .array(elements)
        case REDIS_REPLY_STRING:
            return .bulkString((try? readBytes()) ?? [])
        case REDIS_REPLY_STATUS:
            return .simpleString((try? readString()) ?? "")
        case REDIS_REPLY_ERROR:
            return .error((try? readString()) ?? "")
        case REDIS_REPLY_INTEGER:
            position += 1
            return .integer(Int64(node.integer))
        default:
            position += 1
            return .null
        }
    }
}

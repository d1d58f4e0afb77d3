import CHiredis

/// Encodes commands as RESP arrays of bulk strings (binary safe) into a byte buffer.
///
/// The framing is written here rather than with hiredis's `redisFormatCommandArgv`: that
/// function formats every length with sprintf and mallocs a buffer per command, and perf showed
/// vfprintf as the client's largest cost when pipelining. The bytes are the same
/// (``formatWithHiredis(_:)`` is the reference the tests compare against); hiredis still decodes
/// every reply.
struct RESPEncoder {
    private(set) var buffer: [UInt8] = []

    init(reservingCapacity capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    mutating func removeAll() { buffer.removeAll(keepingCapacity: true) }

    /// Appends one command: `*<count>\r\n` then `$<length>\r\n<bytes>\r\n` per argument.
    mutating func encode(_ arguments: [RedisArgument]) {
        buffer.append(UInt8(ascii: "*"))
        appendDecimal(arguments.count)
        appendCRLF()
        for argument in arguments {
            buffer.append(UInt8(ascii: "$"))
            appendDecimal(argument.bytes.count)
            appendCRLF()
            buffer.append(contentsOf: argument.bytes)
            appendCRLF()
        }
    }

    private mutating func appendCRLF() {
        buffer.append(13)
        buffer.append(10)
    }

    /// Appends a non-negative integer in decimal, without allocating.
    private mutating func appendDecimal(_ value: Int) {
        var divisor = 1
        while divisor <= value / 10 { divisor *= 10 }
        while divisor > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
            divisor /= 10
        }
    }

    /// The same command framed by hiredis's `redisFormatCommandArgv`, the reference encoding.
    static func formatWithHiredis(_ arguments: [RedisArgument]) -> [UInt8] {
        let count = arguments.count
        var flat: [UInt8] = []
        var lengths: [Int] = []
        for a in arguments {
            flat.append(contentsOf: a.bytes)
            lengths.append(a.bytes.count)
        }
        return flat.withUnsafeBufferPointer { flatBuffer in
            let base = flatBuffer.baseAddress.map { UnsafeRawPointer($0) }
            var argv: [UnsafePointer<CChar>?] = []
            var offset = 0
            // An empty argument still needs a non-NULL pointer: hiredis copies `len` bytes from it.
            let empty: StaticString = ""
            for length in lengths {
                if let base, length > 0 {
                    argv.append((base + offset).assumingMemoryBound(to: CChar.self))
                } else {
                    argv.append(UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self))
                }
                offset += length
            }
            var target: UnsafeMutablePointer<CChar>? = nil
            let length = argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    redisFormatCommandArgv(&target, Int32(count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                }
            }
            guard length > 0, let target else { preconditionFailure("redisFormatCommandArgv failed (out of memory)") }
            defer { redisFreeCommand(target) }
            return target.withMemoryRebound(to: UInt8.self, capacity: Int(length)) {
                Array(UnsafeBufferPointer(start: $0, count: Int(length)))
            }
        }
    }
}

/// Decodes replies with hiredis's `redisReader` into ``RESPValue``s.
final class RESPDecoder {
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        guard let reader = redisReaderCreate() else { preconditionFailure("redisReaderCreate failed (out of memory)") }
        chiredis_reader_keep_buffer(reader)
        self.reader = reader
    }

    deinit { redisReaderFree(reader) }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if chiredis_reader_feed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw RedisError(.protocolError, String(cString: chiredis_reader_error(reader)))
        }
    }

    /// The next complete reply, or nil when more bytes are needed.
    func next() throws(RedisError) -> RESPValue? {
        var reply: UnsafeMutablePointer<redisReply>? = nil
        if chiredis_reader_get_reply(reader, &reply) != REDIS_OK {
            throw RedisError(.protocolError, String(cString: chiredis_reader_error(reader)))
        }
        guard let reply else { return nil }
        defer { freeReplyObject(reply) }
        return Self.convert(reply)
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let r = reply.pointee
        switch r.type {
        case REDIS_REPLY_STRING:
            guard let str = r.str, r.len > 0 else { return .bulkString([]) }
            return .bulkString(
                str.withMemoryRebound(to: UInt8.self, capacity: r.len) { Array(UnsafeBufferPointer(start: $0, count: r.len)) })
        case REDIS_REPLY_ARRAY:
            var elements = [RESPValue]()
            elements.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let child = r.element[i] { elements.append(convert(child)) } else { elements.append(.null) }
            }
            return .array(elements)
        case REDIS_REPLY_INTEGER:
            return .integer(r.integer)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_STATUS:
            return .simpleString(text(r))
        case REDIS_REPLY_ERROR:
            return .error(text(r))
        default:
            return .null
        }
    }

    private static func text(_ r: redisReply) -> String {
        guard let str = r.str, r.len > 0 else { return "" }
        return str.withMemoryRebound(to: UInt8.self, capacity: r.len) {
            String(decoding: UnsafeBufferPointer(start: $0, count: r.len), as: UTF8.self)
        }
    }
}

import CHiredis

/// Encodes commands with hiredis's `redisFormatCommandArgv` (binary safe) into a byte buffer.
struct RESPEncoder {
    private(set) var buffer: [UInt8] = []

    init(reservingCapacity capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    mutating func removeAll() { buffer.removeAll(keepingCapacity: true) }

    /// Appends one command. hiredis computes the frame; we only keep its bytes.
    mutating func encode(_ arguments: [RedisArgument]) {
        let count = arguments.count
        // One flat copy of every argument keeps all pointers valid for the single C call.
        var total = 0
        for a in arguments { total += a.bytes.count }
        var flat = [UInt8]()
        flat.reserveCapacity(total)
        var lengths = [Int](repeating: 0, count: count)
        for (i, a) in arguments.enumerated() {
            flat.append(contentsOf: a.bytes)
            lengths[i] = a.bytes.count
        }
        flat.withUnsafeBufferPointer { flatBuffer in
            let base = flatBuffer.baseAddress.map { UnsafeRawPointer($0) }
            var argv = [UnsafePointer<CChar>?](repeating: nil, count: count)
            var offset = 0
            // An empty argument still needs a non-NULL pointer: hiredis copies `len` bytes from it.
            let empty: StaticString = ""
            for i in 0..<count {
                if let base, lengths[i] > 0 {
                    argv[i] = (base + offset).assumingMemoryBound(to: CChar.self)
                } else {
                    argv[i] = UnsafeRawPointer(empty.utf8Start).assumingMemoryBound(to: CChar.self)
                }
                offset += lengths[i]
            }
            var target: UnsafeMutablePointer<CChar>? = nil
            let length = argv.withUnsafeMutableBufferPointer { argvBuffer in
                lengths.withUnsafeBufferPointer { lengthBuffer in
                    redisFormatCommandArgv(&target, Int32(count), argvBuffer.baseAddress, lengthBuffer.baseAddress)
                }
            }
            guard length > 0, let target else { preconditionFailure("redisFormatCommandArgv failed (out of memory)") }
            target.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { bytes in
                buffer.append(contentsOf: UnsafeBufferPointer(start: bytes, count: Int(length)))
            }
            redisFreeCommand(target)
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

import CHiredis

/// Encodes commands as RESP arrays of bulk strings (binary safe) into a byte buffer.
///
/// The framing is written here rather than with hiredis's `redisFormatCommandArgv`: that
/// function formats every length with sprintf and mallocs a buffer per command, and perf showed
/// vfprintf as the client's largest cost when pipelining. The bytes are the same
/// (``formatWithHiredis(_:)`` is the reference the tests compare against); hiredis still decodes
/// every reply.
public struct RESPEncoder {
    private(set) var buffer: [UInt8] = []

    public init(reservingCapacity capacity: Int = 0) {
        buffer.reserveCapacity(capacity)
    }

    mutating func removeAll() { buffer.removeAll(keepingCapacity: true) }

    /// Appends one command: `*<count>\r\n` then `$<length>\r\n<bytes>\r\n` per argument.
    public mutating func encode(_ arguments: [RedisArgument]) {
        beginCommand(argumentCount: arguments.count)
        for argument in arguments { append(argument.bytes) }
    }

    /// Starts a command of `argumentCount` arguments, each to be appended with `append`: for
    /// commands that write themselves (``RedisCommand/encode(into:)``) without building a
    /// `[RedisArgument]`, an allocation per argument.
    public mutating func beginCommand(argumentCount: Int) {
        buffer.append(UInt8(ascii: "*"))
        appendDecimal(argumentCount)
        appendCRLF()
    }

    /// Appends one argument (a bulk string).
    public mutating func append(_ bytes: [UInt8]) {
        buffer.append(UInt8(ascii: "$"))
        appendDecimal(bytes.count)
        appendCRLF()
        buffer.append(contentsOf: bytes)
        appendCRLF()
    }

    /// Appends one argument, the string's UTF-8 bytes.
    public mutating func append(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            buffer.append(UInt8(ascii: "$"))
            appendDecimal(utf8.count)
            appendCRLF()
            buffer.append(contentsOf: utf8)
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
///
/// hiredis parses; it builds each reply as a flat list of nodes and one byte buffer (see
/// `chiredis_flat` in the CHiredis shim) rather than its default tree of `redisReply` objects,
/// which costs two mallocs and two frees per value (perf: the largest cost of a connection's
/// thread while a worker drains a stream).
final class RESPDecoder {
    private let flat: UnsafeMutablePointer<chiredis_flat>
    private let reader: UnsafeMutablePointer<redisReader>

    init() {
        flat = UnsafeMutablePointer<chiredis_flat>.allocate(capacity: 1)
        flat.initialize(to: chiredis_flat())
        guard let reader = chiredis_flat_reader_create(flat) else { preconditionFailure("redisReaderCreate failed (out of memory)") }
        self.reader = reader
    }

    deinit {
        redisReaderFree(reader)
        chiredis_flat_free(flat)
        flat.deinitialize(count: 1)
        flat.deallocate()
    }

    func feed(_ bytes: UnsafeRawBufferPointer) throws(RedisError) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if chiredis_reader_feed(reader, base.assumingMemoryBound(to: CChar.self), bytes.count) != REDIS_OK {
            throw RedisError(.protocolError, String(cString: chiredis_reader_error(reader)))
        }
    }

    /// The next complete reply, or nil when more bytes are needed.
    func next() throws(RedisError) -> RESPValue? {
        try next { cursor in cursor.readValue() }
    }

    /// The next complete reply read by `read` in place (see ``RESPReplyCursor``), or nil when
    /// more bytes are needed.
    func next<T>(_ read: (inout RESPReplyCursor) throws(RedisError) -> T) throws(RedisError) -> T? {
        var root: UInt = 0
        if chiredis_flat_reader_get_reply(reader, &root) != REDIS_OK {
            chiredis_flat_reset(flat)
            throw RedisError(.protocolError, String(cString: chiredis_reader_error(reader)))
        }
        guard root != 0 else { return nil }
        defer { chiredis_flat_reset(flat) }
        // A complete reply is the only one in the buffer, and its root is its first node.
        guard root == 1, flat.pointee.count > 0, let nodes = flat.pointee.nodes else {
            throw RedisError(.protocolError, "unexpected reply layout from the RESP reader")
        }
        let bytes = flat.pointee.bytes.map { UnsafeRawPointer($0).assumingMemoryBound(to: UInt8.self) }
        var cursor = RESPReplyCursor(nodes: UnsafePointer(nodes), count: flat.pointee.count, bytes: bytes)
        return try read(&cursor)
    }
}

@testable import RedisClient
import Testing

/// The reply decoder (hiredis parsing into flat nodes) on raw RESP bytes, fed whole and one byte
/// at a time, and reused across replies.
@Suite struct DecoderTests {
    /// Every RESP2 type, nested, with the edge cases: empty and binary bulk strings, null bulk
    /// string and null array, empty array, negative integer, an error nested in an array.
    static let wire = Array(
        ("*9\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n:-42\r\n+OK\r\n"
            + "*2\r\n-ERR nested\r\n*2\r\n$3\r\n\u{0}\r\n\r\n:7\r\n$2\r\n\r\n\r\n"
            + "+PONG\r\n-WRONGTYPE Operation against a key\r\n").utf8)
    static let expected: [RESPValue] = [
        .array([
            .bulkString(Array("hello".utf8)), .bulkString([]), .null, .null, .array([]), .integer(-42), .simpleString("OK"),
            .array([.error("ERR nested"), .array([.bulkString([0, 13, 10]), .integer(7)])]), .bulkString([13, 10]),
        ]),
        .simpleString("PONG"),
        .error("WRONGTYPE Operation against a key"),
    ]

    @Test func wholeBuffer() throws {
        let decoder = RESPDecoder()
        try Self.wire.withUnsafeBytes { try decoder.feed($0) }
        var replies: [RESPValue] = []
        while let reply = try decoder.next() { replies.append(reply) }
        #expect(replies == Self.expected)
    }

    @Test func oneByteAtATime() throws {
        let decoder = RESPDecoder()
        var replies: [RESPValue] = []
        for byte in Self.wire {
            try [byte].withUnsafeBytes { try decoder.feed($0) }
            while let reply = try decoder.next() { replies.append(reply) }
        }
        #expect(replies == Self.expected)
    }

    /// Replies larger than the reused buffers (they grow), then small ones (they are reset).
    @Test func largeRepliesThenSmallOnes() throws {
        let decoder = RESPDecoder()
        let big = [UInt8](repeating: 0x61, count: 10 << 20)
        var wire = Array("*3\r\n$\(big.count)\r\n".utf8) + big + Array("\r\n".utf8)
        wire += Array("*100000\r\n".utf8) + (0..<100_000).flatMap { Array(":\($0)\r\n".utf8) }
        wire += Array("$1\r\nx\r\n".utf8)
        wire += Array("$2\r\nyz\r\n".utf8)
        try wire.withUnsafeBytes { try decoder.feed($0) }
        let first = try #require(try decoder.next())
        guard case .array(let parts) = first, parts.count == 3, case .array(let numbers) = parts[1] else {
            Issue.record("unexpected first reply")
            return
        }
        #expect(parts[0] == .bulkString(big))
        #expect(numbers == (0..<100_000).map { .integer(Int64($0)) })
        #expect(parts[2] == .bulkString(Array("x".utf8)))
        #expect(try decoder.next() == .bulkString(Array("yz".utf8)))
        #expect(try decoder.next() == nil)
    }

    /// XREADGROUP read in place gives what decoding the RESPValue gives: a deleted entry (nil
    /// fields), a nil in the list (skipped), binary values, an odd field count.
    @Test func streamRepliesInPlace() throws {
        let wire = Array(
            ("*2\r\n*2\r\n$1\r\ns\r\n*4\r\n"
                + "*2\r\n$3\r\n1-1\r\n*4\r\n$8\r\nevent_id\r\n$1\r\na\r\n$6\r\nentity\r\n$3\r\n\u{0}\r\n\r\n"
                + "*2\r\n$3\r\n1-2\r\n*-1\r\n"
                + "*-1\r\n"
                + "*2\r\n$3\r\n1-3\r\n*3\r\n$1\r\nf\r\n$1\r\nv\r\n$4\r\nlone\r\n"
                + "*2\r\n$1\r\nt\r\n*0\r\n"
                + "*-1\r\n").utf8)
        let command = XREADGROUP(group: "g", consumer: "c", streams: [("s", ">")], count: 10, block: nil)
        let inPlace = RESPDecoder()
        let viaValue = RESPDecoder()
        try wire.withUnsafeBytes {
            try inPlace.feed($0)
            try viaValue.feed($0)
        }
        let fast = try #require(try inPlace.next { cursor throws(RedisError) in try command.decode(from: &cursor) })
        let slow = try command.decode(try #require(try viaValue.next()))
        #expect(fast == slow)
        #expect(fast.map(\.stream) == ["s", "t"])
        #expect(fast[0].entries.map(\.id) == ["1-1", "1-2", "1-3"])
        #expect(fast[0].entries[0].fields == [StreamField(name: "event_id", value: Array("a".utf8)), StreamField(name: "entity", value: [0, 13, 10])])
        #expect(fast[0].entries[1].isDeleted)
        #expect(fast[0].entries[2].fields == [StreamField(name: "f", value: Array("v".utf8))])
        // The timeout reply (nil): no batches.
        #expect(try inPlace.next { cursor throws(RedisError) in try command.decode(from: &cursor) } == [])
    }

    @Test func protocolErrorIsReported() throws {
        let decoder = RESPDecoder()
        try Array("?bad\r\n".utf8).withUnsafeBytes { try decoder.feed($0) }
        #expect(throws: RedisError.self) { try decoder.next() }
    }
}

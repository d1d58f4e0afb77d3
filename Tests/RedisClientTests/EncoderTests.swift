@testable import RedisClient
import Testing

/// Our RESP framing against hiredis's `redisFormatCommandArgv`, byte for byte.
@Suite struct EncoderTests {
    static let commands: [[RedisArgument]] = [
        ["PING"],
        ["SET", "key", "value"],
        ["SET", "empty", RedisArgument(bytes: [])],
        ["XADD", "s", "*", "f", RedisArgument(bytes: [0, 13, 10, 255, 36, 42])],
        ["ECHO", RedisArgument(bytes: [UInt8](repeating: 0x61, count: 9)), RedisArgument(bytes: [UInt8](repeating: 0x62, count: 10))],
        ["SET", "big", RedisArgument(bytes: [UInt8](repeating: 7, count: 123_456))],
        Array(repeating: RedisArgument("x"), count: 1_000),
    ]

    @Test(arguments: commands)
    func matchesHiredis(_ command: [RedisArgument]) {
        var encoder = RESPEncoder()
        encoder.encode(command)
        #expect(encoder.buffer == RESPEncoder.formatWithHiredis(command))
    }

    @Test func appendsCommandsInOrder() {
        var encoder = RESPEncoder()
        var expected: [UInt8] = []
        for command in Self.commands {
            encoder.encode(command)
            expected += RESPEncoder.formatWithHiredis(command)
        }
        #expect(encoder.buffer == expected)
        encoder.removeAll()
        #expect(encoder.buffer.isEmpty)
    }
}

/// Commands that write themselves (``RedisCommand/encode(into:)``) write what their arguments say.
@Suite struct SelfEncodingTests {
    static let xadds: [XADD] = [
        XADD("s", fields: [StreamField("f", "v")]),
        XADD("{order:1}:events", fields: [StreamField("type", "created"), StreamField(name: "data", value: [0, 13, 10, 255, 36, 42])]),
        XADD("s", id: "1-1", fields: [], noMakeStream: true),
        XADD("s", fields: [StreamField(name: "é", value: [UInt8](repeating: 9, count: 70_000))]),
        XADD("s", fields: [StreamField("f", "v")], trim: .maxLength(10, approximate: true, limit: 5)),
    ]

    @Test(arguments: xadds)
    func xaddWritesItsArguments(_ command: XADD) {
        var written = RESPEncoder()
        command.encode(into: &written)
        #expect(written.buffer == RESPEncoder.formatWithHiredis(command.arguments))
    }
}

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

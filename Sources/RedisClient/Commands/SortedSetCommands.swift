/// `ZCARD key`: how many members the sorted set has (0 when it does not exist).
public struct ZCARD: RedisCommand {
    public var keysAffected: [RedisArgument] { [key] }
    public var isReadOnly: Bool { true }
    public var key: RedisArgument
    public init(_ key: RedisArgument) { self.key = key }
    public var arguments: [RedisArgument] { ["ZCARD", key] }
    public func decode(_ reply: RESPValue) throws(RedisError) -> Int {
        guard let n = reply.int else { throw unexpected(reply, "integer") }
        return n
    }
}

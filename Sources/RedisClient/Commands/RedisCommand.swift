/// A Redis command with a typed response, in the style of valkey-swift: one struct per command.
public protocol RedisCommand: Sendable {
    associatedtype Response: Sendable
    /// The command name and arguments, binary safe.
    var arguments: [RedisArgument] { get }
    /// For blocking commands (`BLOCK ms`): how long the server may hold the reply. The client
    /// waits that long plus ``RedisConfiguration/Timeouts/blockingMargin``.
    var blockingTimeout: Duration? { get }
    /// Turns the reply (never an error reply) into the response.
    func decode(_ reply: RESPValue) throws(RedisError) -> Response
}

extension RedisCommand {
    public var blockingTimeout: Duration? { nil }
}

extension RedisCommand where Response == RESPValue {
    public func decode(_ reply: RESPValue) throws(RedisError) -> RESPValue { reply }
}

/// Any command, as raw arguments, answering the raw reply.
public struct RawCommand: RedisCommand {
    public typealias Response = RESPValue
    public var arguments: [RedisArgument]
    public init(_ arguments: [RedisArgument]) { self.arguments = arguments }
}

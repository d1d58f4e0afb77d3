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
    /// The same, reading the reply in place on the connection's thread (never an error reply).
    /// The default builds the ``RESPValue`` and calls ``decode(_:)``; commands with large
    /// replies decode straight into their response.
    func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> Response
}

extension RedisCommand {
    public var blockingTimeout: Duration? { nil }

    public func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> Response {
        try decode(reply.readValue())
    }
}

/// A reply decoded on the connection's thread: the response, the server's error reply, or a
/// reply the command could not decode (the connection stays usable: the reply was complete).
enum DecodedReply<Response: Sendable>: Sendable {
    case decoded(Response)
    case serverError(String)
    case undecodable(RedisError)

    func get() throws(RedisError) -> Response {
        switch self {
        case .decoded(let response): return response
        case .serverError(let message): throw RedisError(serverReply: message)
        case .undecodable(let error): throw error
        }
    }
}

/// A result that may be a server error reply (for the LOADING retry).
protocol ServerErrorReply {
    var serverErrorMessage: String? { get }
}

extension RESPValue: ServerErrorReply {
    var serverErrorMessage: String? {
        if case .error(let message) = self { return message }
        return nil
    }
}

extension DecodedReply: ServerErrorReply {
    var serverErrorMessage: String? {
        if case .serverError(let message) = self { return message }
        return nil
    }
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

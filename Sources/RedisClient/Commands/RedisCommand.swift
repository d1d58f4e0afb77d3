/// A Redis command with a typed response, in the style of valkey-swift: one struct per command.
public protocol RedisCommand: Sendable {
    associatedtype Response: Sendable
    /// The command name and arguments, binary safe.
    var arguments: [RedisArgument] { get }
    /// Writes the command (its ``arguments``) in RESP. The default encodes ``arguments``;
    /// commands sent in volume write themselves, without an array and an allocation per argument.
    func encode(into encoder: inout RESPEncoder)
    /// For blocking commands (`BLOCK ms`): how long the server may hold the reply. The client
    /// waits that long plus ``RedisConfiguration/Timeouts/blockingMargin``.
    var blockingTimeout: Duration? { get }
    /// The keys the command reads or writes, in argument order. A cluster client routes the
    /// command to the node that owns their slot (and refuses it when they span slots); an empty
    /// list means a keyless command that any node may answer.
    var keysAffected: [RedisArgument] { get }
    /// True when the command never writes (it may then be answered by any node owning the slot).
    var isReadOnly: Bool { get }
    /// True when the server may hold the reply (`BLOCK`): the command occupies its connection.
    var isBlocking: Bool { get }
    /// True when the command must have a connection to itself rather than share a pool's
    /// coalesced round trips (``RedisConnectionPool``): a blocking command would hold up every
    /// command after it, and one that changes the connection's session (`MULTI`, `SELECT`,
    /// `SUBSCRIBE`) would change it under the others.
    var needsOwnConnection: Bool { get }
    /// Turns the reply (never an error reply) into the response.
    func decode(_ reply: RESPValue) throws(RedisError) -> Response
    /// The same, reading the reply in place on the connection's thread (never an error reply).
    /// The default builds the ``RESPValue`` and calls ``decode(_:)``; commands with large
    /// replies decode straight into their response.
    func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> Response
}

extension RedisCommand {
    public var blockingTimeout: Duration? { nil }
    public var keysAffected: [RedisArgument] { [] }
    public var isReadOnly: Bool { false }
    public var isBlocking: Bool { blockingTimeout != nil }
    public var needsOwnConnection: Bool { isBlocking }

    public func encode(into encoder: inout RESPEncoder) { encoder.encode(arguments) }

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

    /// Reads one reply for `command`: an error reply is kept as the server's message (a cluster
    /// client follows MOVED and ASK from it), a reply the command cannot decode as its error.
    static func read<Command: RedisCommand>(_ command: Command, from cursor: inout RESPReplyCursor) -> DecodedReply<Command.Response>
    where Command.Response == Response {
        if cursor.kind == .error { return .serverError((try? cursor.readString()) ?? "") }
        do throws(RedisError) { return .decoded(try command.decode(from: &cursor)) } catch { return .undecodable(error) }
    }

    var result: Result<Response, RedisError> { Result { () throws(RedisError) in try get() } }

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

/// Any command, answering the raw reply: how an untyped pipeline (``RedisClientProtocol/execute(_:)``)
/// goes through the typed one. The command writes itself as it would alone.
struct ErasedCommand: RedisCommand {
    typealias Response = RESPValue
    let base: any RedisCommand
    init(_ base: any RedisCommand) { self.base = base }
    var arguments: [RedisArgument] { base.arguments }
    var keysAffected: [RedisArgument] { base.keysAffected }
    var isReadOnly: Bool { base.isReadOnly }
    var blockingTimeout: Duration? { base.blockingTimeout }
    var needsOwnConnection: Bool { base.needsOwnConnection }
    func encode(into encoder: inout RESPEncoder) { base.encode(into: &encoder) }
    func decode(from reply: inout RESPReplyCursor) throws(RedisError) -> RESPValue { reply.readValue() }
}

/// Any command, as raw arguments, answering the raw reply.
///
/// Name the keys it touches (`keys:`) when it has any: a cluster client routes by them, and
/// sends a raw command without keys to any node.
public struct RawCommand: RedisCommand {
    public typealias Response = RESPValue
    public var arguments: [RedisArgument]
    public var keysAffected: [RedisArgument]
    public var isReadOnly: Bool
    public init(_ arguments: [RedisArgument], keys: [RedisArgument] = [], readOnly: Bool = false) {
        self.arguments = arguments
        self.keysAffected = keys
        self.isReadOnly = readOnly
    }

    /// The command's name, upper-cased (`""` when there is none).
    private var name: String { arguments.first.map { String(decoding: $0.bytes, as: UTF8.self).uppercased() } ?? "" }

    /// How long the server may hold the reply of a blocking command given raw (`BLPOP`,
    /// `XREADGROUP ... BLOCK`, `WAIT`), read from its timeout argument (`.zero`, for ever, when
    /// it is 0 or cannot be read); nil for any other command.
    public var blockingTimeout: Duration? { blockingTimeout(named: name) }

    private func blockingTimeout(named name: String) -> Duration? {
        func seconds(at index: Int) -> Duration {
            guard arguments.indices.contains(index), let value = Double(String(decoding: arguments[index].bytes, as: UTF8.self)), value > 0 else { return .zero }
            return .milliseconds(Int64((value * 1000).rounded(.up)))
        }
        func milliseconds(at index: Int) -> Duration {
            guard arguments.indices.contains(index), let value = Int64(String(decoding: arguments[index].bytes, as: UTF8.self)), value > 0 else { return .zero }
            return .milliseconds(value)
        }
        switch name {
        case "BLPOP", "BRPOP", "BZPOPMIN", "BZPOPMAX", "BLMOVE", "BRPOPLPUSH": return seconds(at: arguments.count - 1)
        case "BLMPOP", "BZMPOP": return seconds(at: 1)
        case "WAIT": return milliseconds(at: 2)
        case "WAITAOF": return milliseconds(at: 3)
        case "XREAD", "XREADGROUP":
            guard let block = arguments.firstIndex(where: { String(decoding: $0.bytes, as: UTF8.self).uppercased() == "BLOCK" }) else { return nil }
            return milliseconds(at: block + 1)
        default: return nil
        }
    }

    /// Commands that change the connection's session for the commands after them.
    private static let sessionCommands: Set<String> = [
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "RESET", "HELLO",
        "AUTH", "QUIT", "READONLY", "READWRITE", "ASKING", "CLIENT",
    ]

    public var needsOwnConnection: Bool {
        let name = self.name
        return Self.sessionCommands.contains(name) || blockingTimeout(named: name) != nil
    }
}

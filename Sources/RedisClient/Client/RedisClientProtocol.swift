/// What a Redis client offers, whether it talks to one server (``RedisConnectionPool``) or to a
/// Redis Cluster (``RedisClusterClient``): code written against this protocol runs on both.
///
/// Every command names its keys (``RedisCommand/keysAffected``). A cluster client routes by
/// them and refuses, before sending anything, a command, pipeline step, transaction or script
/// whose keys span slots (``RedisError/Code/crossSlot``); the single-server client ignores them.
///
/// Failures say whether the command ran: ``RedisError/commandDidNotRun`` errors are safe to
/// retry, ``RedisError/Code/outcomeUnknown`` ones are not, and no implementation re-sends them.
public protocol RedisClientProtocol: Sendable {
    /// Sends one command and decodes its reply; an error reply is thrown as ``RedisError``.
    @discardableResult
    func send<Command: RedisCommand>(_ command: Command) async throws -> Command.Response

    /// Pipelines the commands and returns one result per command, in the order given. An error
    /// reply, or a transport failure that hit that command, is a `.failure` in its place: one
    /// failing command never hides the others' results. A cluster client sends each node its
    /// share at once and puts the replies back in order.
    func execute(_ commands: [any RedisCommand]) async -> [Result<RESPValue, RedisError>]

    /// Pipelines commands of one type and returns each one's decoded result, in order, with the
    /// same failure rules as ``execute(_:)``. Each command writes itself and each reply is
    /// decoded in place, on the connection's thread: the way to send many of one command.
    func pipeline<Command: RedisCommand>(_ commands: [Command]) async -> [Result<Command.Response, RedisError>]

    /// Runs the commands in MULTI/EXEC on one connection and returns EXEC's replies (an error
    /// reply of one command is an `.error` value in place). All keys must share one slot in a
    /// cluster. A command rejected while queueing aborts the transaction and is thrown.
    func transaction(_ commands: [any RedisCommand]) async throws -> [RESPValue]

    /// Runs a Lua script by EVALSHA, loading it when the server answers NOSCRIPT.
    @discardableResult
    func evaluate(_ script: RedisScript, keys: [RedisArgument], arguments: [RedisArgument]) async throws -> RESPValue

    /// Lends a connection to the server that owns `keys` (their one slot, in a cluster) for a
    /// sequence that must share it: a blocking read loop, WATCH/MULTI. Commands sent on it are
    /// not re-routed: a ``RedisError/isClusterRedirect`` error from one means "call again".
    func withConnection<T: Sendable>(forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T) async throws -> T

    /// Runs `body` with a new connection of its own (not a pooled one) to the server that owns
    /// `keys` now, and closes it afterwards: for a long loop of blocking reads (a worker's
    /// XREADGROUP BLOCK), which would otherwise hold a pooled connection for every block.
    /// The connection tries once per command to connect (no reconnect window) and is never
    /// re-routed: when a command on it fails with a lost connection or a
    /// ``RedisError/isClusterRedirect`` error, leave `body` with that error (a cluster client
    /// learns from it: MOVED updates the slot map, a dead node triggers a refresh) and call
    /// again to reach the slot's current owner.
    func withDedicatedConnection<T: Sendable>(forKeys keys: [RedisArgument], _ body: (RedisConnection) async throws -> T) async throws -> T

    /// A health check: nil when Redis answers a PING (every primary of a cluster; a pool with a
    /// role check also asks `HELLO` and calls a replica unfit: ``RedisConnectionPool/probe()``),
    /// else why not.
    /// Quick and apart from the connections that carry commands: one connect attempt, short
    /// timeouts, so that a busy client cannot make a healthy process look dead.
    func probe() async -> RedisError?

    /// Background upkeep, as a child task for as long as the client is used: the cluster client
    /// refreshes its topology here; the single-server pool has nothing to do and waits. Returns
    /// (throwing `CancellationError`) when the task is cancelled.
    func run() async throws

    /// Closes every connection.
    func shutdown() async
}

extension RedisClientProtocol {
    /// Pipelines typed commands and returns each one's decoded result, in order.
    ///
    /// ```swift
    /// let (id, length) = await client.pipeline(XADD("s", fields: f), XLEN("s"))
    /// ```
    public func pipeline<each Command: RedisCommand>(
        _ commands: repeat each Command
    ) async -> (repeat Result<(each Command).Response, RedisError>) {
        var list: [any RedisCommand] = []
        for command in repeat each commands { list.append(command) }
        let replies = await execute(list)
        var index = 0
        func decodeNext<C: RedisCommand>(_ command: C) -> Result<C.Response, RedisError> {
            defer { index += 1 }
            return replies[index].flatMap { reply in command.decodeResult(reply) }
        }
        return (repeat decodeNext(each commands))
    }

    /// Runs typed commands in MULTI/EXEC and returns each one's decoded result.
    public func transaction<each Command: RedisCommand>(
        _ commands: repeat each Command
    ) async throws -> (repeat Result<(each Command).Response, RedisError>) {
        var list: [any RedisCommand] = []
        for command in repeat each commands { list.append(command) }
        let replies = try await transaction(list)
        guard replies.count == list.count else {
            throw RedisError(.unexpectedReply, "EXEC answered \(replies.count) replies for \(list.count) commands")
        }
        var index = 0
        func decodeNext<C: RedisCommand>(_ command: C) -> Result<C.Response, RedisError> {
            defer { index += 1 }
            return command.decodeResult(replies[index])
        }
        return (repeat decodeNext(each commands))
    }

    /// ``evaluate(_:keys:arguments:)`` without keys or arguments.
    @discardableResult
    public func evaluate(_ script: RedisScript, keys: [RedisArgument] = []) async throws -> RESPValue {
        try await evaluate(script, keys: keys, arguments: [])
    }
}

extension RedisCommand {
    /// The reply decoded, or the error reply it was.
    func decodeResult(_ reply: RESPValue) -> Result<Response, RedisError> {
        Result { () throws(RedisError) in try decode(reply.throwingServerError()) }
    }
}

extension RedisError {
    /// Any error as a ``RedisError`` (the client's own calls only throw those; anything else
    /// came from the caller's code or cancellation, and the command's fate is unknown).
    static func wrapping(_ error: any Error) -> RedisError {
        if let error = error as? RedisError { return error }
        if error is CancellationError { return RedisError(.cancelled, "cancelled; the command's outcome is unknown") }
        return RedisError(.outcomeUnknown, "\(error)")
    }
}

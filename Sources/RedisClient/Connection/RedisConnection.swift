import Dispatch
import Logging
import Synchronization

/// One connection to Redis, with an async API that never blocks the Swift concurrency pool.
///
/// Every socket and OpenSSL call runs on the connection's own serial `DispatchQueue` (a thread
/// the connection owns while it works, outside the cooperative pool); callers await a
/// continuation. Commands on one connection run one after another, in the order they were sent.
///
/// A dropped connection is re-established on the next command, with exponential backoff and
/// jitter (``RedisConfiguration/Reconnect``). A command in flight when the connection dropped
/// fails with ``RedisError/Code/outcomeUnknown`` and is never re-sent.
public final class RedisConnection: Sendable {
    public let configuration: RedisConfiguration
    private let queue: DispatchQueue
    private let connectionExecutor: ConnectionExecutor
    private let core: UncheckedBox<ConnectionCore>
    private let interrupter = Interrupter()
    private let operationCounter = Atomic<UInt64>(0)
    /// Set by a pool when it lends the connection: its next command first makes sure it is on
    /// the server the endpoint leads to now (``ServerRoleWatch``).
    private let checksServer = Atomic<Bool>(false)
    private let logger: Logger

    /// Creates a connection; it connects on first use (or call ``connect()``).
    /// - Parameter tlsContext: a context to share between connections; made from the
    ///   configuration when `nil` and TLS is on.
    public convenience init(configuration: RedisConfiguration, tlsContext: TLSContext? = nil, logger: Logger? = nil) throws(RedisError) {
        try self.init(configuration: configuration, tlsContext: tlsContext, logger: logger, roleWatch: nil)
    }

    /// `roleWatch`: shared by a pool's connections (``ServerRoleWatch``).
    init(configuration: RedisConfiguration, tlsContext: TLSContext?, logger: Logger?, roleWatch: ServerRoleWatch?) throws(RedisError) {
        self.configuration = configuration
        self.logger = logger ?? Logger(label: "redis.connection")
        var context = tlsContext
        if context == nil, case .enable(let settings) = configuration.tls {
            context = try TLSContext(settings)
        }
        self.queue = DispatchQueue(label: "redis.connection \(configuration.endpoint)")
        self.connectionExecutor = ConnectionExecutor(queue: queue)
        self.core = UncheckedBox(ConnectionCore(configuration: configuration, tlsContext: context, interrupter: interrupter, roleWatch: roleWatch))
    }

    /// Connects now (with retries inside the reconnect window) instead of on first use.
    public func connect() async throws {
        try await perform(cancellable: false) { core in () }
    }

    /// An executor that runs tasks on this connection's own thread (the one that does its
    /// blocking I/O). See ``withPinnedExecution(_:)``.
    public var executor: any TaskExecutor { connectionExecutor }

    /// Runs `body` on this connection's own thread, where commands on this connection run
    /// without any thread switch: for tight loops of round trips (a worker's read/ack loop,
    /// a benchmark). Blocking socket calls still happen only on the connection's thread, never
    /// on the cooperative pool.
    ///
    /// Other work in `body`, and in child tasks it starts, runs on that thread too, and other
    /// callers of this connection wait while `body` runs between suspension points: keep
    /// CPU-heavy work out of it. Commands on other connections work as usual.
    public func withPinnedExecution<T>(_ body: () async throws -> T) async rethrows -> T {
        try await withTaskExecutorPreference(connectionExecutor, operation: body)
    }

    /// A pool lends this connection: check its server at the next command (not between the
    /// commands of the lease).
    func checkServerAtNextCommand() {
        checksServer.store(true, ordering: .releasing)
    }

    /// True when the current task runs on this connection's own thread (``withPinnedExecution(_:)``).
    var isPinnedHere: Bool { connectionExecutor.isCurrent }

    /// TLS protocol and cipher of the current connection, if it uses TLS.
    public var tlsDetails: TLSDetails? {
        get async { try? await run(cancellable: false) { core in core.tlsDetails } }
    }

    /// Sends one typed command and decodes its reply. An error reply is thrown as ``RedisError``.
    @discardableResult
    public func send<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        try await sendOne(command, inSession: false)
    }

    /// Sends one typed command on the session the previous command used: it never reconnects
    /// and never retries, and a `READONLY` reply is thrown. For commands whose meaning depends
    /// on the connection's earlier ones: `WAIT` counts the replicas that have *this session's*
    /// writes, and on a session opened meanwhile (the socket dropped, or a `READONLY` made
    /// ``send(_:)`` reconnect, perhaps to another server behind the same name) it would confirm
    /// writes that are not the ones made (a chaos run lost a create confirmed so). Throws
    /// ``RedisError/Code/connectionClosed`` when there is no open session.
    @discardableResult
    public func sendInSession<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        try await sendOne(command, inSession: true)
    }

    /// One typed command: with ``send(_:)``'s reconnects and `LOADING`/`READONLY` retries, or
    /// on the open session only (``sendInSession(_:)``).
    private func sendOne<Command: RedisCommand>(_ command: Command, inSession: Bool) async throws -> Command.Response {
        let timeout = self.timeout(blocking: command.blockingTimeout)
        let reply = try await perform(cancellable: command.blockingTimeout != nil, retryLoading: !inSession, reconnects: !inSession) { core in
            try core.roundTrip(count: 1, deadline: Deadline(after: timeout), encode: { command.encode(into: &$0) }) { cursor in
                DecodedReply.read(command, from: &cursor)
            }[0]
        }
        return try reply.get()
    }

    /// Pipelines commands of one type: each writes itself into the connection's buffer and
    /// each reply is decoded in place on the connection's thread (no ``RESPValue`` first).
    /// Error replies come back as `.serverError` in place.
    func decodedPipeline<Command: RedisCommand>(_ commands: [Command]) async throws -> [DecodedReply<Command.Response>] {
        guard !commands.isEmpty else { return [] }
        let timeout = configuration.timeouts.command
        return try await perform(cancellable: false) { core in
            var next = 0
            return try core.roundTrip(
                count: commands.count, deadline: Deadline(after: timeout),
                encode: { encoder in for command in commands { command.encode(into: &encoder) } }
            ) { cursor in
                defer { next += 1 }
                return DecodedReply.read(commands[next], from: &cursor)
            }
        }
    }

    /// Sends a command given as raw arguments, e.g. `["SET", "k", "v"]`.
    @discardableResult
    public func send(_ arguments: [RedisArgument]) async throws -> RESPValue {
        try await send(RawCommand(arguments))
    }

    /// Pipelining: writes every command at once and returns their replies in order.
    /// Error replies come back as `.error` values in place, so one failing command does not
    /// hide the others' results.
    public func pipeline(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        let timeout = configuration.timeouts.command
        return try await perform(cancellable: false) { core in
            try core.roundTrip(commands, deadline: Deadline(after: timeout))
        }
    }

    /// Pipelines typed commands and returns each one's result.
    public func pipeline<each Command: RedisCommand>(
        _ commands: repeat each Command
    ) async throws -> (repeat Result<(each Command).Response, RedisError>) {
        var arguments: [[RedisArgument]] = []
        for command in repeat each commands { arguments.append(command.arguments) }
        let replies = try await pipeline(arguments)
        var index = 0
        func decodeNext<C: RedisCommand>(_ command: C) -> Result<C.Response, RedisError> {
            defer { index += 1 }
            return Result { () throws(RedisError) in try command.decode(replies[index].throwingServerError()) }
        }
        return (repeat decodeNext(each commands))
    }

    /// Runs the commands in MULTI/EXEC, in one round trip, and returns EXEC's replies.
    /// A command the server rejected while queueing aborts the whole transaction (EXECABORT).
    /// With WATCH on this connection, a changed key gives ``RedisError/Code/transactionAborted``.
    public func transaction(_ commands: [[RedisArgument]]) async throws -> [RESPValue] {
        var all: [[RedisArgument]] = [["MULTI"]]
        all.append(contentsOf: commands)
        all.append(["EXEC"])
        let replies = try await pipeline(all)
        // A command rejected while queueing makes EXEC answer EXECABORT; its own error says why.
        for reply in replies.dropLast() {
            if case .error(let message) = reply { throw RedisError(serverReply: message) }
        }
        switch replies.last! {
        case .array(let results): return results
        case .null: throw RedisError(.transactionAborted, "EXEC returned nil: a WATCHed key changed")
        case .error(let message): throw RedisError(serverReply: message)
        case let other: throw unexpected(other, "EXEC array")
        }
    }

    /// Runs the batches `next` hands out on this connection's thread, one round trip each,
    /// until it hands out none, then calls `finished` there (``RedisConnectionPool/sendCoalesced(_:)``).
    /// The thread stays on the batches while they come (no hop to it per command); each batch
    /// is a job of its own on the queue, so that a task pinned to this connection
    /// (``withPinnedExecution(_:)``) runs between two batches rather than after the last.
    func drain(next: @escaping @Sendable () -> [CoalescedCommand]?, finished: @escaping @Sendable () -> Void) {
        let core = self.core
        let timeout = configuration.timeouts.command
        queue.async {
            guard let batch = next() else { return finished() }
            core.value.run(coalesced: batch, timeout: timeout)
            self.drain(next: next, finished: finished)
        }
    }

    /// Closes the socket. The next command reconnects.
    public func close() async {
        _ = try? await run(cancellable: false) { core in core.disconnect() }
    }

    // MARK: - Running work on the connection's queue

    private func timeout(blocking: Duration?) -> Duration {
        guard let blocking else { return configuration.timeouts.command }
        // BLOCK 0 means forever on the server; bound our wait to a day so the thread is never lost.
        if blocking == .zero { return .seconds(86_400) }
        return blocking + configuration.timeouts.blockingMargin
    }

    /// Connects if needed (retrying inside the reconnect window), then runs `body`.
    /// `reconnects` false: runs `body` only on the session open now (``sendInSession(_:)``).
    private func perform<T: Sendable>(
        cancellable: Bool, retryLoading: Bool = false, reconnects: Bool = true,
        _ body: @escaping @Sendable (ConnectionCore) throws -> T
    ) async throws -> T {
        let window = Deadline(after: configuration.reconnect.retryWindow)
        var attempt = 0
        while true {
            do {
                return try await run(cancellable: cancellable) { core in
                    if reconnects {
                        let check = self.checksServer.exchange(false, ordering: .acquiringAndReleasing)
                        do throws(RedisError) { try core.ensureConnected(checkServer: check) } catch { throw ConnectFailure(error: error) }
                    } else if !core.isConnected {
                        throw RedisError(.connectionClosed, "the connection's session ended before this command, which speaks of it; not sent")
                    }
                    let result = try body(core)
                    if retryLoading, let message = (result as? any ServerErrorReply)?.serverErrorMessage,
                        message.hasPrefix("LOADING") || message.hasPrefix("READONLY")
                    {
                        // The server is loading its data set after a restart, or is a replica
                        // now (a failover demoted it; the round trip dropped the socket so the
                        // next attempt connects anew): either way the command did not run, and
                        // is tried again inside the reconnect window.
                        throw ConnectFailure(error: RedisError(serverReply: message))
                    }
                    return result
                }
            } catch let failure as ConnectFailure {
                let error = failure.error
                guard error.isTransient, !window.hasPassed else { throw error }
                // Cancelled while the server is unreachable: report it as a cancellation (callers
                // match on RedisError codes), not as the connect error or Task.sleep's CancellationError.
                guard !Task.isCancelled else { throw Self.cancelledWhileConnecting(error) }
                let delay = configuration.reconnect.backoff(attempt: attempt)
                attempt += 1
                logger.debug(
                    "redis connect failed, retrying",
                    metadata: ["endpoint": "\(configuration.redactedDescription)", "error": "\(error)", "attempt": "\(attempt)"])
                do {
                    try await Task.sleep(for: delay)
                } catch {
                    throw Self.cancelledWhileConnecting(failure.error)
                }
            }
        }
    }

    private static func cancelledWhileConnecting(_ error: RedisError) -> RedisError {
        RedisError(.cancelled, "cancelled while waiting to reconnect; the command was not sent (\(error.message))", underlying: error)
    }

    /// Runs `body` on the connection's queue and resumes the caller with its result.
    private func run<T: Sendable>(
        cancellable: Bool, _ body: @escaping @Sendable (ConnectionCore) throws -> T
    ) async throws -> T {
        let operation = operationCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let core = self.core
        let interrupter = self.interrupter
        if connectionExecutor.isCurrent {
            // Already on the connection's thread (withPinnedExecution): run here, no hop.
            return try await runInline(cancellable: cancellable, operation: operation, body)
        }
        let cancelledEarly = CancellationFlag()
        let work = {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                self.queue.async {
                    guard cancellable else { return continuation.resume(with: Result { try body(core.value) }) }
                    interrupter.begin(operation)
                    defer { interrupter.end() }
                    // Cancelled while queued behind another command: do not start a blocking wait.
                    if cancelledEarly.isSet {
                        return continuation.resume(throwing: RedisError(.cancelled, "cancelled before the command was sent"))
                    }
                    continuation.resume(with: Result { try body(core.value) })
                }
            }
        }
        guard cancellable else { return try await work() }
        return try await withTaskCancellationHandler(operation: work) {
            cancelledEarly.set()
            interrupter.interrupt(operation)
        }
    }
}

extension RedisConnection {
    /// ``run(cancellable:_:)`` for a caller that already runs on the connection's queue: the
    /// serial queue is busy with this very job, so `body` has the connection to itself.
    fileprivate func runInline<T: Sendable>(
        cancellable: Bool, operation: UInt64, _ body: @escaping @Sendable (ConnectionCore) throws -> T
    ) async throws -> T {
        let core = self.core
        let queue = self.queue
        guard cancellable else { return try body(core.value) }
        if Task.isCancelled { throw RedisError(.cancelled, "cancelled before the command was sent") }
        let interrupter = self.interrupter
        interrupter.begin(operation)
        defer { interrupter.end() }
        return try await withTaskCancellationHandler {
            // The operation runs on the task's preferred executor, which is this queue.
            dispatchPrecondition(condition: .onQueue(queue))
            return try body(core.value)
        } onCancel: {
            interrupter.interrupt(operation)
        }
    }
}

/// A connect-phase failure, so that ``RedisConnection`` retries connecting but never a command.
struct ConnectFailure: Error {
    let error: RedisError
}

/// Set once when the waiting task is cancelled.
final class CancellationFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

/// Holds a non-Sendable value that is only touched on one serial queue.
final class UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

import Synchronization

/// A command, or a caller's pipeline of commands, waiting in a pool to ride the next coalesced
/// round trip (``RedisConnectionPool/sendCoalesced(_:)``).
struct CoalescedCommand: Sendable {
    let id: UInt64
    /// Replies it takes: 1, or the commands of a pipeline (which never spans two batches).
    let replies: Int
    /// Writes the command(s) into the batch's buffer.
    let encode: @Sendable (inout RESPEncoder) -> Void
    /// Reads its next reply in place; after its last, resumes its caller.
    let answer: @Sendable (inout RESPReplyCursor) -> Void
    /// Resumes its caller with why it got no (or not every) reply.
    let fail: @Sendable (RedisError) -> Void
    /// Resumes its caller, whose commands certainly did not run, to send them on a lent connection.
    let notSent: @Sendable () -> Void
    /// Resumes its caller as cancelled before it was sent.
    let cancel: @Sendable () -> Void
}

/// How a coalesced command ended, for its caller.
enum CoalescedOutcome<Value: Sendable>: Sendable {
    case answered(Value)
    case failed(RedisError)
    case notSent
    case cancelled
}

/// A pipeline's replies as the draining connection reads them: touched only on that
/// connection's thread, one reply after another.
private final class PipelineReplies<Response: Sendable>: @unchecked Sendable {
    var values: [DecodedReply<Response>] = []
}

/// Single commands from many tasks share round trips.
///
/// Why: each command on a lent connection hops to that connection's thread and back, and on a
/// busy two-core machine the hops (a futex wake, a poll, a send and a receive per command)
/// cost more than the command: the kernel's task switching alone was 13.5 % of `ordershop up`'s
/// CPU under `bench gateway --cluster` (perf, 2026-12-07), where 8 requests at once each sent
/// their own script. Here a command joins a queue; one connection drains it, writing every
/// command that waits in one write and reading their replies in order, and goes on with the
/// next batch while more come, without a thread switch between batches. A command that finds
/// the queue idle starts the drain at once: alone, it costs what a lent connection costs.
///
/// What a caller learns is what a lent connection tells: the reply, an error reply, or why
/// there was none (``RedisError/Code/outcomeUnknown`` when its batch was written and the
/// connection dropped before its reply). A command that certainly did not run (the drain could
/// not connect, its batch was not written, the server answered `LOADING` or `READONLY`) is
/// sent again on a lent connection, which retries inside the reconnect window as before. A
/// command waiting for its batch leaves at once when its task is cancelled; once written, it is
/// not cancellable, as on a lent connection. Blocking commands, and callers pinned to a
/// connection's thread (``withPinnedExecution(_:)``), use a lent connection.
extension RedisConnectionPool {
    /// Replies a batch waits for at most (a larger pipeline goes alone); the rest wait for the
    /// next batch, which has a command timeout of its own.
    static let coalescedBatchLimit = 1024

    /// Sends `command` in the next coalesced batch (see above).
    func sendCoalesced<Command: RedisCommand>(_ command: Command) async throws -> Command.Response {
        if command.needsOwnConnection || ConnectionExecutor.isOnAnyConnection {
            return try await sendOnLentConnection(command)
        }
        let outcome = await coalesced(replies: 1, encode: { command.encode(into: &$0) }) { continuation in
            { cursor in continuation.resume(returning: .answered(DecodedReply.read(command, from: &cursor))) }
        }
        switch outcome {
        case .answered(let reply):
            if let message = reply.serverErrorMessage, message.hasPrefix("LOADING") || message.hasPrefix("READONLY") {
                // It did not run: a lent connection retries it inside the reconnect window (the
                // batch's connection dropped its socket on READONLY, to resolve the name again).
                return try await sendOnLentConnection(command)
            }
            return try reply.get()
        case .failed(let error):
            throw error
        case .notSent:
            return try await sendOnLentConnection(command)
        case .cancelled:
            throw CancellationError()
        }
    }

    /// Pipelines `commands` in the next coalesced batch, together and in order, and returns
    /// their replies; as a lent connection's pipeline does, it throws when the connection
    /// failed before every reply came (outcome unknown for all of them).
    func pipelineCoalesced<Command: RedisCommand>(_ commands: [Command]) async throws -> [DecodedReply<Command.Response>] {
        guard !commands.isEmpty else { return [] }
        func onLentConnection() async throws -> [DecodedReply<Command.Response>] {
            try await withConnection { try await $0.decodedPipeline(commands) }
        }
        if ConnectionExecutor.isOnAnyConnection || commands.contains(where: \.needsOwnConnection) { return try await onLentConnection() }
        let replies = PipelineReplies<Command.Response>()
        let outcome = await coalesced(
            replies: commands.count, encode: { encoder in for command in commands { command.encode(into: &encoder) } }
        ) { continuation in
            { cursor in
                replies.values.append(DecodedReply.read(commands[replies.values.count], from: &cursor))
                if replies.values.count == commands.count { continuation.resume(returning: .answered(replies.values)) }
            }
        }
        switch outcome {
        case .answered(let values): return values
        case .failed(let error): throw error
        case .notSent: return try await onLentConnection()
        case .cancelled: throw CancellationError()
        }
    }

    /// Queues an entry of `replies` replies and waits for its outcome; `answer` makes, from the
    /// caller's continuation, what reads each reply. Leaves the queue at once when the task is
    /// cancelled before its batch is written.
    private func coalesced<Value: Sendable>(
        replies: Int, encode: @escaping @Sendable (inout RESPEncoder) -> Void,
        answer: (CheckedContinuation<CoalescedOutcome<Value>, Never>) -> @Sendable (inout RESPReplyCursor) -> Void
    ) async -> CoalescedOutcome<Value> {
        let id = Self.coalescedIDs.wrappingAdd(1, ordering: .relaxed).newValue
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<CoalescedOutcome<Value>, Never>) in
                enqueue(
                    CoalescedCommand(
                        id: id, replies: replies, encode: encode, answer: answer(continuation),
                        fail: { continuation.resume(returning: .failed($0)) },
                        notSent: { continuation.resume(returning: .notSent) },
                        cancel: { continuation.resume(returning: .cancelled) }))
            }
        } onCancel: {
            let waiting = state.withLock { s -> CoalescedCommand? in
                guard let index = s.coalesced.firstIndex(where: { $0.id == id }) else { return nil }
                return s.coalesced.remove(at: index)
            }
            waiting?.cancel()
        }
    }

    private static let coalescedIDs = Atomic<UInt64>(0)

    /// Queues `command`; starts a drain when none runs and a connection is free (else the next
    /// connection given back starts it: ``release(_:)``).
    private func enqueue(_ command: CoalescedCommand) {
        enum Start {
            case queued
            case drain(RedisConnection)
            case create
            case refuse(RedisError)
            case cancelled
        }
        let start: Start = state.withLock { s in
            if s.closed { return .refuse(RedisError(.poolClosed, "the connection pool is shut down; the command was not sent")) }
            if !s.draining {
                if let connection = s.idle.popLast() {
                    s.draining = true
                    s.coalesced.append(command)
                    return .drain(connection)
                }
                if s.total < maximumConnections {
                    s.total += 1
                    s.draining = true
                    s.coalesced.append(command)
                    return .create
                }
                // It would wait for a connection: a cancelled task does not start to.
                if Task.isCancelled { return .cancelled }
            }
            s.coalesced.append(command)
            return .queued
        }
        switch start {
        case .queued: break
        case .drain(let connection): drainCoalesced(on: connection)
        case .refuse(let error): command.fail(error)
        case .cancelled: command.cancel()
        case .create:
            do {
                drainCoalesced(on: try makePooledConnection())
            } catch {
                // Not sent: a lent connection meets the same error, or gets past it.
                let waiting = state.withLock { s in
                    s.total -= 1
                    s.draining = false
                    defer { s.coalesced = [] }
                    return s.coalesced
                }
                for command in waiting { command.notSent() }
            }
        }
    }

    /// Drains the queue on `connection`, which goes back to the pool when the queue is empty.
    func drainCoalesced(on connection: RedisConnection) {
        connection.drain(
            next: { [self] in
                state.withLock { s in
                    // Callers waiting to be lent a connection go first: this one goes back to
                    // the pool, and the next one given back drains what still waits.
                    if s.coalesced.isEmpty || !s.waiters.isEmpty {
                        s.draining = false
                        return nil
                    }
                    var taken = 0
                    var replies = 0
                    while taken < s.coalesced.count, taken == 0 || replies + s.coalesced[taken].replies <= Self.coalescedBatchLimit {
                        replies += s.coalesced[taken].replies
                        taken += 1
                    }
                    guard taken < s.coalesced.count else {
                        defer { s.coalesced = [] }
                        return s.coalesced
                    }
                    defer { s.coalesced.removeFirst(taken) }
                    return Array(s.coalesced.prefix(taken))
                }
            },
            finished: { [self] in release(connection) })
    }
}

extension ConnectionCore {
    /// One coalesced batch: every command written at once, each reply handed to its caller as
    /// it is read. When the connection fails, the callers without a reply learn why (whether
    /// their commands may have run: ``roundTrip(count:deadline:phase:encode:read:)``'s error).
    /// `timeout` counts from the moment the connection is ready, as a lent connection's does.
    func run(coalesced batch: [CoalescedCommand], timeout: Duration) {
        do throws(RedisError) {
            // As a lent connection's first command does: on the server the endpoint leads to now.
            try ensureConnected(checkServer: true)
        } catch {
            // Nothing written: each is sent on a lent connection, which retries connecting
            // inside the reconnect window (or meets the same error and says so).
            for command in batch { command.notSent() }
            return
        }
        // The entry whose reply comes next, and how many of its replies came.
        var entry = 0
        var read = 0
        do throws(RedisError) {
            _ = try roundTrip(
                count: batch.reduce(0) { $0 + $1.replies }, deadline: Deadline(after: timeout),
                encode: { encoder in for command in batch { command.encode(&encoder) } }
            ) { (cursor: inout RESPReplyCursor) throws(RedisError) in
                batch[entry].answer(&cursor)
                read += 1
                if read == batch[entry].replies {
                    entry += 1
                    read = 0
                }
            }
        } catch {
            // Not written at all (the connection was found closed): not run, sent again on a
            // lent connection. Written: it may have run, and the caller learns so (a pipeline
            // with some of its replies read too, as on a lent connection).
            for command in batch[entry...] {
                if error.commandDidNotRun { command.notSent() } else { command.fail(error) }
            }
        }
    }
}

import Logging
import ServiceLifecycle
import Synchronization

/// A service that can be stopped and started again while its process keeps running: it runs a
/// fresh inner service (made by a factory) in its own ServiceGroup, and stops it with a graceful
/// shutdown, so a stopped worker drains exactly as it does on SIGTERM.
///
/// `ordershop up` wraps the CRM and billing workers in it, so that the demo can take CRM down and
/// bring it back (the article's "stop the CRM service, run the client again").
public final class SwitchableService: Service, Sendable {
    public let name: String
    private let make: @Sendable () throws -> any Service
    private let startRunning: Bool
    private let logger: Logger
    private let commands: AsyncStream<Command>
    private let continuation: AsyncStream<Command>.Continuation
    private let running = Mutex(false)

    private enum Command {
        case start(CheckedContinuation<Void, any Error>)
        case stop(CheckedContinuation<Void, any Error>)
        case exited(generation: Int, error: (any Error)?)
        case shutdown
    }

    /// - Parameters:
    ///   - startRunning: start the inner service at once (else on the first ``start()``).
    ///   - make: makes a new inner service for each start.
    public init(name: String, startRunning: Bool = true, logger: Logger, make: @escaping @Sendable () throws -> any Service) {
        self.name = name
        self.make = make
        self.startRunning = startRunning
        self.logger = logger
        (commands, continuation) = AsyncStream.makeStream(of: Command.self)
    }

    /// Whether the inner service runs now.
    public var isRunning: Bool { running.withLock { $0 } }

    /// Starts the inner service (no-op when it runs).
    public func start() async throws {
        try await withCheckedThrowingContinuation { reply in
            if case .terminated = continuation.yield(.start(reply)) { reply.resume(throwing: ShopError.unavailable("\(name) has shut down")) }
        }
    }

    /// Stops the inner service gracefully and returns once it has finished (drained).
    public func stop() async throws {
        try await withCheckedThrowingContinuation { reply in
            if case .terminated = continuation.yield(.stop(reply)) { reply.resume() }
        }
    }

    public func run() async throws {
        defer { continuation.finish() }
        try await withGracefulShutdownHandler {
            try await self.loop()
        } onGracefulShutdown: {
            self.continuation.yield(.shutdown)
        }
    }

    /// Runs the commands until shutdown, failure or cancellation, and on each of those exits
    /// answers every caller still waiting (see ``answerTheRest(_:)``).
    private func loop() async throws {
        var waitingForStop: [CheckedContinuation<Void, any Error>] = []
        do {
            try await serve(&waitingForStop)
        } catch {
            await answerTheRest(waitingForStop)
            throw error
        }
        await answerTheRest(waitingForStop)
    }

    /// Once the loop has ended (a second Ctrl-C cancels it mid-stop), nobody would answer a stop
    /// waiting for the drain or a start or stop still queued: an admin request would hang and
    /// keep the process from exiting. Each gets "shutting down" (503 on the admin routes).
    private func answerTheRest(_ waitingForStop: [CheckedContinuation<Void, any Error>]) async {
        running.withLock { $0 = false }
        continuation.finish()
        let shuttingDown = ShopError.unavailable("\(name) worker is shutting down")
        for w in waitingForStop { w.resume(throwing: shuttingDown) }
        // Finished: the buffered commands come out, then the stream ends (also in a cancelled task).
        for await command in commands {
            switch command {
            case .start(let reply), .stop(let reply): reply.resume(throwing: shuttingDown)
            case .exited, .shutdown: break
            }
        }
    }

    private func serve(_ waitingForStop: inout [CheckedContinuation<Void, any Error>]) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            var current: (generation: Int, group: ServiceGroup)?
            var generation = 0
            var shuttingDown = false
            func launch() throws {
                generation += 1
                let g = generation
                let group = ServiceGroup(services: [try make()], logger: logger)
                current = (g, group)
                running.withLock { $0 = true }
                logger.info("\(name) started")
                tasks.addTask {
                    do {
                        try await group.run()
                        self.continuation.yield(.exited(generation: g, error: nil))
                    } catch {
                        self.continuation.yield(.exited(generation: g, error: error))
                    }
                }
            }

            if startRunning { try launch() }
            for await command in commands {
                // Cancelled (a second Ctrl-C): the loop ends here and the callers waiting are told
                // "shutting down", this command's too (taken from the stream, answerTheRest would
                // not see it: a review). A buffered `.exited` of the inner service, which the
                // cancellation itself ended, would else answer a waiting stop "drained" though
                // nothing drained (a loaded test run saw it).
                if Task.isCancelled {
                    switch command {
                    case .start(let reply), .stop(let reply): waitingForStop.append(reply)
                    case .exited, .shutdown: break
                    }
                    return
                }
                switch command {
                case .start(let reply):
                    if shuttingDown {
                        reply.resume(throwing: ShopError.unavailable("\(name) worker is shutting down"))
                    } else if current == nil {
                        do {
                            try launch()
                            reply.resume()
                        } catch {
                            reply.resume(throwing: error)
                        }
                    } else {
                        reply.resume()
                    }
                case .stop(let reply):
                    if let current {
                        waitingForStop.append(reply)
                        await current.group.triggerGracefulShutdown()
                    } else {
                        reply.resume()
                    }
                case .exited(let g, let error):
                    guard g == current?.generation else { continue }
                    current = nil
                    running.withLock { $0 = false }
                    let asked = shuttingDown || !waitingForStop.isEmpty
                    for w in waitingForStop { w.resume() }
                    waitingForStop = []
                    // Failed, or ended while nobody asked it to: the process ends with it (the
                    // error says which and why, once, where the process reports its failure).
                    if let error { throw ServiceFailure(service: "\(name) worker", reason: error) }
                    guard asked else { throw ServiceFailure(service: "\(name) worker", reason: nil) }
                    logger.info("\(name) stopped")
                    if shuttingDown { return }
                case .shutdown:
                    shuttingDown = true
                    guard let current else { return }
                    await current.group.triggerGracefulShutdown()
                }
            }
        }
    }
}

/// Start and stop of the in-process workers, by name (the gateway's `/admin/workers` routes).
public struct WorkerControl: Sendable {
    public let services: [String: SwitchableService]

    public init(_ services: [SwitchableService]) {
        self.services = Dictionary(uniqueKeysWithValues: services.map { ($0.name, $0) })
    }

    public var status: [String: String] { services.mapValues { $0.isRunning ? "running" : "stopped" } }
}

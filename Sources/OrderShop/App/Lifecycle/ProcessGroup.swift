import Logging
import ServiceLifecycle
import UnixSignals

/// The service group of a process: any service that ends or fails shuts the others down
/// gracefully (in reverse order), and `run()` then throws (wrap each service in
/// ``SupervisedService`` so that an unexpected return is an error too).
///
/// - Parameter maximumGracefulShutdown: after this long in a graceful shutdown the group is
///   cancelled: a drain that cannot finish (Redis gone) must not keep the process forever.
public func processServiceGroup(_ services: [any Service], logger: Logger, maximumGracefulShutdown: Duration? = nil) -> ServiceGroup {
    var configuration = ServiceGroupConfiguration(
        services: services.map {
            .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup)
        },
        logger: logger)
    configuration.maximumGracefulShutdownDuration = maximumGracefulShutdown
    return ServiceGroup(configuration: configuration)
}

/// Runs a process's group until it ends: the first SIGTERM, SIGINT or SIGHUP shuts it down
/// gracefully, a second one cancels it (Ctrl-C twice when a drain takes too long). Throws what
/// the group threw, or ``StoppedBySecondSignal``. SIGHUP (the terminal closed) is a graceful
/// stop too: `ordershop up`'s redis-servers, in process groups of their own, ignore it, and
/// `up` stops them only when it stops itself.
///
/// The signals are trapped here rather than by the group, which accepts a signal either as a
/// graceful shutdown or as a cancellation, never the second of the same kind as cancellation.
///
/// A signal within ``sameStopWindow`` of the first is the same stop, not a second one: GNU
/// `timeout` (and a supervisor that signals a process and then its process group) sends one
/// stop twice at once, which cut every drain short (a trial: `timeout -s TERM 4 ordershop
/// work ...` left its consumers in the groups).
public func runUntilSignalled(_ group: ServiceGroup, logger: Logger) async throws {
    let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        tasks.addTask {
            var first: ContinuousClock.Instant?
            for await signal in signals {
                guard let first else {
                    logger.info("\(signal): stopping gracefully (send it again to stop at once)")
                    await group.triggerGracefulShutdown()
                    // From when the stop has begun, not from when the signal was read: a repeat
                    // read late on a loaded machine is still the same stop (a review).
                    first = .now
                    continue
                }
                if ContinuousClock.now - first < sameStopWindow {
                    logger.info("\(signal) again at once: the same stop (send it again to stop at once)")
                    continue
                }
                throw StoppedBySecondSignal(signal: "\(signal)")
            }
        }
        // The group ends (the signal loop never does by itself), or a second signal came.
        defer { tasks.cancelAll() }
        try await tasks.next()
    }
}

/// How soon after the first a signal is taken as the same stop sent twice (``runUntilSignalled(_:logger:)``):
/// long enough for a process and its group to be signalled one after the other, short enough
/// that a person pressing Ctrl-C again is heard.
public let sameStopWindow: Duration = .milliseconds(300)

/// A second SIGTERM or SIGINT cut a graceful shutdown short.
public struct StoppedBySecondSignal: Error, CustomStringConvertible {
    public let signal: String
    public var description: String { "a second \(signal) cut the graceful shutdown short" }
}

import Logging
import UnixSignals

/// Runs `wait`, what a process does before its services start (Redis to answer), until it ends
/// or the first SIGTERM, SIGINT or SIGHUP comes: that one cancels the wait, is logged, and makes
/// this return nil, for the process to exit 0 as it does when stopped later.
///
/// Why: the wait ran before any signal was trapped, so SIGTERM ended a worker or dashboard that
/// was waiting for Redis with status 143 and no line saying why; started in the background by a
/// non-interactive shell (which starts it with SIGINT ignored), SIGINT did not end it at all.
/// ``runUntilSignalled(_:logger:)`` traps the signals once the services run.
public func stoppingOnSignal<T: Sendable>(
    logger: Logger, while wait: @escaping @Sendable () async throws -> T
) async throws -> T? {
    let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup)
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask { try await wait() }
        tasks.addTask {
            for await signal in signals {
                logger.info("\(signal): stopping before the start (nothing was started)")
                return nil
            }
            // The sequence ends only when this task is cancelled: the wait ended first.
            throw CancellationError()
        }
        // The wait's outcome, or nil for a signal; the other task is cancelled and awaited (the
        // waiting endpoint closes its port before this returns).
        defer { tasks.cancelAll() }
        guard let first = try await tasks.next() else { throw CancellationError() }
        return first
    }
}

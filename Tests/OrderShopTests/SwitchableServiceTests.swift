import Logging
@testable import OrderShop
import ServiceLifecycle
import Synchronization
import Testing

/// F8: a stop waits for the worker to drain; when the loop is cancelled meanwhile (a second
/// Ctrl-C), the waiting admin request must still get an answer, else it hangs and keeps
/// `ordershop up` from exiting. No Redis: the inner service is one that does not drain.
@Suite struct SwitchableServiceTests {
    /// Never ends on a graceful shutdown (a drain that takes longer than the operator waits),
    /// only on cancellation; says when the shutdown was asked for.
    struct SlowToDrain: Service {
        let shutdownAsked: AsyncStream<Void>.Continuation
        func run() async throws {
            try await withGracefulShutdownHandler {
                try await Task.sleep(for: .seconds(3600))
            } onGracefulShutdown: {
                shutdownAsked.yield()
            }
        }
    }

    /// Resumes its continuation once, with the first result offered.
    final class FirstAnswer: Sendable {
        let continuation = Mutex<CheckedContinuation<Result<Void, any Error>?, Never>?>(nil)
        func offer(_ result: Result<Void, any Error>?) { continuation.withLock { $0.take() }?.resume(returning: result) }
    }

    /// The first answer of `operation`, or nil when none comes within `seconds`. Does not wait
    /// for an operation that never answers (a task group would: it awaits all its children).
    static func answer(within seconds: Int, _ operation: @escaping @Sendable () async throws -> Void) async -> Result<Void, any Error>? {
        let first = FirstAnswer()
        return await withCheckedContinuation { continuation in
            first.continuation.withLock { $0 = continuation }
            Task {
                do { try await operation(); first.offer(.success(())) } catch { first.offer(.failure(error)) }
            }
            Task {
                try? await Task.sleep(for: .seconds(seconds))
                first.offer(nil)
            }
        }
    }

    @Test func aStopWaitingForTheDrainIsAnsweredWhenTheLoopIsCancelled() async throws {
        let (asked, shutdownAsked) = AsyncStream.makeStream(of: Void.self)
        let switchable = SwitchableService(name: "crm", logger: Logger(label: "test")) { SlowToDrain(shutdownAsked: shutdownAsked) }
        let runner = Task { try await switchable.run() }
        let stop = Task { try await switchable.stop() }
        // The stop was taken by the loop: it asked the inner service to drain, and waits.
        var iterator = asked.makeAsyncIterator()
        _ = await iterator.next()
        runner.cancel()

        let stopAnswer = await Self.answer(within: 30) { try await stop.value }
        let reply = try #require(stopAnswer, "the stop waiting for the drain was never answered")
        #expect(throws: ShopError.unavailable("crm worker is shutting down")) { try reply.get() }
        // Commands sent after the loop ended are answered too.
        let startAnswer = await Self.answer(within: 30) { try await switchable.start() }
        let start = try #require(startAnswer, "a start after the loop ended was never answered")
        #expect(throws: ShopError.self) { try start.get() }
        _ = await runner.result
        #expect(!switchable.isRunning)
    }
}

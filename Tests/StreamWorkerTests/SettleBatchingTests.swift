import Synchronization
@testable import StreamWorker
import TestSupport
import Testing

/// The settler's queue without Redis (``BatchQueue/next(filling:within:)``): it waits for a
/// fuller batch only when elements were already queued as its consumer came back (sustained
/// load), never longer than the linger, and never past a finish or a cancellation.
@Suite struct SettleBatchingTests {
    /// Runs `next(filling:within:)` in a task and records what it returned.
    struct Taker: Sendable {
        final class Taken: Sendable {
            let items = Mutex<[Int]?>(nil)
        }
        let taken: Taken
        let task: Task<Void, Never>

        init(_ queue: BatchQueue<Int>, target: Int, linger: Duration) {
            let taken = Taken()
            self.taken = taken
            task = Task {
                let items = await queue.next(filling: target, within: linger)
                taken.items.withLock { $0 = items }
            }
        }

        var result: [Int]? { taken.items.withLock { $0 } }

        /// What it returned, waiting at most `timeout` (nil: still waiting then). 30 s: below the
        /// 60-s lingers the tests tell apart, and above the stalls a whole-suite run's start gives
        /// this process (a 50-ms linger not ended within 10 s, twice on 2026-12-05: every test
        /// that started with it, trivial ones too, ended some 14 s later, while the suite started
        /// its hundreds of connection threads and redis-servers).
        func returned(within timeout: Duration = .seconds(30)) async -> [Int]? {
            _ = await eventually(timeout: timeout, every: .milliseconds(5)) { result != nil }
            return result
        }
    }

    @Test("an idle consumer takes the first element at once: light load waits for nothing")
    func idleConsumerDoesNotWait() async throws {
        let queue = BatchQueue<Int>()
        // A minute's linger: a consumer that waited out any of it would fail the 10-s look below.
        let taker = Taker(queue, target: 100, linger: .seconds(60))
        try await Task.sleep(for: .milliseconds(50))
        #expect(taker.result == nil, "returned from an empty queue")
        queue.append(1)
        #expect(await taker.returned() == [1], "a consumer woken by the first element lingered for more")
        taker.task.cancel()
    }

    @Test("a busy consumer (elements already queued) waits until the batch reaches its target")
    func busyConsumerFillsItsBatch() async throws {
        let queue = BatchQueue<Int>()
        queue.append(contentsOf: [1, 2, 3])
        let taker = Taker(queue, target: 5, linger: .seconds(60))
        try await Task.sleep(for: .milliseconds(100))
        #expect(taker.result == nil, "settled 3 of a 5-entry target without waiting")
        queue.append(4)
        try await Task.sleep(for: .milliseconds(100))
        #expect(taker.result == nil, "returned below its target before the linger was up")
        queue.append(5)
        #expect(await taker.returned() == [1, 2, 3, 4, 5], "did not return once the target was reached")
        // Nothing is left behind for the next take.
        #expect(queue.isEmpty)
    }

    @Test("a busy consumer waits no longer than the linger, and returns what it has then")
    func lingerBoundsTheWait() async throws {
        let queue = BatchQueue<Int>()
        queue.append(contentsOf: [1, 2])
        let taker = Taker(queue, target: 100, linger: .milliseconds(50))
        #expect(await taker.returned() == [1, 2], "a 50-ms linger did not end within 30 s")
        // The next take is not cut short by the last linger's timer.
        queue.append(contentsOf: [3])
        let next = Taker(queue, target: 3, linger: .seconds(60))
        try await Task.sleep(for: .milliseconds(100))
        #expect(next.result == nil, "a new linger ended at once: the previous one's timer leaked into it")
        queue.append(contentsOf: [4, 5])
        #expect(await next.returned() == [3, 4, 5])
    }

    @Test("a target of one, or no linger, never waits")
    func immediateNeverWaits() async throws {
        let queue = BatchQueue<Int>()
        queue.append(contentsOf: [1, 2])
        #expect(await Taker(queue, target: 1, linger: .seconds(60)).returned() == [1, 2])
        queue.append(contentsOf: [3])
        #expect(await Taker(queue, target: SettleBatching.immediate.target, linger: SettleBatching.immediate.linger).returned() == [3])
        queue.append(contentsOf: [4])
        #expect(await Taker(queue, target: 100, linger: .zero).returned() == [4])
    }

    /// What ends a linger early: the queue finished (the drain settles everything at once) or
    /// the consumer's task cancelled.
    enum Ending: String, CaseIterable, Sendable { case finish, cancel }

    @Test("finishing the queue, or cancelling its consumer, ends a linger at once with what is queued", arguments: Ending.allCases)
    func endingTheLinger(_ ending: Ending) async throws {
        let queue = BatchQueue<Int>()
        queue.append(contentsOf: [1, 2])
        let taker = Taker(queue, target: 100, linger: .seconds(60))
        try await Task.sleep(for: .milliseconds(50))
        #expect(taker.result == nil)
        queue.append(3)
        switch ending {
        case .finish: queue.finish()
        case .cancel: taker.task.cancel()
        }
        #expect(await taker.returned() == [1, 2, 3], "\(ending) did not end the linger")
        if ending == .finish {
            #expect(await queue.next(filling: 100, within: .seconds(60)) == [], "a finished, empty queue waited")
        }
    }

    @Test("the default batches under load: up to 400 entries for up to 5 ms; immediate settles at once")
    func defaults() {
        let batching = WorkerConfiguration().settleBatching
        #expect(batching.target == 400)
        #expect(batching.linger == .milliseconds(5))
        #expect(SettleBatching(target: 0, linger: .milliseconds(-1)) == SettleBatching(target: 1, linger: .zero))
    }
}

import RedisClient
import StreamWorker
import Synchronization
import TestSupport
import Testing

@Suite("Handlers in flight and read-ahead")
struct FlowControlTests {
    /// Handlers that wait until the test opens the gate, counting how many run at once.
    final class Gate: Sendable {
        let open = Atomic<Bool>(false)
        let running = Mutex((now: 0, most: 0))

        func handler() -> StreamHandler {
            { _ in
                self.running.withLock {
                    $0.now += 1
                    $0.most = max($0.most, $0.now)
                }
                while !self.open.load(ordering: .acquiring) { try await Task.sleep(for: .milliseconds(10)) }
                self.running.withLock { $0.now -= 1 }
                return .done
            }
        }
    }

    @Test("at most maxInFlight handlers run and at most prefetch more entries are read ahead; all are handled once")
    func boundedReadAhead() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "flow"
            try await publish(pool, stream: stream, count: 20)
            let gate = Gate()
            let worker = RunningWorker(
                pool: pool, configuration: .init(maxInFlight: 2, readCount: 10, prefetch: 3, settleMode: .plain),
                subscriptions: [Subscription(stream: stream, group: "g", handler: gate.handler())])
            // Two handlers block; three more entries wait in memory; nothing else is read.
            #expect(await eventually { gate.running.withLock { $0.now } == 2 && worker.worker.stats[.delivered] == 5 })
            try await Task.sleep(for: .milliseconds(500))
            #expect(worker.worker.stats[.delivered] == 5)
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 5)
            #expect(gate.running.withLock { $0.most } == 2)
            gate.open.store(true, ordering: .releasing)
            #expect(await eventually { worker.worker.stats[.processed] == 20 })
            try await worker.stop()
            #expect(gate.running.withLock { $0.most } == 2)
            #expect(worker.worker.stats[.delivered] == 20)
            #expect(try await pendingCount(pool, stream: stream, group: "g") == 0)
        }
    }
}

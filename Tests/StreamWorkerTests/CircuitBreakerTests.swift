import Synchronization
@testable import StreamWorker
import TestSupport
import Testing

/// The circuit breaker without Redis: admission while open, one probe at a time, and what
/// happens to the callers queued behind a probe that ends without a report.
@Suite struct CircuitBreakerTests {
    @Test("a probe that ends without reporting hands the probe to a caller queued behind it")
    func endedProbeWakesTheQueue() async throws {
        let breaker = CircuitBreaker(backoff: Backoff(initial: .milliseconds(10), maximum: .milliseconds(10)))
        breaker.failed()
        // The first caller after the open period is the probe.
        #expect(try await breaker.admit() == true)
        #expect(breaker.phase == .probing)
        // A second caller queues behind it (as every lane does while a probe is out).
        let admitted = Atomic<Int>(0)
        let queued = Task {
            let probe = try await breaker.admit()
            admitted.add(1, ordering: .relaxed)
            return probe
        }
        try await Task.sleep(for: .milliseconds(50))
        #expect(admitted.load(ordering: .relaxed) == 0, "admitted while a probe was out")
        // The probe's entry needed no handler call: no report.
        breaker.endProbe()
        #expect(await eventually(timeout: .seconds(60)) { admitted.load(ordering: .relaxed) == 1 }, "the queued caller was never woken")
        queued.cancel()
        #expect(try await queued.value == true, "the woken caller is the next probe")
        #expect(breaker.phase == .probing)
        breaker.succeeded()
        #expect(breaker.phase == .closed)
    }
}

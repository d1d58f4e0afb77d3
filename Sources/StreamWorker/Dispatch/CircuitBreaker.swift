import Synchronization

/// One subscription's circuit breaker for downstreams that are unavailable.
///
/// Closed: handlers run freely. A handler that reports ``DeliveryError/unavailable`` opens it:
/// every lane and retry then waits in ``admit()`` instead of hammering the downstream. After
/// the open period one caller is let through as a probe (half-open); its success closes the
/// breaker and lets everyone through; its failure opens it again for a longer period (the
/// backoff grows to its cap, minutes by default).
final class CircuitBreaker: Sendable {
    enum Phase: Sendable, Equatable {
        case closed
        case open(until: ContinuousClock.Instant)
        /// A probe is out; nobody else is admitted until it reports.
        case probing
    }

    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Bool, Never>
    }

    private struct State {
        var phase = Phase.closed
        var failures = 0
        var waiters: [Waiter] = []
        var nextWaiter: UInt64 = 0
    }
    private let state = Mutex(State())
    /// Not closed: read without the lock on every handler result (almost always false).
    private let tripped = Atomic<Bool>(false)
    private let backoff: Backoff

    init(backoff: Backoff) { self.backoff = backoff }

    var phase: Phase { state.withLock { $0.phase } }

    /// Open or probing: ``admit()`` may wait. One atomic load, no lock.
    var isTripped: Bool { tripped.load(ordering: .relaxed) }

    /// Open, its period still running: no handler is admitted until it ends (probing is not
    /// counted: a probe may be on its way, and a caller after the period becomes one).
    var isHoldingBack: Bool {
        guard tripped.load(ordering: .relaxed) else { return false }
        return state.withLock { s in
            if case .open(let until) = s.phase { return until > ContinuousClock.now }
            return false
        }
    }

    /// Admission to call the handler: at once while closed; while open, waits for the open
    /// period to pass and then lets one probe through at a time. True when this caller is the
    /// probe (it must report ``succeeded()`` or ``failed()``). Throws `CancellationError`.
    func admit() async throws -> Bool {
        while true {
            enum Decision { case pass, probe, wait(Duration), queue }
            let decision = state.withLock { s -> Decision in
                switch s.phase {
                case .closed: return .pass
                case .probing: return .queue
                case .open(let until):
                    let now = ContinuousClock.now
                    if now >= until {
                        s.phase = .probing
                        return .probe
                    }
                    return .wait(until - now)
                }
            }
            switch decision {
            case .pass: return false
            case .probe: return true
            case .wait(let duration):
                // Several callers may wait out the period; the first one after it is the probe.
                try await Task.sleep(for: duration)
            case .queue:
                try await waitForProbe()
            }
        }
    }

    /// Waits until the probe out reports.
    private func waitForProbe() async throws {
        let id = state.withLock { s -> UInt64 in
            s.nextWaiter &+= 1
            return s.nextWaiter
        }
        let reported = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { s -> Bool? in
                    if Task.isCancelled { return false }
                    guard s.phase == .probing else { return true }
                    s.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index)
            }
            waiter?.continuation.resume(returning: false)
        }
        if !reported { throw CancellationError() }
    }

    /// A call reached the downstream: closes the breaker.
    func succeeded() {
        guard tripped.load(ordering: .relaxed) else { return }
        let waiters = state.withLock { s -> [Waiter] in
            guard s.phase != .closed else { return [] }
            s.phase = .closed
            tripped.store(false, ordering: .relaxed)
            s.failures = 0
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: true) }
    }

    /// A call found the downstream unavailable: opens the breaker (again, for longer). Returns
    /// how long it stays open.
    @discardableResult
    func failed() -> Duration {
        let (period, waiters) = state.withLock { s -> (Duration, [Waiter]) in
            let now = ContinuousClock.now
            if case .open(let until) = s.phase, until > now {
                // Already open (calls in flight when it opened report too): keep the period.
                return (until - now, [])
            }
            s.failures += 1
            let period = backoff.delay(attempt: s.failures)
            s.phase = .open(until: now + period)
            tripped.store(true, ordering: .relaxed)
            defer { s.waiters = [] }
            return (period, s.waiters)
        }
        // Callers queued behind the probe go back to waiting out the new period.
        for waiter in waiters { waiter.continuation.resume(returning: true) }
        return period
    }

    /// The probe is done without having reported (its entry needed no handler call, or it was
    /// cancelled): the next caller probes instead. Callers queued behind it are woken to take
    /// its place: left queued, they would wait for a report that never comes, and with every
    /// lane queued no new caller arrives to probe (the subscription stopped for good).
    func endProbe() {
        let waiters = state.withLock { s -> [Waiter] in
            guard s.phase == .probing else { return [] }
            s.phase = .open(until: .now)
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.continuation.resume(returning: true) }
    }
}

import Foundation
import Logging
import RedisClient

/// A fault as it happened.
public struct ExecutedFault: Codable, Sendable {
    public var planned: PlannedFault
    /// Seconds after the load started.
    public var at: Double
    /// The consumer (worker faults) or stream entry (malformed) it hit.
    public var target: String?
    /// Entries the worker held (pending) just before the fault.
    public var heldPending: Int?
    public var skipped: Bool = false
    public var note: String = ""
}

actor FaultLog {
    private(set) var faults: [ExecutedFault] = []
    func append(_ f: ExecutedFault) { faults.append(f) }
}

/// Carries out the schedule.
struct FaultInjector: Sendable {
    let topology: Topology
    let observer: Observer
    let pool: RedisConnectionPool
    let clock: RunClock
    let options: ChaosOptions
    let log = FaultLog()
    let redisLock = AsyncLock()
    let logger: Logger

    /// Runs every fault at its time; returns when the last one has finished (restarts included).
    func run(_ schedule: [PlannedFault]) async {
        await withTaskGroup(of: Void.self) { group in
            for fault in schedule {
                let wait = fault.at - clock.elapsed
                if wait > 0 {
                    do { try await Task.sleep(for: .milliseconds(Int64(wait * 1000))) } catch { break }
                }
                group.addTask { await self.execute(fault) }
            }
        }
    }

    private func execute(_ fault: PlannedFault) async {
        var done = ExecutedFault(planned: fault, at: clock.elapsed)
        switch fault.kind {
        case .kill, .term, .pause:
            done = await workerFault(fault, done)
        case .redis:
            let (at, note) = await redisLock.withLock { () async -> (Double, String) in
                let at = clock.elapsed
                await topology.redis.kill()
                try? await Task.sleep(for: .milliseconds(Int64(fault.seconds * 1000)))
                var attempts = 0
                while true {
                    do {
                        try await topology.redis.start()
                        ChildRegistry.add(topology.redis.pid)
                        return (at, "down \(String(format: "%.1f", clock.elapsed - at)) s")
                    } catch {
                        attempts += 1
                        logger.warning("redis-server restart failed (\(error)); again")
                        if attempts > 20 { return (at, "redis-server did not restart: \(error)") }
                        do { try await Task.sleep(for: .milliseconds(500)) } catch { return (at, "cancelled before redis-server restarted") }
                    }
                }
            }
            done.at = at
            done.note = note
        case .reset:
            topology.proxy.resetConnections()
            done.note = "every worker connection reset"
        case .stall:
            topology.proxy.stall(for: .milliseconds(Int64(fault.seconds * 1000)))
            done.note = "no traffic for \(fault.seconds) s"
            try? await Task.sleep(for: .milliseconds(Int64(fault.seconds * 1000)))
        case .latency:
            let ms = fault.milliseconds ?? 100
            topology.proxy.addLatency(.milliseconds(ms), for: .milliseconds(Int64(fault.seconds * 1000)))
            done.note = "+\(ms) ms each way for \(fault.seconds) s"
            try? await Task.sleep(for: .milliseconds(Int64(fault.seconds * 1000)))
        case .malformed:
            done = await injectMalformed(fault, done)
        }
        logger.info("fault \(fault.kind) at \(String(format: "%.1f", done.at)) s: \(done.target ?? "-") \(done.note)")
        await log.append(done)
    }

    private func workerFault(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        guard let kind = fault.worker, let wanted = fault.slot else { return done }
        // The planned slot, or the next one of that kind that runs and no other fault holds.
        guard let chosen = await topology.reserve(kind: kind, preferred: wanted) else {
            done.skipped = true
            done.note = "no \(kind) worker free"
            return done
        }
        defer { Task { await topology.release(kind: kind, slot: chosen.slot) } }
        let slot = chosen.slot
        let incarnation = chosen.incarnation
        done.target = incarnation.consumer
        // A crash is most telling when the worker holds entries: wait (briefly) for such a moment.
        var held = 0
        if fault.kind != .term {
            let started = ContinuousClock.now
            while ContinuousClock.now - started < .seconds(4) {
                held = await observer.pending(consumer: incarnation.consumer, group: kind) ?? 0
                if held > 0 { break }
                do { try await Task.sleep(for: .milliseconds(25)) } catch { break }
            }
        } else {
            held = await observer.pending(consumer: incarnation.consumer, group: kind) ?? 0
        }
        done.heldPending = held
        done.at = clock.elapsed
        switch fault.kind {
        case .kill:
            await topology.signal(kind: kind, slot: slot, SIGKILL)
            await observer.watch(consumer: incarnation.consumer, group: kind, held: held)
            _ = await topology.waitForExit(kind: kind, slot: slot, timeout: .seconds(30))
            try? await Task.sleep(for: .milliseconds(Int64(fault.seconds * 1000)))
            let next = try? await topology.startWorker(kind: kind, slot: slot)
            done.note = "SIGKILL; restarted as \(next?.consumer ?? "?") after \(fault.seconds) s"
        case .term:
            await topology.signal(kind: kind, slot: slot, SIGTERM)
            let status = await topology.waitForExit(kind: kind, slot: slot, timeout: .seconds(60))
            try? await Task.sleep(for: .milliseconds(Int64(fault.seconds * 1000)))
            let next = try? await topology.startWorker(kind: kind, slot: slot)
            done.note = "SIGTERM, exit status \(status.map(String.init) ?? "none within 60 s"); restarted as \(next?.consumer ?? "?")"
            if status == nil { done.note += " (did not drain in time)" }
        case .pause:
            let seconds = options.leaseSeconds * 2 + fault.seconds
            await topology.signal(kind: kind, slot: slot, SIGSTOP)
            await observer.watch(consumer: incarnation.consumer, group: kind, held: held)
            try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
            await topology.signal(kind: kind, slot: slot, SIGCONT)
            await observer.unwatchIfOpen(incarnation.consumer)
            done.note = "SIGSTOP for \(String(format: "%.1f", seconds)) s (lease \(options.leaseSeconds) s), then SIGCONT"
        default:
            break
        }
        return done
    }

    /// Writes a malformed event straight into a stream. Each carries `chaos_injection` (a unique
    /// marker), so the checker knows exactly which entries must end in the dead letters, even one
    /// whose XADD answer was lost.
    private func injectMalformed(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        let stream = fault.stream ?? WorkerStreams.crm[0]
        let marker = UUID().uuidString.lowercased()
        var fields = [StreamField("event_id", UUID().uuidString.lowercased()), StreamField("chaos_injection", marker)]
        switch fault.variant ?? 0 {
        case 0: done.note = "no entity field"
        case 1:
            fields.append(StreamField("entity", "{\"id\": \"broken"))
            done.note = "entity is not JSON"
        default:
            fields.append(StreamField("entity", "{\"id\": 42, \"name\": null}"))
            done.note = "entity of the wrong shape"
        }
        for attempt in 0..<40 {
            if let id = try? await pool.send(XADD(RedisArgument(stream), fields: fields)) {
                done.target = "\(stream) \(id)"
                return done
            }
            if attempt == 39 { done.note += "; XADD failed" }
            do { try await Task.sleep(for: .milliseconds(500)) } catch { return done }
        }
        return done
    }
}

/// A mutual exclusion for async code (one Redis fault at a time).
actor AsyncLock {
    private var locked = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func withLock<T: Sendable>(_ body: @Sendable () async -> T) async -> T {
        await acquire()
        let result = await body()
        release()
        return result
    }

    private func acquire() async {
        if !locked {
            locked = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { locked = false } else { waiters.removeFirst().resume() }
    }
}

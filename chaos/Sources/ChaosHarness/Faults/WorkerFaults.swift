import AsyncHTTPClient
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

/// Faults of the CRM and billing workers (SIGKILL, SIGTERM, SIGSTOP past the lease), and what
/// the harness reads of Redis, msg and the workers to record what each one hit.
extension FaultInjector {
    func workerFault(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        // An order fault in progress is waited out first: while the order service is paused the
        // load stalls (every client ends up waiting on an order), and a kill then finds nothing
        // inside a handler (a replicated run VOIDed so, its kill 0.3 s into an order pause).
        await orderLock.withLock {}
        // So is a msg outage, for a kill: no handler gets as far as a mail then (at most 70 s).
        if fault.kind == .kill {
            let started = ContinuousClock.now
            while await msgState.sinceUp(now: .now) < .seconds(1), ContinuousClock.now - started < .seconds(70) {
                do { try await Task.sleep(for: .milliseconds(200)) } catch { break }
            }
        }
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
        // A crash is most telling when the worker holds entries: wait (briefly) for such a moment,
        // and for a SIGKILL, for one when an entry it holds is inside its handler (mailed, not
        // settled): a kill that only ever finds read-ahead entries proves less, and a run
        // without one is VOID (a CI run's two kills both missed that window, 0-100 ms per
        // handler, when they waited only for held entries).
        var held = 0
        if fault.kind != .term {
            let started = ContinuousClock.now
            // 8 s for a kill (4 s missed the window in both kills of a replicated run), 4 s for a pause.
            let patience: Duration = fault.kind == .kill ? .seconds(8) : .seconds(4)
            while ContinuousClock.now - started < patience {
                held = await observer.pending(consumer: incarnation.consumer, group: kind) ?? 0
                if held > 0 {
                    guard fault.kind == .kill else { break }
                    let inHandler = (try? await mailedButUnsettled(consumer: incarnation.consumer, group: kind, before: .max, oldest: 10)) ?? 0
                    if inHandler > 0 { break }
                }
                do { try await Task.sleep(for: .milliseconds(10)) } catch { break }
            }
        } else {
            held = await observer.pending(consumer: incarnation.consumer, group: kind) ?? 0
        }
        done.heldPending = held
        done.at = clock.elapsed
        switch fault.kind {
        case .kill:
            await topology.signal(kind: kind, slot: slot, SIGKILL)
            let killedAt = try? await redisTimeMs()
            await observer.watch(consumer: incarnation.consumer, group: kind, held: held)
            _ = await topology.waitForExit(kind: kind, slot: slot, timeout: .seconds(30))
            // Settles the dead worker had written before the kill may still be on their way
            // through the proxy: let them land (far below the lease, so nothing is reclaimed yet).
            await pause(seconds: 0.5)
            if let killedAt { done.inHandler = try? await mailedButUnsettled(consumer: incarnation.consumer, group: kind, before: killedAt) }
            await pause(seconds: max(0, fault.seconds - 0.5))
            let next = try? await topology.startWorker(kind: kind, slot: slot)
            done.note = "SIGKILL; \(done.inHandler.map { "\($0) held entries already mailed (killed inside the handler); " } ?? "")restarted as \(next?.consumer ?? "?") after \(fault.seconds) s"
            if next == nil {
                done.note += " (restart FAILED)"
                done.skipped = true
            }
        case .term:
            await topology.signal(kind: kind, slot: slot, SIGTERM)
            let status = await topology.waitForExit(kind: kind, slot: slot, timeout: .seconds(60))
            await pause(seconds: fault.seconds)
            let next = try? await topology.startWorker(kind: kind, slot: slot)
            done.note = "SIGTERM, exit status \(status.map(String.init) ?? "none within 60 s"); restarted as \(next?.consumer ?? "?")"
            if status == nil { done.note += " (did not drain in time)" }
            if next == nil {
                done.note += " (restart FAILED)"
                done.skipped = true
            }
            await topology.recordTermination(consumer: incarnation.consumer, status: status)
        case .pause:
            let seconds = options.leaseSeconds * 2 + fault.seconds
            let refusedBefore = await observer.staleSettles(of: incarnation.consumer)
            let held = held
            // No Redis fault while the worker is frozen: a failover that loses the unreplicated
            // reclaim of its entries hands them back to it, and the pause then proves nothing
            // about the owner check (see ``ExecutedFault/takenAtResume``). Those faults wait.
            let (frozen, heldAtStop, taken) = await redisLock.withLock { () async -> (Double, Int, Int?) in
                let start = ContinuousClock.now
                await topology.signal(kind: kind, slot: slot, SIGSTOP)
                // What it holds now, frozen, once the settles it had sent have landed: `held` was
                // read before the wait for the lock (seconds, during a failover), and entries it
                // settled itself meanwhile counted as taken by others, a zombie owing no refusal
                // (a review).
                await pause(seconds: 0.3)
                let held = await observer.pending(consumer: incarnation.consumer, group: kind) ?? held
                await observer.watch(consumer: incarnation.consumer, group: kind, held: held)
                await pause(seconds: seconds)
                let taken = await takenWhileFrozen(consumer: incarnation.consumer, group: kind, held: held)
                await topology.signal(kind: kind, slot: slot, SIGCONT)
                let frozen = (ContinuousClock.now - start).components
                return (Double(frozen.seconds) + Double(frozen.attoseconds) / 1e18, held, taken)
            }
            await observer.unwatchIfOpen(incarnation.consumer)
            done.takenAtResume = taken
            // Its refused settles, counted before anything else can hit this worker (it stays
            // reserved): a SIGKILL soon after the SIGCONT took the only count of them with it.
            if let taken, taken > 0 {
                done.refusedAfterResume = await refusedSettles(of: chosen.incarnation, before: refusedBefore)
            }
            done.note =
                "SIGSTOP for \(String(format: "%.1f", frozen)) s (lease \(options.leaseSeconds) s), then SIGCONT; "
                + "\(taken.map { "\($0) of \(heldAtStop) held entries taken by others (confirmed)" } ?? "taken entries not measured")"
                + "\(done.refusedAfterResume.map { "; \($0) stale settles refused after the SIGCONT" } ?? "")"
        default:
            break
        }
        return done
    }

    /// Redis's clock, in milliseconds (the clock of `mail:sent`'s entry ids).
    func redisTimeMs() async throws -> Int64 {
        let reply = try await pool.send(RawCommand(["TIME"], keys: [RedisArgument(MailKeys.sent)], readOnly: true)).throwingServerError()
        guard let parts = reply.array, parts.count == 2, let s = parts[0].int, let us = parts[1].int else { throw ChaosError("TIME answered \(reply)") }
        return Int64(s) * 1000 + Int64(us) / 1000
    }

    /// Of the `held` entries a frozen consumer had, how many are not pending to it any more, as
    /// confirmed by the replica (see ``Observer/confirmedPending(consumer:group:replicas:)``).
    /// Tries for up to 10 s (the worker stays frozen meanwhile); nil when it could not be read.
    private func takenWhileFrozen(consumer: String, group: String, held: Int) async -> Int? {
        guard held > 0 else { return 0 }
        let replicas = options.topology.hasReplicas ? 1 : 0
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(10) {
            if let pending = await observer.confirmedPending(consumer: consumer, group: group, replicas: replicas) {
                return max(0, held - pending)
            }
            await pause(seconds: 0.25)
        }
        return nil
    }

    /// The stale settles a resumed zombie reports: scrapes it until the count rises above what
    /// it was before the pause, for up to 45 s: its settles wait for a Redis that restarts, and
    /// its handlers behind msg's open circuit breaker, whose probes are 16-32 s apart after a
    /// long outage (15 s was the wait when only the sum over every worker was judged).
    private func refusedSettles(of incarnation: WorkerIncarnation, before: Int) async -> Int {
        let started = ContinuousClock.now
        var now = before
        while ContinuousClock.now - started < .seconds(45) {
            await observer.scrape(incarnation)
            now = await observer.staleSettles(of: incarnation.consumer)
            if now > before { break }
            await pause(seconds: 0.25)
        }
        return now - before
    }

    /// How many entries a dead consumer still holds whose mail msg had recorded by `before`
    /// (Redis ms): the worker was killed between the external effect and the settle. Of a live
    /// one (`before` `.max`, the `oldest` few it holds): entries inside their handler now.
    ///
    /// Only entries delivered once (to this consumer: a reclaim counts a delivery, a lease
    /// refresh's XCLAIM JUSTID does not) and never a publisher's duplicate: a review found an
    /// entry reclaimed from an earlier worker that had mailed it, or a duplicate of an event
    /// already mailed, sitting unstarted in read-ahead, counted "inside the handler", so a run
    /// whose kills never landed between a mail and its settle was not VOID. (XPENDING's idle
    /// time cannot date the delivery: the lease refresh resets it every lease/4.)
    private func mailedButUnsettled(consumer: String, group: String, before: Int64, oldest: Int = 1000) async throws -> Int {
        var n = 0
        for stream in WorkerStreams.streams(of: group, in: options.layout) {
            let held = try await pool.send(
                RawCommand(
                    ["XPENDING", RedisArgument(stream), RedisArgument(group), "-", "+", RedisArgument(oldest), RedisArgument(consumer)],
                    keys: [RedisArgument(stream)], readOnly: true))
                .throwingServerError().array ?? []
            for item in held {
                guard let fields = item.array, let id = fields.first?.string, fields.count >= 4, fields[3].int == 1,
                    let entry = try await pool.send(XRANGE(RedisArgument(stream), start: id, end: id, count: 1)).first,
                    entry[History.duplicateField] == nil
                else { continue }
                let key = "\(group):\(entry.string("event_id") ?? "\(stream)/\(id)")"
                guard let mailID = try await pool.send(GET(RedisArgument(MailKeys.marker(key)))).map({ String(decoding: $0, as: UTF8.self) }),
                    let ms = mailID.split(separator: "-").first.flatMap({ Int64($0) })
                else { continue }
                if ms <= before { n += 1 }
            }
        }
        return n
    }
}

import AsyncHTTPClient
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

/// A fault as it happened.
public struct ExecutedFault: Codable, Sendable {
    public var planned: PlannedFault
    /// Seconds after the load started.
    public var at: Double
    /// The consumer (worker faults) or stream entry (malformed) it hit.
    public var target: String?
    /// Entries the worker held (pending) just before the fault.
    public var heldPending: Int?
    /// SIGKILL: entries the killed worker still held whose mail msg had sent before the kill
    /// (by Redis's clock): the kill hit them inside the handler, after the external effect and
    /// before the settle. nil when it could not be measured.
    public var inHandler: Int?
    /// SIGSTOP: of the entries it held at the pause, how many another consumer had taken (or
    /// settled) when it was resumed, as read on the primary and confirmed by its replica: the
    /// settles the zombie still owes for them must be refused. nil when not measured. (A
    /// reclaim the primary had not replicated is no such entry: a CI run failed over without
    /// it, and the zombie resumed owning its entries again, its settles rightly accepted.)
    public var takenAtResume: Int?
    /// SIGSTOP: stale settles (foreign owner or already settled) the zombie reported within 15 s
    /// of its SIGCONT; nil when not measured.
    public var refusedAfterResume: Int?
    /// The fault could not be carried out (no worker free, Redis would not restart, the write
    /// failed...): why. A run asked to include this kind is VOID.
    public var skipped: Bool = false
    public var note: String = ""

    public init(planned: PlannedFault, at: Double, target: String? = nil, heldPending: Int? = nil, inHandler: Int? = nil, takenAtResume: Int? = nil, skipped: Bool = false,
        note: String = ""
    ) {
        self.planned = planned
        self.at = at
        self.target = target
        self.heldPending = heldPending
        self.inHandler = inHandler
        self.takenAtResume = takenAtResume
        self.skipped = skipped
        self.note = note
    }
}

actor FaultLog {
    private(set) var faults: [ExecutedFault] = []
    func append(_ f: ExecutedFault) { faults.append(f) }
}

/// Carries out the schedule.
struct FaultInjector: Sendable {
    let topology: Topology
    let observer: Observer
    let pool: any RedisClientProtocol
    let clock: RunClock
    let options: ChaosOptions
    let http: HTTPClient
    /// Copied before each trim (see ``HistoryArchive``).
    let archive: HistoryArchive
    let log = FaultLog()
    let redisLock = AsyncLock()
    /// One msg outage at a time: a second one planned inside the first waits for its end (it
    /// would otherwise find msg already stopped, and be no fault at all).
    let msgLock = AsyncLock()
    /// One order-service crash at a time (a second would find it down, and start it twice).
    let orderLock = AsyncLock()
    /// When msg was last down, for faults that must wait out an outage (see ``replayOneGroup``).
    let msgState = MsgState()
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
            let (at, note, failed) = await redisLock.withLock { () async -> (Double, String, Bool) in
                let at = clock.elapsed
                await topology.redis.kill()
                await pause(seconds: fault.seconds)
                var attempts = 0
                while true {
                    do {
                        try await topology.redis.start()
                        ChildRegistry.add(topology.redis.pid)
                        return (at, "down \(String(format: "%.1f", clock.elapsed - at)) s", false)
                    } catch {
                        attempts += 1
                        logger.warning("redis-server restart failed (\(error)); again")
                        if attempts > 20 { return (at, "redis-server did not restart: \(error)", true) }
                        do { try await Task.sleep(for: .milliseconds(500)) } catch { return (at, "cancelled before redis-server restarted", true) }
                    }
                }
            }
            done.at = at
            done.note = note
            done.skipped = failed
        case .failover, .promotion, .partition, .primaryKill, .primaryPause, .clusterFailover, .slotMigration, .forcedFailover, .nodePartition:
            // One Redis fault at a time: each waits until the topology has a replica again.
            let target = fault.stream
            let (at, note, failed) = await redisLock.withLock { () async -> (Double, String, Bool) in
                let at = clock.elapsed
                do {
                    return (at, try await replicaFault(fault, target: target ?? Topology.clusterTargets[0]), false)
                } catch {
                    return (at, "\(fault.kind.rawValue)\(target.map { " of " + $0 } ?? "") failed: \(error)", true)
                }
            }
            done.target = target
            done.at = at
            done.note = note
            done.skipped = failed
        case .reset:
            // The workers may hold no connection at this instant (all reconnecting after a Redis
            // restart, or paused between commands): try again for up to 10 s before calling the
            // fault not carried out.
            var n: Int?
            for attempt in 1...10 {
                n = 0
                for proxy in topology.faultProxies {
                    guard let reset = await proxy.resetConnections() else {
                        n = nil
                        break
                    }
                    n! += reset
                }
                if (n ?? 0) > 0 {
                    done.note = "\(n!) \(topology.faultProxyClients) connections reset\(attempt > 1 ? " (attempt \(attempt))" : "")"
                    break
                }
                do { try await Task.sleep(for: .seconds(1)) } catch { break }
            }
            if (n ?? 0) == 0 {
                done.skipped = true
                done.note = n == nil ? "the proxy did not reset within 1 s" : "no \(topology.faultProxyClients) connection to reset in 10 s"
            }
        case .stall:
            for proxy in topology.faultProxies { proxy.stall(for: .milliseconds(Int64(fault.seconds * 1000))) }
            let open = topology.faultProxies.reduce(0) { $0 + $1.openConnections }
            // Connections made during the stall are held too, so none open at its start is no skip.
            done.note = "no traffic for \(fault.seconds) s (\(open) \(topology.faultProxyClients) connections open at its start)"
            await pause(seconds: fault.seconds)
        case .latency:
            let ms = fault.milliseconds ?? 100
            for proxy in topology.faultProxies { proxy.addLatency(.milliseconds(ms), for: .milliseconds(Int64(fault.seconds * 1000))) }
            let open = topology.faultProxies.reduce(0) { $0 + $1.openConnections }
            done.note = "+\(ms) ms each way for \(fault.seconds) s (\(open) \(topology.faultProxyClients) connections open at its start)"
            await pause(seconds: fault.seconds)
        case .malformed:
            done = await injectMalformed(fault, done)
        case .duplicate:
            done = await appendDuplicates(fault, done)
        case .orderCrash, .orderPause:
            done = await orderServiceFault(fault, done)
        case .msgOutage:
            done.target = "msg"
            let (at, note, failed) = await msgLock.withLock { () async -> (Double, String, Bool) in
                let at = clock.elapsed
                await msgState.wentDown()
                let status = await topology.stopService("msg")
                // The outage lasts its planned time even when the run is being cancelled: msg
                // must come back for the drain to finish its mails.
                await pause(seconds: fault.seconds)
                let result: (Double, String, Bool)
                do {
                    try await topology.startService("msg", http: http)
                    let note = "msg down \(String(format: "%.1f", clock.elapsed - at)) s (stopped with status \(status.map(String.init) ?? "none: it was not running"))"
                    result = (at, note, status == nil)
                } catch {
                    result = (at, "msg did not start again: \(error)", true)
                }
                await msgState.cameBack()
                return result
            }
            done.at = at
            done.note = note
            done.skipped = failed
        case .trim:
            // The copy resumes where a failed one stopped.
            let copyError = await retried { attempt -> (any Error)? in
                do {
                    try await archive.copy()
                    return nil
                } catch {
                    logger.warning("copying the streams before the trim failed (attempt \(attempt)): \(error)")
                    return error
                }
            } until: { $0 == nil }
            if let copyError {
                done.skipped = true
                done.note = "could not copy the streams before the trim: \(copyError)"
            } else {
                done = await tool(["trim"], done)
            }
        case .rebuild:
            done = await tool(["rebuild", "all"], done)
        case .replay:
            done = await replayOneGroup(fault, done)
        }
        logger.info("fault \(fault.kind) at \(String(format: "%.1f", done.at)) s: \(done.target ?? "-") \(done.note)")
        await log.append(done)
    }

    /// A failover or a reshard of a topology with replicas; what happened.
    private func replicaFault(_ fault: PlannedFault, target: String) async throws -> String {
        switch fault.kind {
        case .failover: try await topology.failover(after: fault.seconds)
        case .partition: try await topology.partition(for: fault.seconds)
        case .promotion: try await topology.promotion()
        case .primaryKill: try await topology.killPrimary(of: target, restartAfter: fault.seconds)
        case .primaryPause: try await topology.pausePrimary(of: target, beyondFailover: fault.seconds)
        case .clusterFailover: try await topology.failOverReplica(of: target)
        case .forcedFailover: try await topology.forceFailover(of: target, lagging: fault.seconds)
        case .slotMigration: try await topology.migrateSlot(of: target)
        case .nodePartition: try await topology.partitionPrimary(of: target, beyondFailover: fault.seconds)
        default: throw ChaosError("\(fault.kind.rawValue) is not a failover")
        }
    }

    /// SIGKILLs (order-crash) or SIGSTOPs (order-pause) the order service at a moment when order
    /// changes hold open stock reservations (waiting up to 5 s for them); starts it again, or
    /// continues it, after the planned time. `heldPending`: the changes in flight just before.
    private func orderServiceFault(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        // A Redis fault in progress (or a frozen worker, which holds Redis faults back) is waited
        // out first: while the primary is down or its replica cut off, no order change gets
        // between its steps (confirmed writes wait), and the fault finds none (a replicated CI
        // run: "order crashes amid changes 0 of 1", its crash 1 s into a replica cut-off).
        await redisLock.withLock {}
        return await orderLock.withLock { await orderServiceFaultNow(fault, record) }
    }

    private func orderServiceFaultNow(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        done.target = "order"
        let key = RedisArgument(History.openReservationsKey)
        // Two changes in flight for 3 s, then one will do: a single change may end in a way that
        // needs no reaper (its order changed meanwhile), two rarely both do. In flight: opened in
        // the last second (a change holds its reservation 25 ms); older ones are left from an
        // earlier fault, waiting out the reaper's grace time.
        var open = 0
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(5) {
            if let now = try? await redisTimeMs(),
                let n = try? await pool.send(RawCommand(["ZCOUNT", key, RedisArgument("(\(now - 1000)"), "+inf"], keys: [key], readOnly: true)).int
            {
                open = n
            }
            if open >= (ContinuousClock.now - started < .seconds(3) ? 2 : 1) { break }
            do { try await Task.sleep(for: .milliseconds(2)) } catch { break }
        }
        done.heldPending = open
        done.at = clock.elapsed
        if fault.kind == .orderPause {
            // Past the grace time, so that the standby's reaper aborts what the paused one holds.
            let stopped = ReservationReaper.defaultGrace + .seconds(fault.seconds)
            await topology.pauseService("order", true)
            do { try await Task.sleep(for: stopped) } catch {}
            await topology.pauseService("order", false)
            done.note = "SIGSTOP with \(open) order changes in flight; SIGCONT after \(stopped)"
            return done
        }
        await topology.killService("order")
        await pause(seconds: fault.seconds)
        do {
            try await topology.startService("order", http: http)
            done.note = "SIGKILL with \(open) order changes in flight; restarted after \(fault.seconds) s"
        } catch {
            done.skipped = true
            done.note = "the order service did not start again: \(error)"
        }
        return done
    }

    private func workerFault(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
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
            let (frozen, taken) = await redisLock.withLock { () async -> (Double, Int?) in
                let start = ContinuousClock.now
                await topology.signal(kind: kind, slot: slot, SIGSTOP)
                await observer.watch(consumer: incarnation.consumer, group: kind, held: held)
                await pause(seconds: seconds)
                let taken = await takenWhileFrozen(consumer: incarnation.consumer, group: kind, held: held)
                await topology.signal(kind: kind, slot: slot, SIGCONT)
                let frozen = (ContinuousClock.now - start).components
                return (Double(frozen.seconds) + Double(frozen.attoseconds) / 1e18, taken)
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
                + "\(taken.map { "\($0) of \(held) held entries taken by others (confirmed)" } ?? "taken entries not measured")"
                + "\(done.refusedAfterResume.map { "; \($0) stale settles refused after the SIGCONT" } ?? "")"
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
        var shape: [StreamField] = []
        switch fault.variant ?? 0 {
        case 0: done.note = "no entity field"
        case 1:
            shape.append(StreamField("entity", "{\"id\": \"broken"))
            done.note = "entity is not JSON"
        default:
            shape.append(StreamField("entity", "{\"id\": 42, \"name\": null}"))
            done.note = "entity of the wrong shape"
        }
        for attempt in 0..<40 {
            // A marker per attempt: an attempt whose answer was lost, or not confirmed, may
            // still be there, and is then an injection of its own that must be dead-lettered.
            let fields = [StreamField("event_id", UUID().uuidString.lowercased()), StreamField("chaos_injection", UUID().uuidString.lowercased())] + shape
            if let id = try? await append(stream, fields) {
                done.target = "\(stream) \(id)"
                return done
            }
            if attempt == 39 {
                done.note += "; XADD failed"
                done.skipped = true
            }
            do { try await Task.sleep(for: .milliseconds(500)) } catch { return done }
        }
        return done
    }

    /// An entry the harness appends; in a topology with replicas it counts only once the replica
    /// has it: a failover loses an unconfirmed one, and the fault that needed it is then not
    /// carried out (seen: a replay VOID in a 5-minute run, its malformed entry lost).
    private func append(_ stream: String, _ fields: [StreamField]) async throws -> String? {
        let add = XADD(RedisArgument(stream), fields: fields)
        guard options.topology.hasReplicas else { return try await pool.send(add) }
        return try await pool.withConnection(forKeys: [RedisArgument(stream)]) { connection in
            let id = try await connection.send(add)
            guard try await connection.send(WAIT(replicas: 1, timeout: .seconds(2))) >= 1 else {
                throw ChaosError("the replica did not confirm the entry appended to \(stream)")
            }
            return id
        }
    }

    /// Appends the newest entries of a stream again, fields and event id unchanged, as a
    /// publisher does that retries an XADD whose reply it lost. Each copy also carries
    /// `chaos_duplicate_of` (the original's id), so that the checker counts it as the same event
    /// again, not as a command's second event; the workers ignore that field.
    private func appendDuplicates(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = record
        let stream = fault.stream ?? WorkerStreams.crm[0]
        let count = max(1, fault.variant ?? 1)
        for attempt in 0..<40 {
            do {
                let newest = try await pool.send(XRANGE(RedisArgument(stream), count: 50, reverse: true))
                let originals = newest.filter {
                    $0[History.injectionField] == nil && $0[History.duplicateField] == nil && $0["event_id"] != nil
                }.prefix(count)
                guard !originals.isEmpty else {
                    done.skipped = true
                    done.note = "no event in \(stream) to repeat"
                    return done
                }
                var ids: [String] = []
                for original in originals {
                    let fields = original.fields + [StreamField(History.duplicateField, original.id)]
                    ids.append(try await append(stream, fields) ?? "?")
                }
                done.target = "\(stream) \(originals.map(\.id).joined(separator: ","))"
                done.note = "\(ids.count) entries appended again (same event ids) as \(ids.joined(separator: ","))"
                return done
            } catch {
                if attempt == 39 {
                    done.skipped = true
                    done.note = "XADD failed: \(error)"
                }
                do { try await Task.sleep(for: .milliseconds(500)) } catch { return done }
            }
        }
        return done
    }

    /// Runs an operations command; a non-zero exit is a fault not carried out (with its output).
    private func tool(_ arguments: [String], _ record: ExecutedFault) async -> ExecutedFault {
        return await retried { attempt in
            var done = record
            done.target = "ordershop " + arguments.joined(separator: " ")
            do {
                let (status, output) = try await topology.runTool(arguments)
                let last = output.split(separator: "\n").suffix(3).joined(separator: " | ")
                done.note = "exit \(status)\(attempt > 1 ? " (attempt \(attempt))" : ""): \(last)"
                done.skipped = status != 0
            } catch {
                done.skipped = true
                done.note = "could not run: \(error)"
            }
            return done
        } until: { !$0.skipped }
    }

    /// Runs `body` (given the attempt, from 1) 2 s apart until `done` holds for what it
    /// returned, at least 4 times and for at least 60 s; returns the last result. A Redis
    /// restart, a stall or a cluster's failovers may overlap an operation of the harness: four
    /// attempts within 14 s all met a shard mid-failover once (a cluster 5-minute run, seed
    /// 1404, VOID: a primary killed, another replica forced over, a third primary killed).
    private func retried<T>(_ body: (Int) async -> T, until done: (T) -> Bool) async -> T {
        let started = ContinuousClock.now
        var attempt = 1
        while true {
            let result = await body(attempt)
            if done(result) || (attempt >= 4 && ContinuousClock.now - started >= .seconds(60)) { return result }
            attempt += 1
            do { try await Task.sleep(for: .seconds(2)) } catch { return result }
        }
    }

    /// Injects a malformed entry, waits until the fault's group has dead-lettered it, then
    /// replays that group's dead letters with `ordershop dlq replay STREAM GROUP`: the entry
    /// comes back for that group only, fails again and is dead-lettered again (the checker
    /// requires it in each reading group's dead letters exactly once).
    private func replayOneGroup(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
        var done = await injectMalformed(fault, record)
        guard !done.skipped, let stream = fault.stream, let group = fault.worker else { return done }
        let letters = DeadLetters(client: pool, stream: stream, group: group)
        // While msg is down the group's circuit breaker holds its entries, the malformed one
        // too, and after a long outage its probes are 16-32 s apart: wait until 60 s after msg
        // is back (at least 20 s in all, at most 3 min). 30 s was too short once (a 27.5 s
        // outage, then two proxy stalls: a replicated 5-minute run, seed 1301, VOID).
        let started = ContinuousClock.now
        var waiting = true
        while waiting {
            if let list = try? await letters.list(count: 100_000), !list.isEmpty {
                waiting = false
                break
            }
            let now = ContinuousClock.now
            let sinceMsgUp = await msgState.sinceUp(now: now)
            if now - started >= .seconds(180) || (now - started >= .seconds(20) && sinceMsgUp >= .seconds(60)) { break }
            do { try await Task.sleep(for: .milliseconds(250)) } catch { break }
        }
        if waiting {
            done.skipped = true
            done.note += "; not dead-lettered by \(group) in \(ContinuousClock.now - started): nothing to replay"
            return done
        }
        let replayed = await tool(["dlq", "replay", stream, group], done)
        done.skipped = replayed.skipped
        done.note += "; dlq replay \(group): \(replayed.note)"
        return done
    }

    /// Redis's clock, in milliseconds (the clock of `mail:sent`'s entry ids).
    private func redisTimeMs() async throws -> Int64 {
        let reply = try await pool.send(RawCommand(["TIME"], keys: [RedisArgument(MailKeys.sent)], readOnly: true)).throwingServerError()
        guard let parts = reply.array, parts.count == 2, let s = parts[0].int, let us = parts[1].int else { throw ChaosError("TIME answered \(reply)") }
        return Int64(s) * 1000 + Int64(us) / 1000
    }

    /// How many entries a dead consumer still holds whose mail msg had recorded by `before`
    /// (Redis ms): the worker was killed between the external effect and the settle. Of a live
    /// one (`before` `.max`, the `oldest` few it holds): entries inside their handler now.
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
    /// it was before the pause, for up to 15 s (its settles wait for a Redis that restarts).
    private func refusedSettles(of incarnation: WorkerIncarnation, before: Int) async -> Int {
        let started = ContinuousClock.now
        var now = before
        while ContinuousClock.now - started < .seconds(15) {
            await observer.scrape(incarnation)
            now = await observer.staleSettles(of: incarnation.consumer)
            if now > before { break }
            await pause(seconds: 0.25)
        }
        return now - before
    }

    private func mailedButUnsettled(consumer: String, group: String, before: Int64, oldest: Int = 1000) async throws -> Int {
        var n = 0
        for stream in WorkerStreams.streams(of: group) {
            let held = try await pool.send(
                RawCommand(
                    ["XPENDING", RedisArgument(stream), RedisArgument(group), "-", "+", RedisArgument(oldest), RedisArgument(consumer)],
                    keys: [RedisArgument(stream)], readOnly: true))
                .throwingServerError().array ?? []
            for item in held {
                guard let id = item.array?.first?.string,
                    let entry = try await pool.send(XRANGE(RedisArgument(stream), start: id, end: id, count: 1)).first
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

/// Whether msg is down (a msg outage fault), and since when it is up.
actor MsgState {
    private var down = 0
    private var upSince = ContinuousClock.now

    func wentDown() { down += 1 }

    func cameBack() {
        down -= 1
        if down == 0 { upSince = .now }
    }

    /// How long msg has been up; zero while it is down.
    func sinceUp(now: ContinuousClock.Instant) -> Duration { down > 0 ? .zero : now - upSince }
}

/// A pause that a cancelled task still waits out (`Task.sleep` would return at once): for a
/// fault's planned length, whose end (a restart) must happen in every case.
func pause(seconds: Double) async {
    guard seconds > 0 else { return }
    await withCheckedContinuation { (resume: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(seconds * 1000))) { resume.resume() }
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

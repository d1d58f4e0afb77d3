import AsyncHTTPClient
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

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
                    return (at, try await replicaFault(fault, target: target ?? Topology.clusterTargets(in: options.layout)[0]), false)
                } catch {
                    return (at, "\(fault.kind.rawValue)\(target.map { " of " + $0 } ?? "") failed: \(error)", true)
                }
            }
            done.target = target
            done.at = at
            done.note = note
            done.skipped = failed
        case .redisFull:
            // No order-service fault meanwhile, one in progress waited out: the load's clients
            // wait on the frozen service, and a full Redis then met no command (a first run: 0
            // commands in its 2.4 s, all six clients held by an order-pause), which now makes the
            // run VOID. The order lock is held throughout: an order fault that passed its look at
            // the Redis lock just before could otherwise start during the fill (a review).
            // One Redis fault at a time: a failover meanwhile would lift the limit on a node
            // that is no longer the primary, and leave the new one unlimited. (No holder of the
            // Redis lock waits for the order lock: no deadlock.)
            let (at, note, failed) = await orderLock.withLock { () async -> (Double, String, Bool) in
                await redisLock.withLock { () async -> (Double, String, Bool) in
                    let at = clock.elapsed
                    do {
                        return (at, try await topology.fillRedis(for: fault.seconds), false)
                    } catch {
                        return (at, "redis-full failed: \(error)", true)
                    }
                }
            }
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
            done = await trim(done)
        case .rebuild:
            done = await rebuild(done)
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
}

import AsyncHTTPClient
import Foundation
import Logging
import OrderShop
import RedisClient
import StreamWorker

/// Faults of the order service: a crash or a pause between the steps of an order change.
extension FaultInjector {
    /// SIGKILLs (order-crash) or SIGSTOPs (order-pause) the order service at a moment when order
    /// changes hold open stock reservations (waiting up to 5 s for them); starts it again, or
    /// continues it, after the planned time. `heldPending`: the changes in flight just before.
    func orderServiceFault(_ fault: PlannedFault, _ record: ExecutedFault) async -> ExecutedFault {
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
        // Two changes in flight for 3 s, then one will do: a single change may end in a way that
        // needs no reaper (its order changed meanwhile), two rarely both do. In flight: opened in
        // the last second (a change holds its reservation 25 ms); older ones are left from an
        // earlier fault, waiting out the reaper's grace time.
        var open = 0
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(5) {
            if let now = try? await redisTimeMs(), let n = try? await openedSince(now - 1000) { open = n }
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

    /// Stock reservations' parts opened since `ms` (Redis's clock), over every stock partition.
    private func openedSince(_ ms: Int64) async throws -> Int {
        var n = 0
        for name in History.openReservationKeys(in: options.layout) {
            let key = RedisArgument(name)
            n += try await pool.send(RawCommand(["ZCOUNT", key, RedisArgument("(\(ms)"), "+inf"], keys: [key], readOnly: true)).int ?? 0
        }
        return n
    }
}

/// The verdict of a run, from its report: a pure function, tested on synthetic reports.
///
/// FAIL when anything that must hold did not (a violation); else VOID when the run did not
/// exercise what it claims to prove (too little load, a fault that could not be carried out, no
/// kill inside a handler, no redelivery, no duplicate suppressed, no stale settle refused); else
/// PASS. A planted bug must end in FAIL.
public enum Judge {
    public struct Outcome: Sendable, Equatable {
        public var verdict: String
        public var violations: [String]
        public var voids: [String]
    }

    public static func judge(_ report: RunReport) -> Outcome {
        var violations: [String] = []
        var voids: [String] = []
        let o = report.options
        if let check = report.check { violations += check.violations }
        if !report.drained { violations.append("the groups did not drain within \(Int(o.drainTimeout)) s") }
        for exit in report.processExits { violations.append("process exit no fault asked for: \(exit)") }
        for w in report.unreclaimed where w.held > 0 {
            violations.append("entries of \(w.consumer) (\(w.held) held at the fault) were never reclaimed")
        }

        let executed = report.faults.filter { !$0.skipped }
        let enabled = o.faults
        let counters = report.counters
        let stale = (counters["foreign_settles_refused"] ?? 0) + (counters["already_settled"] ?? 0)

        // The owner check: a worker paused past its lease whose entries others had taken when it
        // resumed (confirmed by the replica, so no failover gave them back) is a zombie; its
        // settles of those entries must be refused.
        let zombies = executed.filter { f in f.planned.kind == .pause && (f.takenAtResume ?? 0) > 0 }
        if !zombies.isEmpty && stale == 0 {
            violations.append(
                "owner check: no stale settle was refused although \(zombies.count) paused workers resumed with entries others had taken")
        }
        // Not judged per zombie: the counts above are every worker's, so one settle refused
        // anywhere hides a zombie whose settles were accepted (a review). A check of each
        // zombie's own refusals (each pause's `refusedAfterResume`, shown in its note) failed a
        // correct CI run (replicated, seed 20261128): the zombie's entries were waiting at the
        // read fence, whose owner-checked claim drops entries taken by others without counting
        // a refusal, as the lease refresh does. Judging it per zombie needs those counted first.

        // Replays: the entry a replay fault injected and replayed must be in its group's dead
        // letters as replayed (`replayed_from`): a `dlq replay` that exited 0 and moved nothing
        // left the first letter, which the dead-letter check alone accepts (a review).
        if let check = report.check {
            for f in executed where f.planned.kind == .replay {
                guard let marker = f.marker, let stream = f.planned.stream, let group = f.planned.worker else { continue }
                if !check.replayedLetters.contains("\(stream) \(group) \(marker)") {
                    violations.append("replay: the entry injected into \(stream) (\(marker)) is not in \(group)'s dead letters as replayed: the dlq replay moved nothing")
                }
            }
        }

        // Leases: with no worker paused and nothing cutting workers off from Redis, no settle can
        // be stale (a killed worker settles nothing): one refused means entries were taken from a
        // live worker whose lease was not kept (the handlers may outlast the lease: the
        // slow-handler mode makes them, and the runtime must refresh their leases).
        // (Every cluster fault cuts workers off a shard for a while: a primary dead or frozen
        // until its replica takes over, writes held during a failover or a cut-off replica's
        // confirmation, TRYAGAIN during a migration.)
        let cutOff: Set<FaultKind> = Set([.pause, .stall, .latency, .redis, .reset, .failover, .promotion, .partition] + FaultKind.cluster)
        if enabled.isDisjoint(with: cutOff) && stale > 0 {
            violations.append(
                "lease not kept: \(stale) stale settles refused although no worker was paused or cut off from Redis (entries were taken from live workers)")
        }

        // Enough load.
        if let check = report.check {
            let minimum = Int(o.minimumRatePerSecond * o.duration)
            let commands = check.commands["total"] ?? 0
            if commands < minimum { voids.append("too little load: \(commands) commands, fewer than \(minimum)") }
            if check.events < minimum { voids.append("too little load: \(check.events) events, fewer than \(minimum)") }
            // Every kind of command the load sent must mostly have been answered: a bug that
            // answers every order 503 "may have been applied" left no 200 order to lose, and
            // the run passed on the rest (a review). 5 %: the order-crash faults of a planted
            // run leave 19 % of creates answered 200, every other run more than half.
            for kind in check.rarelyAnswered {
                voids.append("too few commands answered 200: \(kind)")
            }
            if check.historyGaps > 0 {
                voids.append("\(check.historyGaps) entries were trimmed before the harness copied them: the history is incomplete")
            }
        } else {
            voids.append("nothing was checked")
        }
        // Every fault carried out, and every enabled kind at least once.
        for f in report.faults where f.skipped {
            voids.append("the \(f.planned.kind.rawValue) fault at \(String(format: "%.1f", f.at)) s could not be carried out: \(f.note)")
        }
        for kind in FaultKind.allCases where enabled.contains(kind) && !executed.contains(where: { $0.planned.kind == kind }) {
            voids.append("no \(kind.rawValue) fault was carried out")
        }
        // What the faults must have exercised.
        if enabled.contains(.kill) {
            let kills = executed.filter { $0.planned.kind == .kill }
            if !kills.contains(where: { ($0.heldPending ?? 0) > 0 }) {
                voids.append("no SIGKILL hit a worker holding pending entries (\(kills.count) kills)")
            }
            if !kills.contains(where: { ($0.inHandler ?? 0) > 0 }) {
                voids.append("no SIGKILL hit an entry inside its handler (mailed, not yet settled) (\(kills.count) kills)")
            }
            // Such an entry, handled again, asks msg again for the mail it handed over: msg's
            // own idempotency (the external effect's line) is tried only then. Seen by msg's
            // answer ("duplicate", in the ledger) or, when msg sent it again, in `mail:sent`.
            if let check = report.check, check.msgAskedTwice == 0 && check.duplicateEffects == 0 {
                voids.append("no worker asked msg again for a mail it had handed over (\(kills.count) kills): msg's idempotency was never tried")
            }
        }
        for kind in [FaultKind.orderCrash, .orderPause] where enabled.contains(kind) {
            let hits = executed.filter { $0.planned.kind == kind }
            if !hits.contains(where: { ($0.heldPending ?? 0) > 0 }) {
                voids.append("no \(kind.rawValue) found an order change between its steps (\(hits.count) faults)")
            }
        }
        // A full Redis must have refused writes: "writes refused" was the fault's note whatever
        // happened (a review). Its answers end within the fault, or just after its lift.
        for f in report.faults where f.planned.kind == .redisFull && !f.skipped {
            let refused = report.check?.memoryRefusals.count { $0 >= f.at && $0 <= f.at + f.planned.seconds + 1 } ?? 0
            if refused == 0 {
                voids.append(
                    "the redis-full fault at \(String(format: "%.1f", f.at)) s refused no write: no command was answered \"\(History.outOfMemory)\" meanwhile")
            }
        }
        // A trim must have removed entries while the groups still needed some: one that met
        // no pending entry and no lag could drop nothing a consumer wanted, whatever its floor
        // (``FaultInjector/trim(_:)``), and a trim that removed nothing tried no floor at all.
        if enabled.contains(.trim) {
            let trims = executed.filter { $0.planned.kind == .trim }
            if !trims.contains(where: { ($0.trimmed ?? 0) > 0 && ($0.neededAtTrim ?? 0) > 0 }) {
                voids.append(
                    "no trim removed entries while the groups still needed some (\(trims.count) trims): retention was never tried where it could lose an event")
            }
        }
        // A rebuild must have met a command's event between its read and its swap (its swap
        // refused, the new events read): the race that loses what commands wrote meanwhile.
        if enabled.contains(.rebuild) {
            let rebuilds = executed.filter { $0.planned.kind == .rebuild }
            if !rebuilds.contains(where: { ($0.swapsRefused ?? 0) > 0 }) {
                voids.append(
                    "no rebuild met an event appended between its read and its swap (\(rebuilds.count) rebuilds): the race it must survive never happened")
            }
        }
        // The load makes some products scarce (``LoadGenerator``): without a refusal, no order
        // ever met the stock check, and "negative stock" could not catch a service that oversold.
        if let check = report.check, check.outOfStockRefusals == 0 {
            voids.append("no order was refused for lack of stock: the stock check never ran out, so overselling was never tried")
        }
        if !enabled.isDisjoint(with: [.orderCrash, .orderPause]), let check = report.check, check.abortedOrderChanges == 0 {
            voids.append("no order change was aborted by a reaper: the order faults never left one between its steps")
        }
        if !enabled.isDisjoint(with: [.kill, .pause, .redis, .stall, .reset, .failover, .partition]) && report.redeliveries == 0 {
            voids.append("no entry was delivered twice: the run never made the runtime redeliver")
        }
        if !enabled.isDisjoint(with: [.duplicate, .kill]) && (counters["duplicates"] ?? 0) == 0 {
            voids.append("no duplicate was suppressed by the idempotency markers: the marker path never ran")
        }
        if enabled.contains(.pause) && stale == 0 && zombies.isEmpty {
            voids.append("no stale settle was refused, and no paused worker resumed with entries others had taken: the owner check never ran")
        }

        let verdict = violations.isEmpty ? (voids.isEmpty ? "PASS" : "VOID") : "FAIL"
        return Outcome(verdict: verdict, violations: violations, voids: voids)
    }
}

import Foundation

/// Everything a run produced: written as JSON, summarised on stdout, drawn as SVG.
public struct RunReport: Codable, Sendable {
    public var options: ChaosOptions
    public var schedule: [PlannedFault]
    public var faults: [ExecutedFault]
    public var check: CheckResult?
    public var counters: [String: Int]
    public var reclaims: [ReclaimWatch]
    public var drainSeconds: Double?
    public var drained: Bool
    public var samples: [Sample]
    public var incarnations: [WorkerIncarnation]
    public var processExits: [String]
    public var harnessError: String?
    /// Why the run proves too little (VOID when there is no violation).
    public var voids: [String]
    public var verdict: String
    public var violations: [String]

    public init(
        options: ChaosOptions, schedule: [PlannedFault] = [], faults: [ExecutedFault] = [], check: CheckResult? = nil,
        counters: [String: Int] = [:], reclaims: [ReclaimWatch] = [], drainSeconds: Double? = nil, drained: Bool = false,
        samples: [Sample] = [], incarnations: [WorkerIncarnation] = [], processExits: [String] = [], harnessError: String? = nil,
        voids: [String] = [], verdict: String = "ERROR", violations: [String] = []
    ) {
        self.options = options
        self.schedule = schedule
        self.faults = faults
        self.check = check
        self.counters = counters
        self.reclaims = reclaims
        self.drainSeconds = drainSeconds
        self.drained = drained
        self.samples = samples
        self.incarnations = incarnations
        self.processExits = processExits
        self.harnessError = harnessError
        self.voids = voids
        self.verdict = verdict
        self.violations = violations
    }

    var longestReclaim: Double? { reclaims.compactMap(\.reclaimedAfter).max() }
    var unreclaimed: [ReclaimWatch] { reclaims.filter { $0.held > 0 && $0.reclaimedAfter == nil } }
    /// Deliveries beyond the first per entry and group, a lower bound: the larger of what the
    /// delivery counter shows beyond the entries, and the entries reclaimed (each delivered once
    /// before, to the consumer that died or stalled). The first alone undercounts: a SIGKILLed
    /// worker's deliveries after its last metrics scrape are never counted, and a CI replicated
    /// run with 71 entries reclaimed showed 0 (VOID, "never made the runtime redeliver").
    var redeliveries: Int { max(0, (counters["delivered"] ?? 0) - (check?.deliverable ?? 0), counters["reclaimed"] ?? 0) }

    /// A fault kind's colour in the chart (a switch, so that a new kind cannot be left without one).
    static func color(_ kind: FaultKind) -> String {
        switch kind {
        case .kill: "#d62728"
        case .pause: "#9467bd"
        case .term: "#8c564b"
        case .redis: "#000000"
        case .redisFull: "#6a51a3"
        case .reset: "#ff7f0e"
        case .stall: "#e377c2"
        case .latency: "#bcbd22"
        case .malformed: "#17becf"
        case .duplicate: "#7f7f7f"
        case .orderCrash: "#e6550d"
        case .orderPause: "#fdae6b"
        case .msgOutage: "#393b79"
        case .trim: "#637939"
        case .rebuild: "#8c6d31"
        case .replay: "#843c39"
        case .failover, .primaryKill, .primaryPause: "#000000"
        case .promotion, .clusterFailover: "#525252"
        case .partition, .forcedFailover, .nodePartition: "#a50f15"
        case .slotMigration: "#3182bd"
        }
    }

    /// The "redis" row of the table.
    static func describe(_ topology: RedisTopology) -> String {
        switch topology {
        case .single: "one server, AOF (appendfsync always)"
        case .replicated: "a primary and a replica behind a moving endpoint; services confirm with --confirm-replicas 1"
        case .cluster: "a cluster of 3 primaries with a replica each, AOF (appendfsync always); services and workers confirm with --confirm-replicas 1"
        }
    }

    /// The summary table.
    public var table: String {
        var rows: [(String, String)] = []
        let o = options
        rows.append(("seed", "\(o.seed)"))
        rows.append(("duration", "\(Int(o.duration)) s of load, \(o.clients) clients, \(o.workersPerKind) crm + \(o.workersPerKind) billing workers, lease \(o.leaseSeconds) s"))
        rows.append(("redis", Self.describe(o.topology)))
        if o.partitions > 1 { rows.append(("partitions", "every entity type in \(o.partitions) (--partitions \(o.partitions))")) }
        rows.append(("planted bug", o.plantedBug?.rawValue ?? "none"))
        var byKind: [FaultKind: Int] = [:]
        var skipped = 0
        for f in faults { if f.skipped { skipped += 1 } else { byKind[f.planned.kind, default: 0] += 1 } }
        let heldKills = faults.filter { $0.planned.kind == .kill && !$0.skipped && ($0.heldPending ?? 0) > 0 }.count
        let handlerKills = faults.filter { $0.planned.kind == .kill && !$0.skipped && ($0.inHandler ?? 0) > 0 }.count
        var faultText: [String] = []
        for k in FaultKind.allCases { if let n = byKind[k] { faultText.append("\(k.rawValue) \(n)") } }
        if skipped > 0 { faultText.append("skipped \(skipped)") }
        rows.append(("faults", faultText.joined(separator: ", ")))
        rows.append(("kills holding entries", "\(heldKills) of \(byKind[.kill] ?? 0); inside a handler (mailed, not settled): \(handlerKills)"))
        for (kind, label) in [(FaultKind.orderCrash, "order crashes amid changes"), (.orderPause, "order pauses amid changes")] where o.faults.contains(kind) {
            let hits = faults.filter { $0.planned.kind == kind && !$0.skipped }
            rows.append((label, "\(hits.filter { ($0.heldPending ?? 0) > 0 }.count) of \(hits.count); changes in flight then: \(hits.map { String($0.heldPending ?? 0) }.joined(separator: ", "))"))
        }
        if let c = check {
            rows.append(("commands", "\(c.commands["total"] ?? 0): ok \(c.commands["ok"] ?? 0), failed \(c.commands["failed"] ?? 0), unknown \(c.commands["unknown"] ?? 0) (recovered \(c.recovered), not applied \(c.unknownNotApplied))"))
            rows.append(("keyed creates", "\(c.keyedCreates) with an Idempotency-Key; retried \(c.keyedRetries) times (\(c.droppedAnswers) answers dropped by the harness); made twice \(c.keyedCreatesMadeTwice)"))
            rows.append(("events", "\(c.events) (+ \(c.injected) injected malformed, + \(c.publisherDuplicates) publisher duplicates, + \(c.replayedEntries) replayed dead letters)"))
            rows.append(("lost events", "\(c.lostEvents)" + (!o.topology.hasReplicas ? "" : o.plantedBug == .unconfirmedWrites ? " (answered 2xx without waiting for the replica: the planted bug)" : " (answered 2xx, so confirmed by the replica)")))
            if o.topology.hasReplicas {
                rows.append(("unconfirmed (503)", "\(c.unconfirmed): lost to a failover \(c.unconfirmedLost), kept \(c.unconfirmed - c.unconfirmedLost)"))
            }
            rows.append(("mails", "expected \(c.expectedMails), sent \(c.mails): " + c.mailsByKind.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
            rows.append(("runtime applied", "\(c.runtimeApplied) of \(c.expectedApplications) (event, group) pairs; twice \(c.runtimeAppliedTwice), never \(c.runtimeNeverApplied), unexpected \(c.runtimeAppliedUnexpected)"))
            rows.append(("msg asked twice", "\(c.msgAskedTwice) (same key again after an unsettled handling; msg sent it once)"))
            rows.append(("lost effects", "\(c.lostEffects)"))
            rows.append(("duplicate effects", "\(c.duplicateEffects) by key; \(c.excessMails) mails beyond the events"))
            rows.append(("unexpected", "\(c.unexpectedMails) mails, \(c.unexpectedEvents) events"))
            rows.append(("mails not as implied", "\(c.wrongMails) (another kind, or an address the customer never had)"))
        }
        rows.append(("deliveries", "\(counters["delivered"] ?? 0)"))
        let processed = counters["processed"] ?? 0
        rows.append(("redeliveries", "\(redeliveries) (reclaimed \(counters["reclaimed"] ?? 0), retried \(counters["retried"] ?? 0), failed attempts \(counters["failed"] ?? 0))"))
        rows.append(("processed", "\(processed)"))
        rows.append(("duplicates suppressed", "\(counters["duplicates"] ?? 0)"))
        rows.append(("stale settles refused", "\((counters["foreign_settles_refused"] ?? 0) + (counters["already_settled"] ?? 0)) (foreign owner \(counters["foreign_settles_refused"] ?? 0), already settled \(counters["already_settled"] ?? 0))"))
        if let c = check {
            rows.append(("dead letters", "\(c.deadLetters) (missing injections \(c.deadLettersMissing), not injected \(c.deadLettersUnexpected))"))
            let pending = c.groups.reduce(0) { $0 + $1.pending }
            let lag = c.groups.reduce(0) { $0 + ($1.lag ?? 0) }
            rows.append(("pending / lag", "\(pending) / \(lag)"))
            let mism = c.readModelMismatches.values.reduce(0, +)
            rows.append(("read models = replay", mism == 0 ? "yes" : "no, \(mism) entities differ"))
            rows.append(("read-model values that are not their id's JSON", "\(c.unreadableEntities)"))
            rows.append(("outside their entity's partition", "\(c.misplaced)"))
            rows.append(("stock", "negative \(c.negativeStock), differs from orders \(c.stockMismatches), reservations left open \(c.openReservations); order changes aborted by a reaper \(c.abortedOrderChanges)"))
            rows.append(("orders refused: out of stock", "\(c.outOfStockRefusals)"))
        }
        rows.append(("longest death → reclaim", longestReclaim.map { String(format: "%.1f s", $0) } ?? "n/a"))
        rows.append(("drain", drainSeconds.map { String(format: "%.1f s", $0) } ?? "did not drain"))
        rows.append(("process exits", processExits.isEmpty ? "all asked for" : "\(processExits.count) not asked for"))
        rows.append(("verdict", verdict))
        let width = rows.map(\.0.count).max() ?? 10
        var out = "+" + String(repeating: "-", count: width + 2) + "+" + String(repeating: "-", count: 60) + "\n"
        for (k, v) in rows { out += "| " + k.padding(toLength: width, withPad: " ", startingAt: 0) + " | " + v + "\n" }
        out += "+" + String(repeating: "-", count: width + 2) + "+" + String(repeating: "-", count: 60) + "\n"
        for v in violations { out += "VIOLATION: \(v)\n" }
        if violations.isEmpty { for v in voids { out += "VOID: \(v)\n" } }
        if let e = harnessError { out += "HARNESS ERROR: \(e)\n" }
        if !violations.isEmpty, let ex = check?.examples.prefix(12), !ex.isEmpty {
            out += "examples:\n" + ex.map { "  - \($0)" }.joined(separator: "\n") + "\n"
        }
        return out
    }

    /// Throughput (entries processed per second) and backlog (pending + lag) over time, with
    /// every fault marked.
    public var svg: String {
        let w = 1100.0, h = 420.0, left = 60.0, right = 70.0, top = 30.0, bottom = 60.0
        let pw = w - left - right, ph = h - top - bottom
        let tMax = max(options.duration, samples.last?.t ?? 1, 1)
        var rates: [(Double, Double)] = []
        for (a, b) in zip(samples, samples.dropFirst()) where b.t > a.t {
            rates.append((b.t, Double(max(0, b.processed - a.processed)) / (b.t - a.t)))
        }
        let backlog = samples.compactMap { s in s.backlog.map { (s.t, Double($0)) } }
        let rMax = max(1, rates.map(\.1).max() ?? 1) * 1.1
        let bMax = max(1, backlog.map(\.1).max() ?? 1) * 1.1
        func x(_ t: Double) -> Double { left + pw * t / tMax }
        func line(_ pts: [(Double, Double)], _ maxV: Double, _ color: String) -> String {
            let p = pts.map { String(format: "%.1f,%.1f", x($0.0), top + ph - ph * $0.1 / maxV) }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"\(p)\"/>\n"
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(left)\" y=\"18\" font-size=\"14\">ordershop chaos run, seed \(options.seed): \(verdict)</text>\n"
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#999\"/>\n"
        s += "<line x1=\"\(x(options.duration))\" y1=\"\(top)\" x2=\"\(x(options.duration))\" y2=\"\(top + ph)\" stroke=\"#999\" stroke-dasharray=\"2,2\"/>\n"
        s += "<text x=\"\(x(options.duration) + 3)\" y=\"\(top + 12)\" fill=\"#666\">load ends, drain</text>\n"
        for f in faults where !f.skipped {
            let c = Self.color(f.planned.kind)
            let fx = x(f.at)
            s += "<line x1=\"\(fx)\" y1=\"\(top)\" x2=\"\(fx)\" y2=\"\(top + ph)\" stroke=\"\(c)\" stroke-opacity=\"0.6\"/>\n"
            s += "<text transform=\"translate(\(fx + 2),\(top + ph - 4)) rotate(-90)\" fill=\"\(c)\">\(f.planned.kind.rawValue) \(f.target.map { $0.split(separator: " ").first.map(String.init) ?? "" } ?? "")</text>\n"
        }
        s += line(rates, rMax, "#1f77b4")
        s += line(backlog, bMax, "#2ca02c")
        for i in 0...4 {
            let fy = top + ph - ph * Double(i) / 4
            s += "<text x=\"\(left - 5)\" y=\"\(fy + 4)\" text-anchor=\"end\" fill=\"#1f77b4\">\(Int(rMax * Double(i) / 4))</text>\n"
            s += "<text x=\"\(left + pw + 5)\" y=\"\(fy + 4)\" fill=\"#2ca02c\">\(Int(bMax * Double(i) / 4))</text>\n"
        }
        var t = 0.0
        let step = tMax > 300 ? 60.0 : (tMax > 120 ? 30.0 : 10.0)
        while t <= tMax {
            s += "<text x=\"\(x(t))\" y=\"\(top + ph + 15)\" text-anchor=\"middle\">\(Int(t)) s</text>\n"
            t += step
        }
        let ly = h - 20
        s += "<text x=\"\(left)\" y=\"\(ly)\" fill=\"#1f77b4\">— processed entries/s (left)</text>\n"
        s += "<text x=\"\(left + 200)\" y=\"\(ly)\" fill=\"#2ca02c\">— backlog: pending + lag (right)</text>\n"
        var lx = left + 430
        for k in FaultKind.allCases where options.faults.contains(k) {
            s += "<text x=\"\(lx)\" y=\"\(ly)\" fill=\"\(Self.color(k))\">| \(k.rawValue)</text>\n"
            lx += 50
        }
        s += "</svg>\n"
        return s
    }
}

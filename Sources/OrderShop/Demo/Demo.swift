import AsyncHTTPClient
import Foundation
import Logging
import RedisClient

/// `ordershop demo`: the original client's scenario against a running shop, then the article's
/// promise: stop CRM, run the scenario again (everything still passes), start CRM, and every
/// mail it missed arrives, each exactly once.
///
/// It talks to the gateway over HTTP, stops and starts CRM through the gateway's
/// `/admin/workers/crm/stop|start` (which `ordershop up` serves), and counts mails in the Redis
/// stream `mail:sent`.
public struct Demo: Sendable {
    public struct Options: Sendable {
        public var gatewayURL: String
        /// The shop's Redis (where `mail:sent` and the event streams are).
        public var redis: RedisConfiguration
        /// How long mails may take to arrive before the demo fails.
        public var mailTimeout: Duration
        /// Stop CRM, run again, start CRM (needs the gateway's `/admin/workers`, i.e. `ordershop up`).
        /// Off: one run and its mails only, for a shop whose workers run elsewhere.
        public var crmRestart: Bool
        /// The gateway's admin token (`Authorization: Bearer`), needed for ``crmRestart``.
        public var adminToken: String?

        public init(
            gatewayURL: String = "http://127.0.0.1:5000", redis: RedisConfiguration = .init(), mailTimeout: Duration = .seconds(90),
            crmRestart: Bool = true, adminToken: String? = nil
        ) {
            self.gatewayURL = gatewayURL
            self.redis = redis
            self.mailTimeout = mailTimeout
            self.crmRestart = crmRestart
            self.adminToken = adminToken
        }
    }

    public let options: Options
    let log: @Sendable (String) -> Void

    public init(options: Options, log: @escaping @Sendable (String) -> Void = { print($0) }) {
        self.options = options
        self.log = log
    }

    /// What the demo measured.
    public struct Report: Sendable {
        public var passed = false
        public var runs: [Scenario.Outcome] = []
        public var mailsByKind: [MailKind: Int] = [:]
        public var failures: [String] = []
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs the demo and prints the report; `passed` is false when any step failed.
    public func run(httpClient: HTTPClient) async throws -> Report {
        var report = Report()
        let started = ContinuousClock.now
        // A cluster client (`?cluster=yes`) needs no upkeep for a run this short: a redirect
        // updates its slot map at once.
        let pool = try makeRedisClient(options.redis, maximumConnections: 2, logger: Logger(label: "ordershop.demo"))
        let shop = ShopClient(baseURL: options.gatewayURL, client: httpClient)
        let mails = MailLog(pool: pool)

        log("OrderShop demo against \(options.gatewayURL) (Redis \(options.redis.redactedDescription))")
        do {
            try await waitForGateway(shop)
            // After the gateway is healthy: its layout check has passed, so a shop in
            // partitions has recorded how many (``HealthCheck``).
            let events = EventKeys(pool: pool, layout: try await ShopLayout.recorded(in: pool))
            if options.crmRestart { try await ensureCRMControl(shop) }

            // Run 1, everything up.
            log("\n== run 1: every service and worker up ==")
            let mark1 = try await events.mark()
            let run1 = await Scenario(shop: shop).run(log: log)
            report.runs.append(run1)
            guard run1.passed else { throw Failure(description: "run 1 failed") }
            log("  scenario wall time: \(Self.seconds(run1.duration))")
            let expected1 = try await events.expectedMails(since: mark1)
            // The scenario creates customers and orders: no mail owed means the demo read other
            // streams than the shop wrote (another partition layout), not that all went well.
            guard !expected1.isEmpty else {
                throw Failure(description: "run 1 added no event to the streams that cause mails (\(events.layout)): the shop writes other streams than this demo reads")
            }
            try await waitForMails(expected1, mails: mails, label: "run 1")
            var expected2: [ExpectedMail] = []
            if options.crmRestart {
                expected2 = try await runWithCRMDown(shop: shop, mails: mails, events: events, report: &report)
            }

            // Exactly once, over everything this demo caused.
            try await checkExactlyOnce(expected1 + expected2, mails: mails, report: &report)

            log("\n== the shop now ==")
            var counts: [String] = []
            for path in ["/customers", "/products", "/inventory", "/orders", "/billings", "/orders/unbilled"] {
                counts.append("\(path.dropFirst()) \(try await shop.count(path) ?? -1)")
            }
            log("  " + counts.joined(separator: ", "))
            report.passed = true
        } catch {
            report.failures.append("\(error)")
            log("\nFAIL: \(error)")
        }
        await pool.shutdown()
        log("\n\(report.passed ? "PASS" : "FAIL") in \(Self.seconds(ContinuousClock.now - started))")
        return report
    }

    /// Stops CRM, runs the scenario again, starts CRM: answers the mails run 2 owes. A failure
    /// while CRM is stopped starts it again before it is reported: a failed demo left the shop's
    /// CRM stopped until someone started it by hand (a trial).
    private func runWithCRMDown(shop: ShopClient, mails: MailLog, events: EventKeys, report: inout Report) async throws -> [ExpectedMail] {
        // Run 2 with CRM down.
        log("\n== CRM stopped (POST /admin/workers/crm/stop; it drains like on SIGTERM) ==")
        let expected2: [ExpectedMail]
        let crm2: [ExpectedMail]
        do {
            // Inside: a stop whose answer is lost (or comes after the client's timeout) may
            // still have stopped CRM.
            try await control(shop, "stop")
            (expected2, crm2) = try await runTwo(shop: shop, mails: mails, events: events, report: &report)
        } catch {
            log("  starting CRM again after the failure")
            do {
                try await control(shop, "start")
            } catch let restart {
                throw Failure(description: "\(error); and CRM could not be started again (\(restart)): POST /admin/workers/crm/start does it")
            }
            throw error
        }

        // CRM back: it catches up from its consumer group.
        log("\n== CRM started again ==")
        let restarted = ContinuousClock.now
        try await control(shop, "start")
        try await waitForMails(crm2, mails: mails, label: "run 2, CRM caught up")
        log("  caught up \(crm2.count) missed mails in \(Self.seconds(ContinuousClock.now - restarted))")
        return expected2
    }

    /// Run 2, with CRM stopped: the mails it owes, all and CRM's.
    private func runTwo(shop: ShopClient, mails: MailLog, events: EventKeys, report: inout Report) async throws -> ([ExpectedMail], [ExpectedMail]) {
        log("\n== run 2: the same scenario while CRM is down ==")
        let mark2 = try await events.mark()
        let run2 = await Scenario(shop: shop).run(log: log)
        report.runs.append(run2)
        guard run2.passed else { throw Failure(description: "run 2 failed") }
        log("  scenario wall time: \(Self.seconds(run2.duration))")
        let expected2 = try await events.expectedMails(since: mark2)
        let billing2 = expected2.filter { $0.kind.group == WorkerName.billing.group }
        let crm2 = expected2.filter { $0.kind.group == WorkerName.crm.group }
        try await waitForMails(billing2, mails: mails, label: "run 2, billing (still up)")
        let sentWhileDown = Set(try await mails.all().map(\.key)).intersection(crm2.map(\.key)).count
        log("  CRM mails of run 2 sent while CRM is down: \(sentWhileDown) of \(crm2.count)")
        guard sentWhileDown == 0 else {
            // The consumers are a hint: reading them must not hide this failure.
            throw Failure(description: "CRM sent \(sentWhileDown) mails while it was stopped" + ((try? await otherCRMConsumers(events)) ?? ""))
        }
        return (expected2, crm2)
    }

    /// The consumers of group crm while `up`'s CRM is stopped (it left the group): a CRM worker
    /// run beside `ordershop up` mails while the demo expects none (a trial's leftover worker).
    private func otherCRMConsumers(_ events: EventKeys) async throws -> String {
        // The first stream CRM reads (its first partition in a shop of several).
        let stream = events.layout.partitions(.customer)[0].stream(.created)
        let listed = try await events.pool.send(XINFOCONSUMERS(RedisArgument(stream), group: WorkerName.crm.group))
        guard !listed.isEmpty else { return "" }
        return "; group \(WorkerName.crm.group) of \(stream) still lists "
            + listed.map { "\(LogText.escaped($0.name, limit: 100)) (idle \(String(format: "%.1f", Double($0.idleMilliseconds) / 1000)) s)" }.joined(separator: ", ")
            + ": a CRM worker running beside `ordershop up` reads it too"
    }

    private func checkExactlyOnce(_ expected: [ExpectedMail], mails: MailLog, report: inout Report) async throws {
        let all = try await mails.all()
        var perKey: [String: Int] = [:]
        for m in all { perKey[m.key, default: 0] += 1 }
        let wrong = expected.filter { perKey[$0.key] != 1 }
        let duplicated = perKey.filter { $0.value > 1 }
        for e in expected { report.mailsByKind[e.kind, default: 0] += perKey[e.key] ?? 0 }
        log("\n== mails of \(report.runs.count == 1 ? "the run" : "both runs") (stream mail:sent) ==")
        for kind in MailKind.allCases {
            let want = expected.filter { $0.kind == kind }.count
            log("  \(kind.rawValue.padding(toLength: 17, withPad: " ", startingAt: 0)) \(report.mailsByKind[kind] ?? 0) sent, \(want) expected")
        }
        guard wrong.isEmpty, duplicated.isEmpty else {
            throw Failure(description: "\(wrong.count) expected mails not sent exactly once; \(duplicated.count) keys sent more than once")
        }
        log("  every expected mail sent exactly once (\(expected.count) mails, no key twice in \(all.count) entries)")
    }

    private func waitForGateway(_ shop: ShopClient) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        var last = ""
        while ContinuousClock.now < deadline {
            do {
                let reply = try await shop.get("/healthz")
                if reply.status == 200 { return }
                last = reply.description
            } catch {
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw Failure(description: "the gateway at \(options.gatewayURL) is not healthy: \(last)")
    }

    private var adminHeaders: [(String, String)] { options.adminToken.map { [("Authorization", "Bearer \($0)")] } ?? [] }

    /// The demo needs `ordershop up`'s worker control; CRM must be running at the start.
    private func ensureCRMControl(_ shop: ShopClient) async throws {
        let reply = try await shop.send(.GET, "/admin/workers", body: nil, headers: adminHeaders)
        guard reply.status == 200, let state = reply.json?["crm"]?.stringValue else {
            throw Failure(
                description: "the gateway has no worker control (GET /admin/workers answered \(reply.status)); "
                    + "run the demo against `ordershop up`, which runs CRM in its process, with the same admin token (--admin-token, $ORDERSHOP_ADMIN_TOKEN)")
        }
        if state != "running" {
            log("CRM was stopped (an earlier demo was interrupted?); starting it")
            try await control(shop, "start")
        }
    }

    private func control(_ shop: ShopClient, _ action: String) async throws {
        let reply = try await shop.send(.POST, "/admin/workers/crm/\(action)", body: nil, headers: adminHeaders)
        guard reply.status == 200 else { throw Failure(description: "POST /admin/workers/crm/\(action) answered \(reply)") }
        log("  workers: \(reply.text)")
    }

    /// Waits until every expected mail is in `mail:sent`; reports the counts per kind.
    private func waitForMails(_ expected: [ExpectedMail], mails: MailLog, label: String) async throws {
        let deadline = ContinuousClock.now + options.mailTimeout
        var missing = expected
        while true {
            let sent = Set(try await mails.all().map(\.key))
            missing = expected.filter { !sent.contains($0.key) }
            if missing.isEmpty || ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        let byKind = Dictionary(grouping: expected, by: \.kind).mapValues(\.count)
        let line = MailKind.allCases.compactMap { k in byKind[k].map { "\(k) \($0)" } }.joined(separator: ", ")
        guard missing.isEmpty else {
            throw Failure(description: "\(label): \(missing.count) of \(expected.count) mails did not arrive within \(options.mailTimeout)")
        }
        log("  mails (\(label)): \(line), all \(expected.count) arrived")
    }

    static func seconds(_ d: Duration) -> String {
        String(format: "%.2f s", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
    }
}

/// A mail the shop owes for one event.
struct ExpectedMail: Sendable, Hashable {
    let key: String
    let kind: MailKind
}

/// Reads the events a run added, to know which mails it must cause.
struct EventKeys: Sendable {
    let pool: any RedisClientProtocol
    /// The shop's partitions: each partition's stream is a source.
    let layout: ShopLayout

    /// The streams that cause mails (each partition's), with the mail kinds of each.
    var sources: [(stream: String, mails: [MailKind])] {
        let kinds: [(EntityType, EventAction, [MailKind])] = [
            (.customer, .created, [.welcome]),
            (.customer, .deleted, [.goodbye]),
            (.order, .created, [.thankYou, .pleasePay]),
            (.billing, .created, [.paymentReceived]),
        ]
        return kinds.flatMap { type, action, mails in layout.partitions(type).map { ($0.stream(action), mails) } }
    }

    /// The last entry id of each source stream now.
    func mark() async throws -> [String] {
        var out: [String] = []
        for s in sources {
            out.append(try await pool.send(XRANGE(RedisArgument(s.stream), count: 1, reverse: true)).first?.id ?? "0-0")
        }
        return out
    }

    /// The mails owed for the events added since a mark: `<group>:<event_id>` per kind.
    func expectedMails(since mark: [String]) async throws -> [ExpectedMail] {
        var out: [ExpectedMail] = []
        for (i, s) in sources.enumerated() {
            var start = "(" + mark[i]
            while true {
                let page = try await pool.send(XRANGE(RedisArgument(s.stream), start: start, end: "+", count: 1000))
                for entry in page {
                    let eventID = entry.string("event_id") ?? "\(s.stream)/\(entry.id)"
                    for kind in s.mails { out.append(ExpectedMail(key: "\(kind.group):\(eventID)", kind: kind)) }
                }
                guard page.count == 1000, let last = page.last else { break }
                start = "(" + last.id
            }
        }
        return out
    }
}

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import RedisClient
import StreamWorker

/// A whole chaos run: topology up, load with faults, restore, drain, check, report.
public enum ChaosRun {
    /// Exit codes: 0 passed, 1 a violation, 2 void (the run did not exercise what it must: see
    /// ``Judge``), 3 the harness itself failed.
    public static func run(_ options: ChaosOptions) async -> Int32 {
        var logger = Logger(label: "chaos")
        logger.logLevel = .info
        let schedule = FaultSchedule.make(options: options)
        ChildRegistry.installHandlers()
        print("chaos: seed \(options.seed) (same seed, same schedule), \(Int(options.duration)) s, faults: \(options.faults.sorted().map(\.rawValue).joined(separator: ","))")
        if let bug = options.plantedBug { print("chaos: PLANTED BUG \(bug.rawValue): the checker must fail this run") }
        print("chaos: schedule:")
        for f in schedule {
            print("  " + String(format: "%6.1f s", f.at) + "  " + describe(f))
        }
        let reportDir = options.reportDirectory
        try? FileManager.default.createDirectory(atPath: reportDir, withIntermediateDirectories: true)

        var httpConfig = HTTPClient.Configuration()
        httpConfig.connectionPool = .init(idleTimeout: .seconds(30), concurrentHTTP1ConnectionsPerHostSoftLimit: 32)
        httpConfig.timeout = .init(connect: .seconds(5), read: .seconds(Int64(options.requestTimeout)))
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfig)
        var report = RunReport(options: options, schedule: schedule)
        var topology: Topology?
        do {
            let topo = try await Topology(options: options, runDirectory: reportDir, logger: logger)
            topology = topo
            if let cluster = topo.cluster {
                print("chaos: a Redis Cluster of 3 primaries with a replica each (AOF, appendfsync always) on :\(cluster.nodes.map { String($0.port) }.joined(separator: ", :")), gateway \(topo.gatewayURL); services and workers confirm with --confirm-replicas 1")
            } else if let replication = topo.replication, let endpoint = topo.endpoint {
                print("chaos: redis-server primary :\(replication.servers[0].port) and replica :\(replication.servers[1].port) (AOF, appendfsync always), endpoint :\(endpoint.port), proxy :\(topo.proxy.port), gateway \(topo.gatewayURL); services confirm writes with --confirm-replicas 1")
            } else {
                print("chaos: redis-server :\(topo.redis.port) (AOF, appendfsync always), proxy :\(topo.proxy.port), gateway \(topo.gatewayURL)")
            }
            try await topo.start(http: http)
            print("chaos: \(Topology.serviceNames.count) services and \(2 * options.workersPerKind) workers are up; logs in \(topo.logDirectory)")
            // The harness's own connection goes straight to Redis (replicated: to the endpoint),
            // never through the workers' proxy.
            let client = try await connectRedis(topo.harnessConfiguration, maximumConnections: 4, logger: logger)
            // The client's upkeep (a cluster's topology refresh) as a child task for as long as the body uses it.
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await client.run() }
                    defer { group.cancelAll() }
                    try await body(options: options, schedule: schedule, topology: topo, http: http, pool: client, logger: logger, report: &report)
                }
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        } catch {
            report.harnessError = "\(error)"
        }
        if let topology { report.incarnations = await topology.incarnations }
        // The verdict.
        if report.harnessError != nil {
            report.verdict = "ERROR"
        } else {
            let outcome = Judge.judge(report)
            report.verdict = outcome.verdict
            report.violations = outcome.violations
            report.voids = outcome.voids
        }
        print(report.table)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let json = try? encoder.encode(report) { _ = FileManager.default.createFile(atPath: reportDir + "/report.json", contents: json) }
        _ = FileManager.default.createFile(atPath: reportDir + "/run.svg", contents: Data(report.svg.utf8))
        print("chaos: report in \(reportDir)/report.json and \(reportDir)/run.svg")
        if let topology { await topology.shutdown(removeData: report.verdict == "PASS" && !options.keepData) }
        try? await http.shutdown()
        if let bug = options.plantedBug, options.expectCaught {
            let caught = report.verdict == "FAIL" && report.violations.contains { v in bug.expectedViolations.contains { v.contains($0) } }
            print(
                caught
                    ? "chaos: planted bug \(bug.rawValue) CAUGHT: the run failed with the violation that names it"
                    : "chaos: planted bug \(bug.rawValue) NOT CAUGHT: verdict \(report.verdict), expected FAIL with one of: \(bug.expectedViolations.joined(separator: "; "))")
            return caught ? 0 : 1
        }
        switch report.verdict {
        case "PASS": return 0
        case "FAIL": return 1
        case "VOID": return 2
        default: return 3
        }
    }

    public static func describe(_ f: PlannedFault) -> String {
        switch f.kind {
        case .kill: "SIGKILL \(f.worker!)[\(f.slot!)], restart after \(f.seconds) s"
        case .term: "SIGTERM \(f.worker!)[\(f.slot!)], restart after \(f.seconds) s"
        case .pause: "SIGSTOP \(f.worker!)[\(f.slot!)] for 2 leases + \(f.seconds) s, then SIGCONT"
        case .redis: "kill -9 redis-server, restart after \(f.seconds) s"
        case .redisFull: "every primary's maxmemory below what it holds for \(f.seconds) s (noeviction: writes refused), then lifted"
        case .reset: "proxy: reset every connection"
        case .stall: "proxy: stall \(f.seconds) s"
        case .latency: "proxy: +\(f.milliseconds ?? 0) ms for \(f.seconds) s"
        case .malformed: "malformed event (shape \(f.variant ?? 0)) into \(f.stream ?? "?")"
        case .orderCrash: "SIGKILL the order service amid order changes, restart after \(f.seconds) s"
        case .orderPause: "SIGSTOP the order service amid order changes for the reaper's grace + \(f.seconds) s, then SIGCONT"
        case .msgOutage: "stop the msg service for \(f.seconds) s, then start it again"
        case .trim: "ordershop trim (retention) under load"
        case .rebuild: "ordershop rebuild all under load"
        case .replay: "malformed event (shape \(f.variant ?? 0)) into \(f.stream ?? "?"), then ordershop dlq replay of group \(f.worker ?? "?") only"
        case .duplicate: "publisher retry: the newest \(f.variant ?? 1) entries of \(f.stream ?? "?") appended again, same event ids"
        case .failover: "kill -9 the primary, promote its replica after \(f.seconds) s, move the endpoint"
        case .promotion: "promote the replica, demote the primary, move the endpoint"
        case .partition: "cut the replica off for \(f.seconds) s, kill -9 the primary, promote the replica without what it missed"
        case .primaryKill: "kill -9 the cluster primary of \(f.stream ?? "?"), its replica takes over; the dead one back \(f.seconds) s after that"
        case .primaryPause: "SIGSTOP the cluster primary of \(f.stream ?? "?") until its replica takes over, SIGCONT \(f.seconds) s after that"
        case .clusterFailover: "CLUSTER FAILOVER on a replica of \(f.stream ?? "?")'s primary"
        case .slotMigration: "move \(f.stream ?? "?")'s slot to another primary under load"
        case .nodePartition: "partition the cluster primary of \(f.stream ?? "?") from the other nodes (clients still reach it) until its replica takes over, heal \(f.seconds) s after that"
        case .forcedFailover: "the replica of \(f.stream ?? "?")'s primary is cut off for \(f.seconds) s, then CLUSTER FAILOVER FORCE promotes it without what it missed"
        }
    }

    private static func body(
        options: ChaosOptions, schedule: [PlannedFault], topology: Topology, http: HTTPClient, pool: any RedisClientProtocol, logger: Logger,
        report: inout RunReport
    ) async throws {

        var seedRNG = SplitMix64(seed: options.seed ^ 0x5EED)
        let clock0 = RunClock()
        let preload = LoadGenerator(gateway: topology.gatewayURL, http: http, requestTimeout: options.requestTimeout, clock: clock0)
        await preload.seed(rng: &seedRNG)

        let clock = RunClock()
        let load = LoadGenerator(gateway: topology.gatewayURL, http: http, requestTimeout: options.requestTimeout, clock: clock)
        await load.model.add(customers: await preload.model.customers)
        await load.model.add(products: await preload.model.products)
        let observer = Observer(http: http, pool: pool, clock: clock, layout: options.layout)
        let archive = HistoryArchive(pool: pool, confirmingReplicas: options.topology.hasReplicas ? 1 : 0, layout: options.layout)
        if options.faults.contains(.trim) { try await archive.start() }
        let injector = FaultInjector(
            topology: topology, observer: observer, pool: pool, clock: clock, options: options, http: http, archive: archive, logger: logger)

        // The observer: metrics and backlog every second, reclaim watches four times a second.
        let observing = Task {
            var tick = 0
            while !Task.isCancelled {
                if tick % 4 == 0 {
                    await topology.checkExits()
                    for i in await topology.liveIncarnations() { await observer.scrape(i) }
                    await observer.sample()
                }
                await observer.checkWatches()
                tick += 1
                do { try await Task.sleep(for: .milliseconds(250)) } catch { break }
            }
        }

        print("chaos: load and faults start")
        let deadline = clock.start + .milliseconds(Int64(options.duration * 1000))
        async let faultsDone: Void = injector.run(schedule)
        await load.run(clients: options.clients, seed: options.seed, until: deadline)
        let loadEnd = clock.elapsed
        print("chaos: load ended at \(String(format: "%.1f", clock.elapsed)) s; waiting for the last faults to finish")
        await faultsDone

        // Restore: heal the network, Redis up, every worker running.
        for proxy in topology.faultProxies { proxy.heal() }
        topology.clusterNetwork?.heal()
        try await topology.restoreRedis()
        let restored = try await topology.restoreAll()
        if !restored.isEmpty { print("chaos: restored \(restored.joined(separator: ", "))") }

        // Drain: every group has nothing pending and nothing unread, and no order change has
        // its stock reservation open (the order service's reaper ends those a crash left).
        let drainStart = clock.elapsed
        let inspector = GroupInspector(client: pool)
        var drained = false
        while clock.elapsed - drainStart < options.drainTimeout {
            var busy = 0
            var ok = true
            for sub in WorkerStreams.subscriptions(in: options.layout) {
                guard let s = try? await inspector.groupStatus(stream: sub.stream, group: sub.group) else {
                    ok = false
                    break
                }
                busy += s.pending + (s.lag ?? 1)
            }
            if ok, busy == 0, let open = try? await History.openReservations(pool: pool, layout: options.layout), open == 0 {
                drained = true
                break
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        report.drained = drained
        // Drain time counts from the end of the load (the last faults' restarts included).
        if drained { report.drainSeconds = clock.elapsed - loadEnd }
        print("chaos: " + (drained ? "drained \(String(format: "%.1f", clock.elapsed - loadEnd)) s after the load ended" : "NOT drained within \(options.drainTimeout) s"))
        // Handlers that acked early (a planted bug) may still be sending: let them finish, then
        // take the last metrics.
        await pause(seconds: 3)
        for i in await topology.liveIncarnations() { await observer.scrape(i) }
        await observer.sample()
        await observer.checkWatches()
        observing.cancel()

        report.faults = await injector.log.faults
        report.counters = await observer.totals
        report.reclaims = await observer.watches.values.sorted { $0.since < $1.since }
        report.samples = await observer.samples

        let records = await preload.log.records + load.log.records
        let history = try await HistoryCollector(pool: pool, http: http, gateway: topology.gatewayURL, layout: options.layout).collect(records: records, archive: archive)
        report.check = Checker.check(history)
        // Every worker and service must drain and exit 0 on SIGTERM; every exit so far that no
        // fault asked for is already recorded.
        await topology.stopProcesses()
        report.processExits = await topology.unexpectedExits
        let encoder = JSONEncoder()
        if let lines = try? records.map({ String(decoding: try encoder.encode($0), as: UTF8.self) }).joined(separator: "\n") {
            _ = FileManager.default.createFile(atPath: options.reportDirectory + "/commands.jsonl", contents: Data(lines.utf8))
        }
    }
}

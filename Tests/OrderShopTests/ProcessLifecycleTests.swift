import Foundation
import LocalRedis
import Logging
@testable import OrderShop
import RedisClient
import ServiceLifecycle
import StreamWorker
import TestSupport
import Testing

/// How `ordershop work`, `serve` and `up` end, as real child processes of the built binary: a
/// signal during start-up, a port that is taken, a Redis that refuses the password, a second
/// signal; and that `up` leaves no redis-server (by pid) and no data directory behind.
///
/// The issue asks for "within 2 s"; the tests allow ``limit`` (a loaded machine runs several
/// test processes at once), which the behaviour they guard against (27 s, or never) still fails.
@Suite struct ProcessLifecycleTests {
    static let limit: Duration = .seconds(5)

    /// Starts `ordershop` with `arguments` (log level info, so the start-up lines show).
    func ordershop(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(try builtProduct("ordershop"), arguments, environment: ["LOG_LEVEL": "info"])
    }

    /// Waits until the process printed `text` (or ended); whether it did.
    func printed(_ process: ChildProcess, _ text: String, timeout: Duration = .seconds(60)) async -> Bool {
        _ = await eventually(timeout: timeout) { process.output.contains(text) || !process.isRunning }
        return process.output.contains(text)
    }

    /// A loopback port where something listens (a socket of this test, open until `body` returns).
    func withTakenPort<T>(_ body: (Int) async throws -> T) async throws -> T {
        let (fd, port) = try LocalRedisServer.bindLoopbackSocket()
        defer { close(fd) }
        try #require(listen(fd, 1) == 0)
        return try await body(port)
    }

    /// The lines of `output` that contain `text`.
    func lines(_ output: String, containing text: String) -> [Substring] {
        output.split(separator: "\n").filter { $0.contains(text) }
    }

    /// A Redis URL that refuses connections: a loopback port this test process binds and never
    /// listens on, kept bound until the process ends (a few descriptors), so that no other
    /// test's redis-server can be given it meanwhile. A free port closed again was: a CI run's
    /// worker "waiting for Redis" there connected to another test's server and started.
    func refusingRedisURL() throws -> String {
        let (_, port) = try LocalRedisServer.bindLoopbackSocket()
        return "redis://127.0.0.1:\(port)"
    }

    // MARK: Start-up: Redis unreachable or refusing

    /// What waits for Redis before it starts: a worker without and with its metrics port (which
    /// then listens: ``WaitingEndpoint``), and the dashboard.
    enum Waiter: String, CaseIterable, Sendable { case worker, workerWithMetricsPort, dashboard, dashboardWithItsPort }

    @Test(
        "SIGINT or SIGTERM while a worker or the dashboard waits for an unreachable Redis ends it at once, with a line and status 0",
        arguments: Waiter.allCases, [SIGINT, SIGTERM])
    func waitingForRedisStops(_ waiter: Waiter, signal: Int32) async throws {
        let url = try refusingRedisURL()
        let process: ChildProcess
        switch waiter {
        case .worker: process = try ordershop(["work", "crm", "--url", url, "--metrics-port", "0"])
        case .workerWithMetricsPort:
            process = try ordershop(["work", "crm", "--url", url, "--metrics-port", String(try LocalRedisServer.freePort()), "--metrics-host", "127.0.0.1"])
        case .dashboard: process = try ordershop(["dashboard", "--url", url, "--port", "0"])
        case .dashboardWithItsPort: process = try ordershop(["dashboard", "--url", url, "--port", String(try LocalRedisServer.freePort())])
        }
        #expect(await printed(process, "waiting for Redis"), "\(process.output)")
        if waiter == .workerWithMetricsPort || waiter == .dashboardWithItsPort { #expect(await printed(process, "listening"), "\(process.output)") }
        process.signal(signal)
        let status = await process.waitForExit(timeout: Self.limit)
        await process.stop(signal: SIGKILL)
        // Before, the wait trapped no signal: SIGTERM ended it with 143 and no line.
        #expect(status == 0, "status \(String(describing: status)) after signal \(signal): \(process.output)")
        #expect(lines(process.output, containing: "stopping before the start").count == 1, "\(process.output)")
        #expect(!process.output.contains("worker started"))
        // The waiting endpoint was stopped gracefully, not cancelled (Hummingbird logs that as an error).
        #expect(!process.output.contains("CancellationError"), "\(process.output)")
    }

    /// A crm worker started for a Redis port that is held (bound, not listening: refused) until
    /// the test closes `held` and starts a server there, with its metrics port on loopback.
    func workerWaitingForRedis(credentials: String) throws -> (worker: ChildProcess, held: Int32, redisPort: Int, metricsPort: Int) {
        let (held, redisPort) = try LocalRedisServer.bindLoopbackSocket()
        let metricsPort = try LocalRedisServer.freePort()
        let worker = try ordershop([
            "work", "crm", "--url", "redis://\(credentials)127.0.0.1:\(redisPort)", "--metrics-port", String(metricsPort), "--metrics-host", "127.0.0.1",
        ])
        return (worker, held, redisPort, metricsPort)
    }

    /// An HTTP/1.0 GET of a metrics port's path: the whole answer, or "refused".
    func metricsGET(_ port: Int, _ path: String) async -> String {
        (try? await rawExchange(port: port, Array("GET \(path) HTTP/1.0\r\n\r\n".utf8), timeout: 10)) ?? "refused"
    }

    @Test("a worker waiting for Redis answers on its metrics port (/livez 200, /healthz 503, /metrics with redis_up 0), then works once Redis comes")
    func workerWaitingForRedisAnswersItsProbes() async throws {
        let (worker, held, redisPort, metricsPort) = try workerWaitingForRedis(credentials: "")
        defer { Task { await worker.stop(signal: SIGKILL) } }
        func get(_ path: String) async -> String { await metricsGET(metricsPort, path) }
        #expect(await printed(worker, "waiting for Redis"), "\(worker.output)")
        // Before, the port listened only once Redis answered: a liveness probe found it closed.
        let live = await eventually { await get("/livez").hasPrefix("HTTP/1.0 200") }
        let liveAnswer = await get("/livez")
        #expect(live, "\(liveAnswer) \(worker.output)")
        let health = await get("/healthz")
        #expect(health.hasPrefix("HTTP/1.0 503") && health.contains("waiting for Redis"), "\(health)")
        let metrics = await get("/metrics")
        #expect(metrics.contains("stream_worker_redis_up 0"), "\(metrics)")
        var options = LocalRedisServer.Options()
        options.port = redisPort
        close(held)
        try await withRedisServer(options) { _ in
            await expectWorksThenStops(worker, metricsPort: metricsPort)
        }
        // The waiting endpoint was stopped gracefully, not cancelled (Hummingbird logs that as an error).
        #expect(!worker.output.contains("CancellationError"), "\(worker.output)")
    }

    /// The worker starts, its `/healthz` comes to 200, and SIGTERM ends it with status 0.
    func expectWorksThenStops(_ worker: ChildProcess, metricsPort: Int) async {
        #expect(await printed(worker, "worker started"), "\(worker.output)")
        let healthy = await eventually { await metricsGET(metricsPort, "/healthz").hasPrefix("HTTP/1.0 200") }
        let answer = await metricsGET(metricsPort, "/healthz")
        #expect(healthy, "\(answer)")
        worker.signal(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(60)) == 0, "\(worker.output)")
    }

    @Test("a worker of a shop in partitions waits for a service to record the layout, its /healthz 503 meanwhile, then reads")
    func workerWaitsForTheLayout() async throws {
        try await withRedisServer { server in
            let metricsPort = try LocalRedisServer.freePort()
            let worker = try ordershop([
                "work", "crm", "--partitions", "4", "--url", "redis://127.0.0.1:\(server.port)", "--metrics-port", String(metricsPort),
                "--metrics-host", "127.0.0.1",
            ])
            defer { Task { await worker.stop(signal: SIGKILL) } }
            func get(_ path: String) async -> String { await metricsGET(metricsPort, path) }
            #expect(await printed(worker, "waiting for a service to record"), "\(worker.output)")
            let health = await get("/healthz")
            #expect(health.hasPrefix("HTTP/1.0 503") && health.contains("is not checked yet"), "\(health)")
            // A service's record (what `serve` writes at its start).
            try await ShopLayout(partitions: 4).claim(in: try server.makePool())
            await expectWorksThenStops(worker, metricsPort: metricsPort)
        }
    }

    @Test("the dashboard waiting for Redis answers 503 'waiting for Redis' on its port (/livez 200), then serves the dashboard once Redis comes")
    func dashboardWaitingForRedisAnswers() async throws {
        let (held, redisPort) = try LocalRedisServer.bindLoopbackSocket()
        let port = try LocalRedisServer.freePort()
        let dashboard = try ordershop(["dashboard", "--url", "redis://127.0.0.1:\(redisPort)", "--port", String(port)])
        defer { Task { await dashboard.stop(signal: SIGKILL) } }
        func get(_ path: String) async -> String { await metricsGET(port, path) }
        #expect(await printed(dashboard, "waiting for Redis"), "\(dashboard.output)")
        // Before, the port was closed until Redis answered.
        let waiting = await eventually { await get("/healthz").hasPrefix("HTTP/1.0 503") }
        let health = await get("/healthz")
        #expect(waiting && health.contains("waiting for Redis"), "\(health) \(dashboard.output)")
        #expect(await get("/").hasPrefix("HTTP/1.0 503"))
        #expect(await get("/livez").hasPrefix("HTTP/1.0 200"))
        var options = LocalRedisServer.Options()
        options.port = redisPort
        close(held)
        try await withRedisServer(options) { _ in
            #expect(await printed(dashboard, "dashboard: http://"), "\(dashboard.output)")
            let served = await eventually { await get("/healthz").hasPrefix("HTTP/1.0 200") }
            let healthAnswer = await get("/healthz")
            #expect(served, "\(healthAnswer)")
            #expect(await get("/").contains("<html"), "the dashboard page")
            dashboard.signal(SIGTERM)
            #expect(await dashboard.waitForExit(timeout: .seconds(30)) == 0, "\(dashboard.output)")
        }
        #expect(!dashboard.output.contains("CancellationError"), "\(dashboard.output)")
    }

    @Test("the dashboard waiting for Redis on a port that is taken exits non-zero in one line naming the port")
    func dashboardWaitingForRedisOnATakenPort() async throws {
        try await withTakenPort { port in
            let dashboard = try ordershop(["dashboard", "--url", try refusingRedisURL(), "--port", String(port)])
            let status = await dashboard.waitForExit(timeout: .seconds(30))
            await dashboard.stop(signal: SIGKILL)
            // Before, it waited for Redis for ever, saying nothing of the port.
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(dashboard.output)")
            #expect(lines(dashboard.output, containing: "cannot listen on").count == 1, "\(dashboard.output)")
            #expect(dashboard.output.contains("--port"), "\(dashboard.output)")
        }
    }

    @Test("a worker waiting for Redis with its metrics port open exits in one line when Redis comes and refuses its password")
    func workerWaitingForRedisThenRefusedExits() async throws {
        let (worker, held, redisPort, metricsPort) = try workerWaitingForRedis(credentials: ":guessed-secret@")
        defer { Task { await worker.stop(signal: SIGKILL) } }
        let listening = await eventually { await metricsGET(metricsPort, "/livez").hasPrefix("HTTP/1.0 200") }
        #expect(listening, "\(worker.output)")
        var options = LocalRedisServer.Options()
        options.port = redisPort
        options.password = "the-right-one"
        close(held)
        try await withRedisServer(options) { _ in
            let status = await worker.waitForExit(timeout: .seconds(60))
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(worker.output)")
        }
        #expect(lines(worker.output, containing: "WRONGPASS").count == 1, "\(worker.output)")
        // The waiting endpoint was shut down gracefully on the way out, not cancelled.
        #expect(!worker.output.contains("CancellationError"), "\(worker.output)")
        #expect(!worker.output.contains("guessed-secret"), "\(worker.output)")
    }

    @Test("a worker whose Redis refuses the password exits non-zero, says why, and never logs the password")
    func workerWithWrongPasswordExits() async throws {
        var options = LocalRedisServer.Options()
        options.password = "the-right-one"
        try await withRedisServer(options) { server in
            let worker = try ordershop(["work", "billing", "--url", "redis://:guessed-secret@127.0.0.1:\(server.port)", "--metrics-port", "0"])
            let status = await worker.waitForExit(timeout: Self.limit)
            await worker.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(worker.output)")
            #expect(lines(worker.output, containing: "WRONGPASS").count == 1, "\(worker.output)")
            #expect(!worker.output.contains("guessed-secret"))
            #expect(!worker.output.contains("worker started"))
        }
    }

    @Test("a service whose Redis refuses the password says so in one line and exits, before it listens")
    func serviceWithWrongPasswordExitsBeforeListening() async throws {
        var options = LocalRedisServer.Options()
        options.password = "the-right-one"
        try await withRedisServer(options) { server in
            let service = try ordershop(["serve", "customer", "--port", "0", "--url", "redis://:guessed-secret@127.0.0.1:\(server.port)"])
            let status = await service.waitForExit(timeout: Self.limit)
            await service.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(service.output)")
            #expect(lines(service.output, containing: "WRONGPASS").count == 1, "\(service.output)")
            #expect(!service.output.contains("guessed-secret"))
            // Before, "Server started and listening" came first: a probe saw it up for a moment.
            #expect(!service.output.contains("listening"), "\(service.output)")
        }
    }

    /// Further seeds (`?addr=`) name a cluster. Beside a standalone server a service used the
    /// URL's host and dropped them without a word, and a worker did too (a trial took them for
    /// a fallback server): both exit in one line (the service may have begun to listen: its
    /// first look at Redis waits out a seed that refuses connections).
    @Test("a service and a worker given cluster seeds beside a standalone server say so in one line and exit")
    func seedsBesideAStandaloneServerEndTheProcess() async throws {
        try await withRedisServer { server in
            let url = "redis://127.0.0.1:\(server.port)?addr=127.0.0.1:\(try LocalRedisServer.freePort())"
            for (arguments, says) in [
                (["serve", "customer", "--port", "0"], "cluster support disabled"),
                (["work", "crm", "--metrics-port", "0"], "answers as a standalone server (cluster_enabled:0), but addr= names further Redis Cluster seeds"),
            ] {
                let process = try ordershop(arguments + ["--url", url])
                let status = await process.waitForExit(timeout: Self.limit)
                await process.stop(signal: SIGKILL)
                #expect(status != nil && status != 0, "\(arguments): status \(String(describing: status)): \(process.output)")
                #expect(lines(process.output, containing: "cannot use Redis at").count == 1, "\(arguments): \(process.output)")
                #expect(process.output.contains(says), "\(arguments): \(process.output)")
            }
        }
    }

    /// Trial J: `serve customer` as the CRM worker's user answered every create 503 naming the
    /// ACL while its /healthz said ok. Two users: one that may not name the keys in a script at
    /// all, one that may run scripts over them but only read them (the CRM worker's shape).
    @Test(
        "a service whose Redis user may not write its keys says so in one line and exits",
        arguments: [["resetkeys", "%R~*", "+@all"], ["resetkeys", "~*", "-@all", "+@read", "+eval", "+evalsha", "+ping", "+hello", "+info", "+client|setname"]])
    func serviceWhoseUserMayNotWriteExits(rules: [String]) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(RawCommand(["ACL", "SETUSER", "reader", "on", ">reader-pw"] + rules.map { RedisArgument($0) }, keys: []))
            let service = try ordershop(["serve", "order", "--port", "0", "--url", "redis://reader:reader-pw@127.0.0.1:\(server.port)"])
            let status = await service.waitForExit(timeout: Self.limit)
            await service.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(service.output)")
            #expect(lines(service.output, containing: "does not let user 'reader' write").count == 1, "\(service.output)")
            #expect(service.output.contains("ordershop-service in deploy/redis/users.acl") && !service.output.contains("reader-pw"), "\(service.output)")
            // It changed nothing.
            #expect(try await pool.send(RawCommand(["DBSIZE"], keys: [])).int == 0)
            await pool.shutdown()
        }
    }

    /// A trial (T1) gave each process a user without one command it needs: the gateway a user
    /// that may not read the read models (every query 503), a service with --confirm-replicas a
    /// user without WAIT (every create applied and answered 503), a worker a user without
    /// XAUTOCLAIM (a dead consumer's entries never taken over), each with /healthz ok.
    @Test(
        "a process whose Redis user lacks a command or key it needs says so in one line and exits",
        arguments: [
            (["serve", "gateway"], ["resetkeys", "~{mail:sent}*", "+@all"], "read {customer}_entities"),
            (["serve", "customer", "--confirm-replicas", "1"], ["resetkeys", "~*", "+@all", "-wait"], "run WAIT"),
            (["work", "crm", "--metrics-port", "0"], ["resetkeys", "~*", "+@all", "-xautoclaim"], "as a worker does (NOPERM this user has no permissions to run the 'xautoclaim'"),
        ])
    func processWhoseUserLacksACommandExits(command: [String], rules: [String], said: String) async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(RawCommand(["ACL", "SETUSER", "lacking", "on", ">lacking-pw"] + rules.map { RedisArgument($0) }, keys: []))
            let child = try ordershop(command + (command[0] == "serve" ? ["--port", "0"] : []) + ["--url", "redis://lacking:lacking-pw@127.0.0.1:\(server.port)"])
            let status = await child.waitForExit(timeout: .seconds(60))
            await child.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(child.output)")
            #expect(lines(child.output, containing: said).count == 1, "\(child.output)")
            #expect(!child.output.contains("lacking-pw"), "\(child.output)")
            await pool.shutdown()
        }
    }

    /// ACL users are per node in a Redis Cluster: the start-up WAIT probe, sent keyless, went to
    /// one primary at random, and a node whose user lacked WAIT was found only by its first write.
    @Test("on a cluster, a service with --confirm-replicas whose user may not run WAIT on one primary names that node and exits")
    func clusterNodeWithoutWaitExits() async throws {
        var options = LocalRedisCluster.Options()
        options.replicasPerPrimary = 0
        try await withLocalCluster(options) { cluster, _ in
            let lacking = try #require(cluster.nodes.last)
            for node in cluster.nodes {
                let pool = try node.makePool()
                let rules: [RedisArgument] = node === lacking ? ["~*", "+@all", "-wait"] : ["~*", "+@all"]
                _ = try await pool.send(RawCommand(["ACL", "SETUSER", "lacking", "on", ">lacking-pw"] + rules, keys: []))
                await pool.shutdown()
            }
            let url = "redis://lacking:lacking-pw@127.0.0.1:\(cluster.nodes[0].port)?cluster=yes"
            let child = try ordershop(["serve", "customer", "--confirm-replicas", "1", "--port", "0", "--url", url])
            let status = await child.waitForExit(timeout: .seconds(60))
            await child.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(child.output)")
            #expect(lines(child.output, containing: "run WAIT at node 127.0.0.1:\(lacking.port)").count == 1, "\(child.output)")
            #expect(!child.output.contains("lacking-pw"), "\(child.output)")
        }
    }

    @Test("the start-up write probe passes a user that may write, and changes nothing: not even a client's marker named like it")
    func theWriteProbeChangesNothing() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            // A mail a client sent with the Idempotency-Key "ordershop-access-probe" (a review: the
            // probe's PEXPIRE ended that marker, and the same key was mailed again).
            let marker = RedisArgument(MailKeys.marker("ordershop-access-probe"))
            _ = try await pool.send(RawCommand(["SET", marker, "1-0"], keys: [marker]))
            for service in ServiceName.allCases { try await KeyAccessProbe.check(service, client: pool, at: server.configuration) }
            #expect(try await pool.send(RawCommand(["DBSIZE"], keys: [])).int == 1)
            // No expiry, as it was set: a PEXPIRE of the probe would have given it one.
            #expect(try await pool.send(RawCommand(["PTTL", marker], keys: [marker])).int == -1)
            #expect(KeyAccessProbe.targets(of: .order).map(\.stream) == ["events:{order}_created", "events:{inventory}_updated"])
            await pool.shutdown()
        }
    }

    @Test("SIGTERM while `up` waits for an unreachable Redis ends it at once", arguments: [SIGINT, SIGTERM])
    func upWaitingForRedisStops(signal: Int32) async throws {
        let up = try ordershop(
            ["up", "--url", try refusingRedisURL(), "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0"])
        #expect(await printed(up, "waiting for Redis"), "\(up.output)")
        up.signal(signal)
        let status = await up.waitForExit(timeout: Self.limit)
        #expect(status != nil, "still running \(Self.limit) after signal \(signal): \(up.output)")
        await up.stop(signal: SIGKILL)
        #expect(!up.output.contains("Fatal error"), "\(up.output)")
    }

    @Test("`up` with a Redis that refuses the password exits non-zero and says why in one line, before it listens")
    func upWithWrongPasswordExits() async throws {
        var options = LocalRedisServer.Options()
        options.password = "the-right-one"
        try await withRedisServer(options) { server in
            let up = try ordershop(
                [
                    "up", "--url", "redis://:guessed-secret@127.0.0.1:\(server.port)", "--gateway-port", "0", "--service-port-base", "0",
                    "--metrics-port", "0",
                ])
            let status = await up.waitForExit(timeout: Self.limit)
            await up.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(up.output)")
            #expect(up.output.contains("WRONGPASS"), "\(up.output)")
            #expect(!up.output.contains("guessed-secret"))
            // Said before anything listens, in one line (before: seven "listening" lines and
            // "OrderShop is up" came first, then the refusal among 16 lines).
            #expect(!up.output.contains("listening"), "\(up.output)")
            #expect(!up.output.contains("OrderShop is up"), "\(up.output)")
            #expect(lines(up.output, containing: "error").count == 1, "\(up.output)")
        }
    }

    @Test("`up` says at once when its redis-server child dies, and exits non-zero")
    func upSaysWhenItsRedisDies() async throws {
        let up = try ordershop(
            ["up", "--redis-port", String(try LocalRedisServer.freePort()), "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0"])
        defer { Task { await up.stop(signal: SIGKILL) } }
        #expect(await printed(up, "OrderShop is up"), "\(up.output)")
        // Once both workers read (their groups made): a death amid a worker's start-up checks was
        // told as that worker's failure ("connection lost"), the watcher a second behind.
        for worker in ["crm", "billing"] {
            #expect(await eventually { lines(up.output, containing: "created consumer group").contains { $0.contains("worker=\(worker)") } }, "\(up.output)")
        }
        let line = try #require(lines(up.output, containing: "started redis-server (pid ").first, "\(up.output)")
        let pid = try #require(line.split(separator: "(pid ").last?.split(separator: ",").first.flatMap { Int32($0) }, "\(line)")
        kill(pid, SIGKILL)
        // Before, nothing was said: the shop answered 503 and `up` ran on.
        #expect(await printed(up, "cannot work without it", timeout: .seconds(30)), "\(up.output)")
        let status = await up.waitForExit(timeout: .seconds(60))
        #expect(status != nil && status != 0, "status \(String(describing: status)): \(up.output)")
    }

    @Test("`up --cluster --cluster-replicas 0` stops non-zero when one of its three primaries dies, naming it: no replica will take over")
    func upClusterWithoutReplicasSaysWhenAPrimaryDies() async throws {
        // Its nodes' ports confined to a range (LOCAL_REDIS_PORT_RANGE, as the planted chaos runs
        // side by side take theirs): the three nodes' client ports, which it prints, from it (their
        // bus ports are taken the same way, ``LocalRedisServer/freePort()``).
        let range = try LocalRedisServer.freePortRange(count: 12)
        let up = try ChildProcess(
            try builtProduct("ordershop"), ["up", "--cluster", "--cluster-replicas", "0", "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0"],
            environment: ["LOG_LEVEL": "info", LocalRedisServer.portRangeVariable: "\(range)-\(range + 11)"])
        // Its redis-servers run in process groups of their own: stopped here too when `up` does not.
        var nodes: [pid_t] = []
        defer {
            for node in nodes { kill(node, SIGKILL) }
            Task { await up.stop(signal: SIGKILL) }
        }
        #expect(await printed(up, "OrderShop is up"), "\(up.output)")
        #expect(up.output.contains("3 primaries, 0 replicas"), "\(up.output)")
        let nodeList = up.output.firstMatch(of: /\(append-only\) on ([^;]+);/).map { String($0.1) } ?? ""
        let nodePorts = nodeList.matches(of: /127\.0\.0\.1:(\d+)/).compactMap { Int($0.1) }
        #expect(nodePorts.count == 3 && nodePorts.allSatisfy { (range..<(range + 12)).contains($0) }, "\(range): \(up.output)")
        nodes = redisServers(childrenOf: up.pid)
        try #require(nodes.count == 3, "\(nodes) \(up.output)")
        kill(nodes[0], SIGKILL)
        // Said of the node at once; with a replica's wait (meant for a failover that cannot come)
        // it was said seconds later as a lost shard, after a warning that its replica takes over.
        #expect(await printed(up, "exited (its log ends", timeout: .seconds(30)), "\(up.output)")
        #expect(lines(up.output, containing: "cannot work without it").first?.contains("redis-server on 127.0.0.1:") == true, "\(up.output)")
        #expect(!up.output.contains("its replica takes over"), "\(up.output)")
        let status = await up.waitForExit(timeout: .seconds(60))
        #expect(status != nil && status != 0, "status \(String(describing: status)): \(up.output)")
        #expect(up.output.contains("Redis Cluster stopped"), "\(up.output)")
        // `up` stopped the other two.
        #expect(await eventually(timeout: .seconds(60)) { nodes.allSatisfy { !exists($0) } }, "\(nodes)")
    }

    /// The redis-server processes whose parent is `pid` (from /proc).
    func redisServers(childrenOf pid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let child = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")"), stat[..<close].hasSuffix("(redis-server")
            else { return nil }
            // After the command: state, then the parent's pid.
            let rest = stat[stat.index(after: close)...].split(separator: " ")
            return rest.count > 1 && pid_t(rest[1]) == pid ? child : nil
        }
    }

    // MARK: Ports that are taken

    /// Expects `process` to exit non-zero within `limit` with exactly one line naming
    /// 127.0.0.1:`port`, which gives the system's reason and `flag`; returns its output.
    @discardableResult
    func expectListenFailure(_ process: ChildProcess, port: Int, flag: String, within limit: Duration = limit) async -> String {
        let status = await process.waitForExit(timeout: limit)
        await process.stop(signal: SIGKILL)
        let output = process.output
        #expect(status != nil && status != 0, "status \(String(describing: status)): \(output)")
        let failure = lines(output, containing: "127.0.0.1:\(port)")
        #expect(failure.count == 1, "\(output)")
        #expect(failure.first?.contains("Address already in use") == true, "\(output)")
        #expect(failure.first?.contains(flag) == true, "\(output)")
        return output
    }

    @Test("a worker whose metrics port is taken exits non-zero at once, in one line naming address, port, reason and flag")
    func workerWithTakenMetricsPort() async throws {
        try await withRedisServer { server in
            try await withTakenPort { port in
                let worker = try ordershop(["work", "crm", "--url", server.url, "--metrics-port", String(port), "--metrics-host", "127.0.0.1"])
                let output = await expectListenFailure(worker, port: port, flag: "--metrics-port")
                // It never joined its groups: nothing to drain, no consumer left behind.
                #expect(!output.contains("worker started"), "\(output)")
            }
        }
    }

    @Test("`serve` on an address that is not one exits non-zero saying so, without telling to choose another port")
    func serveOnAnAddressThatIsNotOne() async throws {
        let service = try ordershop(["serve", "customer", "--url", try refusingRedisURL(), "--host", "999.1.1.1", "--port", "0"])
        let status = await service.waitForExit(timeout: .seconds(30))
        await service.stop(signal: SIGKILL)
        #expect(status != nil && status != 0, "\(service.output)")
        let failure = lines(service.output, containing: "cannot listen on 999.1.1.1")
        #expect(failure.count == 1 && failure.first?.contains("check the address (--host)") == true, "\(service.output)")
        #expect(!service.output.contains("choose another port"), "\(service.output)")
    }

    @Test("`serve` on a taken port exits non-zero at once, naming address, port, reason and --port")
    func serveWithTakenPort() async throws {
        try await withRedisServer { server in
            try await withTakenPort { port in
                let service = try ordershop(["serve", "customer", "--url", server.url, "--host", "127.0.0.1", "--port", String(port)])
                await expectListenFailure(service, port: port, flag: "--port")
            }
        }
    }

    /// The pid of the redis-server `up` started, and its data directory, from its start-up line.
    func startedRedis(_ output: String) -> (pid: pid_t, directory: String)? {
        guard let line = lines(output, containing: "started redis-server (pid ").first,
            let pidPart = line.split(separator: "(pid ").last?.split(separator: ",").first, let pid = pid_t(pidPart),
            let dirPart = line.split(separator: "data in ").last?.split(separator: ")").first
        else { return nil }
        return (pid, String(dirPart))
    }

    /// Whether a process with this pid exists (a zombie child of `up` would still count).
    func exists(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 || errno != ESRCH }

    @Test("`up` with its gateway port taken exits non-zero at once, names the port and --gateway-port, and stops its redis-server")
    func upWithTakenGatewayPort() async throws {
        try await withTakenPort { port in
            // The free port given to --redis-port can be taken between our check and up's bind
            // by another process of the parallel suite (another `up`'s own children): up then
            // says so about --redis-port, which is not what this test looks at; try another.
            var up = try startUp(gatewayPort: port)
            for _ in 0..<3 where !(await printed(up, "started redis-server")) && up.output.contains("for the redis-server child: Address already in use") {
                await up.stop(signal: SIGKILL)
                up = try startUp(gatewayPort: port)
            }
            #expect(await printed(up, "started redis-server"), "\(up.output)")
            await expectListenFailure(up, port: port, flag: "--gateway-port")
            let redis = try #require(startedRedis(up.output), "\(up.output)")
            #expect(!exists(redis.pid), "redis-server \(redis.pid) still runs")
            #expect(!FileManager.default.fileExists(atPath: redis.directory), "\(redis.directory) left behind")
        }
    }

    @Test("`up` with its metrics port taken exits non-zero naming the port and --metrics-port, without saying first that it is up")
    func upWithTakenMetricsPort() async throws {
        try await withTakenPort { port in
            let up = try ordershop(["up", "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", String(port), "--redis-port", String(try LocalRedisServer.freePort())])
            let output = await expectListenFailure(up, port: port, flag: "--metrics-port", within: .seconds(30))
            // Before: "OrderShop is up" (every service listened), then the line saying why it stops.
            #expect(!output.contains("OrderShop is up"), "\(output)")
        }
    }

    func startUp(gatewayPort: Int) throws -> ChildProcess {
        try ordershop(
            [
                "up", "--gateway-port", String(gatewayPort), "--service-port-base", "0", "--metrics-port", "0", "--redis-port",
                String(try LocalRedisServer.freePort()),
            ])
    }

    @Test("`up` whose Redis port is held by something else exits non-zero at once, naming the port and --redis-port")
    func upWithTakenRedisPort() async throws {
        try await withTakenPort { port in
            let up = try ordershop(["up", "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0", "--redis-port", String(port)])
            // First a PING to the port (is it a Redis already?) that times out after 2 s.
            await expectListenFailure(up, port: port, flag: "--redis-port", within: .seconds(20))
            #expect(!up.output.contains("OrderShop is up"))
        }
    }

    /// `ordershop up` on free ports with a redis-server child, once it is up. A port that was
    /// free when picked may be taken before the child binds it (other tests run at once): then
    /// `up` says so and exits, and it is started again on another port.
    func startUpWithItsOwnRedis() async throws -> ChildProcess {
        for attempt in 1...5 {
            let up = try ordershop(
                ["up", "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0", "--redis-port", String(try LocalRedisServer.freePort())])
            if await printed(up, "OrderShop is up") { return up }
            await up.stop(signal: SIGKILL)
            guard attempt < 5, up.output.contains("for the redis-server child: Address already in use") else {
                throw TestFailure("ordershop up did not come up: \(up.output)")
            }
        }
        throw TestFailure("unreachable")
    }

    // A second signal during the drain cancels the group (every part must end on cancellation).
    // SIGHUP (the terminal closed) too: its redis-server, in a process group of its own,
    // ignores it, so only `up` can stop it.
    @Test("`up` stops its redis-server and removes its data directory on SIGINT, SIGTERM, SIGHUP and a second signal", arguments: [[SIGINT], [SIGTERM], [SIGHUP], [SIGINT, SIGINT]])
    func upStopsItsRedis(signals: [Int32]) async throws {
        let up = try await startUpWithItsOwnRedis()
        let redis = try #require(startedRedis(up.output), "\(up.output)")
        #expect(exists(redis.pid))
        up.signal(signals[0])
        if signals.count > 1 {
            // The second one once the first is being handled, and after the window in which a
            // repeat is the same stop (``sameStopWindow``).
            #expect(await printed(up, "stopping gracefully"), "\(up.output)")
            try await Task.sleep(for: sameStopWindow + .milliseconds(200))
            up.signal(signals[1])
        }
        let status = await up.waitForExit(timeout: .seconds(30))
        await up.stop(signal: SIGKILL)
        #expect(status != nil, "still running 30 s after \(signals): \(up.output)")
        if signals.count == 1 { #expect(status == 0, "\(up.output)") }
        #expect(!exists(redis.pid), "redis-server \(redis.pid) still runs: \(up.output)")
        #expect(!up.output.contains("Fatal error"), "\(up.output)")
        #expect(!FileManager.default.fileExists(atPath: redis.directory), "\(redis.directory) left behind")
    }

    /// Whether a process runs: exists and is not a zombie (a child of `up` that died after `up`
    /// did is reparented, and stays a zombie until its new parent reaps it).
    func runs(_ pid: pid_t) -> Bool {
        guard exists(pid) else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    // Before, its redis-server ran on, holding its port and data directory, until killed by hand.
    @Test("`up` killed with SIGKILL takes its redis-server with it")
    func upKilledTakesItsRedis() async throws {
        let up = try await startUpWithItsOwnRedis()
        let redis = try #require(startedRedis(up.output), "\(up.output)")
        #expect(runs(redis.pid))
        #expect(FileManager.default.fileExists(atPath: redis.directory + "/" + OwnedTemporaryDirectory.ownerFile))
        up.signal(SIGKILL)
        #expect(await up.waitForExit(timeout: .seconds(30)) != nil, "\(up.output)")
        let deadline = ContinuousClock.now + .seconds(20)
        while runs(redis.pid), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        let survived = runs(redis.pid)
        #expect(!survived, "redis-server \(redis.pid) still runs 20 s after its `up` was SIGKILLed")
        if survived { kill(redis.pid, SIGKILL) }
        // Nothing removed its data; the next local redis-server made in the same place does
        // (another test's, running beside this one, may have done it already).
        let base = (redis.directory as NSString).deletingLastPathComponent
        _ = OwnedTemporaryDirectory.removeStale(in: base)
        #expect(!FileManager.default.fileExists(atPath: redis.directory), "the data directory of the SIGKILLed `up` was not removed")
        try? FileManager.default.removeItem(atPath: redis.directory)
    }

    // MARK: A stable consumer name is one process's

    /// Redis tells consumers apart by name only: a second process with the same `--consumer` would
    /// pass every owner check of the first and re-read what it is still handling. It refuses to
    /// start, naming the consumer and the process that has it; the name is free again once that
    /// one stops (SIGTERM: released) or is killed on this host (SIGKILL: taken over at once).
    /// GNU `timeout` signals the process and then its process group: one stop, sent twice.
    @Test("a signal repeated at once is one stop: the worker drains, leaves its groups and exits 0")
    func aRepeatedSignalIsOneStop() async throws {
        try await withRedisServer { server in
            let worker = try ordershop(["work", "crm", "--url", server.url, "--metrics-port", "0"])
            #expect(await printed(worker, "worker started"), "\(worker.output)")
            worker.signal(SIGTERM)
            try await Task.sleep(for: .milliseconds(20))
            worker.signal(SIGTERM)
            let status = await worker.waitForExit(timeout: .seconds(30))
            await worker.stop(signal: SIGKILL)
            #expect(status == 0, "status \(String(describing: status)): \(worker.output)")
            #expect(!worker.output.contains("cut the graceful shutdown short"), "\(worker.output)")
            #expect(worker.output.contains("left the consumer group"), "\(worker.output)")
        }
    }

    @Test("a second `work` with the same --consumer refuses to start, naming the consumer and the process holding it")
    func aStableConsumerNameIsExclusive() async throws {
        try await withRedisServer { server in
            let key = "consumer-lock:events:{customer}_created:crm:crm-stable"
            let pool = try server.makePool()
            // A lease far longer than the test: the lock of a SIGKILLed holder must be taken over
            // because its pid is dead, not because it expired (with a 2-s lease a loaded CI
            // machine once read the killed holder's key after it had expired: null).
            func work() throws -> ChildProcess {
                try ordershop(["work", "crm", "--consumer", "crm-stable", "--url", server.url, "--metrics-port", "0", "--lease-seconds", "60"])
            }
            let first = try work()
            #expect(await printed(first, "worker started"), "\(first.output)")
            let holder = try #require(try await pool.send(["GET", RedisArgument(key)]).string)
            #expect(holder.contains("pid=\(first.pid) "), "\(holder)")

            let second = try work()
            let status = await second.waitForExit(timeout: .seconds(30))
            await second.stop(signal: SIGKILL)
            #expect(status != nil && status != 0, "status \(String(describing: status)): \(second.output)")
            let refusal = lines(second.output, containing: "crm-stable")
            #expect(refusal.count == 1 && refusal[0].contains("in use by the process") && refusal[0].contains("pid=\(first.pid) "), "\(second.output)")
            #expect(!second.output.contains("worker started"), "\(second.output)")
            #expect(first.isRunning, "\(first.output)")

            // SIGTERM: drained, then released.
            #expect(await first.stop(signal: SIGTERM) == 0, "\(first.output)")
            #expect(try await pool.send(["GET", RedisArgument(key)]).isNull)
            let third = try work()
            #expect(await printed(third, "worker started"), "\(third.output)")
            // SIGKILL leaves the key; a restart on this host takes it over from the dead pid.
            await third.stop(signal: SIGKILL)
            #expect(try await pool.send(["GET", RedisArgument(key)]).string?.contains("pid=\(third.pid) ") == true)
            let fourth = try work()
            #expect(await printed(fourth, "worker started"), "\(fourth.output)")
            #expect(try await pool.send(["GET", RedisArgument(key)]).string?.contains("pid=\(fourth.pid) ") == true)
            #expect(await fourth.stop(signal: SIGTERM) == 0, "\(fourth.output)")
            await pool.shutdown()
        }
    }

    // MARK: A failing part takes its process down

    /// An HTTP service that fails once it has run a while (a listener that dies).
    struct FailingService: Service {
        struct Died: Error, CustomStringConvertible {
            var description: String { "the listener died" }
        }
        func run() async throws {
            try await Task.sleep(for: .milliseconds(300))
            throw Died()
        }
    }

    /// A service that returns on its own, as if its loop had ended.
    struct EndingService: Service {
        func run() async throws {
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    @Test("a group whose HTTP service fails, or ends, takes the running worker down with it and says which one and why")
    func failingServiceTakesTheWorkerDown() async throws {
        try await withRedisServer { server in
            for (culprit, expected) in [(FailingService() as any Service, "the listener died"), (EndingService(), "stopped although nothing asked it to")] {
                let pool = try server.makePool()
                let stream = "events:{lifecycle}_created"
                let worker = StreamWorker(
                    client: pool, configuration: WorkerConfiguration(block: .milliseconds(200)),
                    subscriptions: [Subscription(stream: stream, group: "g") { _ in .done }], logger: testLogger)
                let group = processServiceGroup(
                    [SupervisedService("metrics endpoint", culprit), SupervisedService("crm worker", worker)], logger: testLogger,
                    maximumGracefulShutdown: .seconds(20))
                let thrown = await #expect(throws: ServiceFailure.self) { try await group.run() }
                #expect(thrown?.service == "metrics endpoint")
                #expect(thrown.map { "\($0)" }?.contains(expected) == true, "\(String(describing: thrown))")
                await pool.shutdown()
            }
        }
    }

    @Test("a start gate opens after its last arrival, and a cancelled waiter leaves at once")
    func startGate() async throws {
        let gate = StartGate(waitingFor: 2)
        let waiter = Task { try await gate.wait() }
        gate.arrive()
        #expect(!gate.isOpen)
        gate.arrive()
        try await waiter.value
        #expect(gate.isOpen)

        let closed = StartGate(waitingFor: 1)
        let cancelled = Task { try await closed.wait() }
        cancelled.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
    }
}

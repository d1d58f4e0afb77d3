import Foundation
import LocalRedis
import RedisClient

/// What every benchmark run needs: a fresh redis-server of its own, a control connection,
/// the path of this binary (worker probes are children of it) and, when asked for, the peers.
final class BenchEnvironment: @unchecked Sendable {
    let server: LocalRedisServer
    let control: RedisConnection
    let peers: PeerRunner?
    /// This executable (`/proc/self/exe`), to start `worker-probe` children.
    let executable: String

    var port: Int { server.port }
    var url: String { server.url }

    private init(server: LocalRedisServer, control: RedisConnection, peers: PeerRunner?, executable: String) {
        self.server = server
        self.control = control
        self.peers = peers
        self.executable = executable
    }

    /// Starts a fresh redis-server (no persistence) and connects to it.
    static func start(peers: PeerRunner?) async throws -> BenchEnvironment {
        let server = try await LocalRedisServer()
        do {
            var config = server.configuration
            config.timeouts.command = .seconds(120)
            let control = try RedisConnection(configuration: config)
            try await control.connect()
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            return BenchEnvironment(server: server, control: control, peers: peers, executable: executable)
        } catch {
            await server.shutdown()
            throw error
        }
    }

    /// Runs `body` in a fresh environment and always stops its server.
    static func with<T>(peers: PeerRunner?, _ body: (BenchEnvironment) async throws -> T) async throws -> T {
        let env = try await start(peers: peers)
        do {
            let result = try await body(env)
            await env.shutdown()
            return result
        } catch {
            await env.shutdown()
            throw error
        }
    }

    func shutdown() async {
        await control.close()
        await server.shutdown()
    }

    /// Empties the server between measurements (it is ours alone).
    func flush() async throws {
        _ = try await control.send(FLUSHALL())
    }

    /// Starts a `worker-probe` child of this binary against the bench server, with `environment`
    /// added to this process's (how it traces: ``BenchTracing``).
    func startProbe(stream: String, group: String, arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(executable, ["worker-probe", "--url", url, "--stream", stream, "--group", group] + arguments, environment: environment)
    }

    /// Clients parked in a blocking XREADGROUP right now (XINFO CONSUMERS cannot tell that a
    /// reader is waiting: a worker lists itself there before its readers have read).
    func blockedReaders() async throws -> Int {
        Self.blockedReaders(inClientList: try await control.send(["CLIENT", "LIST", "TYPE", "normal"]).string ?? "")
    }

    /// The clients of a `CLIENT LIST` reply parked in a blocking XREADGROUP.
    static func blockedReaders(inClientList list: String) -> Int {
        list.split(whereSeparator: \.isNewline).filter { $0.contains("cmd=xreadgroup") && $0.contains(" flags=b") }.count
    }

    /// Polls `condition` every `interval` until it holds; fails after `timeout`.
    func waitUntil(
        _ what: String, timeout: Duration = .seconds(30), interval: Duration = .milliseconds(5),
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            if ContinuousClock.now > deadline { throw BenchRunError("timed out waiting for \(what)") }
            try await Task.sleep(for: interval)
        }
    }
}

/// The bench's events, as the peers make them (`_common.make_entity`): `event_id` = a UUID,
/// `entity` = a ~150-byte JSON object.
enum BenchEvents {
    static func entity(_ i: Int) -> String {
        let customer = String(format: "cust-%05d", i % 9973)
        return "{\"id\":\(i),\"kind\":\"order.updated\",\"customer\":\"\(customer)\",\"amount_cents\":\((i * 37) % 100000),\"currency\":\"EUR\",\"tags\":[\"a\",\"b\"],\"updated_at\":\"2024-11-27T00:00:00Z\"}"
    }

    /// Event `i`'s fields (a new event id each time).
    static func fields(_ i: Int) -> [StreamField] {
        [StreamField("event_id", UUID().uuidString.lowercased()), StreamField("entity", entity(i))]
    }

    static func xadd(_ stream: String, _ i: Int, extra: [(String, String)] = []) -> [RedisArgument] {
        var args: [RedisArgument] = ["XADD", RedisArgument(stream), "*", "event_id", RedisArgument(UUID().uuidString.lowercased())]
        for (k, v) in extra { args += [RedisArgument(k), RedisArgument(v)] }
        args += ["entity", RedisArgument(entity(i))]
        return args
    }

    /// Appends `count` events in pipelines of 1,000 (as the peers' preload does); returns the
    /// id of the last one.
    @discardableResult
    static func preload(_ connection: RedisConnection, stream: String, count: Int, first: Int = 0) async throws -> String {
        var last = ""
        var i = first
        while i < first + count {
            let n = min(1000, first + count - i)
            let replies = try await connection.pipeline((i..<(i + n)).map { xadd(stream, $0) })
            for r in replies { try r.throwingServerError() }
            last = replies.last?.string ?? last
            i += n
        }
        return last
    }
}

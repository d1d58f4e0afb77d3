import Foundation
import LocalRedis

/// HTTP load on the gateway with `wrk` (C, one event loop per thread: it costs the machine far
/// less than the server it measures): `GET /customers` and `POST /customers`, a fixed number of
/// connections, a fixed duration. Requests/s, p50 and p99 as wrk reports them (`--latency`).
///
/// GET runs first, against a fixed set of seeded customers (GET /customers returns them all,
/// so its cost grows with every POST); then POST, one new customer per request.
struct GatewayBench {
    struct Options {
        var connections: Int
        var seconds: Int
        var seedCustomers: Int
    }

    struct Figures {
        var requestsPerSecond: Double
        var p50Ms: Double
        var p99Ms: Double
        var errors: Int
        /// Requests completed (wrk's `N requests in ...`).
        var requests: Int
    }

    /// The gateway's base URL (`http://host:port`).
    let baseURL: String

    /// Seeds customers and waits for them to be visible through the gateway.
    func seed(_ count: Int) async throws {
        guard count > 0 else { return }
        let body = "[" + (0..<count).map { "{\"name\":\"seed \($0)\",\"email\":\"seed\($0)@example.com\"}" }.joined(separator: ",") + "]"
        let post = try await Self.curl(["-sf", "-X", "POST", "-H", "Content-Type: application/json", "--data", body, baseURL + "/customers"])
        guard post.status == 0 else { throw BenchRunError("seeding customers failed: \(post.output.prefix(400))") }
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let get = try await Self.curl(["-sf", baseURL + "/customers"])
            if get.status == 0, let list = try? JSONSerialization.jsonObject(with: Data(get.output.utf8)) as? [Any], list.count >= count { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchRunError("the \(count) seeded customers did not show up in GET /customers")
    }

    func get(_ o: Options) async throws -> Figures {
        try await wrk(path: "/customers", script: nil, o)
    }

    func post(_ o: Options) async throws -> Figures {
        let script = """
            wrk.method = "POST"
            wrk.headers["Content-Type"] = "application/json"
            request = function()
              local n = math.random(1, 1000000000)
              return wrk.format(nil, nil, nil, '{"name":"bench ' .. n .. '","email":"bench' .. n .. '@example.com"}')
            end
            """
        return try await wrk(path: "/customers", script: script, o)
    }

    private func wrk(path: String, script: String?, _ o: Options) async throws -> Figures {
        var arguments = ["-t", "\(min(2, o.connections))", "-c", "\(o.connections)", "-d", "\(o.seconds)s", "--latency"]
        var scriptFile: String?
        if let script {
            let file = NSTemporaryDirectory() + "bench-wrk-\(UUID().uuidString).lua"
            try script.write(toFile: file, atomically: true, encoding: .utf8)
            scriptFile = file
            arguments += ["-s", file]
        }
        defer { if let scriptFile { try? FileManager.default.removeItem(atPath: scriptFile) } }
        let p = try ChildProcess(try Self.tool("wrk"), arguments + [baseURL + path])
        defer { try? FileManager.default.removeItem(atPath: p.outputFile) }
        guard let status = await p.waitForExit(timeout: .seconds(o.seconds + 60)) else {
            await p.stop(signal: SIGKILL)
            throw BenchRunError("wrk did not finish")
        }
        return try Self.parse(p.output, status: status)
    }

    /// Reads `Requests/sec:`, the `50%` and `99%` lines of `--latency`, and error counts.
    static func parse(_ output: String, status: Int32) throws -> Figures {
        var rps: Double?
        var p50: Double?
        var p99: Double?
        var errors = 0
        var requests = 0
        for raw in output.split(whereSeparator: \.isNewline) {
            let parts = raw.split(separator: " ", omittingEmptySubsequences: true)
            guard let head = parts.first else { continue }
            if head == "Requests/sec:", parts.count > 1 { rps = Double(parts[1]) }
            if raw.contains(" requests in "), let n = Int(head) { requests = n }
            if head == "50%", parts.count > 1 { p50 = milliseconds(parts[1]) }
            if head == "99%", parts.count > 1 { p99 = milliseconds(parts[1]) }
            if raw.contains("Non-2xx or 3xx responses:"), let n = parts.last.flatMap({ Int($0) }) { errors += n }
            if head == "Socket", raw.contains("errors:") {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                errors += parts.compactMap { Int($0.trimmingCharacters(in: CharacterSet(charactersIn: ","))) }.reduce(0, +)
            }
        }
        guard status == 0, let rps, let p50, let p99 else { throw BenchRunError("wrk (exit \(status)) output not understood: \(output.prefix(800))") }
        return Figures(requestsPerSecond: rps, p50Ms: p50, p99Ms: p99, errors: errors, requests: requests)
    }

    /// `812.00us`, `1.23ms`, `1.02s` in milliseconds.
    static func milliseconds(_ text: Substring) -> Double? {
        for (suffix, factor) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] where text.hasSuffix(suffix) {
            return Double(text.dropLast(suffix.count)).map { $0 * factor }
        }
        return nil
    }

    /// The path of a tool a run needs (`wrk`, `curl`), or an error saying how to install it.
    static func tool(_ name: String) throws -> String {
        do { return try ChildProcess.resolve(name) } catch { throw BenchRunError("\(name) not found; install it with: apt-get install -y \(name)") }
    }

    static func curl(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        let p = try ChildProcess(try tool("curl"), ["--max-time", "10"] + arguments)
        defer { try? FileManager.default.removeItem(atPath: p.outputFile) }
        let status = await p.waitForExit(timeout: .seconds(20)) ?? -1
        return (status, p.output)
    }
}

/// `ordershop up` as a child, on free ports, against the bench's redis-server.
struct GatewayUnderTest {
    let process: ChildProcess
    let baseURL: String

    /// `ordershop up` on the Redis at `redisURL`, with `arguments` added (`--http-between-services`).
    static func start(executable: String, redisURL: String, arguments: [String] = []) async throws -> GatewayUnderTest {
        // Both below 10,000, where LocalRedis hands out none (``LocalRedisServer/bindLoopbackSocket()``
        // from 10,000 up): a cluster started after these were chosen once took one of the
        // services' (20,000-60,000 then): "cannot listen on 127.0.0.1:21771 for the customer service".
        let gatewayPort = try consecutiveFreePorts(1)
        var base = try consecutiveFreePorts(6)
        while (base..<(base + 6)).contains(gatewayPort) { base = try consecutiveFreePorts(6) }
        let process = try ChildProcess(
            executable,
            ["up", "--url", redisURL, "--gateway-port", "\(gatewayPort)", "--service-port-base", "\(base)", "--metrics-port", "0"]
                + arguments,
            environment: ["LOG_LEVEL": "warning"])
        let url = "http://127.0.0.1:\(gatewayPort)"
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if !process.isRunning { throw BenchRunError("ordershop up exited: \(process.output.suffix(800))") }
            if try await GatewayBench.curl(["-sf", url + "/customers"]).status == 0 { return GatewayUnderTest(process: process, baseURL: url) }
            try await Task.sleep(for: .milliseconds(200))
        }
        await process.stop(signal: SIGKILL)
        throw BenchRunError("the gateway did not answer within 60 s: \(process.output.suffix(800))")
    }

    func stop() async {
        await process.stop(signal: SIGTERM, grace: .seconds(20))
        try? FileManager.default.removeItem(atPath: process.outputFile)
    }

    /// A base port with `count` free ports from it, below the ports LocalRedis hands out.
    private static func consecutiveFreePorts(_ count: Int) throws -> Int {
        for _ in 0..<200 {
            let base = Int.random(in: 6_000...(10_000 - count))
            if (base..<(base + count)).allSatisfy(isFree) { return base }
        }
        throw BenchRunError("no \(count) consecutive free ports found")
    }

    private static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

import ArgumentParser
import Foundation
import LocalRedis
import RedisClient

/// `ordershop bench client`: our Redis client beside `redis-benchmark` (hiredis, C), on the
/// same server, in the same run.
///
/// Two figures, each measured with the same number of requests on both sides, back to back
/// (ours, then redis-benchmark, repeated), so that both see the same CPU conditions; the
/// median of the runs is reported:
/// - `client.xadd.pipelined64`: `XADD key * f v` in pipelines of 64 on one connection
///   (redis-benchmark `-c 1 -P 64`);
/// - `client.roundtrip`: `PING`, one at a time, each reply awaited (redis-benchmark `-c 1 -P 1`);
/// - `client.xadd.pipelined64.pinned`, `client.roundtrip.pinned`: the same loops run with
///   `RedisConnection.withPinnedExecution`, on the connection's own thread (no thread switch
///   per command), against the same redis-benchmark runs.
struct BenchClientCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Measure the Redis client (pipelined XADD, round trips) against redis-benchmark on the same server."
    )

    @Flag(help: "Print one JSON object per figure per line instead of a table.")
    var json = false

    @Option(help: "XADDs per pipelined run, on each side.")
    var requests = 200_000

    @Option(name: .customLong("roundtrip-requests"), help: "Round trips per run, on each side (default: requests / 4).")
    var roundTripRequests: Int?

    @Option(help: "Use the redis-server listening on 127.0.0.1:PORT (no password, no TLS) instead of starting one.")
    var port: Int?

    @Option(help: "Runs per side; the median is reported.")
    var runs = 3

    @Option(help: "Pipeline depth of the pipelined figure.")
    var depth = 64

    @Flag(help: "Pipelined XADD over the slots of a local 3-primary Redis Cluster (our cluster client vs redis-benchmark --cluster), instead of one server.")
    var cluster = false

    func validate() throws {
        guard requests > 0, runs > 0, depth > 0, (roundTripRequests ?? 1) > 0 else {
            throw ValidationError("requests, runs, depth and roundtrip-requests must be positive")
        }
    }

    func run() async throws {
        if cluster { return try await measureCluster() }
        let server: LocalRedisServer? = port == nil ? try await LocalRedisServer() : nil
        do {
            try await measure(port: port ?? server!.port)
        } catch {
            await server?.shutdown()
            throw error
        }
        await server?.shutdown()
    }

    private func measure(port: Int) async throws {
        var config = RedisConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port))
        config.reconnect.retryWindow = .zero
        config.timeouts.command = .seconds(60)
        let connection = try RedisConnection(configuration: config)
        try await connection.connect()
        let version = try await connection.send(INFO(section: "server"))["redis_version"] ?? "unknown"
        let peer = try? ChildProcess.resolve("redis-benchmark")
        // A key of our own, so that an existing server's data is never touched.
        let key = "ordershop:bench:client:\(UInt32.random(in: 0...UInt32.max))"
        let roundTrips = roundTripRequests ?? max(1, requests / 4)

        // Warm up both sides' paths (connection, server allocator, page cache for the binary).
        _ = try await pipelinedXADD(connection, key: key, count: min(requests, 20 * depth))
        if let peer { _ = try await redisBenchmark(peer, port: port, arguments: ["-P", "\(depth)", "-n", "1000", "XADD", key, "*", "f", "v"]) }

        // Every run adds one sample per figure; medians with min and max are reported.
        var results = BenchResults()
        for _ in 0..<runs {
            _ = try await connection.send(DEL(RedisArgument(key)))
            let ours = try await pipelinedXADD(connection, key: key, count: requests)
            _ = try await connection.send(DEL(RedisArgument(key)))
            let pinned = try await connection.withPinnedExecution { try await pipelinedXADD(connection, key: key, count: requests) }
            _ = try await connection.send(DEL(RedisArgument(key)))
            var theirs: Double?
            if let peer {
                theirs = try await redisBenchmark(peer, port: port, arguments: ["-P", "\(depth)", "-n", "\(requests)", "XADD", key, "*", "f", "v"])
            }
            results.add(BenchFigure(name: "client.xadd.pipelined\(depth)", unit: "ops/s", ours: ours, peer: theirs))
            results.add(BenchFigure(name: "client.xadd.pipelined\(depth).pinned", unit: "ops/s", ours: pinned, peer: theirs))
        }
        for _ in 0..<runs {
            let ours = try await pingRoundTrips(connection, count: roundTrips)
            // The same loop on the connection's own thread (RedisConnection.withPinnedExecution):
            // no thread switch per command, as in redis-benchmark's single-threaded event loop.
            let pinned = try await connection.withPinnedExecution { try await pingRoundTrips(connection, count: roundTrips) }
            var theirs: Double?
            if let peer {
                theirs = try await redisBenchmark(peer, port: port, arguments: ["-P", "1", "-n", "\(roundTrips)", "PING"])
            }
            results.add(BenchFigure(name: "client.roundtrip", unit: "ops/s", ours: ours, peer: theirs))
            results.add(BenchFigure(name: "client.roundtrip.pinned", unit: "ops/s", ours: pinned, peer: theirs))
        }
        _ = try await connection.send(DEL(RedisArgument(key)))
        await connection.close()

        if peer == nil { results.note("redis-benchmark not found on PATH: peer figures are missing") }
        results.print(
            json: json,
            title: "client: redis \(version) on 127.0.0.1:\(port); one connection each side; XADD pipelined \(depth) deep (\(requests) requests), round trips (\(roundTrips)); peer: redis-benchmark -c 1")
    }

    /// `count` XADDs in pipelines of ``depth``, each pipeline awaited before the next; ops/s.
    private func pipelinedXADD(_ connection: RedisConnection, key: String, count: Int) async throws -> Double {
        let command: [RedisArgument] = ["XADD", RedisArgument(key), "*", "f", "v"]
        let full = [[RedisArgument]](repeating: command, count: depth)
        var remaining = count
        let started = ContinuousClock.now
        while remaining > 0 {
            let n = min(depth, remaining)
            let replies = try await connection.pipeline(n == depth ? full : Array(full.prefix(n)))
            for reply in replies { try reply.throwingServerError() }
            remaining -= n
        }
        return Double(count) / seconds(ContinuousClock.now - started)
    }

    /// `count` PINGs, one at a time; ops/s.
    private func pingRoundTrips(_ connection: RedisConnection, count: Int) async throws -> Double {
        let started = ContinuousClock.now
        for _ in 0..<count {
            _ = try await connection.send(PING())
        }
        return Double(count) / seconds(ContinuousClock.now - started)
    }

    /// Runs redis-benchmark with `clients` clients (one by default) and returns its requests per second (from `--csv`).
    func redisBenchmark(_ executable: String, port: Int, clients: Int = 1, arguments: [String]) async throws -> Double {
        let process = try ChildProcess(executable, ["-h", "127.0.0.1", "-p", "\(port)", "-c", "\(clients)", "--csv"] + arguments)
        defer { try? FileManager.default.removeItem(atPath: process.outputFile) }
        guard let status = await process.waitForExit(timeout: .seconds(600)) else {
            await process.stop(signal: SIGKILL)
            throw BenchError("redis-benchmark did not finish within 10 minutes")
        }
        let output = process.output
        // "test","rps","avg_latency_ms",...  then  "XADD ...","123456.79","0.391",...
        for line in output.split(whereSeparator: \.isNewline) where !line.hasPrefix("\"test\"") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if fields.count >= 2, let rps = Double(fields[1]) { return rps }
        }
        throw BenchError("redis-benchmark (exit \(status)) printed no rate: \(output.prefix(500))")
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

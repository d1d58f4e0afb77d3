import AsyncHTTPClient
import Foundation
import LocalRedis
@testable import OrderShop
import RedisClient
import TestSupport
import Testing

/// `ordershop up --cluster` and `ordershop demo` as a user runs them (`make run CLUSTER=1`):
/// the built binary starts its own 3-primary, 3-replica Redis Cluster, the demo passes against
/// it, and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops the shop,
/// then the cluster: the workers drain against a cluster that still runs.
@Suite struct UpClusterTests {
    @Test("`ordershop up --cluster` serves the shop on its own Redis Cluster, `ordershop demo` passes against it, Ctrl-C stops the shop, then the cluster")
    func upClusterAndDemo() async throws {
        let token = "up-cluster-test-token"
        let environment = ["LOG_LEVEL": "info", "ORDERSHOP_ADMIN_TOKEN": token]
        // Its nodes from a port chosen (a trial confined to a range could not run it: free ports).
        let firstPort = try LocalRedisServer.freePortRange(count: 12)
        let up = try ChildProcess(
            try builtProduct("ordershop"),
            ["up", "--cluster", "--redis-port", String(firstPort), "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0"],
            environment: environment, ownProcessGroup: true)
        // Its redis-servers are in process groups of their own: a SIGKILL of `up` alone would
        // leave them running, so a failed test stops it as Ctrl-C does first.
        do {
            try await useAndStop(up, firstPort: firstPort, environment: environment)
        } catch {
            kill(-up.pid, SIGINT)
            _ = await up.waitForExit(timeout: .seconds(60))
            up.signal(SIGKILL)
            throw error
        }
    }

    private func useAndStop(_ up: ChildProcess, firstPort: Int, environment: [String: String]) async throws {
        _ = await eventually(timeout: .seconds(120)) { up.output.contains("OrderShop is up") || !up.isRunning }
        let output = up.output
        let gateway = try #require(Self.match(#"OrderShop is up: gateway (http://\S+)"#, in: output), "\(output)")
        let url = try #require(Self.match(#"(redis://\S+cluster=yes\S*)"#, in: output), "\(output)")
        let nodes = (0..<6).map { "127.0.0.1:\(firstPort + $0)" }.joined(separator: ", ")
        #expect(output.contains("(append-only) on \(nodes);"), "\(output)")

        let demo = try ChildProcess(try builtProduct("ordershop"), ["demo", "--gateway", gateway, "--url", url], environment: environment)
        let demoStatus = await demo.waitForExit(timeout: .seconds(180))
        #expect(demoStatus == 0, "\(demo.output)")
        #expect(demo.output.contains("every expected mail sent exactly once"), "\(demo.output)")

        // The dashboard reads every primary: the demo's streams, from more than one node.
        let reply = try await ShopClient(baseURL: gateway, client: HTTPClient.shared).get("/dashboard/api/state")
        let body = reply.text
        #expect(reply.status == 200, "\(body)")
        let state = try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any]
        let streams = state?["streams"] as? [[String: Any]] ?? []
        let names = Set(streams.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["events:{customer}_created", "events:{order}_created", "events:{billing}_created"]), "\(body)")
        #expect(Set(streams.compactMap { $0["node"] as? String }).count >= 2, "\(body)")

        // Ctrl-C: SIGINT to `up`'s process group. Its redis-servers are in groups of their own,
        // so they run until `up` stops them after its workers drained (they were stopped at
        // once before, and the draining workers met refused connections for 20 s).
        let before = up.output.count
        kill(-up.pid, SIGINT)
        let status = await up.waitForExit(timeout: .seconds(60))
        let stopping = String(up.output.dropFirst(before))
        #expect(status == 0, "\(stopping)")
        #expect(!stopping.contains("connection refused") && !stopping.contains("connectionRefused"), "\(stopping)")
        let drained = try #require(stopping.range(of: "services and workers stopped"), "\(stopping)")
        let stopped = try #require(stopping.range(of: "Redis Cluster stopped"), "\(stopping)")
        #expect(drained.upperBound <= stopped.lowerBound, "\(stopping)")
        // Its nodes are gone: the first one no longer answers.
        let first = try RedisConfiguration(url: url)
        var probe = first
        probe.clusterMode = .disabled
        probe.seeds = []
        probe.reconnect.retryWindow = .zero
        let connection = try RedisConnection(configuration: probe)
        await #expect(throws: RedisError.self) { try await connection.send(PING()) }
        await connection.close()
    }

    /// The first capture group of `pattern` in `text`.
    static func match(_ pattern: String, in text: String) -> String? {
        guard let regex = try? NSRegularExpression(pattern: pattern),
            let m = regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), m.numberOfRanges > 1,
            let range = Range(m.range(at: 1), in: text)
        else { return nil }
        return String(text[range])
    }
}

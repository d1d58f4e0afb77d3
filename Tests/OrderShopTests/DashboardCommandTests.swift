import AsyncHTTPClient
import Foundation
import LocalRedis
import NIOCore
import RedisClient
import TestSupport
import Testing

/// `ordershop dashboard` as an operator starts it: on loopback it serves the page and the data,
/// and it stops on Ctrl-C; off loopback it refuses to start without an admin token.
@Suite struct DashboardCommandTests {
    @Test func servesOnLoopbackAndRefusesToStartElsewhereWithoutAToken() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            _ = try await pool.send(XGROUPCREATE(RedisArgument("orders:{cmd}"), group: "mailer", id: "0", makeStream: true))
            let url = "redis://127.0.0.1:\(server.port)"

            let refused = try await runChild(ordershop, ["dashboard", "--host", "0.0.0.0", "--port", "0", "--url", url], environment: ["ORDERSHOP_ADMIN_TOKEN": ""])
            #expect(refused.status != 0)
            #expect(refused.output.contains("needs an admin token"), "\(refused.output)")

            let child = try ChildProcess(ordershop, ["dashboard", "--port", "0", "--url", url, "--admin-token", "t"])
            var address: String?
            _ = await eventually {
                address = child.output.split(separator: "\n").first { $0.hasPrefix("dashboard: http://127.0.0.1:") }
                    .flatMap { $0.split(separator: " ").dropFirst().first.map(String.init) }
                return address != nil || !child.isRunning
            }
            let base = try #require(address, "\(child.output)")
            let page = try await HTTPClient.shared.get(url: base).get()
            #expect(page.status == .ok && String(buffer: page.body ?? ByteBuffer()).contains("OrderShop operations"))
            let state = try await HTTPClient.shared.get(url: base + "api/state").get()
            #expect(state.status == .ok && String(buffer: state.body ?? ByteBuffer()).contains("orders:{cmd}"))
            #expect(await child.stop(signal: SIGINT) == 0, "\(child.output)")
            await pool.shutdown()
        }
    }

    /// A Redis that is not there yet is waited for, as `serve` and `work` wait (the dashboard
    /// exited 1 at once: trial H); once it answers, the page is served. Also when the URL says
    /// what it is (`?cluster=no`: nothing asks it first).
    @Test(arguments: ["", "?cluster=no"])
    func waitsForARedisThatIsNotThereYet(suffix: String) async throws {
        let ordershop = try builtProduct("ordershop")
        var options = LocalRedisServer.Options()
        options.port = try LocalRedisServer.freePort()
        let url = "redis://127.0.0.1:\(options.port!)" + suffix
        let child = try ChildProcess(ordershop, ["dashboard", "--port", "0", "--url", url], environment: ["LOG_LEVEL": "info"])
        _ = await eventually { child.output.contains("waiting for Redis") || !child.isRunning }
        #expect(child.isRunning && child.output.contains("waiting for Redis"), "\(child.output)")
        try await withRedisServer(options) { server in
            var address: String?
            _ = await eventually(timeout: .seconds(30)) {
                address = child.output.split(separator: "\n").first { $0.hasPrefix("dashboard: http://127.0.0.1:") }
                    .flatMap { $0.split(separator: " ").dropFirst().first.map(String.init) }
                return address != nil || !child.isRunning
            }
            if let address {
                let state = try await HTTPClient.shared.get(url: address + "api/state").get()
                #expect(state.status == .ok, "\(child.output)")
            }
            #expect(await child.stop(signal: SIGINT) == 0, "\(child.output)")
            #expect(address != nil, "\(child.output)")
        }
    }

    /// A Redis that refuses the password ends the dashboard in one line, before it serves, also
    /// with `?cluster=no` (it served, every sample failing with WRONGPASS: a review).
    @Test(arguments: ["", "?cluster=no"])
    func aRefusedPasswordEndsItInOneLine(suffix: String) async throws {
        let ordershop = try builtProduct("ordershop")
        var options = LocalRedisServer.Options()
        options.password = "the-right-one"
        try await withRedisServer(options) { server in
            let url = "redis://:guessed-secret@127.0.0.1:\(server.port)" + suffix
            let run = try await runChild(ordershop, ["dashboard", "--port", "0", "--url", url], timeout: .seconds(30))
            #expect(run.status == 1, "\(run.output)")
            #expect(run.output.contains("cannot use Redis at redis://:***@127.0.0.1:\(server.port)") && run.output.contains("WRONGPASS"), "\(run.output)")
            #expect(!run.output.contains("dashboard: http://") && !run.output.contains("guessed-secret"), "\(run.output)")
        }
    }
}

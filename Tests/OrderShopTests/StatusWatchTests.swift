import Foundation
import LocalRedis
import RedisClient
import TestSupport
import Testing

/// `ordershop status --watch` as an operator runs it: the table is redrawn (screen cleared) with
/// fresh figures until the process is stopped.
@Suite struct StatusWatchTests {
    @Test func watchRedrawsFreshFiguresUntilStopped() async throws {
        let ordershop = try builtProduct("ordershop")
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "orders:{watch}"
            _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "mailer", id: "0", makeStream: true))
            let child = try ChildProcess(ordershop, ["status", "--watch", "--interval", "0.2", "--url", "redis://127.0.0.1:\(server.port)"])
            /// The stream's LENGTH column in the latest frame.
            func shownLength() -> String? {
                guard let frame = child.output.components(separatedBy: "\u{1B}[2J").last,
                    let row = frame.split(separator: "\n").first(where: { $0.hasPrefix(stream) })
                else { return nil }
                let columns = row.split(separator: " ", omittingEmptySubsequences: true)
                return columns.count > 2 ? String(columns[2]) : nil
            }
            #expect(await eventually { shownLength() == "0" }, "\(child.output.suffix(1000))")
            _ = try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", "e1")]))
            // A later frame shows the new length: the figures are read again, not reprinted.
            #expect(await eventually { shownLength() == "1" }, "\(child.output.suffix(1000))")
            #expect(child.isRunning)
            await child.stop(signal: SIGINT)
            #expect(!child.isRunning)
            await pool.shutdown()
        }
    }

    /// A watch started while Redis is away shows why in its frames and keeps going (it exited 1
    /// at once); the server's start shows its figures; the server's stop shows its absence
    /// again, and the watch keeps going.
    @Test func watchWaitsOutARedisThatIsAway() async throws {
        let ordershop = try builtProduct("ordershop")
        let port = try LocalRedisServer.freePort()
        let child = try ChildProcess(ordershop, ["status", "--watch", "--interval", "0.2", "--url", "redis://127.0.0.1:\(port)"])
        func lastFrame() -> String { child.output.components(separatedBy: "\u{1B}[2J").last ?? "" }
        #expect(await eventually { lastFrame().contains("cannot reach Redis") && lastFrame().contains("connection refused") }, "\(child.output.suffix(1000))")
        #expect(child.isRunning)
        var options = LocalRedisServer.Options()
        options.port = port
        try await withRedisServer(options) { server in
            let pool = try server.makePool()
            _ = try await pool.send(XGROUPCREATE(RedisArgument("orders:{away}"), group: "mailer", id: "0", makeStream: true))
            #expect(await eventually { lastFrame().contains("orders:{away}") }, "\(child.output.suffix(1000))")
            await pool.shutdown()
        }
        #expect(await eventually { lastFrame().contains("cannot read the streams") || lastFrame().contains("cannot reach Redis") }, "\(child.output.suffix(1000))")
        #expect(child.isRunning)
        await child.stop(signal: SIGINT)
        #expect(!child.isRunning)
    }
}

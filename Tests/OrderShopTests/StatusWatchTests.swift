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
}

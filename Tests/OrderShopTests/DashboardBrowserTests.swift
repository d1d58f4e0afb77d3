import Foundation
import Hummingbird
import LocalRedis
@testable import OrderShop
import RedisClient
import StreamWorker
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing

/// The dashboard in a real browser (issue 17): headless Chromium loads the page served by the
/// dashboard over a real redis-server and a running worker, sees the stream and the dead letter,
/// is refused a replay without the token, replays with it, and sees the entry handled. The
/// screenshots are written to .build/test-artifacts/.
@Suite struct DashboardBrowserTests {
    @Test(.timeLimit(.minutes(3))) func aBrowserSeesTheDeadLetterAndReplaysItWithTheToken() async throws {
        try await withDashboard(sampleInterval: .seconds(1)) { fixture in
            try await withServedDashboard(fixture.dashboard) { port in
                let chromium = try await HeadlessChromium.start()
                do {
                    let url = try await chromium.pageWebSocketURL()
                    try await DevToolsSession.with(url) { page in try await Self.drive(page, port: port, fixture: fixture) }
                    await chromium.stop()
                } catch {
                    await chromium.stop()
                    throw error
                }
            }
        }
    }

    /// A partitioned stream is one row per group, its figures over its partitions; its button
    /// shows a row per partition; its dead letters are listed under the partition stream.
    @Test(.timeLimit(.minutes(3))) func aPartitionedStreamShowsItsPartitionsOnDemand() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let events = PartitionedStream("parts:dash", partitions: 3)
            for (p, stream) in events.streams.enumerated() {
                for i in 0...p { _ = try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", "\(p)-\(i)")])) }
                _ = try await pool.send(XGROUPCREATE(RedisArgument(stream), group: "g", id: "0"))
            }
            let letter = [StreamField("event_id", "lost"), StreamField("dlq.original_id", "1-1"), StreamField("dlq.reason", "invalid")]
            _ = try await pool.send(XADD(RedisArgument(StreamKeys.deadLetter(stream: events.streams[1], group: "g")), fields: letter))
            let dashboard = Dashboard(reader: OperationsReader(nodes: [pool]), adminToken: nil, host: "127.0.0.1")
            try await withServedDashboard(dashboard) { port in
                let chromium = try await HeadlessChromium.start()
                do {
                    let url = try await chromium.pageWebSocketURL()
                    try await DevToolsSession.with(url) { page in
                        try await page.call("Page.enable")
                        try await page.call("Page.navigate", ["url": "http://127.0.0.1:\(port)/"])
                        try await Self.check(page, "one row for the logical stream, its length over the partitions", """
                            (() => { const rows = document.querySelectorAll('#streams tbody tr[data-stream="parts:dash"]');
                              return rows.length === 1 && rows[0].innerText.includes("3 partitions")
                                && rows[0].children[1].innerText === "6" && rows[0].querySelector(".dlq-count").innerText === "1"
                                && document.querySelectorAll("#streams tr.partition").length === 0; })()
                            """)
                        try await Self.check(page, "the dead letter under its partition stream", """
                            (() => { const rows = document.querySelectorAll("#dlq tbody tr");
                              return rows.length === 1 && rows[0].dataset.stream === "\(events.streams[1])"; })()
                            """)
                        _ = try await page.evaluate(##"document.querySelector("#streams button.expand").click(); true"##)
                        let names = events.streams.map { "\"\($0)\"" }.joined(separator: ",")
                        try await Self.check(page, "a row per partition", """
                            (() => { const rows = [...document.querySelectorAll("#streams tr.partition")];
                              return JSON.stringify(rows.map(r => r.dataset.stream)) === JSON.stringify([\(names)])
                                && rows.map(r => r.children[1].innerText).join() === "1,2,3"; })()
                            """)
                        try await Self.screenshot(page, "dashboard-partitions.png")
                    }
                    await chromium.stop()
                } catch {
                    await chromium.stop()
                    throw error
                }
            }
            await pool.shutdown()
        }
    }

    /// Waits until `expression` is true on the page; fails naming `what`, with the page's text.
    static func check(_ page: DevToolsSession, _ what: String, _ expression: String) async throws {
        var last: Any?
        let seen = await eventually {
            last = try await page.evaluate(expression)
            return last as? Bool == true
        }
        if !seen {
            let text = try? await page.evaluate("document.body.innerText")
            throw TestFailure("the page never showed \(what) (\(expression) was \(String(describing: last))); it shows:\n\(text ?? "?")")
        }
    }

    static func drive(_ page: DevToolsSession, port: Int, fixture: DashboardFixture) async throws {
        func check(_ what: String, _ expression: String) async throws { try await Self.check(page, what, expression) }
        try await page.call("Page.enable")
        try await page.call("Page.navigate", ["url": "http://127.0.0.1:\(port)/"])
        // The stream, its group and consumer, and the dead letter with its error and original id.
        try await check("the stream, group and consumer", """
            (() => { const t = document.querySelector("#streams tbody")?.innerText || "";
              return t.includes("\(DashboardFixture.stream)") && t.includes("\(DashboardFixture.group)") && t.includes("mailer-1"); })()
            """)
        let letter = try #require(try await fixture.deadLetters.list().first)
        try await check("the dead letter", """
            (() => { const rows = document.querySelectorAll("#dlq tbody tr");
              return rows.length === 1 && rows[0].innerText.includes("customer ghost does not exist")
                && rows[0].innerText.includes("\(letter.originalID)"); })()
            """)
        // The server's memory and policy (a full Redis refuses every write; an evicting one loses or doubles events).
        try await check("Redis's memory", ##"(document.getElementById("memory")?.innerText || "").includes("maxmemory-policy noeviction")"##)
        // A sample or two for the charts before the picture.
        try await check("a rate chart", ##"document.querySelectorAll("#streams svg polyline").length > 0"##)
        try await screenshot(page, "dashboard.png")

        // Without the token: refused, and the dead letter stays.
        _ = try await page.evaluate(##"document.getElementById("token").value = ""; document.querySelector("#dlq button.replay").click(); true"##)
        try await check("the refusal", #"document.getElementById("message").innerText.includes("replay refused (401)")"#)
        #expect(try await fixture.deadLetters.list().count == 1)
        #expect(try await !fixture.processed().contains(fixture.poisonEventID))

        // The handler's bug is fixed; with the token the replay goes to the worker, which handles the entry.
        fixture.fix()
        _ = try await page.evaluate(
            """
            const token = document.getElementById("token");
            token.value = "\(DashboardFixture.token)";
            token.dispatchEvent(new Event("input"));
            document.querySelector("#dlq button.replay").click();
            true
            """)
        try await check("the replay", #"document.getElementById("message").innerText.includes("replayed 1")"#)
        #expect(await eventually { try await fixture.processed().contains(fixture.poisonEventID) })
        try await check("no dead letters left", ##"!document.getElementById("no-dlq").hidden && document.querySelector("#streams td.dlq-count")?.innerText === "0""##)
        try await screenshot(page, "dashboard-replayed.png")
    }

    /// Writes a PNG of the page to .build/test-artifacts/.
    static func screenshot(_ page: DevToolsSession, _ name: String) async throws {
        let shot = try await page.call("Page.captureScreenshot", ["format": "png"])
        let png = try #require((shot["data"] as? String).flatMap { Data(base64Encoded: $0) })
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try png.write(to: directory.appendingPathComponent(name))
    }
}

/// Serves a dashboard on a free loopback port, with its sampler, for the length of `body`.
func withServedDashboard<T: Sendable>(_ dashboard: Dashboard, _ body: (Int) async throws -> T) async throws -> T {
    let bound = Mutex<Int?>(nil)
    let app = buildDashboardApplication(dashboard, host: "127.0.0.1", port: 0, logger: testLogger) { port in bound.withLock { $0 = port } }
    let group = ServiceGroup(services: [app, dashboard.sampler(logger: testLogger)], logger: testLogger)
    let running = Task { try await group.run() }
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await running.result
    }
    guard await eventually({ bound.withLock { $0 } != nil }), let port = bound.withLock({ $0 }) else {
        await stop()
        throw TestFailure("the dashboard did not listen: \(await running.result)")
    }
    do {
        let result = try await body(port)
        await stop()
        return result
    } catch {
        await stop()
        throw error
    }
}

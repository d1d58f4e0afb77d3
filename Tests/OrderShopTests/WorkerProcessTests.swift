import AsyncHTTPClient
import Foundation
import LocalRedis
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing

extension ShopIntegration {
    /// CRM scaled over processes: two `ordershop work crm` processes share the work, one of them is
    /// killed (SIGKILL, mid-stream) and replaced, and every welcome mail is still sent exactly once.
    @Suite struct WorkerProcessTests {
        /// The `ordershop` executable built next to the test runner.
        static func executable() throws -> String {
            var candidates: [URL] = []
            if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
                candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
            }
            if let first = CommandLine.arguments.first {
                candidates.append(URL(fileURLWithPath: first).resolvingSymlinksInPath().deletingLastPathComponent())
            }
            for dir in candidates {
                var d = dir
                for _ in 0..<3 {
                    let path = d.appendingPathComponent("ordershop").path
                    if FileManager.default.isExecutableFile(atPath: path) { return path }
                    d = d.deletingLastPathComponent()
                }
            }
            throw TestFailure("the ordershop executable is not next to the test runner (\(candidates)); build with `swift build --build-tests`")
        }

        struct Worker {
            let process: ChildProcess
            let metricsPort: Int
        }

        func startWorker(_ shop: TestShop) throws -> Worker {
            let port = try LocalRedisServer.freePort()
            let process = try ChildProcess(
                try Self.executable(),
                [
                    "work", "crm", "--url", shop.redis.url, "--msg-url", shop.stack.addresses.url(.msg), "--metrics-port", String(port),
                    "--metrics-host", "127.0.0.1", "--concurrency", "2", "--lease-seconds", "2",
                ],
                environment: ["LOG_LEVEL": "warning"])
            return Worker(process: process, metricsPort: port)
        }

        /// The sum of `stream_worker_processed_total` over the worker's subscriptions; nil when unreachable.
        func processed(_ worker: Worker) async -> Int? {
            let client = ShopClient(baseURL: "http://127.0.0.1:\(worker.metricsPort)", client: HTTPClient.shared)
            guard let reply = try? await client.get("/metrics"), reply.status == 200 else { return nil }
            return reply.text.split(separator: "\n")
                .filter { $0.hasPrefix("stream_worker_processed_total{") }
                .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
                .reduce(0) { $0 + Int($1) }
        }

        /// Clients blocked in XREADGROUP: each worker process blocks its readers (two by default,
        /// and one on the group's replay stream) per subscription (three for CRM) once it reads. (Redis 7.0 lists a consumer only after its first delivery.)
        func blockedReaders(_ shop: TestShop) async throws -> Int {
            let info = try await shop.pool.send(INFO(section: "clients"))
            return Int(info["blocked_clients"] ?? "") ?? 0
        }

        func createCustomers(_ shop: TestShop, batches: Int, of size: Int, tag: String) async throws {
            for b in 0..<batches {
                let body = JSONValue.array((0..<size).map { i in ["name": .string("\(tag)\(b)-\(i)"), "email": .string("\(tag)\(b)-\(i)@shop.test")] })
                #expect(try await shop.gateway.post("/customers", body).ids.count == size)
            }
        }

        func welcomeKeys(_ shop: TestShop) async throws -> [String: Int] {
            try await shop.mailKeys().filter { $0.key.hasPrefix("crm:") }
        }

        @Test func twoProcessesShareTheWorkAndSurviveAKill() async throws {
            try await withShop(workers: []) { shop in
                let a = try startWorker(shop)
                let b = try startWorker(shop)
                defer {
                    a.process.signal(SIGKILL)
                    b.process.signal(SIGKILL)
                }
                let metricsUp = await eventually {
                    let first = await processed(a)
                    let second = await processed(b)
                    return first != nil && second != nil
                }
                #expect(metricsUp, "metrics endpoints up: \(a.process.output) \(b.process.output)")
                // Per subscription: its readers, and one on the group's replay stream.
                let expectedReaders = 2 * 3 * (WorkerConfiguration().readers + 1)
                let bothReading = await eventually { (try? await blockedReaders(shop)) == expectedReaders }
                let readers = (try? await blockedReaders(shop)) ?? -1
                #expect(bothReading, "blocked readers: \(readers)")

                // Half the customers while both run.
                try await createCustomers(shop, batches: 6, of: 5, tag: "first")
                #expect(await eventually(timeout: .seconds(60)) { (try? await welcomeKeys(shop).count) == 30 })
                // Acknowledgements follow the mails closely; wait for both counters to add up.
                #expect(await eventually { await ((processed(a) ?? 0) + (processed(b) ?? 0)) == 30 })
                let byA = await processed(a) ?? 0
                let byB = await processed(b) ?? 0
                #expect(byA > 0, "process A handled none")
                #expect(byB > 0, "process B handled none")

                // The other half; kill A without warning while it works, and start a replacement.
                try await createCustomers(shop, batches: 6, of: 5, tag: "second")
                a.process.signal(SIGKILL)
                #expect(await a.process.waitForExit(timeout: .seconds(10)) != nil)
                let c = try startWorker(shop)
                defer { c.process.signal(SIGKILL) }

                // Every customer gets exactly one welcome mail (entries A held are reclaimed after its lease).
                let expected = try await expectedMails(shop.pool).filter { $0.value == .welcome }
                #expect(expected.count == 60)
                #expect(await eventually(timeout: .seconds(60)) { Set(((try? await welcomeKeys(shop)) ?? [:]).keys).isSuperset(of: expected.keys) })
                // What A held when it died is reclaimed by the others one lease later and handled
                // again; msg recognises the keys, so no mail goes out twice.
                let stream = RedisArgument(EntityType.customer.stream(.created))
                #expect(await eventually(timeout: .seconds(60)) { (try? await shop.pool.send(XPENDING(stream, group: "crm")).count) == 0 })
                let sent = try await welcomeKeys(shop)
                #expect(sent.count == 60)
                #expect(sent.values.allSatisfy { $0 == 1 })
                #expect(try await shop.mails.all().filter { $0.kind == .welcome }.count == 60)

                // Graceful stop: both drain and exit 0.
                #expect(await b.process.stop(signal: SIGTERM, grace: .seconds(30)) == 0, "\(b.process.output)")
                #expect(await c.process.stop(signal: SIGTERM, grace: .seconds(30)) == 0, "\(c.process.output)")
            }
        }
    }
}

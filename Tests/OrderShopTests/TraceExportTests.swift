import AsyncHTTPClient
import Foundation
import LocalRedis
@testable import OrderShop
import TestSupport
import Testing

/// Traces exported for real: `ordershop up` as a child process, exporting over OTLP/HTTP (JSON)
/// to a receiver this test runs.
@Suite struct TraceExportTests {
    /// Both ways `ordershop up` calls its own services: their routers in-process (the default)
    /// and over loopback HTTP as separate processes do.
    @Test(
        "a trace from POST /orders reaches the CRM and billing workers' spans and msg's, with one trace id, exported over OTLP",
        arguments: [[], ["--http-between-services"]])
    func orderTraceReachesTheMails(calls: [String]) async throws {
        try await OTLPReceiver.run { receiver, port in
            try await withRedisServer { server in
                let up = try ChildProcess(
                    try builtProduct("ordershop"),
                    ["up", "--url", server.url, "--gateway-port", "0", "--service-port-base", "0", "--metrics-port", "0", "--no-admin"] + calls,
                    environment: [
                        "LOG_LEVEL": "info",
                        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:\(port)",
                        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                        "OTEL_BSP_SCHEDULE_DELAY": "100",
                    ])
                do {
                    try await check(up, receiver)
                } catch {
                    _ = await up.stop()
                    throw error
                }
                #expect(await up.stop() == 0, "\(up.output)")
            }
        }
    }

    private func check(_ up: ChildProcess, _ receiver: OTLPReceiver) async throws {
        let marker = "OrderShop is up: gateway "
        _ = await eventually(timeout: .seconds(60)) { up.output.contains(marker) || !up.isRunning }
        let line = try #require(up.output.split(separator: "\n").first { $0.contains(marker) }, "\(up.output)")
        try await withUntracedClient { client in
            try await order(through: ShopClient(baseURL: String(line[line.range(of: marker)!.upperBound...]), client: client), up, receiver)
        }
    }

    private func order(through gateway: ShopClient, _ up: ChildProcess, _ receiver: OTLPReceiver) async throws {

        let customer = try #require(try await gateway.post("/customer", ["name": "Ada", "email": "ada@shop.test"]).ids.first)
        let product = try #require(try await gateway.post("/product", ["name": "Pen", "price": 3]).ids.first)
        #expect(try await gateway.post("/inventory", ["product_id": .string(product), "amount": 5]).status == 200)
        let ordered = try await gateway.post("/orders", [["product_ids": [.string(product)], "customer_id": .string(customer)]])
        #expect(ordered.status == 200, "\(ordered)")

        let created = EntityType.order.stream(.created)
        var trace: [OTLPReceiver.Span] = []
        var request: OTLPReceiver.Span?
        // The request's trace holds both workers' spans of order_created, each with its mail's
        // client span and msg's server span.
        let complete = await eventually(timeout: .seconds(60)) {
            let spans = receiver.spans
            request = spans.first { $0.attributes["ordershop.service"] == "gateway" && $0.attributes["url.path"] == "/orders" }
            guard let request else { return false }
            trace = spans.filter { $0.traceID == request.traceID }
            return ["crm", "billing"].allSatisfy { group in mailChain(in: trace, group: group, stream: created) != nil }
        }
        #expect(receiver.refusals.isEmpty, "\(receiver.refusals)")
        #expect(complete, "spans of the request's trace: \(trace.map(\.description).joined(separator: "\n"))")
        guard complete, let request else { return }

        // gateway -> order service -> its script, whose context the event carried.
        let owner = try #require(trace.first { $0.attributes["ordershop.service"] == "order" && $0.parentSpanID == request.spanID }, "\(trace)")
        let script = try #require(trace.first { $0.name == "script create orders" && $0.parentSpanID == owner.spanID }, "\(trace)")
        for group in ["crm", "billing"] {
            let (worker, mail, msg) = try #require(mailChain(in: trace, group: group, stream: created))
            #expect(worker.parentSpanID == script.spanID, "\(group)'s span is not the script's child: \(worker)")
            #expect(worker.attributes["worker.outcome"] == "applied", "\(worker)")
            #expect(worker.attributes["worker.delivery_count"] == "1", "\(worker)")
            #expect(worker.attributes["messaging.message.id"]?.isEmpty == false, "\(worker)")
            #expect(mail.attributes["mail.status"] == "sent", "\(mail)")
            #expect(msg.name == "/email", "\(msg)")
        }
        // Log lines carry the trace id: msg's line for each mail sent.
        let mailLines = up.output.split(separator: "\n").filter { $0.contains("mail ") && $0.contains("trace_id=\(request.traceID)") }
        #expect(mailLines.count >= 2, "\(up.output)")
    }

    /// A worker's span of `stream` in `group`, the "send mail" span under it and msg's server
    /// span under that, if the trace has them.
    private func mailChain(in trace: [OTLPReceiver.Span], group: String, stream: String)
        -> (worker: OTLPReceiver.Span, mail: OTLPReceiver.Span, msg: OTLPReceiver.Span)?
    {
        for worker in trace where worker.attributes["messaging.consumer.group.name"] == group && worker.attributes["messaging.destination.name"] == stream {
            for mail in trace where mail.name == "send mail" && mail.parentSpanID == worker.spanID {
                if let msg = trace.first(where: { $0.attributes["ordershop.service"] == "msg" && $0.parentSpanID == mail.spanID }) {
                    return (worker, mail, msg)
                }
            }
        }
        return nil
    }
}

/// Runs `body` with an HTTP client that adds no `traceparent` of its own (the shop's, see
/// ``makeHTTPClient()``). HTTPClient.shared traces with whichever tracer was bound when it was
/// first used, another test's `withTracer` maybe: its unsampled root would have the shop drop
/// the trace, and its header would come beside the one a test sets.
func withUntracedClient<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
    let client = makeHTTPClient()
    do {
        let result = try await body(client)
        try? await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

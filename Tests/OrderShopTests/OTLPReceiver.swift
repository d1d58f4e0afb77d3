import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import TestSupport

/// A small OTLP/HTTP receiver for JSON (`OTEL_EXPORTER_OTLP_PROTOCOL=http/json`): collects the
/// spans a real exporter POSTs to `/v1/traces`, on a free loopback port, for one test.
final class OTLPReceiver: Sendable {
    /// One received span, ids as lowercase hex (the exporter's JSON has them in base64).
    struct Span: Sendable, CustomStringConvertible {
        var traceID: String
        var spanID: String
        var parentSpanID: String
        var name: String
        var service: String
        var attributes: [String: String]

        var description: String { "\(service) \(name) trace=\(traceID) span=\(spanID) parent=\(parentSpanID) \(attributes)" }
    }

    private let received = Mutex<[Span]>([])
    /// Requests it could not decode (an exporter sending protobuf, say).
    private let refused = Mutex<[String]>([])

    private let requestCount = Atomic<Int>(0)

    var spans: [Span] { received.withLock { $0 } }
    var refusals: [String] { refused.withLock { $0 } }
    /// Export requests received.
    var requests: Int { requestCount.load(ordering: .relaxed) }

    /// An answer in place of taking the spans: a collector in trouble.
    struct Refusal: Sendable {
        var status: HTTPResponse.Status
        var retryAfter: String? = nil
    }

    /// Runs a receiver while `body` runs, with the port it listens on. `failing`: every request
    /// is answered 500 (a collector in trouble), its spans not kept.
    static func run<T: Sendable>(failing: Bool = false, _ body: (OTLPReceiver, Int) async throws -> T) async throws -> T {
        try await run(refusing: { _ in failing ? Refusal(status: .internalServerError) : nil }, body)
    }

    /// Runs a receiver whose answer to its n-th request (from 1) is `refusing(n)`'s refusal,
    /// its spans not kept, when it gives one.
    /// `answerDelay`: each answer comes that long after its request (a slow collector);
    /// `answerBytes`: a 200 carries that many bytes of body (a collector that says much).
    static func run<T: Sendable>(
        refusing: @escaping @Sendable (Int) -> Refusal?, answerDelay: Duration = .zero, answerBytes: Int = 2,
        _ body: (OTLPReceiver, Int) async throws -> T
    ) async throws -> T {
        let receiver = OTLPReceiver()
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let number = receiver.requestCount.add(1, ordering: .relaxed).newValue
            let bytes = try await request.body.collect(upTo: 64 << 20)
            if answerDelay > .zero { try await Task.sleep(for: answerDelay) }
            if let refusal = refusing(number) {
                var headers = HTTPFields()
                if let retryAfter = refusal.retryAfter { headers[.retryAfter] = retryAfter }
                return Response(status: refusal.status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: "collector trouble")))
            }
            do {
                try receiver.add(try JSONDecoder().decode(ExportRequest.self, from: Data(buffer: bytes)))
            } catch {
                receiver.refused.withLock { $0.append("\(request.headers[.contentType] ?? "?"): \(error)") }
                return Response(status: .badRequest)
            }
            let answer = answerBytes <= 2 ? "{}" : "{\"x\":\"" + String(repeating: "x", count: answerBytes - 8) + "\"}"
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: answer)))
        }
        var logger = Logger(label: "otlp-receiver")
        logger.logLevel = .warning
        let port = Mutex<Int?>(nil)
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port } }, logger: logger)
        let group = ServiceGroup(services: [app], logger: logger)
        let running = Task { try await group.run() }
        defer { running.cancel() }
        guard await eventually(timeout: .seconds(30), { port.withLock { $0 } != nil }), let bound = port.withLock({ $0 }) else {
            throw TestFailure("the OTLP receiver did not start")
        }
        do {
            let result = try await body(receiver, bound)
            await group.triggerGracefulShutdown()
            _ = await running.result
            return result
        } catch {
            await group.triggerGracefulShutdown()
            _ = await running.result
            throw error
        }
    }

    private func add(_ request: ExportRequest) throws {
        var spans: [Span] = []
        for resource in request.resourceSpans ?? [] {
            let service = resource.resource?.attributes?.first { $0.key == "service.name" }?.value.text ?? ""
            for scope in resource.scopeSpans ?? [] {
                for span in scope.spans ?? [] {
                    spans.append(
                        Span(
                            traceID: try Self.hex(span.traceId), spanID: try Self.hex(span.spanId), parentSpanID: try Self.hex(span.parentSpanId ?? ""),
                            name: span.name, service: service,
                            attributes: Dictionary((span.attributes ?? []).map { ($0.key, $0.value.text) }, uniquingKeysWith: { a, _ in a })))
                }
            }
        }
        received.withLock { $0 += spans }
    }

    /// OTLP's JSON says hex; protobuf's JSON mapping of bytes is base64, which swift-otel sends.
    private static func hex(_ id: String) throws -> String {
        if id.isEmpty { return "" }
        if id.count == 32 || id.count == 16, id.allSatisfy(\.isHexDigit) { return id.lowercased() }
        guard let data = Data(base64Encoded: id) else { throw TestFailure("span id neither hex nor base64: \(id)") }
        return data.map { String(format: "%02x", $0) }.joined()
    }

    // The parts of ExportTraceServiceRequest (JSON) the tests read.
    private struct ExportRequest: Decodable { var resourceSpans: [ResourceSpans]? }
    private struct ResourceSpans: Decodable {
        var resource: Resource?
        var scopeSpans: [ScopeSpans]?
    }
    private struct Resource: Decodable { var attributes: [KeyValue]? }
    private struct ScopeSpans: Decodable { var spans: [WireSpan]? }
    private struct WireSpan: Decodable {
        var traceId: String
        var spanId: String
        var parentSpanId: String?
        var name: String
        var attributes: [KeyValue]?
    }
    private struct KeyValue: Decodable {
        var key: String
        var value: AnyValue
    }
    private struct AnyValue: Decodable {
        var text = ""

        private enum Keys: String, CodingKey { case stringValue, intValue, boolValue }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            // An int64 comes as a string in protobuf's JSON, as a number from some exporters.
            if let s = try? c.decode(String.self, forKey: .stringValue) {
                text = s
            } else if let s = try? c.decode(String.self, forKey: .intValue) {
                text = s
            } else if let n = try? c.decode(Int64.self, forKey: .intValue) {
                text = "\(n)"
            } else if let b = try? c.decode(Bool.self, forKey: .boolValue) {
                text = "\(b)"
            }
        }
    }
}

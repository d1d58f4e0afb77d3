import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// An OTLP/HTTP receiver that accepts trace exports and drops them, counting the spans and
/// bytes it got: `ordershop otlp-sink`, and the receiver `bench worker` and `bench latency`
/// run in-process with `--tracing compare` (the count shows that "on" exported every span).
final class OTLPSink: Sendable {
    private let counts = Mutex<(spans: Int, bytes: Int, undecodable: Int)>((0, 0, 0))

    var spans: Int { counts.withLock { $0.spans } }
    var bytes: Int { counts.withLock { $0.bytes } }
    /// Exports whose body could not be read (neither OTLP protobuf nor JSON).
    var undecodable: Int { counts.withLock { $0.undecodable } }

    /// The application serving `POST /v1/traces` on `host:port` (0: a free port, reported to
    /// `onListening`).
    func application(host: String, port: Int, logger: Logger, onListening: @escaping @Sendable (Int) async -> Void) -> some Service {
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 20)
            let json = request.headers[.contentType]?.hasPrefix("application/json") == true
            let spans = body.withUnsafeReadableBytes { json ? Self.countJSONSpans($0) : OTLPSpanCounter.count($0) }
            self.counts.withLock {
                $0.bytes += body.readableBytes
                if let spans { $0.spans += spans } else { $0.undecodable += 1 }
            }
            // An empty ExportTraceServiceResponse, in the request's encoding.
            if json {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: "{}")))
            }
            return Response(status: .ok, headers: [.contentType: "application/x-protobuf"])
        }
        return Application(
            router: router, configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) }, logger: logger)
    }

    /// Runs a sink on a free loopback port while `body` runs, with its endpoint URL.
    static func run<T>(_ body: (OTLPSink, String) async throws -> T) async throws -> T {
        var logger = Logger(label: "bench.otlp-sink")
        logger.logLevel = .warning
        let sink = OTLPSink()
        let (ports, listening) = AsyncStream.makeStream(of: Int.self)
        let group = ServiceGroup(
            services: [sink.application(host: "127.0.0.1", port: 0, logger: logger) { port in listening.yield(port) }], logger: logger)
        let running = Task { try await group.run() }
        defer { running.cancel() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw BenchRunError("the OTLP sink did not start") }
        let result: Result<T, any Error>
        do { result = .success(try await body(sink, "http://127.0.0.1:\(port)")) } catch { result = .failure(error) }
        await group.triggerGracefulShutdown()
        _ = await running.result
        return try result.get()
    }

    private static func countJSONSpans(_ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else { return nil }
        let resources = object["resourceSpans"] as? [[String: Any]] ?? []
        return resources.reduce(0) { total, resource in
            (resource["scopeSpans"] as? [[String: Any]] ?? []).reduce(total) { $0 + (($1["spans"] as? [Any])?.count ?? 0) }
        }
    }
}

/// Counts the spans of an OTLP `ExportTraceServiceRequest` in protobuf without decoding them:
/// resource_spans (field 1) → scope_spans (field 2) → spans (field 2).
enum OTLPSpanCounter {
    static func count(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var total = 0
        let ok = fields(bytes) { number, resource in
            guard number == 1, let resource else { return true }
            return fields(resource) { number, scope in
                guard number == 2, let scope else { return true }
                return fields(scope) { number, _ in
                    if number == 2 { total += 1 }
                    return true
                }
            }
        }
        return ok ? total : nil
    }

    /// Calls `visit` with each field's number and, for a length-delimited one, its bytes; false
    /// when the message is malformed (or `visit` said so).
    private static func fields(_ b: UnsafeRawBufferPointer, _ visit: (UInt64, UnsafeRawBufferPointer?) -> Bool) -> Bool {
        var i = 0
        func varint() -> UInt64? {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < b.count, shift < 64 {
                let byte = b[i]
                i += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
            return nil
        }
        while i < b.count {
            guard let key = varint() else { return false }
            switch key & 7 {
            case 0: guard varint() != nil else { return false }
            case 1: i += 8
            case 5: i += 4
            case 2:
                guard let length = varint(), length <= UInt64(b.count - i) else { return false }
                let start = i
                i += Int(length)
                guard visit(key >> 3, UnsafeRawBufferPointer(rebasing: b[start..<i])) else { return false }
                continue
            default: return false
            }
            guard i <= b.count, visit(key >> 3, nil) else { return false }
        }
        return true
    }
}

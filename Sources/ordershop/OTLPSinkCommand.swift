import ArgumentParser
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// `ordershop otlp-sink`: an OTLP/HTTP receiver that accepts spans and drops them, for measuring
/// the shop with tracing on (exporting) without a collector: `bench worker` and `bench latency`
/// with `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318` against it.
struct OTLPSinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otlp-sink",
        abstract: "Accept OTLP/HTTP trace exports and drop them (a local receiver for benchmarks).",
        shouldDisplay: false
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (OTLP/HTTP's usual one by default).") var port = 4318

    func run() async throws {
        let logger = makeLogger("ordershop.otlp-sink")
        let received = Atomic<Int>(0)
        let router = Router()
        router.post("/v1/traces") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 << 20)
            received.add(body.readableBytes, ordering: .relaxed)
            // An empty ExportTraceServiceResponse, in the request's encoding.
            if request.headers[.contentType]?.hasPrefix("application/json") == true {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: "{}")))
            }
            return Response(status: .ok, headers: [.contentType: "application/x-protobuf"])
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port)),
            onServerRunning: { channel in printFlushed("otlp-sink listening on \(host):\(channel.localAddress?.port ?? port)") }, logger: logger)
        try await app.runService()
        printFlushed("otlp-sink received \(received.load(ordering: .relaxed)) bytes")
    }
}

import ArgumentParser
import ServiceLifecycle

/// `ordershop otlp-sink`: an OTLP/HTTP receiver that accepts spans and drops them, for measuring
/// the shop with tracing on (exporting) without a collector. `bench worker` and `bench latency`
/// run the same receiver in-process with `--tracing compare`.
struct OTLPSinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "otlp-sink",
        abstract: "Accept OTLP/HTTP trace exports and drop them (a local receiver for benchmarks).",
        shouldDisplay: false
    )

    @Option(help: "Address to listen on.") var host = "127.0.0.1"
    @Option(help: "Port to listen on (OTLP/HTTP's usual one by default).") var port = 4318

    func validate() throws { try PortValidation.check(port, "--port") }

    func run() async throws {
        let sink = OTLPSink()
        let host = self.host
        let logger = makeLogger("ordershop.otlp-sink")
        let app = sink.application(host: host, port: port, logger: logger) { port in printFlushed("otlp-sink listening on \(host):\(port)") }
        try await ServiceGroup(configuration: .init(services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
        printFlushed("otlp-sink received \(sink.spans) spans in \(sink.bytes) bytes")
    }
}

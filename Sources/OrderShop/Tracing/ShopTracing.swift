import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Tracing of an OrderShop process (`ordershop up`, `serve`, `work`), with swift-otel.
///
/// Propagation is always on: every request, command script, handled event and mail has a span
/// with a trace id, which reaches the events' `traceparent` field, the requests the process
/// makes and the log lines (``loggingMetadata``). Export is off unless the environment asks for
/// it (``exports(_:)``): then root spans are dropped by the sampler (a span that does not record
/// costs an id and a context, nothing is queued or sent), and the context still propagates.
/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, every span is recorded and exported over OTLP/HTTP
/// (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`, the default, or `http/json`); the other
/// `OTEL_*` variables (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`,
/// ...) apply as swift-otel reads them.
public enum ShopTracing {
    /// Whether `environment` asks for spans to be exported: an OTLP endpoint, or a traces
    /// exporter other than `none`.
    public static func exports(_ environment: [String: String]) -> Bool {
        let endpoint = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].contains { !(environment[$0] ?? "").isEmpty }
        let exporter = environment["OTEL_TRACES_EXPORTER"].map { $0.isEmpty ? nil : $0.lowercased() } ?? nil
        return exporter.map { $0 != "none" } ?? endpoint
    }

    /// Bootstraps the process's tracer and returns the service that runs its processor and
    /// exporter: run it in the process's service group, listed first so that it stops last and
    /// sends the spans of the last requests. Once per process (the instrumentation system
    /// refuses a second bootstrap).
    ///
    /// - Parameter serviceName: the `service.name` of the spans, unless `OTEL_SERVICE_NAME` says.
    public static func bootstrap(
        serviceName: String, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) throws -> any Service {
        try OTel.bootstrap(configuration: configuration(serviceName: serviceName, environment: environment, logger: logger), environment: environment)
    }

    /// The same tracer without bootstrapping it, for a part of a process (`withTracer`): a
    /// benchmark that runs a worker beside other work. Run `service` while it is used.
    public static func makeTracer(serviceName: String, logger: Logger) throws -> (tracer: any Tracer, service: any Service) {
        let environment = ProcessInfo.processInfo.environment
        let backend = try OTel.makeTracingBackend(configuration: configuration(serviceName: serviceName, environment: environment, logger: logger))
        return (backend.factory, backend.service)
    }

    private static func configuration(serviceName: String, environment: [String: String], logger: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        // Logs and metrics stay with swift-log and Prometheus; only traces go through OTel.
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.propagators = [.traceContext]
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        if exports(environment) {
            configuration.traces.exporter = .otlp
        } else {
            configuration.traces.exporter = .none
            // Follows a caller's sampled flag; drops the spans this process starts itself.
            configuration.traces.sampler = .parentBasedAlwaysOff
        }
        return configuration
    }

    /// Puts the current span's `trace_id` and `span_id` in every log line's metadata.
    public static var loggingMetadata: Logger.MetadataProvider {
        OTel.makeLoggingMetadataProvider()
    }
}

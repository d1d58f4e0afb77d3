import Foundation
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// Tracing of an OrderShop process (`ordershop up`, `serve`, `work`).
///
/// Propagation is always on: every request, command script, handled event and mail has a span
/// with a trace id, which reaches the events' `traceparent` field, the requests the process
/// makes and the log lines (``loggingMetadata``). Export is off unless the environment asks for
/// it (``exports(_:)``): then the spans are ``PropagatingTracer``'s, which carry the context and
/// record nothing. With `OTEL_EXPORTER_OTLP_ENDPOINT` set they are ``RecordingTracer``'s,
/// recorded and exported over OTLP/HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf`, the
/// default, or `http/json`), with the usual `OTEL_*` variables (``OTLPSettings``); a setting
/// only swift-otel has (certificate files, other propagators or samplers) has swift-otel trace instead.
public enum ShopTracing {
    /// Whether `environment` asks for spans to be exported: an OTLP endpoint, or a traces
    /// exporter other than `none`.
    public static func exports(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        // The specification: `true` (any case) disables the SDK; trace context still propagates.
        if environment["OTEL_SDK_DISABLED"]?.trimmingCharacters(in: .whitespaces).lowercased() == "true" { return false }
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
        guard exports(environment) else {
            InstrumentationSystem.bootstrap(PropagatingTracer())
            return UntilShutdown()
        }
        if let recording = try recordingTracer(serviceName: serviceName, environment: environment, logger: logger) {
            InstrumentationSystem.bootstrap(recording)
            return recording.exporter
        }
        return try OTel.bootstrap(configuration: configuration(serviceName: serviceName, logger: logger), environment: forSwiftOTel(environment))
    }

    /// The same tracer without bootstrapping it, for a part of a process (`withTracer`): a
    /// benchmark that runs a worker beside other work. Run `service` while it is used.
    public static func makeTracer(
        serviceName: String, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger
    ) throws -> (tracer: any Tracer, service: any Service) {
        guard exports(environment) else { return (PropagatingTracer(), UntilShutdown()) }
        if let recording = try recordingTracer(serviceName: serviceName, environment: environment, logger: logger) {
            return (recording, recording.exporter)
        }
        // swift-otel reads this process's environment, whatever `environment` says.
        let backend = try OTel.makeTracingBackend(configuration: configuration(serviceName: serviceName, logger: logger))
        return (backend.factory, backend.service)
    }

    /// The shop's own recording tracer for OTLP/HTTP, unless the environment asks for what only
    /// swift-otel has (certificate files, other propagators or samplers).
    private static func recordingTracer(serviceName: String, environment: [String: String], logger: Logger) throws -> RecordingTracer? {
        guard let settings = try OTLPSettings.resolve(serviceName: serviceName, environment: environment) else {
            logger.info("tracing: exporting with swift-otel (the OTEL_* settings ask for more than OTLP/HTTP with the usual options)")
            return nil
        }
        for line in settings.ignored { logger.warning("tracing: \(line)") }
        return RecordingTracer(sampler: settings.sampler, exporter: OTLPSpanExporter(settings: settings.exporter, logger: logger))
    }

    /// Puts the current span's `trace_id` and `span_id` in every log line's metadata (of the
    /// tracer ``bootstrap(serviceName:environment:logger:)`` chooses for the same environment).
    public static func loggingMetadata(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> Logger.MetadataProvider {
        guard exports(environment), (try? OTLPSettings.resolve(serviceName: "", environment: environment)) == nil else {
            return PropagatingTracer.loggingMetadata
        }
        return OTel.makeLoggingMetadataProvider()
    }

    /// The environment swift-otel reads, without what the configuration already says and
    /// swift-otel would stop the process for (a propagator it does not have: `baggage`).
    private static func forSwiftOTel(_ environment: [String: String]) -> [String: String] {
        environment.filter { $0.key != "OTEL_PROPAGATORS" }
    }

    private static func configuration(serviceName: String, logger: Logger) -> OTel.Configuration {
        var configuration = OTel.Configuration.default
        configuration.serviceName = serviceName
        // Logs and metrics stay with swift-log and Prometheus; only traces go through OTel.
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.propagators = [.traceContext]
        configuration.diagnosticLogger = .custom(logger)
        configuration.diagnosticLogLevel = .warning
        configuration.traces.exporter = .otlp
        return configuration
    }

    /// Nothing to run while exporting nothing: waits for the group's shutdown.
    private struct UntilShutdown: Service {
        func run() async throws {
            try await gracefulShutdown()
        }
    }
}

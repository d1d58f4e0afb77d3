import Foundation

/// The exporter settings the OpenTelemetry environment variables give, for ``RecordingTracer``:
/// OTLP over HTTP (protobuf or JSON) with the usual endpoint, header, timeout, sampler, batch
/// and resource variables. nil for a setting it does not have (gRPC, TLS
/// certificate files, another propagator or sampler): ``ShopTracing`` then uses swift-otel,
/// which reads them. `OTEL_EXPORTER_OTLP_COMPRESSION` is not applied, as swift-otel 1.6 does
/// not apply it over HTTP either.
enum OTLPSettings {
    struct Resolved {
        var exporter: OTLPSpanExporter.Settings
        var sampler: TraceSampler
    }

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static func resolve(serviceName: String, environment: [String: String]) throws -> Resolved? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        /// The traces-specific variable, else the general one.
        func otlp(_ suffix: String) -> String? { value("OTEL_EXPORTER_OTLP_TRACES_\(suffix)") ?? value("OTEL_EXPORTER_OTLP_\(suffix)") }

        if let exporter = value("OTEL_TRACES_EXPORTER")?.lowercased(), exporter != "otlp" { return nil }
        if let propagators = value("OTEL_PROPAGATORS")?.lowercased(), propagators != "tracecontext" { return nil }
        for unsupported in ["CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"] where otlp(unsupported) != nil { return nil }
        let json: Bool
        switch otlp("PROTOCOL")?.lowercased() ?? "http/protobuf" {
        case "http/protobuf": json = false
        case "http/json": json = true
        default: return nil
        }
        guard let sampler = TraceSampler(name: value("OTEL_TRACES_SAMPLER") ?? "parentbased_always_on", argument: value("OTEL_TRACES_SAMPLER_ARG"))
        else { return nil }

        let endpoint: String
        if let traces = value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            endpoint = traces
        } else {
            let base = value("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "http://localhost:4318"
            endpoint = (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
        }
        guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            throw Invalid(description: "OTLP traces endpoint is not an http(s) URL: \(endpoint)")
        }

        var resource = pairs(value("OTEL_RESOURCE_ATTRIBUTES") ?? "")
        let name = value("OTEL_SERVICE_NAME") ?? resource.first { $0.0 == "service.name" }?.1 ?? serviceName
        resource.removeAll { $0.0 == "service.name" }
        resource.insert(("service.name", name), at: 0)
        resource += [("telemetry.sdk.name", "ordershop"), ("telemetry.sdk.language", "swift")]

        var settings = OTLPSpanExporter.Settings(
            endpoint: endpoint, json: json, headers: pairs(otlp("HEADERS") ?? ""), header: .init(resource: resource, scope: "ordershop"))
        if let ms = otlp("TIMEOUT").flatMap(Int.init), ms > 0 { settings.timeout = .milliseconds(ms) }
        if let ms = value("OTEL_BSP_SCHEDULE_DELAY").flatMap(Int.init), ms > 0 { settings.scheduleDelay = .milliseconds(ms) }
        if let ms = value("OTEL_BSP_EXPORT_TIMEOUT").flatMap(Int.init), ms > 0 { settings.timeout = min(settings.timeout, .milliseconds(ms)) }
        if let n = value("OTEL_BSP_MAX_QUEUE_SIZE").flatMap(Int.init), n > 0 { settings.maxQueueSize = n }
        if let n = value("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").flatMap(Int.init), n > 0 { settings.maxExportBatchSize = n }
        // The specification: a batch is never larger than the queue.
        settings.maxExportBatchSize = min(settings.maxExportBatchSize, settings.maxQueueSize)
        return Resolved(exporter: settings, sampler: sampler)
    }

    /// `key=value,key=value` with percent-encoded values (W3C Baggage's form, which
    /// `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_RESOURCE_ATTRIBUTES` use).
    static func pairs(_ text: String) -> [(String, String)] {
        text.split(separator: ",").compactMap { item in
            guard let equals = item.firstIndex(of: "=") else { return nil }
            let key = item[..<equals].trimmingCharacters(in: .whitespaces)
            let raw = item[item.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty else { return nil }
            return (key, raw.removingPercentEncoding ?? raw)
        }
    }
}

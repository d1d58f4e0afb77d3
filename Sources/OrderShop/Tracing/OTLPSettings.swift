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
        /// Variables whose value was not taken (the default is used), one line each, to log.
        var ignored: [String] = []
    }

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    static func resolve(serviceName: String, environment: [String: String]) throws -> Resolved? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        /// The traces-specific variable, else the general one.
        func otlp(_ suffix: String) -> String? { value("OTEL_EXPORTER_OTLP_TRACES_\(suffix)") ?? value("OTEL_EXPORTER_OTLP_\(suffix)") }

        // Refused here, with what to do, rather than handed to swift-otel, which stops the
        // process (a fatal error, SIGILL) for gRPC without its trait and for propagators it
        // does not have: a trial's `OTEL_PROPAGATORS=tracecontext,baggage`, the specification's
        // default and what the OpenTelemetry operator injects, never started.
        try checkPropagators(value("OTEL_PROPAGATORS"))
        if let exporter = value("OTEL_TRACES_EXPORTER")?.lowercased(), exporter != "otlp" { return nil }
        let protocolName = otlp("PROTOCOL")?.lowercased() ?? "http/protobuf"
        let json: Bool
        switch protocolName {
        case "http/protobuf": json = false
        case "http/json": json = true
        case "grpc":
            throw Invalid(description: "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: OTLP/gRPC is not built in; use http/protobuf (the collector's port 4318) or http/json")
        default:
            throw Invalid(description: "OTEL_EXPORTER_OTLP_PROTOCOL=\(protocolName) is not a protocol this process exports with; use http/protobuf or http/json")
        }
        for unsupported in ["CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"] where otlp(unsupported) != nil { return nil }
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
            endpoint: endpoint, json: json, headers: try headers(otlp("HEADERS") ?? ""), header: .init(resource: resource, scope: "ordershop"))
        // The specification: an invalid value is reported and the default used. They were
        // ignored without a word (`OTEL_BSP_MAX_QUEUE_SIZE=0`, `OTEL_EXPORTER_OTLP_TIMEOUT=abc`).
        var ignored: [String] = []
        func positive(_ name: String, _ text: String?) -> Int? {
            guard let text else { return nil }
            if let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0 { return n }
            ignored.append("\(name)=\(text) is not a whole number above 0; the default is used")
            return nil
        }
        let timeoutName = value("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") != nil ? "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" : "OTEL_EXPORTER_OTLP_TIMEOUT"
        if let ms = positive(timeoutName, otlp("TIMEOUT")) { settings.timeout = .milliseconds(ms) }
        if let ms = positive("OTEL_BSP_SCHEDULE_DELAY", value("OTEL_BSP_SCHEDULE_DELAY")) { settings.scheduleDelay = .milliseconds(ms) }
        if let ms = positive("OTEL_BSP_EXPORT_TIMEOUT", value("OTEL_BSP_EXPORT_TIMEOUT")) { settings.timeout = min(settings.timeout, .milliseconds(ms)) }
        if let n = positive("OTEL_BSP_MAX_QUEUE_SIZE", value("OTEL_BSP_MAX_QUEUE_SIZE")) { settings.maxQueueSize = n }
        if let n = positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")) { settings.maxExportBatchSize = n }
        // The specification: a batch is never larger than the queue.
        settings.maxExportBatchSize = min(settings.maxExportBatchSize, settings.maxQueueSize)
        return Resolved(exporter: settings, sampler: sampler, ignored: ignored)
    }

    /// Propagators the process can honour: W3C trace context, which it always uses. `baggage`
    /// (in the specification's default `tracecontext,baggage`) and `none` are accepted and
    /// change nothing: no baggage is carried. Anything else (b3, jaeger, xray, ...) is refused.
    static func checkPropagators(_ list: String?) throws {
        guard let list else { return }
        let names = list.lowercased().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        let unsupported = names.filter { !["tracecontext", "baggage", "none"].contains($0) }
        guard unsupported.isEmpty else {
            throw Invalid(
                description: "OTEL_PROPAGATORS=\(list): \(unsupported.joined(separator: ", ")) is not supported; this process propagates W3C trace context "
                    + "(tracecontext; baggage is accepted and not carried)")
        }
    }

    /// `OTEL_EXPORTER_OTLP_HEADERS`: refused when an item is not `key=value` or a name or value
    /// could not be sent as an HTTP header (a value with a stray CR from a token file made every
    /// export fail, and each failure logged the token). The message names the header, never
    /// its value.
    static func headers(_ text: String) throws -> [(String, String)] {
        let items = text.split(separator: ",").filter { !$0.allSatisfy(\.isWhitespace) }
        let parsed = pairs(text)
        guard parsed.count == items.count else {
            throw Invalid(description: "OTEL_EXPORTER_OTLP_HEADERS: an item is not key=value (\(items.count) items, \(parsed.count) of them key=value)")
        }
        let tokenCharacters = Set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for (name, value) in parsed {
            guard name.allSatisfy(tokenCharacters.contains) else {
                throw Invalid(description: "OTEL_EXPORTER_OTLP_HEADERS: \(name.debugDescription) is not an HTTP header name")
            }
            // RFC 9110 field values: visible ASCII, space and tab, and bytes from 0x80 up.
            guard value.utf8.allSatisfy({ $0 == 0x09 || (0x20..<0x7F).contains($0) || $0 >= 0x80 }) else {
                throw Invalid(description: "OTEL_EXPORTER_OTLP_HEADERS: the value of \(name) holds a control character (a line break?); its value is not shown")
            }
        }
        return parsed
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

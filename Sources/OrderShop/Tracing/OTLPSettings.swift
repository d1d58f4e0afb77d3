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
        // The specification: an invalid value is reported and the default used. They were
        // ignored without a word (`OTEL_BSP_MAX_QUEUE_SIZE=0`, `OTEL_EXPORTER_OTLP_TIMEOUT=abc`).
        var ignored: [String] = []
        let samplerName = value("OTEL_TRACES_SAMPLER")?.lowercased() ?? "parentbased_always_on"
        var samplerArgument = value("OTEL_TRACES_SAMPLER_ARG")
        // A ratio that is not one (abc, -1, nan, 2) was taken as 1 or as 0 without a word: -1 and
        // nan exported nothing at all (a trial). The specification: reported, and 1 used.
        if samplerName.hasSuffix("traceidratio"), let text = samplerArgument {
            if let ratio = Double(text.trimmingCharacters(in: .whitespaces)), ratio.isFinite, (0...1).contains(ratio) {
                samplerArgument = String(ratio)
            } else {
                ignored.append("OTEL_TRACES_SAMPLER_ARG=\(text) is not a ratio from 0 to 1; 1 is used (every trace)")
                samplerArgument = "1"
            }
        }
        let sampler: TraceSampler
        if let known = TraceSampler(name: samplerName, argument: samplerArgument) {
            sampler = known
        } else if TraceSampler.remote.contains(samplerName) {
            // swift-otel, handed them, stops the process (fatalError: "does not support the
            // Jaeger sampler", "... X-Ray sampler"; a review).
            throw Invalid(
                description:
                    "OTEL_TRACES_SAMPLER=\(samplerName) is not available here (a remote sampler); use parentbased_traceidratio with OTEL_TRACES_SAMPLER_ARG, or sample in the collector")
        } else {
            // Not a sampler at all (`foo`): handed to swift-otel, which said only that it failed
            // to read its configuration (a trial).
            ignored.append("OTEL_TRACES_SAMPLER=\(samplerName) is not a sampler; parentbased_always_on is used")
            sampler = .default
        }

        let endpoint: String
        if let traces = value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            endpoint = traces
        } else {
            endpoint = tracesURL(base: value("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "http://localhost:4318")
        }
        guard let url = URL(string: endpoint), ["http", "https"].contains(url.scheme?.lowercased() ?? ""), url.host != nil else {
            throw Invalid(description: "OTLP traces endpoint is not an http(s) URL: \(redacted(endpoint))")
        }
        // A port past 65,535 was accepted here and stopped the process at its first export
        // (AsyncHTTPClient traps on it: "Not enough bits to represent the passed value", a trial).
        // Read from the text: a port too large for a number (or empty, `host:`) was no port
        // to Foundation and went to port 80 without a word (a trial).
        // The variable as written too: URLComponents drops such a port when it adds the path.
        let written = value("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? value("OTEL_EXPORTER_OTLP_ENDPOINT") ?? endpoint
        if let port = portText(written), !(UInt16(port).map { $0 >= 1 } ?? false) {
            throw Invalid(description: "OTLP traces endpoint \(redacted(endpoint)): port '\(port)' is not a TCP port (1-65535)")
        }

        var resource = pairs(value("OTEL_RESOURCE_ATTRIBUTES") ?? "")
        let name = value("OTEL_SERVICE_NAME") ?? resource.first { $0.0 == "service.name" }?.1 ?? serviceName
        resource.removeAll { $0.0 == "service.name" }
        resource.insert(("service.name", name), at: 0)
        resource += [("telemetry.sdk.name", "ordershop"), ("telemetry.sdk.language", "swift")]

        var settings = OTLPSpanExporter.Settings(
            endpoint: endpoint, json: json, headers: try headers(otlp("HEADERS") ?? ""), header: .init(resource: resource, scope: "ordershop"))
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
        if let n = positive("OTEL_BSP_MAX_QUEUE_SIZE", value("OTEL_BSP_MAX_QUEUE_SIZE")) {
            // 10^12 was taken as it was, and with the collector away memory grew ~5 MB/s until
            // the process was stopped (a trial).
            if n > OTLPSpanExporter.Settings.largestQueue {
                ignored.append(
                    "OTEL_BSP_MAX_QUEUE_SIZE=\(n) is more than \(OTLPSpanExporter.Settings.largestQueue) spans (~200 MB while export lags); \(OTLPSpanExporter.Settings.largestQueue) is used")
            }
            settings.maxQueueSize = min(n, OTLPSpanExporter.Settings.largestQueue)
        }
        if let n = positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", value("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")) { settings.maxExportBatchSize = n }
        // The specification: a batch is never larger than the queue.
        settings.maxExportBatchSize = min(settings.maxExportBatchSize, settings.maxQueueSize)
        return Resolved(exporter: settings, sampler: sampler, ignored: ignored)
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with the traces path added to its path: a query there
    /// stays a query (`http://c:4318?x=1` was sent to `/?x=1/v1/traces`, a trial).
    static func tracesURL(base: String) -> String {
        guard var components = URLComponents(string: base), components.host != nil else {
            return (base.hasSuffix("/") ? String(base.dropLast()) : base) + "/v1/traces"
        }
        var path = components.percentEncodedPath
        while path.hasSuffix("/") { path.removeLast() }
        components.percentEncodedPath = path + "/v1/traces"
        return components.string ?? base + "/v1/traces"
    }

    /// The port of an http(s) URL as written ("" for `host:`), nil when it names none.
    static func portText(_ url: String) -> String? {
        guard url.contains("://") else { return nil }
        var authority = url[authorityRange(url)]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") { authority = authority[authority.index(after: close)...] }
        guard let colon = authority.lastIndex(of: ":") else { return nil }
        return String(authority[authority.index(after: colon)...])
    }

    /// `endpoint` as logged: a user name and password in it replaced by `***` (a trial found
    /// them in every export warning), whether or not the rest parses.
    static func redacted(_ endpoint: String) -> String {
        let authority = authorityRange(endpoint)
        guard let at = endpoint[authority].lastIndex(of: "@") else { return endpoint }
        return String(endpoint[..<authority.lowerBound]) + "***" + String(endpoint[at...])
    }

    /// Where `url`'s authority (`user:password@host:port`) lies: after "://", or from the start
    /// when there is no scheme (`user:pw@host:4318`), up to the first '/', '?' or '#'.
    private static func authorityRange(_ url: String) -> Range<String.Index> {
        let start = url.range(of: "://")?.upperBound ?? url.startIndex
        return start..<(url[start...].firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? url.endIndex)
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
                // Not shown: `Authorization: Bearer abc==` splits at the token's own '=', and
                // the "name" printed was the token (a trial).
                throw Invalid(
                    description:
                        "OTEL_EXPORTER_OTLP_HEADERS: an item's name is not an HTTP header name (not shown: it may hold a secret); write name=value items, e.g. Authorization=Bearer%20<token>, with '=' in a value written %3D")
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

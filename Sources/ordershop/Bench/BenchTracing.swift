import ArgumentParser

/// `--tracing` of `bench worker` and `bench latency`: how the measured workers trace.
///
/// The tracer is bootstrapped once per process, so the settings alternate where they can: the
/// worker probes of `bench worker` get theirs in their environment; `bench latency`'s in-process
/// worker gets a tracer of its own per measurement (`withTracer`).
enum BenchTracing: String, ExpressibleByArgument, CaseIterable, Sendable {
    /// As this process's environment says (`OTEL_EXPORTER_OTLP_ENDPOINT`...).
    case env
    /// Propagation only, nothing recorded.
    case off
    /// Every span recorded and exported to an OTLP receiver the bench runs (``OTLPSink``).
    case on
    /// Off then on in each run, the same measurements side by side: figures named
    /// `<figure>.tracing_on_vs_off` have "on" in the ours column and "off" in the peer column.
    case compare

    /// The settings measured in each run, in order (nil: the environment's).
    var settings: [Bool?] {
        switch self {
        case .env: [nil]
        case .off: [false]
        case .on: [true]
        case .compare: [false, true]
        }
    }

    var needsSink: Bool { self == .on || self == .compare }

    /// The variables that make a worker trace so: off turns export off whatever this process's
    /// environment says; on exports every span (always-on sampling, protobuf, as by default) to
    /// `endpoint`.
    static func environment(exporting: Bool?, to endpoint: String?) -> [String: String] {
        switch exporting {
        case nil: return [:]
        case false?: return ["OTEL_TRACES_EXPORTER": "none"]
        case true?:
            guard let endpoint else { preconditionFailure("tracing on without a receiver") }
            return [
                "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint + "/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_SAMPLER": "always_on",
            ]
        }
    }

    /// Runs `body` with the endpoint of a receiver when one is needed.
    func withReceiver<T>(_ body: (OTLPSink?, String?) async throws -> T) async throws -> T {
        guard needsSink else { return try await body(nil, nil) }
        return try await OTLPSink.run { sink, endpoint in try await body(sink, endpoint) }
    }

    /// The figure of one measurement: `name` with tracing off or as the environment says;
    /// `<name>.tracing_on_vs_off` beside the off figure just measured (`off`) when comparing;
    /// `<name>.tracing_on` beside the peer otherwise.
    static func figure(_ name: String, unit: String, value: Double, peer: Double?, exporting: Bool?, off: inout Double?) -> BenchFigure {
        guard exporting == true else {
            if exporting == false { off = value }
            return BenchFigure(name: name, unit: unit, ours: value, peer: peer)
        }
        if let off { return BenchFigure(name: "\(name).tracing_on_vs_off", unit: unit, ours: value, peer: off) }
        return BenchFigure(name: "\(name).tracing_on", unit: unit, ours: value, peer: peer)
    }

    static func label(_ exporting: Bool?) -> String {
        switch exporting {
        case nil: ""
        case false?: ", tracing off"
        case true?: ", tracing on"
        }
    }
}

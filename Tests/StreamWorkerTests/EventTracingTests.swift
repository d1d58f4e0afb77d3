import Logging
import InMemoryTracing
import OTel
import RedisClient
import StreamWorker
import TestSupport
import Testing
import Tracing

/// A span per handling of an entry, with its outcome, and the trace context in the entry's
/// fields. Each test binds its own tracer to the worker's task (`withTracer`), so tests running
/// in parallel do not share one.
@Suite("Tracing: a span per handled event")
struct EventTracingTests {
    @Test("each handling has a consumer span with stream, group, entry id, delivery count and its outcome")
    func spansCarryOutcomes() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{traced}_created"
            // Entity 0 applies, 1 fails once then applies, 2 is malformed; then 0's event again.
            let ids = try await publish(pool, stream: stream, count: 3) { #"{"n":\#($0)}"# }
            try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", ids[0]), StreamField("entity", #"{"n":0}"#)]))
            struct Flaky: Error {}
            let tracer = InMemoryTracer()
            try await withTracer(tracer) {
                let worker = RunningWorker(
                    pool: pool,
                    configuration: .init(lease: .seconds(2), maxDeliveries: 5, retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50))),
                    subscriptions: [
                        Subscription(stream: stream, group: "g") { delivery in
                            let entity = delivery.string("entity") ?? ""
                            if entity.contains("2") { throw MalformedEvent("entity 2 is malformed") }
                            if entity.contains("1"), delivery.deliveryCount == 1 { throw Flaky() }
                            return .done(effects: [["HINCRBY", "effects", RedisArgument(delivery.eventID), "1"]])
                        }
                    ])
                let dlq = DeadLetters(client: pool, stream: stream, group: "g")
                #expect(await eventually {
                    let pending = try await pendingCount(pool, stream: stream, group: "g")
                    let letters = try await dlq.list().count
                    let applied = try await effectCounts(pool, "effects").count
                    return pending == 0 && letters == 1 && applied == 2
                })
                try await worker.stop()
            }
            let spans = tracer.finishedSpans.filter { $0.operationName == "process \(stream)" }
            let entries = try await pool.send(XRANGE(RedisArgument(stream))).map(\.id)
            func outcomes(of entry: String) -> [String] {
                spans.filter { text($0.attributes.get("messaging.message.id")) == entry }.map { text($0.attributes.get("worker.outcome")) ?? "none" }
            }
            // Entries 0 and 3 carry one event: whichever a lane settles first is applied, the other
            // a duplicate (a loaded CI run handled 3 first; both orders are right).
            #expect((outcomes(of: entries[0]) + outcomes(of: entries[3])).sorted() == ["applied", "duplicate"])
            #expect(outcomes(of: entries[1]) == ["retried", "applied"])
            #expect(outcomes(of: entries[2]) == ["dead-lettered"])
            #expect(spans.count == 5)
            for span in spans {
                #expect(span.kind == .consumer)
                #expect(text(span.attributes.get("messaging.destination.name")) == stream)
                #expect(text(span.attributes.get("messaging.consumer.group.name")) == "g")
            }
            let flaky = spans.filter { text($0.attributes.get("messaging.message.id")) == entries[1] }
            #expect(flaky.map { text($0.attributes.get("worker.delivery_count")) } == ["1", "2"])
        }
    }

    @Test("what the runtime logs of a handling (a failure it retries, a dead letter) is logged in that handling's trace")
    func runtimeLogLinesCarryTheHandlingsTrace() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{logged}_created"
            // Entry 0 fails once, then applies; entry 1 is malformed; entry 2 fails every time.
            _ = try await publish(pool, stream: stream, count: 3) { #"{"n":\#($0)}"# }
            struct Flaky: Error {}
            let tracer = InMemoryTracer()
            let log = CapturedLog()
            // As a process's logging bootstrap adds it (the shop's `trace_id`).
            let traceIDs = Logger.MetadataProvider { ServiceContext.current?.inMemorySpanContext.map { ["trace_id": "\($0.traceID)"] } ?? [:] }
            try await withTracer(tracer) {
                let worker = RunningWorker(
                    pool: pool,
                    configuration: .init(lease: .seconds(2), maxDeliveries: 3, retryBackoff: Backoff(initial: .milliseconds(20), maximum: .milliseconds(50))),
                    subscriptions: [
                        Subscription(stream: stream, group: "g") { delivery in
                            let entity = delivery.string("entity") ?? ""
                            if entity.contains("1") { throw MalformedEvent("entity 1 is malformed") }
                            if delivery.deliveryCount == 1 || entity.contains("2") { throw Flaky() }
                            return .done(effects: [["HINCRBY", "effects", RedisArgument(delivery.eventID), "1"]])
                        }
                    ],
                    logger: log.logger(metadataProvider: traceIDs))
                #expect(
                    await eventually {
                        let pending = try await pendingCount(pool, stream: stream, group: "g")
                        let applied = try await effectCounts(pool, "effects").count
                        return pending == 0 && applied == 1
                    })
                try await worker.stop()
            }
            let entries = try await pool.send(XRANGE(RedisArgument(stream))).map(\.id)
            let spans = tracer.finishedSpans.filter { $0.operationName == "process \(stream)" }
            func traces(of entry: String, outcome: String) -> Set<String> {
                Set(spans.filter { text($0.attributes.get("messaging.message.id")) == entry && text($0.attributes.get("worker.outcome")) == outcome }.map(\.spanContext.traceID))
            }
            let lines = log.lines.withLock { $0 }
            func traceID(of message: String) -> String? {
                lines.first { $0.message == message }?.metadata["trace_id"].map { "\($0)" }
            }
            // Rate-limited to one line per subscription: entry 0's first failure or entry 2's,
            // whichever came first, in the trace of that failed handling.
            let retriedLine = try #require(lines.first { $0.message == "handler failed; will retry" }, "\(lines)")
            let retriedEntry = "\(retriedLine.metadata["id"] ?? "")"
            let retried = try #require(retriedLine.metadata["trace_id"].map { "\($0)" }, "\(lines)")
            #expect([entries[0], entries[2]].contains(retriedEntry) && traces(of: retriedEntry, outcome: "retried").contains(retried), "\(lines)")
            let dead = try #require(traceID(of: "invalid entry; moving it to the dead letters"), "\(lines)")
            #expect(traces(of: entries[1], outcome: "dead-lettered") == [dead], "\(lines)")
            // The last failure is an error line, in the last handling's trace.
            let last = try #require(traceID(of: "handler failed its last delivery; moving the entry to the dead letters"), "\(lines)")
            #expect(traces(of: entries[2], outcome: "dead-lettered") == [last], "\(lines)")
        }
    }

    @Test("a worker's span continues the trace in the entry's traceparent; without one, or with a malformed one, the entry is handled in a new trace")
    func traceContextFromFields() async throws {
        try await withRedisServer { server in
            let pool = try server.makePool()
            let stream = "events:{context}_created"
            let upstream = "0af7651916cd43dd8448eb211c80319c"
            let cases: [(name: String, fields: [StreamField])] = [
                ("none", []),
                ("valid", [StreamField("traceparent", "00-\(upstream)-b7ad6b7169203331-01"), StreamField("tracestate", "shop=1")]),
                ("malformed", [StreamField("traceparent", "00-not-a-trace-context-01")]),
                ("malformed ids", [StreamField("traceparent", "00-\(String(repeating: "0", count: 32))-\(String(repeating: "0", count: 16))-01")]),
            ]
            for c in cases {
                try await pool.send(XADD(RedisArgument(stream), fields: [StreamField("event_id", c.name), StreamField("entity", "{}")] + c.fields))
            }
            // swift-otel's tracer as the shop exports with it (its W3C propagator), dropping root
            // spans as a sampler may: the context still reaches the handler.
            var configuration = OTel.Configuration.default
            configuration.logs.enabled = false
            configuration.metrics.enabled = false
            configuration.propagators = [.traceContext]
            configuration.traces.exporter = .none
            configuration.traces.sampler = .parentBasedAlwaysOff
            configuration.diagnosticLogLevel = .error
            let backend = try OTel.makeTracingBackend(configuration: configuration)
            let seen = LockedValue<[String: [String?]]>([:])
            try await withTracer(backend.factory) {
                let worker = RunningWorker(
                    pool: pool, configuration: .init(lease: .seconds(2)),
                    subscriptions: [
                        Subscription(stream: stream, group: "g") { delivery in
                            seen.withLock { $0[delivery.eventID, default: []].append(ServiceContext.current?.otelTraceID) }
                            return .done(effects: [["HINCRBY", "effects", RedisArgument(delivery.eventID), "1"]])
                        }
                    ])
                #expect(await eventually { try await effectCounts(pool, "effects").count == cases.count })
                try await worker.stop()
            }
            #expect(try await DeadLetters(client: pool, stream: stream, group: "g").list().isEmpty)
            #expect(try await effectCounts(pool, "effects") == Dictionary(uniqueKeysWithValues: cases.map { ($0.name, 1) }))
            let traces = seen.withLock { $0 }
            // Each handled once, in a trace: the upstream one, else one of its own.
            #expect(traces.values.allSatisfy { $0.count == 1 && $0[0]?.count == 32 }, "\(traces)")
            #expect(traces["valid"]?.first == upstream)
            let own = cases.map(\.name).filter { $0 != "valid" }.compactMap { traces[$0]?.first ?? nil }
            #expect(Set(own).count == 3, "\(traces)")
            #expect(!own.contains(upstream))
            // An all-zero trace id is invalid (W3C): not continued either.
            #expect(!own.contains(String(repeating: "0", count: 32)), "\(traces)")
        }
    }
}

/// An attribute as text (strings and integers).
private func text(_ attribute: SpanAttribute?) -> String? {
    switch attribute {
    case .string(let s): s
    case .int64(let n): "\(n)"
    case .int32(let n): "\(n)"
    default: nil
    }
}

import AsyncHTTPClient
import FaultProxy
import Foundation
import Logging
import NIOCore
@testable import OrderShop
import ServiceLifecycle
import StreamWorker
import Synchronization
import TestSupport
import Testing
import Tracing

/// The tracer of a process that exports: sampled spans recorded and sent over OTLP/HTTP, the
/// others only carrying their context on.
@Suite struct RecordingTracerTests {
    struct Headers: Extractor, Injector {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    private func makeTracer(_ sampler: TraceSampler, endpoint: String = "http://127.0.0.1:9/v1/traces", json: Bool = false) -> RecordingTracer {
        var logger = Logger(label: "recording-tracer-tests")
        logger.logLevel = .warning
        let settings = OTLPSpanExporter.Settings(
            endpoint: endpoint, json: json, scheduleDelay: .milliseconds(50), header: .init(resource: [("service.name", "tests")], scope: "tests"))
        return RecordingTracer(sampler: sampler, exporter: OTLPSpanExporter(settings: settings, logger: logger))
    }

    @Test("a span the sampler drops records nothing, and still carries the caller's trace id, with a span id of its own, to what it injects")
    func unsampledSpanPropagates() throws {
        let tracer = makeTracer(.default)
        var context = ServiceContext.topLevel
        // Not sampled upstream: parent-based sampling drops the child.
        tracer.extract(["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"], into: &context, using: Headers())
        let span = tracer.startSpan("op", context: context)
        #expect(!span.isRecording)
        span.attributes["a"] = "b"
        span.end()
        #expect(tracer.exporter.queued == 0)
        var out: [String: String] = [:]
        tracer.inject(span.context, into: &out, using: Headers())
        let parts = (out["traceparent"] ?? "").split(separator: "-").map(String.init)
        #expect(parts.count == 4 && parts[1] == "0af7651916cd43dd8448eb211c80319c" && parts[3] == "00", "\(out)")
        #expect(parts.count == 4 && parts[2].count == 16 && parts[2] != "b7ad6b7169203331", "\(out)")

        // A root span the ratio drops: a new trace all the same.
        let ratio = makeTracer(try #require(TraceSampler(name: "traceidratio", argument: "0")))
        let root = ratio.startSpan("root", context: .topLevel)
        #expect(!root.isRecording && root.context.w3cTrace != nil)
        root.end()
        #expect(ratio.exporter.queued == 0)
    }

    @Test("a sampled span is recorded once, with its parent, and its children are sampled with it")
    func sampledSpanIsQueued() throws {
        let tracer = makeTracer(try #require(TraceSampler(name: "parentbased_always_off", argument: nil)))
        var context = ServiceContext.topLevel
        tracer.extract(["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], into: &context, using: Headers())
        let span = tracer.startSpan("op", context: context, ofKind: .consumer)
        #expect(span.isRecording)
        let child = tracer.startSpan("child", context: span.context)
        #expect(child.isRecording && child.context.w3cTrace?.flags == 1)
        span.end()
        span.end()
        #expect(!span.isRecording)
        #expect(tracer.exporter.queued == 1)
        // Without a parent, parentbased_always_off drops.
        #expect(!tracer.startSpan("root", context: .topLevel).isRecording)
    }

    /// Why `environment`'s settings were refused; nil when they were taken.
    private func refusal(_ environment: [String: String]) -> String? {
        do {
            _ = try OTLPSettings.resolve(serviceName: "svc", environment: environment)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("sampler names and ratios", arguments: [
        ("always_on", nil, TraceSampler(root: .always, parentBased: false)),
        ("parentbased_always_on", nil, TraceSampler.default),
        ("parentbased_traceidratio", "0.5", TraceSampler(root: .below(1 << 63), parentBased: true)),
        ("traceidratio", "1", TraceSampler(root: .always, parentBased: false)),
        ("always_off", nil, TraceSampler(root: .never, parentBased: false)),
        ("jaeger_remote", nil, nil),
    ] as [(String, String?, TraceSampler?)])
    func samplerNames(name: String, argument: String?, expected: TraceSampler?) {
        #expect(TraceSampler(name: name, argument: argument) == expected)
    }

    /// From a trial of bad OTEL_* values: each is refused at start or said and replaced, never
    /// taken as it is, and a secret in them is not shown.
    @Test("bad tracing settings: a port past 65535 and a header name holding a token are refused without showing secrets; a huge queue, a ratio that is not one and an unknown sampler are said and replaced")
    func badSettingsAreRefusedOrReplaced() throws {
        let port = refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:PASSWORD99@127.0.0.1:99999"])
        #expect(port?.contains("port '99999'") == true && port?.contains("PASSWORD99") == false, "\(port ?? "accepted")")
        // Too large for a number, or empty: Foundation saw no port, and export went to port 80.
        for endpoint in ["http://127.0.0.1:99999999999999999999", "http://127.0.0.1:", "http://[::1]:0"] {
            #expect(refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint])?.contains("is not a TCP port") == true, "\(endpoint)")
        }
        for endpoint in ["http://c:4318", "http://[::1]:4318/", "https://user:p%3Aw@c/base"] {
            #expect(refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": endpoint]) == nil, "\(endpoint)")
        }
        let url = refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:PASSWORD99@[::1"])
        #expect(url != nil && url?.contains("PASSWORD99") == false, "\(url ?? "accepted")")
        let header = refusal(["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_HEADERS": "Authorization: Bearer SECRET123=="])
        #expect(header != nil && header?.contains("SECRET123") == false, "\(header ?? "accepted")")
        #expect(OTLPSettings.redacted("http://user:pw@host:1/p?q=a@b") == "http://***@host:1/p?q=a@b")
        #expect(OTLPSettings.redacted("user:pw@host:4318/v1/traces") == "***@host:4318/v1/traces")

        for (ratio, expected) in [("-1", TraceSampler.Root.always), ("nan", .always), ("abc", .always), ("2", .always), ("0", .never)] {
            let resolved = try #require(
                try OTLPSettings.resolve(
                    serviceName: "svc",
                    environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio]))
            #expect(resolved.sampler.root == expected, "\(ratio)")
            #expect(resolved.ignored.contains { $0.contains("OTEL_TRACES_SAMPLER_ARG=\(ratio)") } == (ratio != "0"), "\(ratio): \(resolved.ignored)")
        }
        let unknown = try #require(
            try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_SAMPLER": "foo"]))
        #expect(unknown.sampler == .default && unknown.ignored.contains { $0.contains("OTEL_TRACES_SAMPLER=foo") }, "\(unknown.ignored)")
        let huge = try #require(
            try OTLPSettings.resolve(
                serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_BSP_MAX_QUEUE_SIZE": "1000000000000"]))
        #expect(huge.exporter.maxQueueSize == OTLPSpanExporter.Settings.largestQueue && huge.ignored.count == 1, "\(huge.ignored)")
        let query = try #require(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/base/?x=1"]))
        #expect(query.exporter.endpoint == "http://c:4318/base/v1/traces?x=1", "\(query.exporter.endpoint)")
    }

    @Test("the environment: the endpoint, protocol and batch variables; settings only swift-otel has leave it to swift-otel")
    func settingsFromEnvironment() throws {
        let base = try #require(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"]))
        #expect(base.exporter.endpoint == "http://collector:4318/v1/traces" && !base.exporter.json && base.sampler == .default)
        #expect(base.exporter.header.resource.first! == ("service.name", "svc"))
        let set = try #require(
            try OTLPSettings.resolve(
                serviceName: "svc",
                environment: [
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
                    "OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x=y", "OTEL_SERVICE_NAME": "named", "OTEL_BSP_MAX_QUEUE_SIZE": "100",
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512", "OTEL_BSP_SCHEDULE_DELAY": "100",
                ]))
        #expect(set.exporter.endpoint == "https://c/traces" && set.exporter.json)
        #expect(set.exporter.headers.map { "\($0)=\($1)" } == ["api-key=a b", "x=y"])
        #expect(set.exporter.header.resource.first! == ("service.name", "named"))
        #expect(set.exporter.maxQueueSize == 100 && set.exporter.maxExportBatchSize == 100 && set.exporter.scheduleDelay == .milliseconds(100))
        #expect(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca.pem"]) == nil)
        // swift-otel stops the process for these (a review): refused at start instead.
        for remote in ["xray", "jaeger_remote"] {
            #expect(refusal(["OTEL_TRACES_SAMPLER": remote])?.contains("not available here") == true, "\(remote)")
        }
        #expect(throws: OTLPSettings.Invalid.self) { try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_EXPORTER_OTLP_ENDPOINT": "collector"]) }
    }

    @Test("settings swift-otel would stop the process for, and headers that cannot be sent, are refused with one line; baggage is accepted")
    func settingsThatCannotWork() throws {
        // swift-otel ended these with a fatal error (SIGILL at start).
        #expect(refusal(["OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"])?.contains("OTLP/gRPC is not built in") == true)
        #expect(refusal(["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"]) != nil)
        #expect(refusal(["OTEL_PROPAGATORS": "b3"])?.contains("b3 is not supported") == true)
        #expect(refusal(["OTEL_EXPORTER_OTLP_PROTOCOL": "foo"])?.contains("http/protobuf or http/json") == true)
        // The specification's default and the operator's: trace context, and baggage not carried.
        #expect(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_PROPAGATORS": "tracecontext,baggage"]) != nil)
        #expect(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_PROPAGATORS": "tracecontext"]) != nil)

        let token = "Bearer SEKRIT-TOKEN-123"
        let carriageReturn = refusal(["OTEL_EXPORTER_OTLP_HEADERS": "authorization=\(token.replacingOccurrences(of: " ", with: "%20"))\r"])
        #expect(carriageReturn?.contains("the value of authorization holds a control character") == true, "\(String(describing: carriageReturn))")
        #expect(carriageReturn?.contains("SEKRIT") == false)
        #expect(refusal(["OTEL_EXPORTER_OTLP_HEADERS": "garbage"])?.contains("not key=value") == true)
        #expect(refusal(["OTEL_EXPORTER_OTLP_HEADERS": "bad name=1"])?.contains("is not an HTTP header name") == true)
        #expect(refusal(["OTEL_EXPORTER_OTLP_HEADERS": "api-key=a%20b,x=y"]) == nil)
        #expect(refusal(["OTEL_EXPORTER_OTLP_HEADERS": "k=v, "]) == nil)

        // Numbers that cannot be taken: said, and the defaults used.
        let odd = try #require(
            try OTLPSettings.resolve(
                serviceName: "svc", environment: ["OTEL_BSP_MAX_QUEUE_SIZE": "0", "OTEL_EXPORTER_OTLP_TIMEOUT": "abc", "OTEL_BSP_SCHEDULE_DELAY": "-1"]))
        #expect(odd.ignored.count == 3, "\(odd.ignored)")
        #expect(odd.ignored.contains("OTEL_BSP_MAX_QUEUE_SIZE=0 is not a whole number above 0; the default is used"), "\(odd.ignored)")
        #expect(odd.exporter.maxQueueSize == 32768 && odd.exporter.timeout == .seconds(10) && odd.exporter.scheduleDelay == .seconds(5))
        #expect(try OTLPSettings.resolve(serviceName: "svc", environment: ["OTEL_BSP_MAX_QUEUE_SIZE": "100"])?.ignored.isEmpty == true)
    }

    @Test("OTEL_SDK_DISABLED=true turns export off, whatever the endpoint")
    func sdkDisabled() {
        let endpoint = ["OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"]
        #expect(ShopTracing.exports(endpoint))
        #expect(!ShopTracing.exports(endpoint.merging(["OTEL_SDK_DISABLED": "true"]) { $1 }))
        #expect(!ShopTracing.exports(endpoint.merging(["OTEL_SDK_DISABLED": "TRUE"]) { $1 }))
        #expect(ShopTracing.exports(endpoint.merging(["OTEL_SDK_DISABLED": "false"]) { $1 }))
    }

    /// Runs an exporter of 100 spans in batches of 10 (one round, woken by the first full batch)
    /// against `endpoint` until `done` says so, and returns its log lines.
    func exportOneRound(
        to endpoint: String, timeout: Duration = .seconds(10), retry: OTLPExportRetry = .init(), until done: @escaping @Sendable ([String]) -> Bool
    ) async throws -> [String] {
        try await exportOneRoundAndStop(to: endpoint, timeout: timeout, retry: retry, until: done).lines
    }

    /// ``exportOneRound(to:timeout:retry:until:)``, and how long the exporter's stop took.
    func exportOneRoundAndStop(
        to endpoint: String, timeout: Duration = .seconds(10), retry: OTLPExportRetry = .init(), until done: @escaping @Sendable ([String]) -> Bool
    ) async throws -> (lines: [String], stop: Duration) {
        let lines = LogCapture()
        var logger = Logger(label: "capture") { _ in lines }
        logger.logLevel = .warning
        let settings = OTLPSpanExporter.Settings(
            endpoint: endpoint, json: true, timeout: timeout, scheduleDelay: .seconds(600), maxExportBatchSize: 10,
            header: .init(resource: [("service.name", "tests")], scope: "tests"), retry: retry)
        let tracer = RecordingTracer(sampler: .default, exporter: OTLPSpanExporter(settings: settings, logger: logger))
        for i in 0..<100 { tracer.startSpan("span \(i)", context: .topLevel).end() }
        let group = ServiceGroup(services: [tracer.exporter], logger: logger)
        let running = Task { try await group.run() }
        // 60 s: in a full suite on 2 cores one run of the 503 case got 20 of its 30 requests
        // in 20 s (3.6 s alone); the round ends as soon as `done` holds.
        let finished = await eventually(timeout: .seconds(60)) { done(lines.messages) }
        let stopping = ContinuousClock.now
        await group.triggerGracefulShutdown()
        _ = await running.result
        let stop = stopping.duration(to: .now)
        #expect(finished, "\(lines.messages)")
        return (lines.messages, stop)
    }

    @Test("a collector that answers 500 gets every batch, and the trouble is said once, with its answer")
    func aRefusingCollectorIsSaidOnce() async throws {
        try await OTLPReceiver.run(failing: true) { receiver, port in
            let lines = try await exportOneRound(to: "http://127.0.0.1:\(port)/v1/traces") { _ in receiver.requests == 10 }
            // Ten requests, one line (there was one per request).
            #expect(receiver.requests == 10)
            let said = lines.filter { $0.contains("span export") }
            #expect(said == ["span export failing; reported again in a minute at most"], "\(lines)")
        }
    }

    @Test("a collector that answers 429 with Retry-After gets the same batch again once that time has passed, and no span is lost")
    func aThrottlingCollectorGetsTheBatchAgain() async throws {
        let arrivals = Mutex<[ContinuousClock.Instant]>([])
        try await OTLPReceiver.run(refusing: { n in
            arrivals.withLock { $0.append(.now) }
            return n == 1 ? .init(status: .tooManyRequests, retryAfter: "1") : nil
        }) { receiver, port in
            let lines = try await exportOneRound(to: "http://127.0.0.1:\(port)/v1/traces") { _ in receiver.spans.count == 100 }
            // Eleven requests: the first batch twice. Before, ten, and the first batch's spans lost.
            #expect(receiver.requests == 11)
            #expect(Set(receiver.spans.map(\.name)) == Set((0..<100).map { "span \($0)" }))
            let times = arrivals.withLock { $0 }
            #expect(times.count == 11 && times[0].duration(to: times[1]) >= .milliseconds(950), "the retry came before the Retry-After")
            #expect(!lines.contains { $0.contains("span export failing") }, "\(lines)")
            #expect(lines.contains("the collector asked to send spans later; they were sent again"), "\(lines)")
        }
    }

    @Test("a collector that keeps answering 503 gets each batch its attempts, then the spans are said lost, with its answer")
    func anOverloadedCollectorGetsEachBatchItsAttempts() async throws {
        try await OTLPReceiver.run(refusing: { _ in .init(status: .serviceUnavailable) }) { receiver, port in
            let retry = OTLPExportRetry(maxAttempts: 3, baseDelay: .milliseconds(10), maxDelay: .milliseconds(50))
            let lines = try await exportOneRound(to: "http://127.0.0.1:\(port)/v1/traces", retry: retry) { lines in
                lines.contains { $0.contains("span export failing") }
            }
            #expect(receiver.requests == 30)
            #expect(receiver.spans.isEmpty)
            #expect(lines.filter { $0.contains("span export failing") }.count == 1, "\(lines)")
        }
    }

    @Test("a stop while the collector asks for a long wait does not wait for it: the batches have one more try within the stop's 3 s")
    func aStopEndsTheWaitForACollector() async throws {
        try await OTLPReceiver.run(refusing: { _ in .init(status: .tooManyRequests, retryAfter: "600") }) { receiver, port in
            // Shut down as soon as the first request was refused: the exporter is then waiting
            // (600 s asked, 30 s at most), and each of the round's ten batches would wait too.
            // The stop alone is timed: from the start, one run took 25.05 s at a load average of 19.
            let (_, stop) = try await exportOneRoundAndStop(to: "http://127.0.0.1:\(port)/v1/traces") { _ in receiver.requests >= 1 }
            // Waiting for the collector, the stop would take 30 s (the longest wait taken). The
            // batches then get one more try each as far as the stop's 3 s go (alone: all ten;
            // in a loaded full suite one run's retry came more than 3 s after the stop).
            #expect(stop < .seconds(20), "the stop waited for the collector: \(stop)")
        }
    }

    /// Runs an exporter of batches of 10 with `spans` spans ended, to a collector that takes the
    /// connection and never answers (a proxy that holds what it gets), until the first request
    /// hangs; then `whileHanging`, a stop, and `afterStop` with the proxy.
    private func withAHangingRequest(
        scheduleDelay: Duration, maxQueueSize: Int = 32768, spans: Int, whileHanging: (RecordingTracer) async throws -> Void,
        afterStop: (TCPProxy) -> Void
    ) async throws {
        try await OTLPReceiver.run { receiver, port in
            let proxy = try TCPProxy(targetPort: port)
            defer { proxy.stop() }
            proxy.stall(for: .seconds(120))
            let lines = LogCapture()
            let settings = OTLPSpanExporter.Settings(
                endpoint: "http://127.0.0.1:\(proxy.port)/v1/traces", json: true, timeout: .seconds(60), scheduleDelay: scheduleDelay,
                maxQueueSize: maxQueueSize, maxExportBatchSize: 10, header: .init(resource: [("service.name", "tests")], scope: "tests"))
            let tracer = RecordingTracer(sampler: .default, exporter: OTLPSpanExporter(settings: settings, logger: Logger(label: "capture") { _ in lines }))
            for i in 0..<spans { tracer.startSpan("span \(i)", context: .topLevel).end() }
            let group = ServiceGroup(services: [tracer.exporter], logger: Logger(label: "capture") { _ in lines })
            let running = Task { try await group.run() }
            #expect(await eventually(timeout: .seconds(60)) { proxy.counts.accepted >= 1 && tracer.exporter.queued == 0 })
            try await whileHanging(tracer)
            await group.triggerGracefulShutdown()
            _ = await running.result
            afterStop(proxy)
            _ = receiver
        }
    }

    @Test("after a stop cut a request, no other is sent, though spans ended meanwhile and a wake-up waits")
    func nothingIsSentAfterTheCut() async throws {
        try await withAHangingRequest(scheduleDelay: .milliseconds(200), spans: 10) { tracer in
            // Spans end while the request hangs, and the schedule's wake-up is queued.
            for i in 10..<30 { tracer.startSpan("span \(i)", context: .topLevel).end() }
            try await Task.sleep(for: .milliseconds(500))
        } afterStop: { proxy in
            #expect(proxy.counts.accepted == 1, "\(proxy.counts)")
        }
    }

    /// A trial's collector answered each request within 3 s (2.5 s): every batch got 3 s of its
    /// own after the stop, and a stop took 20-30 s. The stop now gives export 3 s in all.
    @Test("a stop gives export 3 s in all, not 3 s per request: a slow collector gets a few of the round's batches, not all")
    func aStopGivesExportThreeSecondsInAll() async throws {
        try await OTLPReceiver.run(refusing: { _ in nil }, answerDelay: .milliseconds(1500)) { receiver, port in
            let (lines, _) = try await exportOneRoundAndStop(to: "http://127.0.0.1:\(port)/v1/traces") { _ in receiver.requests >= 1 }
            // Ten batches of 1.5 s each: sent one after another, the stop waited for all ten.
            #expect(receiver.requests <= 5, "\(receiver.requests) requests")
            #expect(lines.contains { $0.contains("not exported") || $0.contains("span export failing") }, "\(lines)")
        }
    }

    /// A 200 whose body was more than the 2 MB collected was taken for no collector at all: its
    /// spans said lost and the round's other batches dropped (a trial's collector said 50 MB).
    @Test("a collector's 200 with a large body is a success: every batch is sent and nothing is said lost")
    func aLongAnswerIsStillASuccess() async throws {
        try await OTLPReceiver.run(refusing: { _ in nil }, answerBytes: 3 << 20) { receiver, port in
            let lines = try await exportOneRound(to: "http://127.0.0.1:\(port)/v1/traces") { _ in receiver.spans.count == 100 }
            #expect(receiver.requests == 10)
            #expect(!lines.contains { $0.contains("span export failing") || $0.contains("not exported") }, "\(lines)")
        }
    }

    /// The answer's body is read for at most the request's timeout and 4 MB: read to its end, a
    /// collector that kept sending (or stalled after its head) would hold the export for ever,
    /// AsyncHTTPClient's deadline ending at the head (a review).
    @Test("an answer's body is read within bounds: an endless body and a stalled one both end the read")
    func answerBodiesAreReadWithinBounds() async throws {
        let endless = AsyncStream<ByteBuffer>(unfolding: { ByteBuffer(repeating: UInt8(ascii: "x"), count: 1 << 20) })
        let stalled = AsyncStream<ByteBuffer>(unfolding: {
            do { try await Task.sleep(for: .seconds(3600)) } catch {}
            return nil
        })
        for (name, body) in [("endless", HTTPClientResponse.Body.stream(endless)), ("stalled", .stream(stalled))] {
            let response = HTTPClientResponse(status: .ok, body: body)
            let read: ByteBuffer? = await withTaskGroup(of: ByteBuffer?.self) { group in
                group.addTask { await OTLPSpanExporter.answerStart(of: response, within: .milliseconds(500)) }
                group.addTask {
                    do { try await Task.sleep(for: .seconds(60)) } catch {}
                    return nil
                }
                let first = await group.next() ?? nil
                group.cancelAll()
                return first
            }
            let start = try #require(read, "\(name): the read did not end")
            #expect(start.readableBytes <= OTLPSpanExporter.answerKept, "\(name)")
        }
    }

    /// Spans taken for a round count against the queue's size until sent: a round of a full
    /// queue retried against a collector answering 503 held twice the queue (59,392 spans of
    /// 32,768, a trial).
    @Test("spans taken for export count against the queue until sent: while a round hangs, new spans beyond the queue's size are dropped")
    func takenSpansCountAgainstTheQueue() async throws {
        // The round takes all twenty and hangs on its first request.
        try await withAHangingRequest(scheduleDelay: .milliseconds(100), maxQueueSize: 20, spans: 20) { tracer in
            for i in 20..<40 { tracer.startSpan("span \(i)", context: .topLevel).end() }
            // The round still holds its twenty: the batch in its request aside, ten count, so ten
            // more are queued, not twenty (before, the queue took twenty beside them).
            #expect(tracer.exporter.queued == 10, "\(tracer.exporter.queued) queued")
        } afterStop: { _ in }
    }

    @Test("Retry-After: seconds or an HTTP date; the wait is capped, and without one it doubles from the base")
    func retryAfterValues() throws {
        let now = try #require(ISO8601DateFormatter().date(from: "2026-12-05T12:00:00Z"))
        #expect(OTLPExportRetry.retryAfter("7") == .seconds(7))
        #expect(OTLPExportRetry.retryAfter(" 0 ") == .zero)
        #expect(OTLPExportRetry.retryAfter("Sat, 05 Dec 2026 12:00:20 GMT", now: now) == .seconds(20))
        #expect(OTLPExportRetry.retryAfter("Sat, 05 Dec 2026 11:00:00 GMT", now: now) == .zero)
        #expect(OTLPExportRetry.retryAfter("-3") == nil && OTLPExportRetry.retryAfter("soon") == nil && OTLPExportRetry.retryAfter(nil) == nil)
        let retry = OTLPExportRetry(maxAttempts: 5, baseDelay: .seconds(1), maxDelay: .seconds(30))
        #expect(retry.delay(afterAttempt: 1, retryAfter: .seconds(600)) == .seconds(30))
        #expect(retry.delay(afterAttempt: 2, retryAfter: .seconds(3)) == .seconds(3))
        let third = try #require(retry.delay(afterAttempt: 3, retryAfter: nil))
        #expect(third >= .milliseconds(3600) && third <= .milliseconds(4400))
        #expect(retry.delay(afterAttempt: 5, retryAfter: nil) == nil)
        #expect(OTLPExportRetry.isRetryable(429) && OTLPExportRetry.isRetryable(504) && !OTLPExportRetry.isRetryable(500) && !OTLPExportRetry.isRetryable(413))
    }

    @Test("a collector that does not answer: after the first request of a round times out, the round's other batches are not sent")
    func anUnansweringCollectorGetsOneRequestPerRound() async throws {
        try await OTLPReceiver.run { receiver, port in
            // A collector that takes the connection and never answers (the proxy holds what it gets).
            let proxy = try TCPProxy(targetPort: port)
            defer { proxy.stop() }
            proxy.stall(for: .seconds(120))
            let lines = try await exportOneRound(to: "http://127.0.0.1:\(proxy.port)/v1/traces", timeout: .milliseconds(500)) { lines in
                lines.contains { $0.contains("span export failing") }
            }
            // One connection, one request, not ten (each waited out its timeout: a stop with
            // the collector away took ~20 s).
            #expect(proxy.counts.accepted == 1, "\(proxy.counts)")
            #expect(lines.filter { $0.contains("span export") }.count == 1, "\(lines)")
            _ = receiver
        }
    }

    @Test("export trouble is reported at once, then at most once a minute, and at shutdown; a new outage after a recovery at once; every problem named with its spans")
    func troubleIsReportedOnceAMinute() {
        let lines = LogCapture()
        var logger = Logger(label: "capture") { _ in lines }
        logger.logLevel = .info
        var trouble = ExportTrouble()
        let start = ContinuousClock.now
        trouble.failed(2048, "the collector answered 500")
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start)
        trouble.failed(2048, "the collector answered 500")
        trouble.dropped += 7
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(30))
        #expect(lines.messages == ["span export failing; reported again in a minute at most"])
        // A 502 retried with success, after the 500s: both named, each with what it lost.
        trouble.retried("the collector answered 502")
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(61))
        #expect(lines.messages.count == 2)
        #expect(lines.entries.last?.metadata["error"] == "the collector answered 500 (2048 spans not exported); the collector answered 502 (0 spans not exported)")
        trouble.succeeded()
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(125))
        #expect(lines.messages.last == "span export works again" && lines.entries.last?.level == .info)
        // A new outage a second after the recovery's line: said at once (it waited the minute).
        trouble.failed(10, "connection refused")
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(126))
        #expect(lines.messages.count == 4 && lines.messages.last == "span export failing; reported again in a minute at most")
        trouble.failed(10, "connection refused")
        trouble.report(logger, endpoint: "http://c/v1/traces", final: true, now: start + .seconds(127))
        #expect(lines.messages.last == "spans not exported at shutdown: the collector did not take them")
        trouble.report(logger, endpoint: "http://c/v1/traces", final: true, now: start + .seconds(128))
        #expect(lines.messages.count == 5)
        // At most four problems named; the rest counted together.
        for i in 0..<7 { trouble.failed(1, "problem \(i)") }
        #expect(trouble.problems.map(\.problem) == ["problem 0", "problem 1", "problem 2", "problem 3", "other"] && trouble.problems.last?.spans == 3)
    }

    @Test("a collector that fails one request of each round and takes the others is said once a minute, not once a round")
    func mixedFailuresAreSaidOnceAMinute() {
        let lines = LogCapture()
        var logger = Logger(label: "capture") { _ in lines }
        logger.logLevel = .info
        var trouble = ExportTrouble()
        let start = ContinuousClock.now
        for round in 0..<12 {
            trouble.failed(2048, "the collector answered 413")
            trouble.succeeded()
            trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(5 * round))
        }
        #expect(lines.messages == ["span export failing; reported again in a minute at most"], "\(lines.messages)")
        trouble.failed(2048, "the collector answered 413")
        trouble.succeeded()
        trouble.report(logger, endpoint: "http://c/v1/traces", final: false, now: start + .seconds(61))
        #expect(lines.messages.count == 2 && lines.entries.last?.metadata["not_exported"] == "\(2048 * 12)", "\(lines.entries.map(\.metadata))")
    }

    @Test("a stop while a request waits for a collector that does not answer cuts it after 3 s, and sends nothing more")
    func aStopCutsARequestToAHangingCollector() async throws {
        try await OTLPReceiver.run { receiver, port in
            let proxy = try TCPProxy(targetPort: port)
            defer { proxy.stop() }
            proxy.stall(for: .seconds(120))
            // The request's own timeout is 60 s: before, the stop waited it out, then the
            // export at shutdown tried again. The stop alone is timed (from the start, a loaded
            // full-suite run took 20.4 s).
            let (lines, stop) = try await exportOneRoundAndStop(to: "http://127.0.0.1:\(proxy.port)/v1/traces", timeout: .seconds(60)) { _ in
                proxy.counts.accepted >= 1
            }
            #expect(stop < .seconds(20), "the stop waited for the collector: \(stop)")
            #expect(proxy.counts.accepted == 1, "\(proxy.counts)")
            #expect(lines == ["span export failing; reported again in a minute at most"], "\(lines)")
            _ = receiver
        }
    }

    @Test("spans reach a receiver over OTLP/HTTP JSON: ids, parent, kind, attributes of each type, status and events")
    func exportsJSON() async throws {
        try await OTLPReceiver.run { receiver, port in
            let tracer = makeTracer(.default, endpoint: "http://127.0.0.1:\(port)/v1/traces", json: true)
            var logger = Logger(label: "recording-tracer-tests")
            logger.logLevel = .warning
            let group = ServiceGroup(services: [tracer.exporter], logger: logger)
            let running = Task { try await group.run() }
            let parent = tracer.startSpan("parent", context: .topLevel, ofKind: .server)
            let child = tracer.startSpan("child \"quoted\"", context: parent.context, ofKind: .consumer)
            child.updateAttributes { a in
                a["s"] = "text"
                a["i"] = 42
                a["b"] = true
                a["d"] = 1.5
                a["list"] = ["x", "y"]
            }
            child.recordError(TestFailure("boom"))
            child.setStatus(SpanStatus(code: .error, message: "failed"))
            child.end()
            parent.end()
            let received = await eventually(timeout: .seconds(60)) { receiver.spans.count >= 2 }
            await group.triggerGracefulShutdown()
            _ = await running.result
            #expect(received, "\(receiver.spans) \(receiver.refusals)")
            let spans = receiver.spans
            let p = try #require(spans.first { $0.name == "parent" })
            let c = try #require(spans.first { $0.name == "child \"quoted\"" })
            #expect(p.traceID == parent.context.w3cTrace?.traceIDHex && c.traceID == p.traceID)
            #expect(c.parentSpanID == p.spanID && p.parentSpanID.isEmpty && p.service == "tests")
            #expect(c.attributes["s"] == "text" && c.attributes["i"] == "42" && c.attributes["b"] == "true", "\(c)")
        }
    }

    @Test("the protobuf encoding: a request of one resource, one scope and the spans, with their ids, parent, name, kind and attributes")
    func protobufLayout() throws {
        let trace = W3CTrace(traceHigh: 0x0af7_6519_16cd_43dd, traceLow: 0x8448_eb21_1c80_319c, spanID: 0x1122_3344_5566_7788, flags: 1, state: nil)
        let span = FinishedSpan(
            trace: trace, parentSpanID: 0xb7ad_6b71_6920_3331, name: "process s", kind: .consumer, startNanoseconds: 1, endNanoseconds: 2,
            attributes: ["k": "v", "n": 7], status: nil, events: [], links: [])
        let bytes = OTLPEncoding.protobuf([span, span], header: .init(resource: [("service.name", "svc")], scope: "scope"))
        let request = try ProtoFields(bytes)
        let resourceSpans = try ProtoFields(try #require(request.all(1).first))
        let resource = try ProtoFields(try #require(resourceSpans.all(1).first))
        let serviceName = try ProtoFields(try #require(resource.all(1).first))
        #expect(serviceName.string(1) == "service.name")
        let scopeSpans = try ProtoFields(try #require(resourceSpans.all(2).first))
        #expect(try ProtoFields(try #require(scopeSpans.all(1).first)).string(1) == "scope")
        let encoded = scopeSpans.all(2)
        #expect(encoded.count == 2)
        let s = try ProtoFields(try #require(encoded.first))
        #expect(s.all(1).first == [0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c])
        #expect(s.all(2).first == [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        #expect(s.all(4).first == [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31])
        #expect(s.string(5) == "process s" && s.varints[6] == 5)
        var attributes: [String: [UInt8]] = [:]
        for kv in s.all(9) {
            let pair = try ProtoFields(kv)
            attributes[pair.string(1) ?? ""] = pair.all(2).first
        }
        // AnyValue: string_value (field 1) "v"; int_value (field 3) 7.
        #expect(attributes == ["k": [0x0a, 0x01, UInt8(ascii: "v")], "n": [0x18, 0x07]])
    }
}

extension RecordingTracerTests {
    @Test("a worker's handling spans: recorded when sampled, ended once, an abandoned one ended by its last reference")
    func handlingSpans() throws {
        let tracer = makeTracer(.default)
        let record = EventHandlingRecord(stream: "s", group: "g", consumer: "c", messageID: "1-0", deliveryCount: 1, outcome: "abandoned")
        var parent = ServiceContext.topLevel
        tracer.extract(["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], into: &parent, using: Headers())
        let (context, span) = tracer.startHandlingSpan("process s", context: parent, record: record)
        #expect(context.w3cTrace?.traceIDHex == "0af7651916cd43dd8448eb211c80319c" && context.w3cTrace?.spanID != 0xb7ad_6b71_6920_3331)
        let ended = try #require(span as? RecordedHandlingSpan)
        ended.end(outcome: "dead-lettered", error: "malformed", failed: true)
        ended.end(outcome: "duplicate", error: nil, failed: false)
        #expect(tracer.exporter.queued == 1)
        // Encoded from its fields, it has the bytes of the span it ends as.
        let finished = ended.finished
        #expect(finished.handling?.outcome == "dead-lettered" && finished.handling?.error == "malformed" && finished.status?.code == .error)
        let direct = OTLPProtoWriter()
        ended.encode(into: direct)
        let made = OTLPProtoWriter()
        made.span(finished)
        #expect(Array(direct.written) == Array(made.written))
        // Let go without an end: its deinit ends it (as abandoned).
        do { _ = tracer.startHandlingSpan("process s", context: .topLevel, record: record) }
        #expect(tracer.exporter.queued == 2)
        // Not sampled upstream: no span, the context still carried on.
        var unsampled = ServiceContext.topLevel
        tracer.extract(["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"], into: &unsampled, using: Headers())
        let dropped = tracer.startHandlingSpan("process s", context: unsampled, record: record)
        #expect(dropped.span == nil && dropped.context.w3cTrace?.traceIDHex == "0af7651916cd43dd8448eb211c80319c")
        #expect(tracer.exporter.queued == 2)
    }

    @Test("handling spans in protobuf: each span has its own record's attributes, the shared ones written again when the consumer changes")
    func handlingSpansProtobuf() throws {
        let trace = W3CTrace(traceHigh: 1, traceLow: 2, spanID: 3, flags: 1, state: nil)
        let records = [
            EventHandlingRecord(stream: "orders", group: "crm", consumer: "c1", messageID: "1-0", deliveryCount: 1, outcome: "applied"),
            EventHandlingRecord(stream: "orders", group: "crm", consumer: "c1", messageID: "2-0", deliveryCount: 3, outcome: "retried", error: "boom"),
            EventHandlingRecord(stream: "orders", group: "crm", consumer: "c2", messageID: "3-0", deliveryCount: 1, outcome: "duplicate"),
            EventHandlingRecord(stream: "orders", group: "billing", consumer: "c2", messageID: "4-0", deliveryCount: 1, outcome: "applied"),
        ]
        let spans = records.map {
            FinishedSpan(
                trace: trace, parentSpanID: 0, name: "process orders", kind: .consumer, startNanoseconds: 1, endNanoseconds: 2, attributes: ["extra": "x"],
                handling: $0, status: nil, events: [], links: [])
        }
        let bytes = OTLPEncoding.protobuf(spans, header: .init(resource: [("service.name", "svc")], scope: "scope"))
        let request = try ProtoFields(bytes)
        let resourceSpans = try ProtoFields(try #require(request.all(1).first))
        let scopeSpans = try ProtoFields(try #require(resourceSpans.all(2).first))
        let encoded = scopeSpans.all(2)
        try #require(encoded.count == records.count)
        for (span, record) in zip(encoded, records) {
            var attributes: [String: [UInt8]] = [:]
            var names: [String] = []
            for kv in try ProtoFields(span).all(9) {
                let pair = try ProtoFields(kv)
                names.append(pair.string(1) ?? "")
                attributes[pair.string(1) ?? ""] = pair.all(2).first
            }
            var expected: [String: [UInt8]] = ["extra": [0x0a, 0x01, UInt8(ascii: "x")]]
            var expectedNames = ["extra"]
            record.forEachAttribute { name, value in
                expectedNames.append(name)
                // AnyValue: string_value (field 1) or int_value (field 3).
                switch value {
                case .string(let text): expected[name] = [0x0a, UInt8(text.utf8.count)] + Array(text.utf8)
                case .int64(let n): expected[name] = [0x18, UInt8(n)]
                default: Issue.record("unexpected attribute \(name)")
                }
            }
            #expect(names == expectedNames, "\(record)")
            #expect(attributes == expected, "\(record)")
        }
    }
}

/// The fields of one protobuf message: length-delimited ones by number, varints by number.
private struct ProtoFields {
    var delimited: [(UInt64, [UInt8])] = []
    var varints: [UInt64: UInt64] = [:]

    struct Malformed: Error {}

    init(_ bytes: [UInt8]) throws {
        var i = 0
        func varint() throws -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while i < bytes.count {
                let b = bytes[i]
                i += 1
                value |= UInt64(b & 0x7F) << shift
                if b & 0x80 == 0 { return value }
                shift += 7
            }
            throw Malformed()
        }
        while i < bytes.count {
            let key = try varint()
            switch key & 7 {
            case 0: varints[key >> 3] = try varint()
            case 1: i += 8
            case 5: i += 4
            case 2:
                let n = Int(try varint())
                guard i + n <= bytes.count else { throw Malformed() }
                delimited.append((key >> 3, Array(bytes[i..<(i + n)])))
                i += n
            default: throw Malformed()
            }
        }
        guard i == bytes.count else { throw Malformed() }
    }

    func all(_ field: UInt64) -> [[UInt8]] { delimited.filter { $0.0 == field }.map(\.1) }
    func string(_ field: UInt64) -> String? { all(field).first.map { String(decoding: $0, as: UTF8.self) } }
}

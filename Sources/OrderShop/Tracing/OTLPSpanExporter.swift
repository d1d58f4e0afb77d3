import AsyncHTTPClient
import Logging
import NIOCore
import ServiceLifecycle
import StreamWorker
import Synchronization

/// Queues ended spans and sends them in batches over OTLP/HTTP (protobuf or JSON): a batch
/// when `maxExportBatchSize` spans are queued, else what is queued every `scheduleDelay`, and
/// the rest at shutdown. A full queue (`maxQueueSize`) drops new spans, counted and logged.
///
/// Adding a span is one append under an uncontended lock (a wake-up of the exporting task per
/// batch, not per span); encoding and sending happen on the exporting task, one request at a
/// time. Not encoding where a span ends matters: a worker's settler ends a batch's spans
/// between two settle round trips, so whatever an end costs lengthens every settle cycle
/// (encoding there made the traced drain slower, though it saved CPU).
final class OTLPSpanExporter: Service, Sendable {
    struct Settings: Sendable {
        /// The traces URL (`.../v1/traces`).
        var endpoint: String
        var json = false
        var headers: [(String, String)] = []
        var timeout: Duration = .seconds(10)
        var scheduleDelay: Duration = .seconds(5)
        /// Not the specification's 2,048: a worker ends up to 100,000 spans a second, and on a
        /// loaded 2-core machine its exporting task waited long enough for 2,048 to fill (2.2 %
        /// of a drain's spans dropped). 32,768 spans are at most ~25 MB while export lags.
        var maxQueueSize = 32768
        /// Not the specification's 512: a worker's drain exports up to 100,000 spans a second,
        /// and each request costs the worker a wake-up of its exporting task and of an event loop
        /// and the receiver a request. 2,048 spans (about 0.9 MB of protobuf) per request took the
        /// receiver's CPU per span from 1.18-1.20 µs to 0.85-0.96 and the worker's from 8.5-12.1
        /// to 8.2-11.7 (single runs of the same receiver in `bench worker --tracing on`, 2026-12-03).
        var maxExportBatchSize = 2048
        var header: OTLPEncoding.Header
        /// A collector's 429, 502, 503 and 504 are retried with the same batch.
        var retry = OTLPExportRetry()

        /// The largest `OTEL_BSP_MAX_QUEUE_SIZE` taken: ~200 MB of spans while export lags.
        static let largestQueue = 262_144

        /// ``endpoint`` as logged (a password in it not shown).
        var loggedEndpoint: String { OTLPSettings.redacted(endpoint) }
    }

    /// The spans waiting for export, in two arrays: a worker's handlings (references: an array
    /// of them is emptied by releasing each) and the other spans. One array of an enum of both
    /// was emptied through the enum's value witness, 1.1 % of a traced worker's CPU (perf,
    /// 2026-12-03).
    private struct Spans {
        /// A worker's handlings, ended: the spans themselves (their fields no longer change).
        var handlings: [RecordedHandlingSpan] = []
        var finished: [FinishedSpan] = []

        var count: Int { handlings.count + finished.count }

        mutating func removeAll() {
            handlings.removeAll(keepingCapacity: true)
            finished.removeAll(keepingCapacity: true)
        }
    }

    private struct Queue {
        var spans = Spans()
        /// Spans taken for the round under way and not yet sent (or given up): all but one
        /// batch of them (the one a request may be carrying) count against `maxQueueSize`. Not
        /// counted, a round of a full queue retried against a collector answering 503 held
        /// 59,392 spans beside a full queue (a trial); all counted, a queue of one batch
        /// (`OTEL_BSP_MAX_QUEUE_SIZE=2048`) dropped every span ended during each request (a review).
        var taken = 0
        var dropped = 0
        /// A wake-up is on its way for the batch queued.
        var signalled = false
    }

    let settings: Settings
    private let logger: Logger
    private let queue: Mutex<Queue>
    private let wakeups: AsyncStream<Void>
    private let wake: AsyncStream<Void>.Continuation
    /// When the process began to stop: from then on export has ``finalTimeout`` in all, not per
    /// request (a collector answering each request within 3 s held a stop 20-30 s, a trial).
    private let stopBegan = Mutex<ContinuousClock.Instant?>(nil)

    init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        queue = Mutex(Queue())
        (wakeups, wake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Queues a worker's ended handling.
    func add(_ span: RecordedHandlingSpan) {
        add { $0.handlings.append(span) }
    }

    /// Queues any other ended span.
    func add(_ span: FinishedSpan) {
        add { $0.finished.append(span) }
    }

    private func add(_ append: (inout Spans) -> Void) {
        let full = queue.withLock { queue -> Bool in
            guard queue.spans.count + max(0, queue.taken - settings.maxExportBatchSize) < settings.maxQueueSize else {
                queue.dropped += 1
                return false
            }
            append(&queue.spans)
            guard queue.spans.count >= settings.maxExportBatchSize, !queue.signalled else { return false }
            queue.signalled = true
            return true
        }
        if full { wake.yield() }
    }

    /// Spans queued, not yet taken for export.
    var queued: Int { queue.withLock { $0.spans.count } }

    /// Sends what is queued without waiting for the schedule.
    func flushSoon() {
        wake.yield()
    }

    func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .init(settings.timeout))
        // Its requests must not be traced: each export would start spans to export.
        configuration.tracing.tracer = nil
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let delay = settings.scheduleDelay
        var exporting = Exporting(taken: Spans(), batch: EncodedSpans(json: settings.json, capacity: settings.maxExportBatchSize))
        exporting.taken.handlings.reserveCapacity(settings.maxExportBatchSize)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [wake] in
                while true {
                    do { try await Task.sleep(for: delay) } catch { return }
                    wake.yield()
                }
            }
            await withGracefulShutdownHandler {
                for await _ in wakeups {
                    await exportQueued(client, exporting: &exporting)
                }
            } onGracefulShutdown: { [wake, self] in
                self.noteStop()
                wake.finish()
            }
            group.cancelAll()
        }
        // The spans of the last moments (the process is stopping: its service group ends this
        // service last), each request waiting at most `finalTimeout`: with the collector gone
        // each of up to 16 batches waited out its connect timeout, and a stop took ~20 s. None
        // when the stop already cut a request short: the collector does not answer.
        exporting.final = true
        noteStop()
        await exportQueued(client, exporting: &exporting)
        exporting.trouble.report(logger, endpoint: settings.loggedEndpoint, final: true)
        try? await client.shutdown()
    }

    /// How long export may go on once the process began to stop, in all.
    static let finalTimeout: Duration = .seconds(3)

    /// The process began to stop now, unless it did before.
    private func noteStop() { stopBegan.withLock { $0 = $0 ?? .now } }

    /// The moment export gives up once the process began to stop; nil while it has not.
    private var stopDeadline: ContinuousClock.Instant? { stopBegan.withLock { $0 }.map { $0 + Self.finalTimeout } }

    /// What the exporting task keeps from one export to the next: the spans taken from the
    /// queue (the queue gets this array's storage back, emptied) and the encoder's buffers.
    /// Fresh ones per export (~160 KB each for 512 spans) were page faults on every batch:
    /// 2.6 % of a traced worker's CPU (perf, 2026-12-02).
    private struct Exporting {
        var taken: Spans
        var batch: EncodedSpans
        var trouble = ExportTrouble()
        /// The export at shutdown.
        var final = false
        /// A request was still unanswered `finalTimeout` after the stop began, and was cut:
        /// the export at shutdown sends nothing more.
        var cutByStop = false
    }

    private func exportQueued(_ client: HTTPClient, exporting: inout Exporting) async {
        var taken = exporting.taken
        exporting.taken = Spans()
        let dropped = queue.withLock { queue in
            swap(&queue.spans, &taken)
            queue.taken = taken.count
            defer {
                queue.dropped = 0
                queue.signalled = false
            }
            return queue.dropped
        }
        exporting.trouble.dropped += dropped
        // After a request found no collector (refused, cut off, timed out), the rest of what
        // was taken is not sent (counted as not exported): trying each batch against a
        // collector that is away made every round, and the stop, wait out one timeout per
        // batch. A collector that answers (500, 413; a 429 or 503 once its retries are spent)
        // gets the other batches.
        // Not even a round before the export at shutdown: a wake-up left in the stream while
        // the cut request hung would send one more batch to the same collector.
        var failed = exporting.cutByStop
        // Spans of `taken` in requests so far (sent, or in the one that failed).
        var requested = 0
        for handling in taken.handlings {
            guard !failed else { break }
            exporting.batch.append(handling)
            failed = !(await sendIfFull(with: client, exporting: &exporting, requested: &requested))
        }
        for finished in taken.finished {
            guard !failed else { break }
            exporting.batch.append(finished)
            failed = !(await sendIfFull(with: client, exporting: &exporting, requested: &requested))
        }
        if failed {
            // Counted with the problem that ended the round: the per-problem figures of a line
            // add up to its total (50,224 of 51,322 did in a trial's line).
            exporting.trouble.notSent(taken.count - requested)
            exporting.batch.discard()
        } else if exporting.batch.count > 0 {
            _ = await sendBatch(with: client, exporting: &exporting)
        }
        queue.withLock { $0.taken = 0 }
        taken.removeAll()
        exporting.taken = taken
        exporting.trouble.report(logger, endpoint: settings.loggedEndpoint, final: false)
    }

    /// ``sendBatch(with:exporting:)`` once the batch holds `maxExportBatchSize` spans (counted in
    /// `requested`); true while it is not full.
    private func sendIfFull(with client: HTTPClient, exporting: inout Exporting, requested: inout Int) async -> Bool {
        guard exporting.batch.count == settings.maxExportBatchSize else { return true }
        requested += settings.maxExportBatchSize
        let sent = await sendBatch(with: client, exporting: &exporting)
        queue.withLock { $0.taken = max(0, $0.taken - settings.maxExportBatchSize) }
        return sent
    }

    /// Sends the spans encoded in `exporting.batch` as one request (again, while the collector
    /// asks to come back later: ``OTLPExportRetry``), and empties it; false when no collector
    /// answered (what it did not take is counted in `exporting.trouble`).
    private func sendBatch(with client: HTTPClient, exporting: inout Exporting) async -> Bool {
        let count = exporting.batch.count
        let body = exporting.batch.withList { list in
            let (head, tail) = OTLPEncoding.wrapping(listLength: list.count, header: settings.header, json: settings.json)
            var body = ByteBuffer()
            body.reserveCapacity(head.count + list.count + tail.count)
            body.writeBytes(head)
            body.writeBytes(list)
            body.writeBytes(tail)
            return body
        }
        let timeout = exporting.final ? min(settings.timeout, Self.finalTimeout) : settings.timeout
        // Once the process stops nothing waits for a collector: the stop would wait with it.
        var mayWait = !exporting.final && !Task.isShuttingDownGracefully
        var attempt = 0
        while true {
            attempt += 1
            if let deadline = stopDeadline, ContinuousClock.now >= deadline {
                exporting.cutByStop = true
                exporting.trouble.failed(count, "the process stopped \(Self.finalTimeout) ago; the rest was not sent")
                return false
            }
            switch await send(body, with: client, timeout: timeout) {
            case .taken:
                exporting.trouble.succeeded()
                return true
            case .throttled(let problem, let retryAfter):
                if mayWait, let delay = settings.retry.delay(afterAttempt: attempt, retryAfter: retryAfter) {
                    exporting.trouble.retried(problem)
                    // A stop during the wait ends it; the batch then has one more try.
                    mayWait = await Self.wait(delay)
                    continue
                }
                exporting.trouble.failed(count, attempt > 1 ? "\(problem) (\(attempt) requests)" : problem)
                return true
            case .refused(let problem):
                exporting.trouble.failed(count, problem)
                return true
            case .unreachable(let problem):
                exporting.trouble.failed(count, problem)
                return false
            case .cutByStop:
                exporting.cutByStop = true
                exporting.trouble.failed(count, "no answer from the collector within \(Self.finalTimeout) of the stop; the request was cut")
                return false
            }
        }
    }

    /// Waits `delay`; false when the process began to stop (or the task was cancelled) first.
    private static func wait(_ delay: Duration) async -> Bool {
        do {
            try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            return true
        } catch {
            return false
        }
    }

    private enum Answer {
        case taken
        /// The collector answered 429, 502, 503 or 504: the batch may be sent again, after
        /// `retryAfter` when the collector said (``OTLPExportRetry``).
        case throttled(String, retryAfter: Duration?)
        /// The collector answered, not 2xx.
        case refused(String)
        /// No answer: refused connection, cut off, timed out.
        case unreachable(String)
        /// No answer within ``finalTimeout`` of the stop's beginning.
        case cutByStop
    }

    /// The request and the start of its answer's body, unless the process began to stop and
    /// `finalTimeout` passed since: then nil (the request is cancelled). A request under way
    /// when a stop began waited out its whole timeout (10 s by default, the time a collector may
    /// take): a trial's stop took 14 s with a collector that hung, 22 s with a 30-s timeout.
    private func execute(_ request: HTTPClientRequest, with client: HTTPClient, timeout: Duration) async throws -> (HTTPClientResponse, ByteBuffer)? {
        try await withThrowingTaskGroup(of: (HTTPClientResponse, ByteBuffer)?.self) { group in
            group.addTask {
                let response = try await client.execute(request, timeout: .init(timeout))
                return (response, await Self.answerStart(of: response, within: timeout))
            }
            group.addTask { [self] in
                try await gracefulShutdown()
                let began = self.stopBegan.withLock { $0 } ?? .now
                try await Task.sleep(until: began + Self.finalTimeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
    }

    /// Bytes of an answer kept to show in a message.
    static let answerKept = 512
    /// Bytes of an answer read at most; the rest is not waited for.
    static let answerRead = 4 << 20

    /// The first ``answerKept`` bytes of `response`'s body, reading at most ``answerRead`` bytes
    /// for at most `patience` (the status is what counts; the body only shows in a message). A
    /// 200 with a 50-MB body was taken for a failure when more than the 2 MB collected, and the
    /// round's other batches were dropped (a trial); read to its end without bounds, a collector
    /// that kept sending would hold the export for ever, AsyncHTTPClient's deadline ending at
    /// the answer's head (a review). A body left unread closes its connection.
    static func answerStart(of response: HTTPClientResponse, within patience: Duration) async -> ByteBuffer {
        await first(
            of: {
                var start = ByteBuffer()
                var read = 0
                do {
                    for try await chunk in response.body {
                        read += chunk.readableBytes
                        if start.readableBytes < answerKept { start.writeImmutableBuffer(chunk.getSlice(at: chunk.readerIndex, length: min(chunk.readableBytes, answerKept - start.readableBytes))!) }
                        if read > answerRead { break }
                    }
                } catch {
                    // Cut off or cancelled: what was read is what there is.
                }
                return start
            }, orAt: .now + patience, else: ByteBuffer())
    }

    /// Sends one request.
    private func send(_ body: ByteBuffer, with client: HTTPClient, timeout: Duration) async -> Answer {
        var request = HTTPClientRequest(url: settings.endpoint)
        request.method = .POST
        request.body = .bytes(body)
        request.headers.add(name: "Content-Type", value: settings.json ? "application/json" : "application/x-protobuf")
        request.headers.add(name: "User-Agent", value: "ordershop-otlp-http")
        for (name, value) in settings.headers { request.headers.add(name: name, value: value) }
        do {
            guard let (response, answer) = try await execute(request, with: client, timeout: timeout) else { return .cutByStop }
            let status = response.status.code
            if !(200..<300).contains(status) {
                let text = String(decoding: answer.readableBytesView.prefix(200), as: UTF8.self)
                let problem = "the collector answered \(status)\(text.isEmpty ? "" : ": " + LogText.escaped(text, limit: 200))"
                guard OTLPExportRetry.isRetryable(status) else { return .refused(problem) }
                return .throttled(problem, retryAfter: OTLPExportRetry.retryAfter(response.headers.first(name: "Retry-After")))
            }
            return .taken
        } catch {
            return .unreachable("\(error)")
        }
    }
}

/// Spans that did not reach the collector: a new trouble is said at once (the first, or the
/// first after export worked again), then at most once a minute while it lasts: a line per
/// failed request was 15 lines in 30 s with a collector away, 40 in 15 s with one answering 500,
/// and a full queue was said only when the overload ended. Each line names every problem met
/// since the last one, with the spans each lost: a trial's line named only the last (a 502 that
/// lost nothing, retried) beside 1,965 spans lost to earlier 500s, and an outage that began
/// just after a "works again" line was said only a minute later, once it was over.
struct ExportTrouble {
    /// Spans a full queue refused since the last report.
    var dropped = 0
    /// Spans taken for export that the collector did not get since the last report.
    var notExported = 0
    /// Requests the collector asked to send again later (429, 502, 503, 504) since the last
    /// report, each waited for and retried.
    var throttled = 0
    /// What went wrong since the last report, in the order met, with the spans each lost.
    var problems: [(problem: String, spans: Int)] = []
    var lastReport: ContinuousClock.Instant?
    /// A report said export was failing, and no report has said it works again since.
    var failing = false
    /// A request worked since a report said export was failing.
    var recovered = false

    static let interval: Duration = .seconds(60)
    /// Problems named per line; the rest are counted as "other".
    static let namedProblems = 4

    /// The problem of the last failed request.
    private var lastProblem: String?

    mutating func failed(_ spans: Int, _ problem: String) {
        notExported += spans
        lastProblem = problem
        note(problem, spans: spans)
    }

    /// Spans of a round left unsent after a request failed, counted with that request's problem.
    mutating func notSent(_ spans: Int) {
        guard spans > 0 else { return }
        notExported += spans
        note(lastProblem ?? "not sent after a failed request", spans: spans)
    }

    /// A request the collector asked to send again later (it was).
    mutating func retried(_ problem: String) {
        throttled += 1
        note(problem, spans: 0)
    }

    private mutating func note(_ problem: String, spans: Int) {
        if let i = problems.firstIndex(where: { $0.problem == problem }) {
            problems[i].spans += spans
        } else if problems.count < Self.namedProblems {
            problems.append((problem, spans))
        } else if problems.count == Self.namedProblems {
            problems.append(("other", spans))
        } else {
            problems[Self.namedProblems].spans += spans
        }
    }

    /// A request worked. Export counts as failing until a report says it works again: a
    /// collector that failed one request of each round (or refused only full batches) would
    /// otherwise have its every loss said at once, a line per round.
    mutating func succeeded() {
        if failing { recovered = true }
    }

    /// Logs what happened since the last report, if anything did and a report is due (or
    /// `final`: the process is stopping; or a loss while no report says export is failing).
    mutating func report(_ logger: Logger, endpoint: String, final: Bool, now: ContinuousClock.Instant = .now) {
        guard dropped > 0 || notExported > 0 || throttled > 0 || recovered else { return }
        let newTrouble = notExported > 0 && !failing
        if !final, !newTrouble, let last = lastReport, last.duration(to: now) < Self.interval { return }
        var metadata: Logger.Metadata = ["endpoint": "\(endpoint)"]
        if notExported > 0 { metadata["not_exported"] = "\(notExported)" }
        if dropped > 0 { metadata["dropped_queue_full"] = "\(dropped)" }
        if throttled > 0 { metadata["retried_requests"] = "\(throttled)" }
        if !problems.isEmpty {
            metadata["error"] = "\(problems.map { "\($0.problem) (\($0.spans) spans not exported)" }.joined(separator: "; "))"
        }
        if notExported > 0 {
            let message: Logger.Message =
                final ? "spans not exported at shutdown: the collector did not take them" : "span export failing; reported again in a minute at most"
            logger.warning(message, metadata: metadata)
            failing = true
        } else if dropped > 0 {
            logger.warning("spans dropped: the export queue was full", metadata: metadata)
        } else if throttled > 0 {
            logger.warning("the collector asked to send spans later; they were sent again", metadata: metadata)
            failing = false
        } else {
            logger.info("span export works again", metadata: metadata)
            failing = false
        }
        (dropped, notExported, throttled, problems, recovered, lastReport) = (0, 0, 0, [], false, now)
    }
}

import AsyncHTTPClient
@testable import OrderShop
import RedisClient
import StreamWorker
import TestSupport
import Testing
import Tracing

/// The tracer of a process that exports nothing: W3C context in and out, nothing recorded.
@Suite struct PropagatingTracerTests {
    struct Headers: Extractor, Injector {
        func extract(key: String, from carrier: [String: String]) -> String? { carrier[key] }
        func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) { carrier[key] = value }
    }

    @Test("a span continues a valid traceparent (trace id, flags, tracestate) with a span id of its own")
    func continuesValidContext() {
        let tracer = PropagatingTracer()
        var context = ServiceContext.topLevel
        tracer.extract(
            ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "shop=1"], into: &context, using: Headers())
        let span = tracer.startSpan("op", context: context)
        #expect(!span.isRecording)
        var out: [String: String] = [:]
        tracer.inject(span.context, into: &out, using: Headers())
        let parts = (out["traceparent"] ?? "").split(separator: "-").map(String.init)
        #expect(parts.count == 4 && parts[0] == "00" && parts[1] == "0af7651916cd43dd8448eb211c80319c" && parts[3] == "01", "\(out)")
        #expect(parts.count == 4 && parts[2].count == 16 && parts[2] != "b7ad6b7169203331", "\(out)")
        #expect(out["tracestate"] == "shop=1")
    }

    @Test(
        "a malformed traceparent is ignored: the span starts a new trace",
        arguments: [
            "", "garbage", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0g",
        ])
    func ignoresMalformed(traceparent: String) {
        let tracer = PropagatingTracer()
        var context = ServiceContext.topLevel
        tracer.extract(["traceparent": traceparent], into: &context, using: Headers())
        #expect(context.w3cTrace == nil)
        var out: [String: String] = [:]
        tracer.inject(tracer.startSpan("op", context: context).context, into: &out, using: Headers())
        let traceID = (out["traceparent"] ?? "").split(separator: "-").dropFirst().first.map(String.init) ?? ""
        #expect(traceID.count == 32 && traceID != "0af7651916cd43dd8448eb211c80319c", "\(out)")
    }

    @Test(
        "a tracestate kept: the list trimmed, empty members left out",
        arguments: [
            ("shop=1", "shop=1"), (" a=1 ,\tb=x y ", "a=1,b=x y"), ("a=1,,b=2, ,", "a=1,b=2"), ("t0@sys=v", "t0@sys=v"),
            ("k*/_-9=!~", "k*/_-9=!~"), ((0..<32).map { "k\($0)=v" }.joined(separator: ","), (0..<32).map { "k\($0)=v" }.joined(separator: ",")),
        ])
    func keepsAValidTracestate(header: String, kept: String) {
        var context = ServiceContext.topLevel
        PropagatingTracer().extract(
            ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": header], into: &context, using: Headers())
        #expect(context.w3cTrace?.state == kept)
    }

    @Test(
        "a tracestate that is not W3C's grammar is dropped whole; the trace goes on",
        arguments: [
            "", " , ", "UPPER=1", "a b=1", "=x", "k", "k=", "k=v=v", "k=v\u{7}bell", "k=v\tz", "k=vé", "a=1,a=2", "9a=1", "t@Sys=1",
            "t@systemnamelongerthan14=1", (0..<33).map { "k\($0)=v" }.joined(separator: ","), "k=" + String(repeating: "x", count: 600),
        ])
    func dropsAnInvalidTracestate(header: String) {
        var context = ServiceContext.topLevel
        PropagatingTracer().extract(
            ["traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": header], into: &context, using: Headers())
        #expect(context.w3cTrace?.traceIDHex == "0af7651916cd43dd8448eb211c80319c")
        #expect(context.w3cTrace?.state == nil, "\(header)")
    }

    @Test("a later version's traceparent is read by its first four parts")
    func laterVersion() {
        var context = ServiceContext.topLevel
        PropagatingTracer().extract(["traceparent": "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-more"], into: &context, using: Headers())
        #expect(context.w3cTrace?.traceIDHex == "0af7651916cd43dd8448eb211c80319c")
    }

    @Test("export off: a request's traceparent reaches the event it appends, and the worker's mail to msg")
    func requestContextReachesEvents() async throws {
        try await withTracer(PropagatingTracer()) {
            try await withShop { shop in
                let upstream = "4bf92f3577b34da6a3ce929d0e0e4736"
                let reply = try await withUntracedClient { client in
                    try await ShopClient(baseURL: shop.stack.addresses.url(.gateway), client: client).send(
                        .POST, "/customer", body: Array(#"{"name":"Ada","email":"ada@shop.test"}"#.utf8),
                        headers: [("Content-Type", "application/json"), ("traceparent", "00-\(upstream)-00f067aa0ba902b7-00")])
                }
                #expect(reply.status == 200, "\(reply)")
                let events = try await shop.pool.send(XRANGE(RedisArgument(EntityType.customer.stream(.created))))
                let traceparent = try #require(events.first?.string("traceparent"), "\(events)")
                #expect(traceparent.hasPrefix("00-\(upstream)-") && traceparent.hasSuffix("-00"), "\(traceparent)")
                #expect(events.first?.string("tracestate") == nil)
                // The welcome mail was sent from the worker's span, in the same trace.
                #expect(await eventually { try await shop.mailKeys().count == 1 })
            }
        }
    }
}

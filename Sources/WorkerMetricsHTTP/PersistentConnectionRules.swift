import NIOCore
import NIOHTTP1

/// HTTP/1.x's rules for keeping a connection open, which the version-free HTTP types lose.
///
/// Hummingbird reads requests as `HTTPRequest`, which has no version, and ends a connection
/// only when a request's `Connection` header is exactly `close`. So an HTTP/1.0 request (whose
/// connection ends after the response unless it asks for `keep-alive`) was answered as HTTP/1.1
/// and its connection kept: ApacheBench (`ab`, HTTP/1.0) waited for the end of each response
/// until its own timeout, and `Connection: Close` in another case kept an HTTP/1.1 connection
/// too (found by a user-style trial of the shop, 2026-12-05).
///
/// Sits between NIO's HTTP/1 handlers, which still see the version, and the conversion to the
/// HTTP types:
/// - a request that does not keep its connection (NIO's reading of version and `Connection`)
///   reaches the router with `Connection: close`, so Hummingbird ends the connection after it;
/// - a response to HTTP/1.0 says HTTP/1.0 (NIO then frames a body without a length by closing
///   the connection, never by chunks, which HTTP/1.0 has not got), with `Connection: keep-alive`
///   when the client asked for it and the body has a length, else `Connection: close`; a body
///   without a length ends with the connection's output (``ConnectionEnding``).
final class PersistentConnectionRules: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private struct Asked {
        var version: HTTPVersion
        var keepAlive: Bool
    }

    /// Requests whose final response head is not written yet, oldest first: Hummingbird has no
    /// pipelining handler, so every request a client pipelines is read before the first is
    /// answered.
    private var unanswered = CircularBuffer<Asked>(initialCapacity: 2)
    /// The response being written ends the connection.
    private var closeAfterResponse = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(var head) = unwrapInboundIn(data) else { return context.fireChannelRead(data) }
        let keepAlive = head.isKeepAlive
        unanswered.append(Asked(version: head.version, keepAlive: keepAlive))
        if !keepAlive { head.headers.replaceOrAdd(name: "Connection", value: "close") }
        context.fireChannelRead(wrapInboundOut(.head(head)))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head) where head.status.code >= 200:
            let asked = unanswered.popFirst() ?? Asked(version: .http1_1, keepAlive: true)
            let legacy = asked.version.major == 1 && asked.version.minor == 0
            if legacy { head.version = .http1_0 }
            let framed = head.headers.contains(name: "content-length") || !head.status.mayHaveResponseBody
            let closeDelimited = legacy && !framed
            if !asked.keepAlive || closeDelimited {
                head.headers.replaceOrAdd(name: "Connection", value: "close")
            } else if legacy {
                head.headers.replaceOrAdd(name: "Connection", value: "keep-alive")
            }
            closeAfterResponse = closeDelimited && asked.keepAlive
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end where closeAfterResponse:
            // Only for a body framed by the end of the connection: a request that does not keep
            // its connection reached Hummingbird with `Connection: close`, and Hummingbird ends
            // that connection itself, output first.
            closeAfterResponse = false
            let channel = context.channel
            let written = context.eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in ConnectionEnding.closeGracefully(channel) }
            if let promise { written.futureResult.cascade(to: promise) }
            context.writeAndFlush(data, promise: written)
        default:
            context.write(data, promise: promise)
        }
    }
}

import NIOCore
import NIOHTTPTypes

/// How long an HTTP client may take, so that slow clients cannot hold connections (and memory)
/// without end: a client that trickles a byte at a time never trips an idle timeout, so the
/// head and the body each get a deadline of their own.
public struct HTTPServerLimits: Sendable {
    /// From the connection's start to its first complete request head.
    public var headerTimeout: Duration
    /// From the request head to the end of its body.
    public var bodyTimeout: Duration
    /// From the end of a response to the next complete request head on the same connection.
    /// Longer than the idle timeout of common HTTP clients (ours: 5 s, ``makeHTTPClient()``;
    /// AsyncHTTPClient's default and `HTTPClient.shared`: 60 s), so that they close an idle
    /// connection first: a server closing it at the moment a client reuses it fails that
    /// request, and a POST is not retried (seen with 15 s: `BadRequestTests` got "connection
    /// reset by peer" on a loaded machine). 75 s, as nginx's `keepalive_timeout`.
    public var keepAliveTimeout: Duration
    /// No bytes read for this long closes the connection (Hummingbird's idle timeout); past the
    /// keep-alive timeout, so that it only ends connections stuck inside a request.
    public var idleTimeout: Duration

    public init(
        headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30), keepAliveTimeout: Duration = .seconds(75),
        idleTimeout: Duration = .seconds(90)
    ) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.idleTimeout = idleTimeout
    }
}

/// Closes a connection whose request head or body does not arrive within ``HTTPServerLimits``.
/// Sits after the HTTP decoder: the decoder passes a head on only once it is complete, so the
/// header deadline runs from the connection's start to that moment whatever the client trickles.
final class SlowClientGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: HTTPServerLimits
    private var timer: Scheduled<Void>?
    private var readingRequest = false
    /// Requests whose response has not ended yet (more than one when a client pipelines).
    private var unanswered = 0

    init(limits: HTTPServerLimits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(limits.headerTimeout, context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(limits.headerTimeout, context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            unanswered += 1
            arm(limits.bodyTimeout, context: context)
        case .body:
            break
        case .end:
            readingRequest = false
            // Answered already (an early refusal): the next head is due; else wait for the response.
            if unanswered == 0 { arm(limits.keepAliveTimeout, context: context) } else { disarm() }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            unanswered = max(0, unanswered - 1)
            if unanswered == 0, !readingRequest { arm(limits.keepAliveTimeout, context: context) }
        }
        context.write(data, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    private func arm(_ timeout: Duration, context: ChannelHandlerContext) {
        timer?.cancel()
        let bound = context.loopBound
        let nanoseconds = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        timer = context.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { bound.value.close(promise: nil) }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}

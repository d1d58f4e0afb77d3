import NIOCore
import NIOHTTPTypes

/// How long an HTTP client may take, so that slow clients cannot hold connections (and memory)
/// without end: a client that trickles a byte at a time never trips an idle timeout, so the
/// head and the body each get a deadline of their own.
public struct HTTPServerLimits: Sendable {
    /// From the connection's start (or the end of the previous response) to a complete request head.
    public var headerTimeout: Duration
    /// From the request head to the end of its body.
    public var bodyTimeout: Duration
    /// No bytes at all in either direction.
    public var idleTimeout: Duration

    public init(headerTimeout: Duration = .seconds(10), bodyTimeout: Duration = .seconds(30), idleTimeout: Duration = .seconds(60)) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
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
    private var responding = false

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
            responding = true
            arm(limits.bodyTimeout, context: context)
        case .body:
            break
        case .end:
            readingRequest = false
            // The response may be written already (an early refusal); then the next head is due.
            if responding { disarm() } else { arm(limits.headerTimeout, context: context) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            responding = false
            if !readingRequest { arm(limits.headerTimeout, context: context) }
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

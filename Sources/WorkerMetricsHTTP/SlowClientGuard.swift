import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request head or body does not arrive within ``HTTPServerLimits``.
/// Sits after the HTTP decoder: the decoder passes a head on only once it is complete, so the
/// header deadline runs from the connection's start to that moment whatever the client trickles.
public final class SlowClientGuard: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    private let limits: HTTPServerLimits
    private var timer: Scheduled<Void>?
    private var readingRequest = false
    /// Requests whose response has not ended yet (more than one when a client pipelines).
    private var unanswered = 0

    public init(limits: HTTPServerLimits) { self.limits = limits }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(limits.headerTimeout, context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(limits.headerTimeout, context: context)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
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

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            unanswered = max(0, unanswered - 1)
            if unanswered == 0, !readingRequest { arm(limits.keepAliveTimeout, context: context) }
        }
        context.write(data, promise: promise)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { disarm() }

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

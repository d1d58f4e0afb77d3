import Hummingbird
import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request head or body does not arrive within ``HTTPServerLimits``.
/// Sits after the HTTP decoder: the decoder passes a head on only once it is complete, so the
/// header deadline runs from the connection's start to that moment whatever the client trickles.
///
/// A body that misses its deadline is answered `408 Request Timeout` (JSON naming the body)
/// before the connection ends, when nothing of that request's answer was written yet and no
/// earlier request waits for one: a client then knows that nothing was done and that it may
/// send again (it got no answer at all before). Nothing more of the connection is read (the
/// rest of the body, sent late, never completes the request), and the route still waiting for
/// that body writes nothing after it.
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
    /// A response head was written for the oldest unanswered request.
    private var answering = false
    /// The 408 was written: what the route writes after it goes nowhere.
    private var timedOut = false

    public init(limits: HTTPServerLimits) { self.limits = limits }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(limits.headerTimeout, context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        arm(limits.headerTimeout, context: context)
        context.fireChannelActive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Answered 408 "nothing done": the rest of that body, sent late, must not complete the
        // request (a review: the route got it whole within the 2-s grace and made the entity).
        if timedOut { return }
        switch unwrapInboundIn(data) {
        case .head:
            readingRequest = true
            unanswered += 1
            arm(limits.bodyTimeout, context: context) { [weak self] context in self?.bodyMissedItsDeadline(context) }
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
        if timedOut {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200:
            answering = true
        case .end:
            answering = false
            unanswered = max(0, unanswered - 1)
            if unanswered == 0, !readingRequest { arm(limits.keepAliveTimeout, context: context) }
        default:
            break
        }
        context.write(data, promise: promise)
    }

    /// The body deadline passed: a 408 when this request is the only one owed an answer and
    /// none of it was written, then the end of the connection.
    private func bodyMissedItsDeadline(_ context: ChannelHandlerContext) {
        guard readingRequest, unanswered == 1, !answering, context.channel.isActive else { return context.close(promise: nil) }
        let body = MalformedRequestAnswer.body(
            error: "the request's body did not arrive within \(limits.bodyTimeout): nothing done; send it again", field: "body")
        var response = HTTPResponse(status: .requestTimeout)
        response.headerFields[.contentType] = "application/json; charset=utf-8"
        response.headerFields[.contentLength] = "\(body.count)"
        response.headerFields[.connection] = "close"
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        context.write(wrapOutboundOut(.body(context.channel.allocator.buffer(bytes: body))), promise: nil)
        timedOut = true
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in ConnectionEnding.closeGracefully(channel) }
        // Nothing more is read, so the route's read of the body fails now, not at the close.
        context.close(mode: .input, promise: nil)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        disarm()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) { disarm() }

    /// Closes the connection after `timeout`, or does `expired` then.
    private func arm(_ timeout: Duration, context: ChannelHandlerContext, expired: ((ChannelHandlerContext) -> Void)? = nil) {
        timer?.cancel()
        let bound = context.loopBound
        let nanoseconds = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let then = expired.map { NIOLoopBound($0, eventLoop: context.eventLoop) }
        timer = context.eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) {
            if let then { then.value(bound.value) } else { bound.value.close(promise: nil) }
        }
    }

    private func disarm() {
        timer?.cancel()
        timer = nil
    }
}

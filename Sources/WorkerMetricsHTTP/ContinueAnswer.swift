import Foundation
import NIOCore
import NIOHTTP1

/// Answers `Expect: 100-continue` with `100 Continue` as soon as the request's head is read, so
/// that a client waiting for it sends its body at once. Hummingbird never sent it: curl waited
/// its 1-s timeout before sending each such body, and a client that waits for the 100 (as RFC
/// 9110 10.1.1 lets it) got no answer at all (a trial).
///
/// HTTP/1.1 only (an HTTP/1.0 client cannot expect a 100), and only when no earlier response is
/// still being written on the connection, which the 100 would cut into: a request pipelined
/// behind another gets none, and its client sends the body once its own wait ends. The final
/// answer follows as always (NIO's encoder frames a 1xx head as one that another follows).
final class ContinueAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// Requests read whose response has not ended.
    private var unanswered = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            if unanswered == 0, head.version == .http1_1, Self.expectsContinue(head.headers) {
                context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
            }
            unanswered += 1
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { unanswered = max(0, unanswered - 1) }
        context.write(data, promise: promise)
    }

    /// Whether the headers ask for a 100 (`Expect: 100-continue`, in any case).
    static func expectsContinue(_ headers: HTTPHeaders) -> Bool {
        headers["Expect"].contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "100-continue" }
    }
}

import Foundation
import NIOCore
import NIOHTTP1

/// Answers `Expect: 100-continue` with `100 Continue`, so that a client waiting for it sends its
/// body at once. Hummingbird never sent it: curl waited its 1-s timeout before sending each such
/// body, and a client that waits for the 100 (as RFC 9110 10.1.1 lets it) got no answer at all
/// (a trial).
///
/// - HTTP/1.1 only (an HTTP/1.0 client cannot expect a 100).
/// - Not for a declared body over `maximumBodyBytes`: the route refuses it 413 from its head, and
///   the client, waiting, never uploads it (with the 100 it uploaded 4 MiB to be refused).
/// - A request pipelined behind another gets its 100 once the responses before it have ended:
///   sent at once, it would cut into them.
///
/// Other refusals decided from the head alone (415, 404, 405) still follow a 100, as RFC 9110
/// allows: the routes decide them, after this handler.
final class ContinueAnswer: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let maximumBodyBytes: Int
    /// A flag per request read whose response has not ended, oldest first: it is owed a 100.
    private var owed: [Bool] = []

    init(maximumBodyBytes: Int) {
        self.maximumBodyBytes = maximumBodyBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data) {
            let wants = head.version == .http1_1 && Self.expectsContinue(head.headers) && !declaresTooMuch(head.headers)
            if wants && owed.isEmpty {
                owed.append(false)
                sendContinue(context)
            } else {
                owed.append(wants)
            }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data), !owed.isEmpty else { return context.write(data, promise: promise) }
        owed.removeFirst()
        context.write(data, promise: promise)
        // The next request's turn: its 100 after the response before it.
        if owed.first == true {
            owed[0] = false
            sendContinue(context)
        }
    }

    private func sendContinue(_ context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
    }

    private func declaresTooMuch(_ headers: HTTPHeaders) -> Bool {
        headers["Content-Length"].contains { Int($0.trimmingCharacters(in: .whitespaces)).map { $0 > maximumBodyBytes } ?? false }
    }

    /// Whether the headers ask for a 100 (`Expect: 100-continue`, in any case).
    static func expectsContinue(_ headers: HTTPHeaders) -> Bool {
        headers["Expect"].contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "100-continue" }
    }
}

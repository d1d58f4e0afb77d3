import Foundation
import NIOCore
import NIOHTTP1

/// Refuses, from its head alone, a request whose framing or target HTTP/1.1 leaves ambiguous,
/// before anything reads its body, and ends the connection after the answer (RFC 9112):
/// - an HTTP/1.1 request without a `Host` header, or any request naming more than one (two
///   headers, or a list in one): 400 naming `Host` (3.2: a proxy and the server could each take
///   another target);
/// - a coding before `chunked` (`gzip, chunked`): 501 naming `Transfer-Encoding` (6.1; NIO took
///   it as chunked, and the gzip bytes reached the route as the body, 400 "malformed JSON");
///   `chunked` not last, or twice, and any `Transfer-Encoding` in HTTP/1.0: 400 (6.3 and 6.1:
///   the body's length cannot be known).
///
/// Nearest the parser: the refused request goes no further (no 100 Continue, no route), and its
/// answer goes straight to the encoder. A request pipelined behind others is answered after
/// their responses have ended, in order; what follows it on the connection is not read.
final class RequestHeadRefusal: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    struct Refusal: Equatable {
        var status: HTTPResponseStatus
        var field: String
        var reason: String
    }

    /// Requests passed on whose response has not ended.
    private var unanswered = 0
    /// A refused request's answer, written once ``unanswered`` is 0; from then on nothing is read.
    private var refusal: (Refusal, HTTPVersion)?
    /// The refusal has been written.
    private var refused = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if refusal != nil { return }
        if case .head(let head) = unwrapInboundIn(data) {
            if let found = Self.refusal(head) {
                refusal = (found, head.version)
                if unanswered == 0 { answer(context) }
                return
            }
            unanswered += 1
        }
        context.fireChannelRead(data)
    }

    /// A parse error after a refused request (the bytes that followed it) is not answered
    /// again: the refusal ends the connection.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if refusal != nil, error is HTTPParserError { return }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        guard case .end = unwrapOutboundIn(data) else { return }
        unanswered = max(0, unanswered - 1)
        if unanswered == 0, refusal != nil, !refused { answer(context) }
    }

    private func answer(_ context: ChannelHandlerContext) {
        guard let (found, version) = refusal, context.channel.isActive else { return }
        refused = true
        let body = MalformedRequestAnswer.body(error: found.reason + ": nothing done", field: found.field)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Content-Length", value: "\(body.count)")
        headers.add(name: "Connection", value: "close")
        let responseVersion: HTTPVersion = version == .http1_0 ? .http1_0 : .http1_1
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: responseVersion, status: found.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in ConnectionEnding.closeGracefully(channel) }
    }

    /// Why a request head is refused; nil when it is not.
    static func refusal(_ head: HTTPRequestHead) -> Refusal? {
        let hosts = head.headers["Host"]
        let legacy = head.version.major == 1 && head.version.minor == 0
        if hosts.count > 1 || hosts.contains(where: { $0.contains(",") }) {
            return Refusal(status: .badRequest, field: "Host", reason: "the request names more than one Host; it must name one")
        }
        if hosts.isEmpty && !legacy {
            return Refusal(status: .badRequest, field: "Host", reason: "an HTTP/1.1 request must have a Host header")
        }
        let codings = head.headers["Transfer-Encoding"].flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        if !codings.isEmpty {
            if legacy {
                return Refusal(status: .badRequest, field: "Transfer-Encoding", reason: "an HTTP/1.0 request cannot have a Transfer-Encoding")
            }
            // 6.3: chunked not last (or twice) leaves the body's length unknown: 400.
            if codings.last != "chunked" || codings.filter({ $0 == "chunked" }).count > 1 {
                return Refusal(
                    status: .badRequest, field: "Transfer-Encoding",
                    reason: "Transfer-Encoding '\(codings.joined(separator: ", "))' must end with chunked, once")
            }
            if codings.count > 1 {
                return Refusal(
                    status: .notImplemented, field: "Transfer-Encoding",
                    reason: "Transfer-Encoding '\(codings.joined(separator: ", "))' is not supported; send the body as is or chunked alone")
            }
        }
        return nil
    }
}
